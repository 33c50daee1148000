// The data-parallel all-reduce's cost (schedule/collective.h) and the placement it is costed on
// (partition/placement.h).
//
// References: the closed forms, written out here independently of the code (ring 2 (n - 1) / n B / b
// + 2 (n - 1) a; double binary tree 2 ceil(log2 n) a + 2 B / b; hierarchical: reduce-scatter and
// all-gather in the node, the cheaper of the two across nodes on the NIC share), and placements
// counted by hand. Tolerance: the code and the reference add the same terms in possibly different
// orders, so they agree to a few ulps (rtol 1e-12).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "partition/placement.h"
#include "schedule/collective.h"
#include "tests/common/assert_close.h"

static const double rtol = 1e-12;

// An 8-GPU node of H100s on NDR InfiniBand, as DESIGN.md's studies use it.
static ClusterModel h100_cluster(int nics) {
    return (ClusterModel){.gpus_per_node = 8, .intra = {10e-6, 150e9}, .intra_collective = {3e-6, 370e9},
                          .inter = {14e-6, 48e9}, .nics_per_node = nics};
}

static double ring(double a, double b, int n, double bytes) {
    return 2.0 * (n - 1) / n * bytes / b + 2.0 * (n - 1) * a;
}
static double tree(double a, double b, int n, double bytes) { return 2.0 * ceil(log2(n)) * a + 2.0 * bytes / b; }

static void test_one_node_is_the_ring(void **state) {
    (void)state;
    ClusterModel c = h100_cluster(8);
    for (int L = 2; L <= 8; L++) {
        PlacementGroup g = {.n_members = L, .n_nodes = 1, .per_node = L};
        for (double bytes = 1e3; bytes <= 1e9; bytes *= 10) {
            CollectiveCost cost = collective_allreduce(&c, &g, (int64_t)bytes);
            double want = 2.0 * (L - 1) / L * bytes / 370e9 + 2.0 * (L - 1) * 3e-6;
            assert_close(cost.time_s, want, 0.0, rtol);
            assert_int_equal(cost.inter_algo, COLLECTIVE_ALGO_NONE);
            assert_close(cost.bytes_sent, 2.0 * (L - 1) / L * bytes, 0.0, rtol);
        }
    }
    // One member: nothing to do.
    PlacementGroup alone = {.n_members = 1, .n_nodes = 1, .per_node = 1};
    CollectiveCost none = collective_allreduce(&c, &alone, 1000);
    assert_true(none.time_s == 0.0 && none.bytes_sent == 0.0);
}

static void test_hierarchical(void **state) {
    (void)state;
    // 16 nodes x 8 members, 1 GB of gradients: reduce-scatter and all-gather over 8 in the node, the
    // ring over 16 nodes of a 125 MB shard across nodes.
    const double bytes = 1e9;
    for (int nics = 1; nics <= 8; nics *= 2) {
        ClusterModel c = h100_cluster(nics);
        PlacementGroup g = {.n_members = 128, .n_nodes = 16, .per_node = 8, .nic_sharers = 8};
        CollectiveCost cost = collective_allreduce(&c, &g, (int64_t)bytes);
        double nic_bw = fmin(48e9, nics * 48e9 / 8);  // 8 ranks share the node's NICs
        double intra = 2.0 * (7.0 / 8 * bytes / 370e9 + 7 * 3e-6), inter = ring(14e-6, nic_bw, 16, bytes / 8);
        assert_int_equal(cost.inter_algo, COLLECTIVE_ALGO_RING);
        assert_close(cost.intra_s, intra, 0.0, rtol);
        assert_close(cost.inter_s, inter, 0.0, rtol);
        assert_close(cost.time_s, intra + inter, 0.0, rtol);
        assert_close(cost.inter_bytes_sent, 2.0 * 15 / 16 * bytes / 8, 0.0, rtol);
    }
    // One member per node: the cross-node all-reduce alone, on a whole NIC.
    ClusterModel c = h100_cluster(8);
    PlacementGroup g = {.n_members = 32, .n_nodes = 32, .per_node = 1, .nic_sharers = 1};
    CollectiveCost cost = collective_allreduce(&c, &g, (int64_t)bytes);
    assert_close(cost.time_s, ring(14e-6, 48e9, 32, bytes), 0.0, rtol);
    assert_true(cost.intra_s == 0.0);
    // More sharers than one node's members (other stages' groups at once) slow the NIC share only.
    g = (PlacementGroup){.n_members = 64, .n_nodes = 16, .per_node = 4, .nic_sharers = 8};
    c.nics_per_node = 2;
    cost = collective_allreduce(&c, &g, (int64_t)bytes);
    double want = 2.0 * (3.0 / 4 * bytes / 370e9 + 3 * 3e-6) + ring(14e-6, 2 * 48e9 / 8, 16, bytes / 4);
    assert_close(cost.time_s, want, 0.0, rtol);
}

