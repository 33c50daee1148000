// The NCCL transport: GPU buffers, a CUDA stream per communicator, MPI for the bootstrap, the
// message headers and the host collectives. See framework/runtime/transport_nccl.h.
#include "framework/runtime/transport_nccl.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <nccl.h>

#include "framework/runtime/transport_mpi.h"
#include "kernels/cuda/cuda_check.h"

// NCCL's last error text says more than its status name; the status name when there is none.
static const char *nccl_describe(ncclResult_t status) {
    const char *last = ncclGetLastError(NULL);
    return last && last[0] ? last : ncclGetErrorString(status);
}

#define NCCL_CHECK(call) YP_LIBRARY_CHECK("NCCL", call, ncclResult_t, ncclSuccess, nccl_describe)

enum { HEADER_TAG = 0 };  // the one MPI tag of the header communicator

// A communicator and the stream its operations run on.
typedef struct NcclLink {
    ncclComm_t comm;
    cudaStream_t stream;
} NcclLink;

typedef enum NcclOp { NCCL_OP_SEND, NCCL_OP_RECV, NCCL_OP_SUM } NcclOp;

// Requests are recycled through a free list with their events, so that a training step in its
// steady state neither allocates nor creates events.
struct TransportRequest {
    NcclOp op;
    int peer, tag;          // send, receive: pipeline rank and tag
    TransportGroup group;   // sum
    size_t n_bytes;
    void *buf;              // device memory (a send's source: const in spirit)
    const NcclLink *link;   // where its NCCL call runs
    bool launched;          // false while a receive waits for its header, or a send to this rank for its receive
    cudaEvent_t ready;      // recorded on the compute stream at the call
    cudaEvent_t done;       // recorded on link->stream after the NCCL call
    uint64_t header[2];     // a send's tag and size, for its peer
    MPI_Request header_sent;
    TransportRequest *next; // in the free list, or in a peer's queue, oldest first
};

// One pipeline rank (this one included) as the source and destination of this rank's messages.
typedef struct NcclPeer {
    NcclLink to, from;            // this rank -> peer and peer -> this rank; unused for this rank itself
    int rank_in_link;             // the peer's rank in to.comm and from.comm
    uint64_t header[2];           // the peer's next message: tag and size, once header_arrived
    MPI_Request header_recv;
    bool header_arrived;
    TransportRequest *receives;   // posted and not launched
    TransportRequest *self_sends; // this rank only: sends to itself, not launched
} NcclPeer;

typedef struct TransportNccl {
    Transport base;  // first, so that a Transport * is a TransportNccl *
    Transport *mpi;  // borrowed: the bootstrap, the host collectives and abort
    NcclLink groups[TRANSPORT_GROUP_COUNT];  // the collectives of each group
    NcclLink self;                           // messages to this rank itself (a communicator of one)
    NcclPeer *peers;                         // [pipeline_size], indexed by pipeline rank
    MPI_Comm headers;                        // this pipeline's ranks, indexed by pipeline rank
    cudaStream_t compute;                    // borrowed
    int device;
    TransportRequest *free_requests;
    int n_pending;  // requests handed out and not yet completed
} TransportNccl;


bool transport_nccl_possible(int local_size, int gpus, char *why, size_t why_len) {
    YP_CHECK(local_size > 0 && gpus >= 0 && (why || why_len == 0));
    if (local_size <= gpus) {
        if (why_len) why[0] = '\0';
        return true;
    }
    if (gpus == 0)
        snprintf(why, why_len, "no CUDA device is visible on this node");
    else
        snprintf(why, why_len, "%d ranks on this node share %d GPU%s, and NCCL needs a GPU of its own for each rank",
                 local_size, gpus, gpus == 1 ? "" : "s");
    return false;
}

static TransportNccl *nccl_of(Transport *t) { return (TransportNccl *)t; }

static int me_of(const TransportNccl *n) { return n->base.topo.pipeline_rank; }

static void describe_request(const TransportNccl *n, const TransportRequest *r, char *buf, size_t len) {
    char whom[192];
    if (r->op == NCCL_OP_SUM)
        snprintf(buf, len, "a sum of %zu floats over %s", r->n_bytes / sizeof(float),
                 transport_describe_group(&n->base, r->group, whom, sizeof whom));
    else
        snprintf(buf, len, "a %s of %zu bytes (tag %d) %s %s", r->op == NCCL_OP_SEND ? "send" : "receive", r->n_bytes,
                 r->tag, r->op == NCCL_OP_SEND ? "to" : "from",
                 topology_describe_peer(&n->base.topo, r->peer, whom, sizeof whom));
}

