// The MPI transport on 1, 2 and 4 ranks (tests/meson.build runs this program through
// tests/mpi/mpirun.sh with each). Every layout the world size allows (stages x replicas, both rank
// orders) is checked against the rank map written out here independently of framework/runtime/topology.c.
// Collectives run on integer-valued data, so every sum is exact: zero tolerance.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <mpi.h>

#include "framework/runtime/transport.h"
#include "framework/runtime/transport_mpi.h"
#include "tests/unit/transport_checks.h"

// Long enough for 4 oversubscribed ranks on a loaded machine; a wrong test ends in seconds anyway.
static const double test_timeout_s = 30;

// Runs check on a transport for every stages x replicas = world size and both rank orders.
static void for_each_layout(void (*check)(Transport *t)) {
    int n = world_size();
    for (int order = 0; order < RANK_ORDER_COUNT; order++) {
        for (int stages = 1; stages <= n; stages++) {
            if (n % stages) continue;
            Transport *t = NULL;
            Error err = {0};
            assert_true(transport_mpi_create(stages, n / stages, (RankOrder)order, &t, &err));
            t->timeout_s = test_timeout_s;
            check(t);
            transport_destroy(t);
        }
    }
}

static void test_topology_map(void **state) {
    (void)state;
    // 2 stages x 2 replicas by hand: world rank -> (pipeline rank, replica).
    static const int pipeline_first[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
    static const int replica_first[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    for (int w = 0; w < 4; w++) {
        Topology a = topology_make(w, 2, 2, RANK_ORDER_PIPELINE_FIRST);
        Topology b = topology_make(w, 2, 2, RANK_ORDER_REPLICA_FIRST);
        assert_int_equal(a.pipeline_rank, pipeline_first[w][0]);
        assert_int_equal(a.replica, pipeline_first[w][1]);
        assert_int_equal(b.pipeline_rank, replica_first[w][0]);
        assert_int_equal(b.replica, replica_first[w][1]);
    }
    // Other shapes: topology_make and topology_world_rank agree with the formula and invert each other.
    static const int shapes[][2] = {{1, 1}, {4, 1}, {1, 4}, {3, 2}, {2, 3}, {4, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int stages = shapes[s][0], replicas = shapes[s][1];
        for (int order = 0; order < RANK_ORDER_COUNT; order++) {
            for (int w = 0; w < stages * replicas; w++) {
                Topology t = topology_make(w, stages, replicas, (RankOrder)order);
                assert_int_equal(t.world_size, stages * replicas);
                assert_in_range(t.pipeline_rank, 0, stages - 1);
                assert_in_range(t.replica, 0, replicas - 1);
                assert_int_equal(rank_of((RankOrder)order, stages, replicas, t.pipeline_rank, t.replica), w);
                assert_int_equal(topology_world_rank(&t, t.pipeline_rank, t.replica), w);
            }
        }
    }
}

// How failure messages name ranks (topology_describe_peer, transport_describe_group), on a
// topology made by hand: 2 stages x 6 replicas, replica-first (world rank = pipeline rank * 6 +
// replica), world ranks 0-5 on host "a" and 6-11 on "b".
static void test_describe_ranks(void **state) {
    (void)state;
    char hosts[12][TOPOLOGY_HOST_BYTES];
    for (int w = 0; w < 12; w++) snprintf(hosts[w], sizeof hosts[w], "%s", w < 6 ? "a" : "b");
    Transport t = {.topo = topology_make(2, 2, 6, RANK_ORDER_REPLICA_FIRST)};  // pipeline rank 0, replica 2
    t.topo.hosts = hosts[0];
    char buf[256];
    assert_string_equal(topology_describe_peer(&t.topo, 1, buf, sizeof buf), "pipeline rank 1 (world rank 8 on b)");
    assert_string_equal(transport_describe_group(&t, TRANSPORT_PIPELINE, buf, sizeof buf),
                        "the pipeline group (world ranks 2 on a; 8 on b)");
    assert_string_equal(transport_describe_group(&t, TRANSPORT_REPLICAS, buf, sizeof buf),
                        "the replicas group (world ranks 0, 1, 2, 3, 4, 5 on a)");
    assert_string_equal(transport_describe_group(&t, TRANSPORT_WORLD, buf, sizeof buf),
                        "the world group (world ranks 0, 1, 2, 3, 4, 5 on a; 6, 7 on b; ... 12 ranks in all)");
    // Cut to fit a short buffer, NUL-terminated.
    assert_int_equal(strlen(transport_describe_group(&t, TRANSPORT_WORLD, buf, 16)), 15);
    assert_int_equal(strlen(topology_describe_peer(&t.topo, 1, buf, 8)), 7);
    // Without host names (topology_make's): ranks only.
    t.topo.hosts = NULL;
    assert_string_equal(topology_describe_peer(&t.topo, 1, buf, sizeof buf), "pipeline rank 1 (world rank 8)");
    assert_string_equal(transport_describe_group(&t, TRANSPORT_PIPELINE, buf, sizeof buf),
                        "the pipeline group (world ranks 2, 8)");
    Transport one = {.topo = topology_make(0, 1, 1, RANK_ORDER_PIPELINE_FIRST)};
    one.topo.hosts = hosts[0];
    assert_string_equal(transport_describe_group(&one, TRANSPORT_WORLD, buf, sizeof buf),
                        "the world group (world rank 0 on a)");
}

static void test_wrong_world_size(void **state) {
    (void)state;
    int n = world_size();
    Transport *t = NULL;
    Error err = {0};
    assert_false(transport_mpi_create(n + 1, 1, RANK_ORDER_PIPELINE_FIRST, &t, &err));
    assert_null(t);
    char expected[256];
    snprintf(expected, sizeof expected,
             "parallel.stages x parallel.replicas = %d x 1 = %d ranks, but mpirun started %d process%s: "
             "run mpirun -np %d ... or change parallel.stages/replicas",
             n + 1, n + 1, n, n == 1 ? "" : "es", n + 1);
    assert_string_equal(err.message, expected);
}

static void check_topology(Transport *t) {
    const Topology *p = &t->topo;
    int w = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &w);
    assert_int_equal(p->world_rank, w);
    assert_int_equal(p->world_size, p->pipeline_size * p->replicas);
    assert_int_equal(rank_of(p->order, p->pipeline_size, p->replicas, p->pipeline_rank, p->replica), w);
    assert_int_equal(topology_world_rank(p, p->pipeline_rank, p->replica), w);
    // One node: the node-local ranks are the world ranks, and every rank's host is this one.
    assert_int_equal(p->local_size, p->world_size);
    assert_int_equal(p->local_rank, w);
    char host[TOPOLOGY_HOST_BYTES] = "";
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    for (int r = 0; r < p->world_size; r++) assert_string_equal(topology_host(p, r), host);
    assert_true(transport_max_tag(t) >= 32767);
    assert_int_equal(t->ops->kind, TRANSPORT_KIND_MPI);
    assert_string_equal(t->ops->name, "mpi");
}

static void test_topology_from_mpi(void **state) {
    (void)state;
    for_each_layout(check_topology);
}

enum { N_TAGS = 5 };

// Receives from the previous pipeline rank posted before the sends (a barrier makes sure) and
// sends to the next one issued in the opposite tag order; with one rank per pipeline both are this
// rank. The payload names its sender, so a message matched to the wrong peer or tag shows.
static void check_p2p_ring(Transport *t) {
    const Topology *p = &t->topo;
    int next = (p->pipeline_rank + 1) % p->pipeline_size;
    int prev = (p->pipeline_rank + p->pipeline_size - 1) % p->pipeline_size;
    int sent[N_TAGS][2], received[N_TAGS][2];
    TransportRequest *recvs[N_TAGS], *sends[N_TAGS];
    for (int k = 0; k < N_TAGS; k++) recvs[k] = t->ops->irecv(t, received[k], sizeof received[k], prev, 10 + k);
    t->ops->barrier(t, TRANSPORT_PIPELINE);
    for (int k = N_TAGS - 1; k >= 0; k--) {
        sent[k][0] = p->world_rank;
        sent[k][1] = k;
        sends[k] = t->ops->isend(t, sent[k], sizeof sent[k], next, 10 + k);
    }
    static const int wait_order[N_TAGS] = {2, 0, 4, 1, 3};
    for (int i = 0; i < N_TAGS; i++) transport_wait(t, recvs[wait_order[i]], "a ring message");
    for (int k = 0; k < N_TAGS; k++) transport_wait(t, sends[k], "a ring send");
    for (int k = 0; k < N_TAGS; k++) {
        assert_int_equal(received[k][0], rank_of(p->order, p->pipeline_size, p->replicas, prev, p->replica));
        assert_int_equal(received[k][1], k);
    }
}

static void test_p2p_ring_by_tag(void **state) {
    (void)state;
    for_each_layout(check_p2p_ring);
}

// A message to this rank itself, and messages larger than MPI's eager limit (rendezvous protocol),
// to the next rank and to itself at once.
static void check_large_and_self(Transport *t) {
    const Topology *p = &t->topo;
    int me = p->pipeline_rank, next = (me + 1) % p->pipeline_size;
    int prev = (me + p->pipeline_size - 1) % p->pipeline_size;
    enum { N = 3 << 18 };  // 3 MiB of floats; values below 2^24, exact in float
    float *out = malloc(N * sizeof *out), *in_prev = malloc(N * sizeof *in_prev);
    float *in_self = malloc(N * sizeof *in_self);
    for (int i = 0; i < N; i++) out[i] = (float)(i + p->world_rank);
    TransportRequest *r[4] = {
        t->ops->irecv(t, in_self, N * sizeof *in_self, me, 1),
        t->ops->isend(t, out, N * sizeof *out, next, 2),
        t->ops->isend(t, out, N * sizeof *out, me, 1),
        t->ops->irecv(t, in_prev, N * sizeof *in_prev, prev, 2),
    };
    for (int i = 0; i < 4; i++) transport_wait(t, r[i], "a large message");
    int prev_world = rank_of(p->order, p->pipeline_size, p->replicas, prev, p->replica);
    for (int i = 0; i < N; i++) {
        if (in_self[i] != (float)(i + p->world_rank)) fail_msg("self message: element %d is %g", i, in_self[i]);
        if (in_prev[i] != (float)(i + prev_world)) fail_msg("message from %d: element %d is %g", prev, i, in_prev[i]);
    }
    free(out);
    free(in_prev);
    free(in_self);
}

static void test_large_and_self(void **state) {
    (void)state;
    for_each_layout(check_large_and_self);
}

enum { N_SUM = 1000 };

// Rank w contributes w * 1000 + i at index i, so the sum at i is 1000 * (sum of the group's world
// ranks) + size * i: it names the members, and every partial sum is an integer below 2^24.
static void check_sums(Transport *t) {
    for (int group = 0; group < TRANSPORT_GROUP_COUNT; group++) {
        int members = 0, size = group_size(t, (TransportGroup)group);
        for (int d = 0; d < size; d++) members += group_world_rank(t, (TransportGroup)group, d);
        float f[N_SUM];
        double g[N_SUM];
        for (int i = 0; i < N_SUM; i++) f[i] = (float)(g[i] = t->topo.world_rank * 1000.0 + i);
        TransportRequest *r = t->ops->iallreduce_sum_f32(t, f, N_SUM, (TransportGroup)group);
        transport_wait(t, r, "a float sum");
        t->ops->allreduce_sum_f64(t, g, N_SUM, (TransportGroup)group);
        for (int i = 0; i < N_SUM; i++) {
            double expected = 1000.0 * members + (double)size * i;
            if (f[i] != expected || g[i] != expected)
                fail_msg("group %d element %d: %g (f32), %g (f64), expected %g", group, i, f[i], g[i], expected);
        }
    }
}

static void test_allreduce(void **state) {
    (void)state;
    for_each_layout(check_sums);
}

static void test_broadcast_barrier(void **state) {
    (void)state;
    for_each_layout(transport_check_broadcast_barrier);
}

static void test_gather_bytes(void **state) {
    (void)state;
    for_each_layout(transport_check_gather);
}

static void count_poll(void *context) { ++*(int *)context; }

// The hook an owning transport (NCCL's) sets runs at every test, so also while a blocking
// collective waits, and no more once removed.
static void check_poll_hook(Transport *t) {
    int polls = 0;
    transport_mpi_set_poll(t, count_poll, &polls);
    t->ops->barrier(t, TRANSPORT_WORLD);
    assert_true(polls >= 1);
    int before = polls;
    TransportRequest *r = t->ops->iallreduce_sum_f32(t, (float[1]){1}, 1, TRANSPORT_REPLICAS);
    transport_wait(t, r, "a float sum");
    assert_true(polls > before);
    transport_mpi_set_poll(t, NULL, NULL);
    before = polls;
    t->ops->barrier(t, TRANSPORT_WORLD);
    assert_int_equal(polls, before);
}

static void test_poll_hook(void **state) {
    (void)state;
    for_each_layout(check_poll_hook);
}

int main(int argc, char **argv) {
    // MPI is started here rather than by the transport, so that one process can create and destroy
    // a transport per layout.
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology_map),      cmocka_unit_test(test_describe_ranks),
        cmocka_unit_test(test_wrong_world_size),
        cmocka_unit_test(test_topology_from_mpi), cmocka_unit_test(test_p2p_ring_by_tag),
        cmocka_unit_test(test_large_and_self),    cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_broadcast_barrier), cmocka_unit_test(test_gather_bytes),
        cmocka_unit_test(test_poll_hook),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
