// The NCCL transport (framework/runtime/transport_nccl.c) with real NCCL communicators on GPU 0, one rank
// (tests/device/meson.build runs it through tests/mpi/mpirun.sh with np 1): every op the way
// tests/unit/test_transport.c checks the MPI transport, on device buffers, for both rank orders.
// With one rank every message goes to the rank itself, which NCCL runs as a grouped send and
// receive; messages between ranks need one GPU per rank and are not exercised here.
// Collectives run on integer-valued data, so every sum is exact: zero tolerance.
// The pure function transport_nccl_possible is checked first; without a GPU the program then exits
// 77 (skipped).
//
// `test_transport_nccl probe timeout|mismatch` ends the job on purpose, for
// tests/device/check-nccl-failure.sh.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <mpi.h>

#include "framework/runtime/failure.h"
#include "framework/runtime/transport_nccl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_device.h"
#include "tests/unit/transport_checks.h"

// Long enough for a loaded machine; a wrong test ends in seconds anyway.
static const double test_timeout_s = 30;

enum { SCRATCH_BYTES = 256 << 20 };

// What every check gets: the compute stream the transport waits on, and scratch memory for work
// that keeps that stream busy.
typedef struct Fixture {
    cudaStream_t compute;
    void *scratch;
} Fixture;

// Queues about a millisecond of memory traffic on the compute stream, so that whatever is queued
// next on it finishes well after the call returns: a transport that did not wait for the compute
// stream would send stale data or have its received data overwritten.
static void keep_busy(const Fixture *f) {
    for (int k = 0; k < 8; k++) CUDA_CHECK(cudaMemsetAsync(f->scratch, k, SCRATCH_BYTES, f->compute));
}

static void *device_alloc(size_t n_bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaMalloc(&p, n_bytes));
    return p;
}

// Fills device memory with `fill`, finished before the call returns.
static void *device_filled(size_t n_bytes, int fill) {
    void *p = device_alloc(n_bytes);
    CUDA_CHECK(cudaMemset(p, fill, n_bytes));
    CUDA_CHECK(cudaDeviceSynchronize());
    return p;
}

// Copies host data into device memory on the compute stream, behind a busy stretch.
static void upload_late(const Fixture *f, void *dst, const void *src, size_t n_bytes) {
    keep_busy(f);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, f->compute));
}

// Overwrites device memory with 0xff bytes on the compute stream, behind a busy stretch: a receive
// posted after this must land after it.
static void clobber_late(const Fixture *f, void *dst, size_t n_bytes) {
    keep_busy(f);
    CUDA_CHECK(cudaMemsetAsync(dst, 0xff, n_bytes, f->compute));
}

static void download(void *dst, const void *src, size_t n_bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, n_bytes, cudaMemcpyDeviceToHost));
}

// An NCCL transport over a new MPI transport (*mpi: destroy it after the NCCL one).
static Transport *nccl_transport(int stages, int replicas, RankOrder order, const Fixture *f, Transport **mpi) {
    Error err = {0};
    if (!transport_mpi_create(stages, replicas, order, mpi, &err)) fail_msg("%s", err.message);
    Transport *t = transport_nccl_create(*mpi, f->compute);
    t->timeout_s = test_timeout_s;
    return t;
}

// Runs check on an NCCL transport for every stages x replicas = world size and both rank orders.
static void for_each_layout(const Fixture *f, void (*check)(Transport *t, const Fixture *f)) {
    int n = world_size();
    for (int order = 0; order < RANK_ORDER_COUNT; order++) {
        for (int stages = 1; stages <= n; stages++) {
            if (n % stages) continue;
            Transport *mpi = NULL;
            Transport *t = nccl_transport(stages, n / stages, (RankOrder)order, f, &mpi);
            check(t, f);
            transport_destroy(t);
            transport_destroy(mpi);
        }
    }
}

// ---- without a GPU ---------------------------------------------------------------------------------