// ---- ending the job ----------------------------------------------------------------------------------

static __attribute__((noreturn)) void nccl_abort(Transport *t, int exit_code) {
    TransportNccl *n = nccl_of(t);
    // Stops this rank's kernels that wait for a lost peer. Results are ignored: the job ends anyway,
    // and a failure here must not re-enter the failure path.
    for (int q = 0; q < t->topo.pipeline_size; q++) {
        if (n->peers[q].to.comm) ncclCommAbort(n->peers[q].to.comm);
        if (n->peers[q].from.comm) ncclCommAbort(n->peers[q].from.comm);
    }
    if (n->self.comm) ncclCommAbort(n->self.comm);
    for (int g = TRANSPORT_GROUP_COUNT - 1; g >= 0; g--)
        if (n->groups[g].comm) ncclCommAbort(n->groups[g].comm);
    n->mpi->ops->abort(n->mpi, exit_code);
}

// Ends the job when NCCL reports an asynchronous error (a lost peer, a network failure) on the
// communicator of r, which is still in flight.
static void check_async_error(TransportNccl *n, const TransportRequest *r) {
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(r->link->comm, &async));
    if (async == ncclSuccess) return;
    char what[320];
    describe_request(n, r, what, sizeof what);
    const Topology *p = &n->base.topo;
    fprintf(stderr, "yolopipe: rank %d (pipeline rank %d, replica %d): NCCL failed during %s: %s (%s)\n",
            p->world_rank, p->pipeline_rank, p->replica, what, ncclGetErrorString(async),
            ncclGetLastError(r->link->comm));
    nccl_abort(&n->base, 1);
}

// ---- requests ----------------------------------------------------------------------------------------

static TransportRequest *request_take(TransportNccl *n, NcclOp op, const NcclLink *link) {
    TransportRequest *r = n->free_requests;
    if (r) {
        n->free_requests = r->next;
    } else {
        r = yp_calloc(1, sizeof *r);
        CUDA_CHECK(cudaEventCreateWithFlags(&r->ready, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&r->done, cudaEventDisableTiming));
    }
    *r = (TransportRequest){
        .op = op, .link = link, .ready = r->ready, .done = r->done, .header_sent = MPI_REQUEST_NULL};
    CUDA_CHECK(cudaEventRecord(r->ready, n->compute));
    n->n_pending++;
    return r;
}

static void request_give_back(TransportNccl *n, TransportRequest *r) {
    r->next = n->free_requests;
    n->free_requests = r;
    n->n_pending--;
}

static void queue_append(TransportRequest **queue, TransportRequest *r) {
    while (*queue) queue = &(*queue)->next;
    r->next = NULL;
    *queue = r;
}

// Removes and returns the oldest request of the queue with this tag, or NULL.
static TransportRequest *queue_take_tag(TransportRequest **queue, uint64_t tag) {
    for (; *queue; queue = &(*queue)->next) {
        TransportRequest *r = *queue;
        if ((uint64_t)r->tag != tag) continue;
        *queue = r->next;
        r->next = NULL;
        return r;
    }
    return NULL;
}

// The NCCL call of r goes on its link's stream after the compute work r waits for (launch_begin),
// and r's completion event after it (launch_end).
static void launch_begin(TransportRequest *r) {
    CUDA_CHECK(cudaStreamWaitEvent(r->link->stream, r->ready, 0));
    r->launched = true;
}

static void launch_end(TransportRequest *r) { CUDA_CHECK(cudaEventRecord(r->done, r->link->stream)); }

// ---- messages ----------------------------------------------------------------------------------------

static void post_header_receive(TransportNccl *n, int q) {
    NcclPeer *p = &n->peers[q];
    p->header_arrived = false;
    MPI_CHECK(MPI_Irecv(p->header, 2, MPI_UINT64_T, q, HEADER_TAG, n->headers, &p->header_recv));
}

// Launches receive r of a message from pipeline rank q whose header has arrived. A message to this
// rank itself is one NCCL group of the oldest send not launched (headers arrive in send order) and r.
static void launch_receive(TransportNccl *n, int q, TransportRequest *r) {
    NcclPeer *p = &n->peers[q];
    if (q != me_of(n)) {
        launch_begin(r);
        NCCL_CHECK(ncclRecv(r->buf, r->n_bytes, ncclUint8, p->rank_in_link, r->link->comm, r->link->stream));
        launch_end(r);
        return;
    }
    TransportRequest *s = p->self_sends;
    YP_CHECK(s && s->tag == r->tag && s->n_bytes == r->n_bytes);
    p->self_sends = s->next;
    s->next = NULL;
    launch_begin(s);
    launch_begin(r);
    NCCL_CHECK(ncclGroupStart());
    NCCL_CHECK(ncclSend(s->buf, s->n_bytes, ncclUint8, 0, n->self.comm, n->self.stream));
    NCCL_CHECK(ncclRecv(r->buf, r->n_bytes, ncclUint8, 0, n->self.comm, n->self.stream));
    NCCL_CHECK(ncclGroupEnd());
    launch_end(s);
    launch_end(r);
}

