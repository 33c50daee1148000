// The MPI transport: CPU buffers, one communicator per group. See framework/runtime/transport.h.
#include "framework/runtime/transport_mpi.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/runtime/transport.h"

// Requests are recycled through a free list, so that a training step in its steady state does not
// allocate.
struct TransportRequest {
    MPI_Request mpi;
    TransportRequest *next_free;
};

typedef struct TransportMpi {
    Transport base;  // first, so that a Transport * is a TransportMpi *
    MPI_Comm comms[TRANSPORT_GROUP_COUNT];
    TransportRequest *free_requests;
    char *hosts;     // base.topo.hosts: world_size x TOPOLOGY_HOST_BYTES
    int n_pending;   // requests handed out and not yet completed
    bool owns_mpi;   // MPI_Init was called here, so destroy calls MPI_Finalize
    void (*poll)(void *context);  // transport_mpi_set_poll's hook, or NULL
    void *poll_context;
} TransportMpi;

const char *transport_mpi_error_string(int code, char buf[MPI_MAX_ERROR_STRING]) {
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) snprintf(buf, MPI_MAX_ERROR_STRING, "MPI error %d", code);
    return buf;
}

static TransportMpi *mpi_of(Transport *t) { return (TransportMpi *)t; }

static MPI_Comm comm_of(Transport *t, TransportGroup group) {
    YP_CHECK(group >= 0 && group < TRANSPORT_GROUP_COUNT);
    return mpi_of(t)->comms[group];
}

static int group_size(const Transport *t, TransportGroup group) {
    const Topology *p = &t->topo;
    return group == TRANSPORT_WORLD ? p->world_size : group == TRANSPORT_PIPELINE ? p->pipeline_size : p->replicas;
}

// MPI counts are int; messages of 2 GiB and more would need derived datatypes, and nothing in a
// YOLO pipeline comes near that.
static int count_of(size_t n) {
    YP_CHECK(n <= (size_t)INT_MAX);
    return (int)n;
}

static TransportRequest *request_take(TransportMpi *m) {
    TransportRequest *r = m->free_requests;
    if (r)
        m->free_requests = r->next_free;
    else
        r = yp_malloc(sizeof *r);
    r->mpi = MPI_REQUEST_NULL;
    r->next_free = NULL;
    m->n_pending++;
    return r;
}

static void request_give_back(TransportMpi *m, TransportRequest *r) {
    r->next_free = m->free_requests;
    m->free_requests = r;
    m->n_pending--;
}

static void check_peer_tag(Transport *t, int peer, int tag) {
    YP_CHECK(peer >= 0 && peer < t->topo.pipeline_size);
    YP_CHECK(tag >= 0 && tag <= t->max_tag);
}

static TransportRequest *mpi_isend(Transport *t, const void *buf, size_t n_bytes, int peer, int tag) {
    check_peer_tag(t, peer, tag);
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Isend(buf, count_of(n_bytes), MPI_BYTE, peer, tag, comm_of(t, TRANSPORT_PIPELINE), &r->mpi));
    return r;
}

static TransportRequest *mpi_irecv(Transport *t, void *buf, size_t n_bytes, int peer, int tag) {
    check_peer_tag(t, peer, tag);
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Irecv(buf, count_of(n_bytes), MPI_BYTE, peer, tag, comm_of(t, TRANSPORT_PIPELINE), &r->mpi));
    return r;
}

static TransportRequest *mpi_iallreduce_sum_f32(Transport *t, float *buf, size_t n_elems, TransportGroup group) {
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, count_of(n_elems), MPI_FLOAT, MPI_SUM, comm_of(t, group), &r->mpi));
    return r;
}

static bool mpi_test(Transport *t, TransportRequest *r) {
    TransportMpi *m = mpi_of(t);
    if (m->poll) m->poll(m->poll_context);
    int done = 0;
    MPI_CHECK(MPI_Test(&r->mpi, &done, MPI_STATUS_IGNORE));
    if (done) request_give_back(m, r);
    return done != 0;
}