// The tree is cheaper below B* = n a b (n - 1 - ceil(log2 n)); the choice flips there, and both
// formulas agree at B*.
static void test_ring_tree_flip(void **state) {
    (void)state;
    const double a = 10e-6, b = 10e9;
    ClusterModel c = {.gpus_per_node = 1, .intra = {a, b}, .intra_collective = {a, b}, .inter = {a, b},
                      .nics_per_node = 1};
    for (int n = 5; n <= 1024; n = n * 2 + 1) {
        double want_star = n * a * b * (n - 1 - ceil(log2(n)));
        double star = collective_tree_threshold_bytes(c.inter, n);
        assert_close(star, want_star, 0.0, rtol);
        assert_close(ring(a, b, n, star), tree(a, b, n, star), 0.0, rtol);
        PlacementGroup g = {.n_members = n, .n_nodes = n, .per_node = 1, .nic_sharers = 1};
        CollectiveCost below = collective_allreduce(&c, &g, (int64_t)(0.99 * star));
        CollectiveCost above = collective_allreduce(&c, &g, (int64_t)(1.01 * star));
        assert_int_equal(below.inter_algo, COLLECTIVE_ALGO_TREE);
        assert_int_equal(above.inter_algo, COLLECTIVE_ALGO_RING);
        double bt = (double)(int64_t)(0.99 * star), ba = (double)(int64_t)(1.01 * star);
        assert_close(below.time_s, tree(a, b, n, bt), 0.0, rtol);
        assert_close(above.time_s, ring(a, b, n, ba), 0.0, rtol);
        assert_true(below.time_s <= ring(a, b, n, bt) && above.time_s <= tree(a, b, n, ba));
    }
    // Two and three ranks: the ring has as few steps as the tree and sends less, so the tree never wins.
    assert_true(collective_tree_threshold_bytes(c.inter, 2) == 0.0);
    assert_true(collective_tree_threshold_bytes(c.inter, 3) == 0.0);
    PlacementGroup two = {.n_members = 2, .n_nodes = 2, .per_node = 1, .nic_sharers = 1};
    assert_int_equal(collective_allreduce(&c, &two, 1).inter_algo, COLLECTIVE_ALGO_RING);
}

// Latency terms grow with the step count and not with bytes; bandwidth terms with bytes, not with
// latency.
static void test_terms_scale(void **state) {
    (void)state;
    LinkModel latency_only = {1e-5, INFINITY}, bandwidth_only = {0.0, 1e9};
    for (int n = 2; n <= 64; n *= 2) {
        assert_close(collective_ring_allreduce_s(latency_only, n, 1e6), 2.0 * (n - 1) * 1e-5, rtol, 0.0);
        assert_close(collective_ring_allreduce_s(latency_only, n, 1e9), 2.0 * (n - 1) * 1e-5, rtol, 0.0);
        assert_close(collective_tree_allreduce_s(latency_only, n, 1e9), 2.0 * log2(n) * 1e-5, rtol, 0.0);
        double t1 = collective_ring_allreduce_s(bandwidth_only, n, 1e6);
        assert_close(collective_ring_allreduce_s(bandwidth_only, n, 2e6), 2 * t1, 0.0, rtol);
        assert_close(t1, 2.0 * (n - 1) / n * 1e-3, 0.0, rtol);  // -> 2 B / b for large n
        assert_close(collective_tree_allreduce_s(bandwidth_only, n, 1e6), 2e-3, rtol, 0.0);
    }
    // The per-rank data shrinks with more members per node: the in-node phases approach 2 B / b.
    ClusterModel c = h100_cluster(8);
    c.intra_collective = bandwidth_only;
    double prev = 0;
    for (int L = 2; L <= 8; L++) {
        PlacementGroup g = {.n_members = L, .n_nodes = 1, .per_node = L};
        CollectiveCost cost = collective_allreduce(&c, &g, 1000000);
        assert_true(cost.time_s > prev && cost.time_s < 2e-3);
        prev = cost.time_s;
    }
}