// Launches the receives of pipeline rank q's messages, in the order q sent them, while their
// headers have arrived and receives with their tags are posted.
static void progress_peer(TransportNccl *n, int q) {
    NcclPeer *p = &n->peers[q];
    for (;;) {
        if (!p->header_arrived) {
            int arrived = 0;
            MPI_CHECK(MPI_Test(&p->header_recv, &arrived, MPI_STATUS_IGNORE));
            if (!arrived) return;
            p->header_arrived = true;
        }
        TransportRequest *r = queue_take_tag(&p->receives, p->header[0]);
        if (!r) return;
        if (r->n_bytes != p->header[1]) {
            char whom[128];
            yp_fatal("%s sent %llu bytes with tag %d, but this rank's receive for that tag takes %zu bytes",
                     topology_describe_peer(&n->base.topo, q, whom, sizeof whom), (unsigned long long)p->header[1],
                     r->tag, r->n_bytes);
        }
        launch_receive(n, q, r);
        post_header_receive(n, q);
    }
}

static void progress(TransportNccl *n) {
    for (int q = 0; q < n->base.topo.pipeline_size; q++) progress_peer(n, q);
}

static void progress_hook(void *context) { progress(context); }

static void check_device_buffer(const TransportNccl *n, const void *buf, size_t n_bytes) {
    if (n_bytes == 0) return;
    struct cudaPointerAttributes a;
    CUDA_CHECK(cudaPointerGetAttributes(&a, buf));
    if ((a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged) || a.device != n->device)
        yp_fatal("the NCCL transport was given %p, which is not memory of CUDA device %d", buf, n->device);
}

static TransportRequest *message_take(TransportNccl *n, NcclOp op, void *buf, size_t n_bytes, int peer, int tag) {
    YP_CHECK(peer >= 0 && peer < n->base.topo.pipeline_size);
    YP_CHECK(tag >= 0 && tag <= n->base.max_tag);
    check_device_buffer(n, buf, n_bytes);
    const NcclPeer *p = &n->peers[peer];
    const NcclLink *link = peer == me_of(n) ? &n->self : op == NCCL_OP_SEND ? &p->to : &p->from;
    TransportRequest *r = request_take(n, op, link);
    r->peer = peer;
    r->tag = tag;
    r->n_bytes = n_bytes;
    r->buf = buf;
    return r;
}

static TransportRequest *nccl_isend(Transport *t, const void *buf, size_t n_bytes, int peer, int tag) {
    TransportNccl *n = nccl_of(t);
    TransportRequest *r = message_take(n, NCCL_OP_SEND, (void *)buf, n_bytes, peer, tag);
    NcclPeer *p = &n->peers[peer];
    if (peer == me_of(n)) {
        queue_append(&p->self_sends, r);  // launched with its receive
    } else {
        launch_begin(r);
        NCCL_CHECK(ncclSend(buf, n_bytes, ncclUint8, p->rank_in_link, r->link->comm, r->link->stream));
        launch_end(r);
    }
    r->header[0] = (uint64_t)tag;
    r->header[1] = n_bytes;
    MPI_CHECK(MPI_Isend(r->header, 2, MPI_UINT64_T, peer, HEADER_TAG, n->headers, &r->header_sent));
    progress(n);
    return r;
}

static TransportRequest *nccl_irecv(Transport *t, void *buf, size_t n_bytes, int peer, int tag) {
    TransportNccl *n = nccl_of(t);
    TransportRequest *r = message_take(n, NCCL_OP_RECV, buf, n_bytes, peer, tag);
    queue_append(&n->peers[peer].receives, r);
    progress(n);
    return r;
}