static void mpi_allreduce_sum_f64(Transport *t, double *buf, size_t n_elems, TransportGroup group) {
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, count_of(n_elems), MPI_DOUBLE, MPI_SUM, comm_of(t, group), &r->mpi));
    transport_wait_group(t, r, group, "a sum of %zu doubles", n_elems);
}

static void mpi_broadcast(Transport *t, void *buf, size_t n_bytes, int root, TransportGroup group) {
    YP_CHECK(root >= 0 && root < group_size(t, group));
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Ibcast(buf, count_of(n_bytes), MPI_BYTE, root, comm_of(t, group), &r->mpi));
    transport_wait_group(t, r, group, "a broadcast of %zu bytes from rank %d", n_bytes, root);
}

static void mpi_barrier(Transport *t, TransportGroup group) {
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Ibarrier(comm_of(t, group), &r->mpi));
    transport_wait_group(t, r, group, "a barrier");
}

static void mpi_gather_bytes(Transport *t, const void *buf, size_t n_bytes, void **all, size_t *sizes) {
    const Topology *p = &t->topo;
    bool root = p->world_rank == 0;
    MPI_Comm comm = comm_of(t, TRANSPORT_WORLD);
    // First every rank's size, then the bytes at the offsets those sizes give.
    uint64_t my_size = n_bytes;
    uint64_t *all_sizes = root ? yp_malloc((size_t)p->world_size * sizeof *all_sizes) : NULL;
    TransportRequest *r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Igather(&my_size, 1, MPI_UINT64_T, all_sizes, 1, MPI_UINT64_T, 0, comm, &r->mpi));
    transport_wait_group(t, r, TRANSPORT_WORLD, "the sizes of a gather to world rank 0");

    int *counts = NULL, *displs = NULL;
    *all = NULL;
    if (root) {
        counts = yp_malloc((size_t)p->world_size * sizeof *counts);
        displs = yp_malloc((size_t)p->world_size * sizeof *displs);
        size_t total = 0;
        for (int i = 0; i < p->world_size; i++) {
            sizes[i] = (size_t)all_sizes[i];
            counts[i] = count_of(sizes[i]);
            displs[i] = count_of(total);
            total += sizes[i];
        }
        YP_CHECK(total <= (size_t)INT_MAX);  // MPI_Igatherv's displacements are int
        *all = yp_malloc(total);
    }
    r = request_take(mpi_of(t));
    MPI_CHECK(MPI_Igatherv(buf, count_of(n_bytes), MPI_BYTE, *all, counts, displs, MPI_BYTE, 0, comm, &r->mpi));
    transport_wait_group(t, r, TRANSPORT_WORLD, "the bytes of a gather to world rank 0");
    free(counts);
    free(displs);
    free(all_sizes);
}

// Whether Open MPI's own launcher (mpirun and its daemons) started this rank and ends the job when
// any rank exits non-zero, as it does unless orte_abort_on_non_zero_status is turned off.
static bool launcher_ends_job_on_exit(void) {
    const char *flag = getenv("OMPI_MCA_orte_abort_on_non_zero_status");
    bool turned_off = flag && (strcmp(flag, "0") == 0 || strcmp(flag, "false") == 0);
    return getenv("OMPI_MCA_orte_hnp_uri") && !turned_off;
}

static __attribute__((noreturn)) void mpi_abort(Transport *t, int exit_code) {
    (void)t;
    fflush(stdout);
    fflush(stderr);
    // Under mpirun a plain exit ends the job as MPI_Abort would, without MPI_Abort's help message:
    // Open MPI 4.1's mpirun garbles those messages when several ranks abort at once ("Data unpack
    // would read past end of buffer in show_help.c") and now and then crashes of it, losing the
    // output of the ranks it had not yet read (seen with a host cut off, 1 test run in about 10).
    if (!launcher_ends_job_on_exit()) MPI_Abort(MPI_COMM_WORLD, exit_code);
    _exit(exit_code);
}

