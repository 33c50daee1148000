// Host staging: a transport over backend memory built on one over host memory (MPI without CUDA
// support, or the local loopback), for a backend whose memory the host cannot address. Each data
// operation copies between the backend buffer and a pooled host buffer: a send downloads before it
// is posted; a receive and an all-reduce upload their result when `test` first finds the host
// transfer done. The pool's buffers come from the backend's host_alloc (page-locked on CUDA) and are
// kept for the next messages, so steady-state steps allocate nothing.
#include <stdlib.h>

#include "framework/runtime/transport.h"

typedef struct StagingBuffer {
    void *data;
    size_t capacity;
    bool busy;
} StagingBuffer;

typedef enum StagedKind { STAGED_SEND, STAGED_RECV, STAGED_ALLREDUCE } StagedKind;

struct TransportRequest {
    TransportRequest *inner;  // the host transport's request
    StagedKind kind;
    void *device;             // the caller's backend buffer (receives and all-reduces land there)
    size_t bytes;
    StagingBuffer *staging;   // index-stable: the pool is an array of pointers
};

typedef struct StagedTransport {
    Transport base;
    Transport *host;  // borrowed
    Backend *be;      // borrowed
    StagingBuffer **pool;
    int n_pool;
} StagedTransport;

static StagingBuffer *staged_buffer_take(StagedTransport *st, size_t bytes) {
    StagingBuffer *pick = NULL;
    for (int i = 0; i < st->n_pool; i++) {
        StagingBuffer *b = st->pool[i];
        if (!b->busy && b->capacity >= bytes && (!pick || b->capacity < pick->capacity)) pick = b;
    }
    if (!pick) {
        st->pool = yp_realloc(st->pool, (size_t)(st->n_pool + 1) * sizeof *st->pool);
        pick = st->pool[st->n_pool++] = yp_calloc(1, sizeof *pick);
        pick->data = st->be->ops->host_alloc(st->be, bytes);
        pick->capacity = bytes;
    }
    pick->busy = true;
    return pick;
}

static TransportRequest *staged_request(StagedTransport *st, StagedKind kind, void *device, size_t bytes) {
    TransportRequest *r = yp_calloc(1, sizeof *r);
    *r = (TransportRequest){.kind = kind, .device = device, .bytes = bytes, .staging = staged_buffer_take(st, bytes)};
    return r;
}

static TransportRequest *staged_isend(Transport *t, const void *buf, size_t bytes, int peer, int tag) {
    StagedTransport *st = (StagedTransport *)t;
    TransportRequest *r = staged_request(st, STAGED_SEND, NULL, bytes);
    st->be->ops->download(st->be, r->staging->data, buf, bytes);
    r->inner = st->host->ops->isend(st->host, r->staging->data, bytes, peer, tag);
    return r;
}

static TransportRequest *staged_irecv(Transport *t, void *buf, size_t bytes, int peer, int tag) {
    StagedTransport *st = (StagedTransport *)t;
    TransportRequest *r = staged_request(st, STAGED_RECV, buf, bytes);
    r->inner = st->host->ops->irecv(st->host, r->staging->data, bytes, peer, tag);
    return r;
}

static TransportRequest *staged_iallreduce_sum_f32(Transport *t, float *buf, size_t n, TransportGroup group) {
    StagedTransport *st = (StagedTransport *)t;
    TransportRequest *r = staged_request(st, STAGED_ALLREDUCE, buf, n * sizeof(float));
    st->be->ops->download(st->be, r->staging->data, buf, n * sizeof(float));
    r->inner = st->host->ops->iallreduce_sum_f32(st->host, r->staging->data, n, group);
    return r;
}

static bool staged_test(Transport *t, TransportRequest *r) {
    StagedTransport *st = (StagedTransport *)t;
    if (!st->host->ops->test(st->host, r->inner)) return false;
    if (r->kind != STAGED_SEND) st->be->ops->upload(st->be, r->device, r->staging->data, r->bytes);
    r->staging->busy = false;
    free(r);
    return true;
}

// The blocking collectives carry host memory (the trainer's loss sums, names, counts).
static void staged_allreduce_sum_f64(Transport *t, double *buf, size_t n, TransportGroup group) {
    Transport *host = ((StagedTransport *)t)->host;
    host->ops->allreduce_sum_f64(host, buf, n, group);
}

static void staged_broadcast(Transport *t, void *buf, size_t bytes, int root, TransportGroup group) {
    Transport *host = ((StagedTransport *)t)->host;
    host->ops->broadcast(host, buf, bytes, root, group);
}

static void staged_barrier(Transport *t, TransportGroup group) {
    Transport *host = ((StagedTransport *)t)->host;
    host->ops->barrier(host, group);
}

static void staged_gather_bytes(Transport *t, const void *buf, size_t bytes, void **all, size_t *sizes) {
    Transport *host = ((StagedTransport *)t)->host;
    host->ops->gather_bytes(host, buf, bytes, all, sizes);
}

static __attribute__((noreturn)) void staged_abort(Transport *t, int exit_code) {
    Transport *host = ((StagedTransport *)t)->host;
    host->ops->abort(host, exit_code);
}

static void staged_destroy(Transport *t) {
    StagedTransport *st = (StagedTransport *)t;
    for (int i = 0; i < st->n_pool; i++) {
        YP_CHECK(!st->pool[i]->busy);  // every request was completed
        st->be->ops->host_free(st->be, st->pool[i]->data);
        free(st->pool[i]);
    }
    free(st->pool);
    free(st);
}

static const TransportOps staged_ops = {
    .kind = TRANSPORT_KIND_STAGED,
    .name = "staged",
    .isend = staged_isend,
    .irecv = staged_irecv,
    .iallreduce_sum_f32 = staged_iallreduce_sum_f32,
    .test = staged_test,
    .allreduce_sum_f64 = staged_allreduce_sum_f64,
    .broadcast = staged_broadcast,
    .barrier = staged_barrier,
    .gather_bytes = staged_gather_bytes,
    .abort = staged_abort,
    .destroy = staged_destroy,
};

Transport *transport_staged_create(Transport *host, Backend *be) {
    StagedTransport *st = yp_calloc(1, sizeof *st);
    st->base = (Transport){.ops = &staged_ops, .topo = host->topo, .timeout_s = host->timeout_s, .max_tag = host->max_tag};
    st->host = host;
    st->be = be;
    return &st->base;
}