static void test_possible(void **state) {
    (void)state;
    char why[128] = "untouched";
    assert_true(transport_nccl_possible(1, 1, why, sizeof why));
    assert_string_equal(why, "");
    assert_true(transport_nccl_possible(4, 4, why, sizeof why));
    assert_true(transport_nccl_possible(2, 8, why, sizeof why));
    assert_false(transport_nccl_possible(2, 1, why, sizeof why));
    assert_string_equal(why, "2 ranks on this node share 1 GPU, and NCCL needs a GPU of its own for each rank");
    assert_false(transport_nccl_possible(8, 4, why, sizeof why));
    assert_string_equal(why, "8 ranks on this node share 4 GPUs, and NCCL needs a GPU of its own for each rank");
    assert_false(transport_nccl_possible(1, 0, why, sizeof why));
    assert_string_equal(why, "no CUDA device is visible on this node");
    char small[8];
    assert_false(transport_nccl_possible(3, 2, small, sizeof small));
    assert_string_equal(small, "3 ranks");
}

// ---- on GPU 0 --------------------------------------------------------------------------------------

static void check_topology(Transport *t, const Fixture *f) {
    (void)f;
    const Topology *p = &t->topo;
    int w = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &w);
    assert_int_equal(p->world_rank, w);
    assert_int_equal(p->world_size, p->pipeline_size * p->replicas);
    assert_int_equal(rank_of(p->order, p->pipeline_size, p->replicas, p->pipeline_rank, p->replica), w);
    assert_int_equal(p->local_size, p->world_size);
    assert_int_equal(p->local_rank, w);
    assert_true(transport_max_tag(t) >= 32767);
    assert_int_equal(t->ops->kind, TRANSPORT_KIND_NCCL);
    assert_string_equal(t->ops->name, "nccl");
}

static void test_topology(void **state) { for_each_layout(*state, check_topology); }

enum { N_TAGS = 5 };

// Receives from the previous pipeline rank posted before the sends (a barrier makes sure) and sends
// to the next one issued in the opposite tag order, so that every receive is matched by its tag and
// not by its order; with one rank per pipeline both are this rank. The payload names its sender.
static void check_p2p_ring(Transport *t, const Fixture *f) {
    const Topology *p = &t->topo;
    int next = (p->pipeline_rank + 1) % p->pipeline_size;
    int prev = (p->pipeline_rank + p->pipeline_size - 1) % p->pipeline_size;
    enum { MESSAGE_BYTES = 2 * sizeof(int) };
    char *sent = device_filled(N_TAGS * MESSAGE_BYTES, 0), *received = device_filled(N_TAGS * MESSAGE_BYTES, 0);
    TransportRequest *recvs[N_TAGS], *sends[N_TAGS];
    for (int k = 0; k < N_TAGS; k++) {
        clobber_late(f, received + k * MESSAGE_BYTES, MESSAGE_BYTES);
        recvs[k] = t->ops->irecv(t, received + k * MESSAGE_BYTES, MESSAGE_BYTES, prev, 10 + k);
    }
    t->ops->barrier(t, TRANSPORT_PIPELINE);
    for (int k = N_TAGS - 1; k >= 0; k--) {
        int payload[2] = {p->world_rank, k};
        upload_late(f, sent + k * MESSAGE_BYTES, payload, sizeof payload);
        sends[k] = t->ops->isend(t, sent + k * MESSAGE_BYTES, MESSAGE_BYTES, next, 10 + k);
    }
    static const int wait_order[N_TAGS] = {2, 0, 4, 1, 3};
    for (int i = 0; i < N_TAGS; i++) transport_wait(t, recvs[wait_order[i]], "a ring message");
    for (int k = 0; k < N_TAGS; k++) transport_wait(t, sends[k], "a ring send");
    int got[N_TAGS][2];
    download(got, received, sizeof got);
    for (int k = 0; k < N_TAGS; k++) {
        assert_int_equal(got[k][0], rank_of(p->order, p->pipeline_size, p->replicas, prev, p->replica));
        assert_int_equal(got[k][1], k);
    }
    CUDA_CHECK(cudaFree(sent));
    CUDA_CHECK(cudaFree(received));
}

static void test_p2p_ring_by_tag(void **state) { for_each_layout(*state, check_p2p_ring); }

