// The data-parallel all-reduce's cost (DESIGN.md "Cluster model"): alpha-beta formulas per link
// class, hierarchical across nodes as NCCL runs it.
//
// Notation: B bytes per member; a ring or tree over n ranks on links of latency a (one step) and
// bandwidth b (per rank and direction; inside a node NCCL's "bus bandwidth").
//   ring all-reduce (reduce-scatter then all-gather, 2 (n - 1) steps of B / n each):
//       T_ring(n, B) = 2 (n - 1) / n x B / b + 2 (n - 1) a
//   double binary tree (NCCL 2.4+: a reduce up and a broadcast down two complementary trees, each
//   carrying half the message, pipelined; logarithmic latency, every rank sending about B each way):
//       T_tree(n, B) = 2 ceil(log2 n) a + 2 B / b
//   The tree is cheaper exactly below B* = n a b (n - 1 - ceil(log2 n)) (never for n <= 2), and
//   the cross-node step takes the cheaper of the two, as NCCL's tuner does (NCCL's cost model in
//   src/graph/tuning.cc, and Jeaugey, "Massively Scale Your Deep Learning Training with NCCL 2.4",
//   NVIDIA 2019; the ring's alpha-beta form is Thakur, Rabenseifner and Gropp, "Optimization of
//   Collective Communication Operations in MPICH", IJHPCA 2005).
//   reduce-scatter or all-gather alone on a ring: T_half(n, B) = (n - 1) / n x B / b + (n - 1) a.
//
// A group of L members per node on N nodes (partition/placement.h's PlacementGroup):
//   1. reduce-scatter inside each node over intra_collective: T_half(L, B);
//   2. each member all-reduces its shard of B / L with its peers on the other nodes, over its share
//      of the node's NICs (the group's nic_sharers ranks use them at once: bandwidth
//      min(b_nic, nics_per_node x b_nic / nic_sharers), latency the NIC's):
//        min(T_ring(N, B / L), T_tree(N, B / L));
//   3. all-gather inside each node: T_half(L, B).
//   Total: 2 T_half(L, B) + min(T_ring, T_tree)(N, B / L). With N = 1 it is T_ring(L, B) on
//   intra_collective, the plain ring; with L = 1 the cross-node step alone. Members spread unevenly
//   over nodes are costed as L = the most on one node (the slowest node sets the pace).
#pragma once

#include <stdint.h>

#include "partition/placement.h"
#include "partition/plan.h"

typedef enum CollectiveAlgo {
    COLLECTIVE_ALGO_NONE,  // no cross-node step
    COLLECTIVE_ALGO_RING,
    COLLECTIVE_ALGO_TREE,
    COLLECTIVE_ALGO_COUNT
} CollectiveAlgo;
extern const char *const collective_algo_names[COLLECTIVE_ALGO_COUNT];  // "none", "ring", "tree"

double collective_ring_allreduce_s(LinkModel link, int n, double n_bytes);
double collective_tree_allreduce_s(LinkModel link, int n, double n_bytes);
double collective_ring_half_s(LinkModel link, int n, double n_bytes);  // reduce-scatter or all-gather
// B*: the tree is cheaper for messages below it; 0 when it never is.
double collective_tree_threshold_bytes(LinkModel link, int n);

typedef struct CollectiveCost {
    double time_s;            // intra_s + inter_s
    double intra_s;           // reduce-scatter and all-gather inside the node
    double inter_s;           // the cross-node all-reduce of one shard
    CollectiveAlgo inter_algo;
    double bytes_sent;        // by one member, both phases: 2 (L - 1) / L x B inside the node, plus
                              // 2 (N - 1) / N x B / L (ring) or 2 B / L (tree) across nodes
    double inter_bytes_sent;  // the cross-node part of bytes_sent
} CollectiveCost;

// The hierarchical all-reduce of n_bytes per member over group g on cluster c.
CollectiveCost collective_allreduce(const ClusterModel *c, const PlacementGroup *g, int64_t n_bytes);