// ---- placement ---------------------------------------------------------------------------------------

static void test_placement(void **state) {
    (void)state;
    ClusterModel c = h100_cluster(8);
    // 4 stages x 4 replicas on 8-GPU nodes. Pipeline-first: world = d * 4 + r, so node 0 holds replicas
    // 0 and 1 of every stage; each stage's group has 2 members on each of 2 nodes, and every rank of a
    // node is in a group that spans nodes.
    PlacementGroup g[4];
    c.rank_order = RANK_ORDER_PIPELINE_FIRST;
    placement_replica_groups(&c, 4, 4, g);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(g[r].n_members, 4);
        assert_int_equal(g[r].n_nodes, 2);
        assert_int_equal(g[r].per_node, 2);
        assert_int_equal(g[r].nic_sharers, 8);
    }
    // Pipeline neighbours stay inside the node.
    assert_int_equal(placement_p2p_link(&c, 4, 4, 0, 1).cls, LINK_CLASS_INTRA);
    // Replica-first: world = r * 4 + d, so each node holds two whole stage groups: no group spans nodes,
    // and stage 1 -> 2 crosses from node 0 to node 1 for all 4 replicas at once.
    c.rank_order = RANK_ORDER_REPLICA_FIRST;
    placement_replica_groups(&c, 4, 4, g);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(g[r].n_nodes, 1);
        assert_int_equal(g[r].per_node, 4);
        assert_int_equal(g[r].nic_sharers, 0);
    }
    assert_int_equal(placement_p2p_link(&c, 4, 4, 0, 1).cls, LINK_CLASS_INTRA);
    PlacementLink across = placement_p2p_link(&c, 4, 4, 1, 2);
    assert_int_equal(across.cls, LINK_CLASS_INTER);
    assert_int_equal(across.sharers, 4);
    assert_close(across.link.bandwidth_bytes_per_s, 48e9, 0.0, 0.0);  // 8 NICs for 4 flows: one each
    c.nics_per_node = 1;
    assert_close(placement_p2p_link(&c, 4, 4, 1, 2).link.bandwidth_bytes_per_s, 12e9, 0.0, 0.0);
    // Data-parallel only, 1024 ranks: 128 nodes of 8 members.
    PlacementGroup dp;
    placement_replica_groups(&c, 1, 1024, &dp);
    assert_int_equal(dp.n_nodes, 128);
    assert_int_equal(dp.per_node, 8);
    assert_int_equal(dp.nic_sharers, 8);
    PlacementGroup world = placement_world_group(&c, 1024);
    assert_true(world.n_nodes == 128 && world.per_node == 8 && world.n_members == 1024);
    // gpus_per_node 0: one node for everyone.
    c.gpus_per_node = 0;
    assert_int_equal(placement_nodes(&c, 64), 1);
    assert_int_equal(placement_link_class(&c, 0, 63), LINK_CLASS_INTRA);
    assert_int_equal(placement_link_class(&c, 5, 5), LINK_CLASS_LOCAL);
    // The mapping and its inverse.
    for (int order = 0; order < RANK_ORDER_COUNT; order++)
        for (int w = 0; w < 24; w++) {
            int r, d;
            placement_locate((RankOrder)order, 3, 8, w, &r, &d);
            assert_int_equal(w, order == RANK_ORDER_PIPELINE_FIRST ? d * 3 + r : r * 8 + d);
            assert_int_equal(placement_world_rank((RankOrder)order, 3, 8, r, d), w);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_node_is_the_ring), cmocka_unit_test(test_hierarchical),
        cmocka_unit_test(test_ring_tree_flip),       cmocka_unit_test(test_terms_scale),
        cmocka_unit_test(test_placement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