static void mpi_destroy(Transport *t) {
    TransportMpi *m = mpi_of(t);
    YP_CHECK(m->n_pending == 0);
    for (TransportRequest *r = m->free_requests, *next; r; r = next) {
        next = r->next_free;
        free(r);
    }
    MPI_CHECK(MPI_Comm_free(&m->comms[TRANSPORT_PIPELINE]));
    MPI_CHECK(MPI_Comm_free(&m->comms[TRANSPORT_REPLICAS]));
    free(m->hosts);
    bool owns_mpi = m->owns_mpi;
    free(m);
    if (owns_mpi) MPI_CHECK(MPI_Finalize());
}

static const TransportOps mpi_ops = {
    .kind = TRANSPORT_KIND_MPI,
    .name = "mpi",
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .iallreduce_sum_f32 = mpi_iallreduce_sum_f32,
    .test = mpi_test,
    .allreduce_sum_f64 = mpi_allreduce_sum_f64,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .gather_bytes = mpi_gather_bytes,
    .abort = mpi_abort,
    .destroy = mpi_destroy,
};

void transport_mpi_set_poll(Transport *t, void (*poll)(void *context), void *context) {
    YP_CHECK(t->ops == &mpi_ops);
    mpi_of(t)->poll = poll;
    mpi_of(t)->poll_context = context;
}

MPI_Comm transport_mpi_comm_split(int color, int key) {
    MPI_Comm comm;
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm));
    MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    return comm;
}

bool transport_mpi_create(int pipeline_size, int replicas, RankOrder order, Transport **out, Error *err) {
    YP_CHECK(pipeline_size > 0 && replicas > 0);
    int initialized = 0;
    MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
        int provided = 0;
        MPI_CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        if (provided < MPI_THREAD_FUNNELED)
            yp_fatal("MPI provides thread level %d, yolopipe needs MPI_THREAD_FUNNELED", provided);
    }
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    int world_rank = 0, world_size = 0;
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
    if ((int64_t)pipeline_size * replicas != world_size) {
        error_set(err,
                  "parallel.stages x parallel.replicas = %d x %d = %lld ranks, but mpirun started %d process%s: "
                  "run mpirun -np %lld ... or change parallel.stages/replicas",
                  pipeline_size, replicas, (long long)pipeline_size * replicas, world_size, world_size == 1 ? "" : "es",
                  (long long)pipeline_size * replicas);
        if (!initialized) MPI_CHECK(MPI_Finalize());
        return false;
    }

    TransportMpi *m = yp_calloc(1, sizeof *m);
    m->owns_mpi = !initialized;
    m->base.ops = &mpi_ops;
    m->base.topo = topology_make(world_rank, pipeline_size, replicas, order);
    const Topology *p = &m->base.topo;

    MPI_Comm local;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &local));
    MPI_CHECK(MPI_Comm_rank(local, &m->base.topo.local_rank));
    MPI_CHECK(MPI_Comm_size(local, &m->base.topo.local_size));
    MPI_CHECK(MPI_Comm_free(&local));

    // Every rank's host name, for the messages that name a peer (topology_describe_peer).
    char host[TOPOLOGY_HOST_BYTES];
    topology_own_host(host);
    m->hosts = yp_malloc((size_t)world_size * TOPOLOGY_HOST_BYTES);
    MPI_CHECK(MPI_Allgather(host, TOPOLOGY_HOST_BYTES, MPI_CHAR, m->hosts, TOPOLOGY_HOST_BYTES, MPI_CHAR, MPI_COMM_WORLD));
    m->base.topo.hosts = m->hosts;

    m->comms[TRANSPORT_WORLD] = MPI_COMM_WORLD;
    m->comms[TRANSPORT_PIPELINE] = transport_mpi_comm_split(p->replica, p->pipeline_rank);
    m->comms[TRANSPORT_REPLICAS] = transport_mpi_comm_split(p->pipeline_rank, p->replica);

    int *tag_ub = NULL, found = 0;
    MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found));
    YP_CHECK(found && *tag_ub >= 32767);  // the MPI standard's minimum
    m->base.max_tag = *tag_ub;
    *out = &m->base;
    return true;
}