// A message to this rank itself and one to the next rank, both 3 MiB, the receive of the second
// posted last: the first header to arrive (tag 2) waits for its receive.
static void check_large_and_self(Transport *t, const Fixture *f) {
    const Topology *p = &t->topo;
    int me = p->pipeline_rank, next = (me + 1) % p->pipeline_size;
    int prev = (me + p->pipeline_size - 1) % p->pipeline_size;
    enum { N = 3 << 18 };  // 3 MiB of floats; values below 2^24, exact in float
    size_t bytes = N * sizeof(float);
    float *host = malloc(bytes);
    for (int i = 0; i < N; i++) host[i] = (float)(i + p->world_rank);
    float *out = device_filled(bytes, 0), *in_prev = device_filled(bytes, 0), *in_self = device_filled(bytes, 0);
    upload_late(f, out, host, bytes);
    clobber_late(f, in_self, bytes);
    TransportRequest *r[4];
    r[0] = t->ops->irecv(t, in_self, bytes, me, 1);
    r[1] = t->ops->isend(t, out, bytes, next, 2);
    r[2] = t->ops->isend(t, out, bytes, me, 1);
    clobber_late(f, in_prev, bytes);
    r[3] = t->ops->irecv(t, in_prev, bytes, prev, 2);
    for (int i = 0; i < 4; i++) transport_wait(t, r[i], "a large message");
    int prev_world = rank_of(p->order, p->pipeline_size, p->replicas, prev, p->replica);
    download(host, in_self, bytes);
    for (int i = 0; i < N; i++)
        if (host[i] != (float)(i + p->world_rank)) fail_msg("self message: element %d is %g", i, host[i]);
    download(host, in_prev, bytes);
    for (int i = 0; i < N; i++)
        if (host[i] != (float)(i + prev_world)) fail_msg("message from %d: element %d is %g", prev, i, host[i]);
    free(host);
    CUDA_CHECK(cudaFree(out));
    CUDA_CHECK(cudaFree(in_prev));
    CUDA_CHECK(cudaFree(in_self));
}

static void test_large_and_self(void **state) { for_each_layout(*state, check_large_and_self); }

// NCCL matches one sender's messages in order: a receive whose message comes after one without a
// posted receive is not launched, and completes once that receive is posted (transport_nccl.h).
static void check_receive_waits_for_earlier(Transport *t, const Fixture *f) {
    (void)f;
    int me = t->topo.pipeline_rank;
    int *buf = device_filled(4 * sizeof(int), 0);
    int values[2] = {11, 22};
    CUDA_CHECK(cudaMemcpy(buf, values, sizeof values, cudaMemcpyHostToDevice));
    TransportRequest *first = t->ops->isend(t, buf, sizeof(int), me, 7);
    TransportRequest *second = t->ops->isend(t, buf + 1, sizeof(int), me, 8);
    TransportRequest *late = t->ops->irecv(t, buf + 3, sizeof(int), me, 8);
    for (int i = 0; i < 20; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        assert_false(t->ops->test(t, late));
    }
    TransportRequest *early = t->ops->irecv(t, buf + 2, sizeof(int), me, 7);
    transport_wait(t, late, "the later message");
    transport_wait(t, early, "the earlier message");
    transport_wait(t, first, "the first send");
    transport_wait(t, second, "the second send");
    int got[4];
    download(got, buf, sizeof got);
    assert_int_equal(got[2], 11);
    assert_int_equal(got[3], 22);
    CUDA_CHECK(cudaFree(buf));
}

static void test_receive_waits_for_earlier(void **state) { for_each_layout(*state, check_receive_waits_for_earlier); }

enum { N_SUM = 1000 };