static TransportRequest *nccl_iallreduce_sum_f32(Transport *t, float *buf, size_t n_elems, TransportGroup group) {
    TransportNccl *n = nccl_of(t);
    YP_CHECK(group >= 0 && group < TRANSPORT_GROUP_COUNT);
    check_device_buffer(n, buf, n_elems * sizeof *buf);
    TransportRequest *r = request_take(n, NCCL_OP_SUM, &n->groups[group]);
    r->group = group;
    r->n_bytes = n_elems * sizeof *buf;
    r->buf = buf;
    launch_begin(r);
    NCCL_CHECK(ncclAllReduce(buf, buf, n_elems, ncclFloat32, ncclSum, r->link->comm, r->link->stream));
    launch_end(r);
    return r;
}

static bool nccl_test(Transport *t, TransportRequest *r) {
    TransportNccl *n = nccl_of(t);
    progress(n);
    int header_sent = 1;  // also for requests without a header: MPI_Test of MPI_REQUEST_NULL says done
    MPI_CHECK(MPI_Test(&r->header_sent, &header_sent, MPI_STATUS_IGNORE));
    cudaError_t status = cudaErrorNotReady;
    if (r->launched) {
        status = cudaEventQuery(r->done);
        // "Not ready" is no error, but the runtime may keep it as the last error, where the next
        // launch check (cudaGetLastError) of the compute code would find it.
        if (status == cudaErrorNotReady) (void)cudaGetLastError();
    }
    if (status == cudaErrorNotReady) {
        check_async_error(n, r);
        return false;
    }
    CUDA_CHECK(status);
    if (!header_sent) return false;
    request_give_back(n, r);
    return true;
}

// ---- host collectives: the MPI transport's, with this transport's timeout ----------------------------

static Transport *host_transport(Transport *t) {
    Transport *mpi = nccl_of(t)->mpi;
    mpi->timeout_s = t->timeout_s;  // callers set the timeout on this transport
    return mpi;
}

static void nccl_allreduce_sum_f64(Transport *t, double *buf, size_t n_elems, TransportGroup group) {
    Transport *mpi = host_transport(t);
    mpi->ops->allreduce_sum_f64(mpi, buf, n_elems, group);
}

static void nccl_broadcast(Transport *t, void *buf, size_t n_bytes, int root, TransportGroup group) {
    Transport *mpi = host_transport(t);
    mpi->ops->broadcast(mpi, buf, n_bytes, root, group);
}

static void nccl_barrier(Transport *t, TransportGroup group) {
    Transport *mpi = host_transport(t);
    mpi->ops->barrier(mpi, group);
}

static void nccl_gather_bytes(Transport *t, const void *buf, size_t n_bytes, void **all, size_t *sizes) {
    Transport *mpi = host_transport(t);
    mpi->ops->gather_bytes(mpi, buf, n_bytes, all, sizes);
}

// ---- creation and destruction ------------------------------------------------------------------------

static NcclLink link_split(ncclComm_t parent, int color, int key) {
    NcclLink link = {0};
    NCCL_CHECK(ncclCommSplit(parent, color, key, &link.comm, NULL));
    if (link.comm) CUDA_CHECK(cudaStreamCreateWithFlags(&link.stream, cudaStreamNonBlocking));
    return link;
}

static void link_destroy(NcclLink *link) {
    if (!link->comm) return;
    NCCL_CHECK(ncclCommDestroy(link->comm));
    CUDA_CHECK(cudaStreamDestroy(link->stream));
    *link = (NcclLink){0};
}

// The partner of `rank` in round `round` of a round-robin tournament of `slots` (even) players:
// every pair meets in exactly one of the slots - 1 rounds.
static int tournament_partner(int rank, int round, int slots) {
    if (rank == slots - 1) return round;
    int partner = ((2 * round - rank) % (slots - 1) + (slots - 1)) % (slots - 1);
    return partner == rank ? slots - 1 : partner;
}

// The links to and from every other pipeline rank: two communicators of two ranks per pair (the
// lower pipeline rank is rank 0 in both), split off the pipeline's communicator in rounds in which
// every rank is in one pair at most, so that 2 (pipeline_size - 1) splits (2 pipeline_size when it
// is odd: a rank sits each round out) make them all.
static void peer_links_create(TransportNccl *n) {
    int size = n->base.topo.pipeline_size, me = me_of(n);
    int slots = size + size % 2;  // with an odd size, the partner `size` means a round out
    for (int round = 0; size > 1 && round < slots - 1; round++) {
        int partner = tournament_partner(me, round, slots);
        bool paired = partner < size;
        int color = paired ? (me < partner ? me : partner) : NCCL_SPLIT_NOCOLOR;
        for (int dir = 0; dir < 2; dir++) {  // 0: from the lower pipeline rank to the higher, 1: back
            NcclLink link = link_split(n->groups[TRANSPORT_PIPELINE].comm, color, me);
            if (!paired) continue;
            NcclPeer *p = &n->peers[partner];
            *((dir == 0) == (me < partner) ? &p->to : &p->from) = link;
            p->rank_in_link = partner < me ? 0 : 1;
        }
    }
}

