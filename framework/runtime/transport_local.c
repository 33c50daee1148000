// The transport of a run without a launcher: one rank, every group of size one. Sends to itself
// (an interleaved pipeline's hand-over between its own chunks; never the case with one stage) are
// matched with receives by tag in posting order, as MPI matches them; collectives leave the data as
// it is, which is what a sum or broadcast over one rank gives.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "framework/runtime/transport.h"

struct TransportRequest {
    bool done;
    bool is_send;
    int tag;
    void *buf;  // receive destination, or the send's source (const in spirit)
    size_t bytes;
    TransportRequest *next;  // unmatched requests, oldest first
};

typedef struct LocalTransport {
    Transport base;
    TransportRequest *unmatched;
    char host[TOPOLOGY_HOST_BYTES];  // base.topo.hosts
} LocalTransport;

static TransportRequest *request_done(void) {
    TransportRequest *r = yp_calloc(1, sizeof *r);
    r->done = true;
    return r;
}

// Matches r with the oldest unmatched request of the other direction and the same tag, or queues it.
static TransportRequest *local_post(Transport *t, TransportRequest *r) {
    LocalTransport *lt = (LocalTransport *)t;
    for (TransportRequest **p = &lt->unmatched; *p; p = &(*p)->next) {
        TransportRequest *q = *p;
        if (q->is_send == r->is_send || q->tag != r->tag) continue;
        TransportRequest *send = r->is_send ? r : q, *recv = r->is_send ? q : r;
        if (send->bytes != recv->bytes)
            yp_fatal("local transport: message of %zu bytes for a receive of %zu (tag %d)", send->bytes, recv->bytes,
                     r->tag);
        memcpy(recv->buf, send->buf, send->bytes);
        *p = q->next;
        q->done = r->done = true;
        return r;
    }
    TransportRequest **tail = &lt->unmatched;
    while (*tail) tail = &(*tail)->next;
    *tail = r;
    return r;
}

static TransportRequest *local_isend(Transport *t, const void *buf, size_t bytes, int peer, int tag) {
    YP_CHECK(peer == 0);
    TransportRequest *r = yp_calloc(1, sizeof *r);
    *r = (TransportRequest){.is_send = true, .tag = tag, .buf = (void *)buf, .bytes = bytes};
    return local_post(t, r);
}

static TransportRequest *local_irecv(Transport *t, void *buf, size_t bytes, int peer, int tag) {
    YP_CHECK(peer == 0);
    TransportRequest *r = yp_calloc(1, sizeof *r);
    *r = (TransportRequest){.tag = tag, .buf = buf, .bytes = bytes};
    return local_post(t, r);
}

static TransportRequest *local_iallreduce_sum_f32(Transport *t, float *buf, size_t n, TransportGroup group) {
    (void)t, (void)buf, (void)n, (void)group;
    return request_done();
}

static bool local_test(Transport *t, TransportRequest *r) {
    (void)t;
    if (!r->done) return false;
    free(r);
    return true;
}

static void local_allreduce_sum_f64(Transport *t, double *buf, size_t n, TransportGroup group) {
    (void)t, (void)buf, (void)n, (void)group;
}

static void local_broadcast(Transport *t, void *buf, size_t bytes, int root, TransportGroup group) {
    (void)t, (void)buf, (void)bytes, (void)group;
    YP_CHECK(root == 0);
}

static void local_barrier(Transport *t, TransportGroup group) { (void)t, (void)group; }

static void local_gather_bytes(Transport *t, const void *buf, size_t bytes, void **all, size_t *sizes) {
    (void)t;
    *all = yp_malloc(bytes ? bytes : 1);
    memcpy(*all, buf, bytes);
    sizes[0] = bytes;
}

static __attribute__((noreturn)) void local_abort(Transport *t, int exit_code) {
    (void)t;
    exit(exit_code);
}

static void local_destroy(Transport *t) {
    LocalTransport *lt = (LocalTransport *)t;
    YP_CHECK(!lt->unmatched);  // every message of a finished run was received
    free(lt);
}

static const TransportOps local_ops = {
    .kind = TRANSPORT_KIND_LOCAL,
    .name = "local",
    .isend = local_isend,
    .irecv = local_irecv,
    .iallreduce_sum_f32 = local_iallreduce_sum_f32,
    .test = local_test,
    .allreduce_sum_f64 = local_allreduce_sum_f64,
    .broadcast = local_broadcast,
    .barrier = local_barrier,
    .gather_bytes = local_gather_bytes,
    .abort = local_abort,
    .destroy = local_destroy,
};

Transport *transport_local_create(void) {
    LocalTransport *lt = yp_calloc(1, sizeof *lt);
    lt->base.ops = &local_ops;
    topology_own_host(lt->host);
    lt->base.topo = (Topology){.world_size = 1, .pipeline_size = 1, .replicas = 1, .local_size = 1, .hosts = lt->host};
    lt->base.max_tag = INT_MAX;
    return &lt->base;
}