// Rank w contributes w * 1000 + i at index i, so the sum at i is 1000 * (sum of the group's world
// ranks) + size * i: it names the members, and every partial sum is an integer below 2^24.
static void check_sums(Transport *t, const Fixture *f) {
    float *device = device_filled(N_SUM * sizeof(float), 0);
    for (int group = 0; group < TRANSPORT_GROUP_COUNT; group++) {
        int members = 0, size = group_size(t, (TransportGroup)group);
        for (int d = 0; d < size; d++) members += group_world_rank(t, (TransportGroup)group, d);
        float fl[N_SUM];
        double g[N_SUM];
        for (int i = 0; i < N_SUM; i++) fl[i] = (float)(g[i] = t->topo.world_rank * 1000.0 + i);
        upload_late(f, device, fl, sizeof fl);
        TransportRequest *r = t->ops->iallreduce_sum_f32(t, device, N_SUM, (TransportGroup)group);
        transport_wait(t, r, "a float sum");
        download(fl, device, sizeof fl);
        t->ops->allreduce_sum_f64(t, g, N_SUM, (TransportGroup)group);
        for (int i = 0; i < N_SUM; i++) {
            double expected = 1000.0 * members + (double)size * i;
            if (fl[i] != expected || g[i] != expected)
                fail_msg("group %d element %d: %g (f32), %g (f64), expected %g", group, i, fl[i], g[i], expected);
        }
    }
    CUDA_CHECK(cudaFree(device));
}

static void test_allreduce(void **state) { for_each_layout(*state, check_sums); }

// The host-memory collectives go to the wrapped MPI transport: the MPI test's checks.
static void check_broadcast_barrier(Transport *t, const Fixture *f) {
    (void)f;
    transport_check_broadcast_barrier(t);
}

static void check_gather(Transport *t, const Fixture *f) {
    (void)f;
    transport_check_gather(t);
}

static void test_broadcast_barrier(void **state) { for_each_layout(*state, check_broadcast_barrier); }

static void test_gather_bytes(void **state) { for_each_layout(*state, check_gather); }

static int fixture_setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreate(&f->compute));
    f->scratch = device_alloc(SCRATCH_BYTES);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state) {
    Fixture *f = *state;
    CUDA_CHECK(cudaFree(f->scratch));
    CUDA_CHECK(cudaStreamDestroy(f->compute));
    free(f);
    return 0;
}

// ---- failures, for check-nccl-failure.sh -------------------------------------------------------------

// Ends the job: "timeout" waits 1 s for a message to itself that is never sent; "mismatch" sends 8
// bytes to itself for a receive of 4.
static int probe(const char *mode) {
    void *state = NULL;
    fixture_setup(&state);
    Transport *mpi = NULL;  // the job ends inside the probe, with both transports alive
    Transport *t = nccl_transport(1, world_size(), RANK_ORDER_PIPELINE_FIRST, state, &mpi);
    failure_install(&t->topo, t);
    int *buf = device_filled(2 * sizeof(int), 0);
    if (strcmp(mode, "timeout") == 0) {
        t->timeout_s = 1;
        transport_wait(t, t->ops->irecv(t, buf, sizeof(int), 0, 5), "a message to this rank that is never sent");
    } else if (strcmp(mode, "mismatch") == 0) {
        TransportRequest *send = t->ops->isend(t, buf, 2 * sizeof(int), 0, 3);
        TransportRequest *recv = t->ops->irecv(t, buf, sizeof(int), 0, 3);
        transport_wait(t, recv, "the mismatched receive");
        transport_wait(t, send, "the mismatched send");
    }
    fprintf(stderr, "probe %s: the job did not end\n", mode);
    return 1;
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    if (argc == 3 && strcmp(argv[1], "probe") == 0) {
        if (cuda_device_count() > 0) return probe(argv[2]);
        MPI_Finalize();
        return 77;
    }
    const struct CMUnitTest pure[] = {cmocka_unit_test(test_possible)};
    const struct CMUnitTest on_gpu[] = {
        cmocka_unit_test(test_topology),     cmocka_unit_test(test_p2p_ring_by_tag),
        cmocka_unit_test(test_large_and_self), cmocka_unit_test(test_receive_waits_for_earlier),
        cmocka_unit_test(test_allreduce),    cmocka_unit_test(test_broadcast_barrier),
        cmocka_unit_test(test_gather_bytes),
    };
    int failed = cmocka_run_group_tests_name("pure", pure, NULL, NULL);
    if (!failed && cuda_device_count() == 0) {
        fprintf(stderr, "no CUDA device: the NCCL transport's GPU tests are skipped\n");
        MPI_Finalize();
        return 77;
    }
    if (!failed) failed = cmocka_run_group_tests_name("gpu", on_gpu, fixture_setup, fixture_teardown);
    MPI_Finalize();
    return failed;
}
