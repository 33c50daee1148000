#include "schedule/collective.h"

#include <math.h>

#include "framework/core/error.h"

const char *const collective_algo_names[COLLECTIVE_ALGO_COUNT] = {"none", "ring", "tree"};

static int tree_depth(int n) { return (int)ceil(log2((double)n)); }

double collective_ring_allreduce_s(LinkModel link, int n, double n_bytes) {
    if (n <= 1) return 0.0;
    return 2.0 * (n - 1) / n * n_bytes / link.bandwidth_bytes_per_s + 2.0 * (n - 1) * link.latency_s;
}

double collective_tree_allreduce_s(LinkModel link, int n, double n_bytes) {
    if (n <= 1) return 0.0;
    return 2.0 * tree_depth(n) * link.latency_s + 2.0 * n_bytes / link.bandwidth_bytes_per_s;
}

double collective_ring_half_s(LinkModel link, int n, double n_bytes) {
    if (n <= 1) return 0.0;
    return (double)(n - 1) / n * n_bytes / link.bandwidth_bytes_per_s + (n - 1) * link.latency_s;
}

double collective_tree_threshold_bytes(LinkModel link, int n) {
    double spare_steps = n - 1 - tree_depth(n);
    return n > 2 && spare_steps > 0 ? n * link.latency_s * link.bandwidth_bytes_per_s * spare_steps : 0.0;
}

CollectiveCost collective_allreduce(const ClusterModel *c, const PlacementGroup *g, int64_t n_bytes) {
    CollectiveCost cost = {.inter_algo = COLLECTIVE_ALGO_NONE};
    if (g->n_members <= 1 || n_bytes <= 0) return cost;
    const int local = g->per_node, nodes = g->n_nodes;
    const double bytes = (double)n_bytes;
    if (local > 1) {
        YP_CHECK(c->intra_collective.bandwidth_bytes_per_s > 0);
        cost.intra_s = 2.0 * collective_ring_half_s(c->intra_collective, local, bytes);
        cost.bytes_sent = 2.0 * (local - 1) / local * bytes;
    }
    if (nodes > 1) {
        LinkModel nic = placement_nic_share(c, g->nic_sharers > local ? g->nic_sharers : local);
        double shard = bytes / local;
        double ring = collective_ring_allreduce_s(nic, nodes, shard);
        double tree = collective_tree_allreduce_s(nic, nodes, shard);
        bool use_tree = shard < collective_tree_threshold_bytes(nic, nodes);
        cost.inter_algo = use_tree ? COLLECTIVE_ALGO_TREE : COLLECTIVE_ALGO_RING;
        cost.inter_s = use_tree ? tree : ring;
        cost.inter_bytes_sent = use_tree ? 2.0 * shard : 2.0 * (nodes - 1) / nodes * shard;
        cost.bytes_sent += cost.inter_bytes_sent;
    }
    cost.time_s = cost.intra_s + cost.inter_s;
    return cost;
}