static void nccl_destroy(Transport *t) {
    TransportNccl *n = nccl_of(t);
    const Topology *p = &t->topo;
    YP_CHECK(n->n_pending == 0);
    transport_mpi_set_poll(n->mpi, NULL, NULL);
    for (int q = 0; q < p->pipeline_size; q++) {
        NcclPeer *peer = &n->peers[q];
        int cancelled = 1;
        if (!peer->header_arrived) {
            MPI_Status status;
            MPI_CHECK(MPI_Cancel(&peer->header_recv));
            MPI_CHECK(MPI_Wait(&peer->header_recv, &status));
            MPI_CHECK(MPI_Test_cancelled(&status, &cancelled));
        }
        char whom[128];
        if (peer->header_arrived || !cancelled)
            yp_fatal("%s sent a message with tag %llu that this rank never received",
                     topology_describe_peer(p, q, whom, sizeof whom), (unsigned long long)peer->header[0]);
    }
    for (TransportRequest *r = n->free_requests, *next; r; r = next) {
        next = r->next;
        CUDA_CHECK(cudaEventDestroy(r->ready));
        CUDA_CHECK(cudaEventDestroy(r->done));
        free(r);
    }
    // Every rank destroys its pair links in ascending order of the pair (lower, higher pipeline
    // rank), the lower-to-higher link first, so that a destroy that waits for the peer never waits
    // for one that waits in turn.
    for (int q = 0; q < p->pipeline_size; q++) {
        NcclPeer *peer = &n->peers[q];
        bool lower = p->pipeline_rank < q;
        link_destroy(lower ? &peer->to : &peer->from);
        link_destroy(lower ? &peer->from : &peer->to);
    }
    link_destroy(&n->self);
    for (int g = TRANSPORT_GROUP_COUNT - 1; g >= 0; g--) link_destroy(&n->groups[g]);
    MPI_CHECK(MPI_Comm_free(&n->headers));
    free(n->peers);
    free(n);
}

static const TransportOps nccl_ops = {
    .kind = TRANSPORT_KIND_NCCL,
    .name = "nccl",
    .isend = nccl_isend,
    .irecv = nccl_irecv,
    .iallreduce_sum_f32 = nccl_iallreduce_sum_f32,
    .test = nccl_test,
    .allreduce_sum_f64 = nccl_allreduce_sum_f64,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .gather_bytes = nccl_gather_bytes,
    .abort = nccl_abort,
    .destroy = nccl_destroy,
};

Transport *transport_nccl_create(Transport *mpi, void *compute_stream) {
    YP_CHECK(mpi && mpi->ops->kind == TRANSPORT_KIND_MPI);
    TransportNccl *n = yp_calloc(1, sizeof *n);
    n->mpi = mpi;
    n->base.ops = &nccl_ops;
    n->base.topo = mpi->topo;
    n->base.timeout_s = mpi->timeout_s;
    n->base.max_tag = INT_MAX;  // tags travel in the headers as 64-bit integers
    n->compute = (cudaStream_t)compute_stream;
    CUDA_CHECK(cudaGetDevice(&n->device));
    const Topology *p = &n->base.topo;

    // The world's communicator from one unique id, then the groups' and this rank's own split off it.
    ncclUniqueId id;
    if (p->world_rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    mpi->ops->broadcast(mpi, &id, sizeof id, 0, TRANSPORT_WORLD);
    NcclLink *world = &n->groups[TRANSPORT_WORLD];
    NCCL_CHECK(ncclCommInitRank(&world->comm, p->world_size, id, p->world_rank));
    CUDA_CHECK(cudaStreamCreateWithFlags(&world->stream, cudaStreamNonBlocking));
    n->groups[TRANSPORT_PIPELINE] = link_split(world->comm, p->replica, p->pipeline_rank);
    n->groups[TRANSPORT_REPLICAS] = link_split(world->comm, p->pipeline_rank, p->replica);
    n->self = link_split(world->comm, p->world_rank, 0);

    n->peers = yp_calloc((size_t)p->pipeline_size, sizeof *n->peers);
    peer_links_create(n);
    n->headers = transport_mpi_comm_split(p->replica, p->pipeline_rank);
    for (int q = 0; q < p->pipeline_size; q++) post_header_receive(n, q);
    transport_mpi_set_poll(mpi, progress_hook, n);
    return &n->base;
}
