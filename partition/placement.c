#include "partition/placement.h"

#include <stdlib.h>

#include "framework/core/error.h"

int placement_world_rank(RankOrder order, int pipeline_size, int replicas, int pipeline_rank, int replica) {
    YP_CHECK(pipeline_rank >= 0 && pipeline_rank < pipeline_size && replica >= 0 && replica < replicas);
    if (order == RANK_ORDER_PIPELINE_FIRST) return replica * pipeline_size + pipeline_rank;
    return pipeline_rank * replicas + replica;
}

void placement_locate(RankOrder order, int pipeline_size, int replicas, int world_rank, int *pipeline_rank,
                      int *replica) {
    YP_CHECK(pipeline_size > 0 && replicas > 0 && world_rank >= 0 && world_rank < pipeline_size * replicas);
    if (order == RANK_ORDER_PIPELINE_FIRST) {
        *replica = world_rank / pipeline_size;
        *pipeline_rank = world_rank % pipeline_size;
    } else {
        *pipeline_rank = world_rank / replicas;
        *replica = world_rank % replicas;
    }
}

int placement_node(const ClusterModel *c, int world_rank) {
    return c->gpus_per_node > 0 ? world_rank / c->gpus_per_node : 0;
}

int placement_nodes(const ClusterModel *c, int world_size) {
    return c->gpus_per_node > 0 ? (world_size + c->gpus_per_node - 1) / c->gpus_per_node : 1;
}

LinkClass placement_link_class(const ClusterModel *c, int world_a, int world_b) {
    if (world_a == world_b) return LINK_CLASS_LOCAL;
    return placement_node(c, world_a) == placement_node(c, world_b) ? LINK_CLASS_INTRA : LINK_CLASS_INTER;
}

LinkModel placement_nic_share(const ClusterModel *c, int sharers) {
    YP_CHECK(c->nics_per_node >= 1 && c->inter.bandwidth_bytes_per_s > 0);
    double bw = c->inter.bandwidth_bytes_per_s, pooled = c->nics_per_node * bw / (sharers > 0 ? sharers : 1);
    return (LinkModel){.latency_s = c->inter.latency_s, .bandwidth_bytes_per_s = pooled < bw ? pooled : bw};
}

PlacementLink placement_p2p_link(const ClusterModel *c, int pipeline_size, int replicas, int a, int b) {
    if (a == b) return (PlacementLink){.cls = LINK_CLASS_LOCAL, .sharers = 1};
    int world = pipeline_size * replicas, n_nodes = placement_nodes(c, world);
    int *leaving = yp_calloc((size_t)n_nodes, sizeof *leaving);
    int *entering = yp_calloc((size_t)n_nodes, sizeof *entering);
    int sharers = 0;
    for (int d = 0; d < replicas; d++) {
        int wa = placement_world_rank(c->rank_order, pipeline_size, replicas, a, d);
        int wb = placement_world_rank(c->rank_order, pipeline_size, replicas, b, d);
        if (placement_link_class(c, wa, wb) != LINK_CLASS_INTER) continue;
        int na = ++leaving[placement_node(c, wa)], nb = ++entering[placement_node(c, wb)];
        if (na > sharers) sharers = na;
        if (nb > sharers) sharers = nb;
    }
    free(leaving);
    free(entering);
    if (sharers == 0) return (PlacementLink){.cls = LINK_CLASS_INTRA, .sharers = 1, .link = c->intra};
    return (PlacementLink){.cls = LINK_CLASS_INTER, .sharers = sharers, .link = placement_nic_share(c, sharers)};
}

void placement_replica_groups(const ClusterModel *c, int pipeline_size, int replicas, PlacementGroup *groups) {
    int world = pipeline_size * replicas, n_nodes = placement_nodes(c, world);
    int *members = yp_calloc((size_t)n_nodes * (size_t)pipeline_size, sizeof *members);  // [node * S + r]
    int *crossing = yp_calloc((size_t)n_nodes, sizeof *crossing);  // ranks of the node whose group spans nodes
    for (int w = 0; w < world; w++) {
        int r, d;
        placement_locate(c->rank_order, pipeline_size, replicas, w, &r, &d);
        members[placement_node(c, w) * pipeline_size + r]++;
    }
    for (int r = 0; r < pipeline_size; r++) {
        PlacementGroup *g = &groups[r];
        *g = (PlacementGroup){.n_members = replicas};
        for (int n = 0; n < n_nodes; n++) {
            int k = members[n * pipeline_size + r];
            if (k == 0) continue;
            g->n_nodes++;
            if (k > g->per_node) g->per_node = k;
        }
        if (g->n_nodes > 1)
            for (int n = 0; n < n_nodes; n++) crossing[n] += members[n * pipeline_size + r];
    }
    for (int r = 0; r < pipeline_size; r++) {
        if (groups[r].n_nodes < 2) continue;
        for (int n = 0; n < n_nodes; n++)
            if (members[n * pipeline_size + r] && crossing[n] > groups[r].nic_sharers)
                groups[r].nic_sharers = crossing[n];
    }
    free(members);
    free(crossing);
}

PlacementGroup placement_world_group(const ClusterModel *c, int world_size) {
    int n_nodes = placement_nodes(c, world_size);
    int per_node = c->gpus_per_node > 0 && c->gpus_per_node < world_size ? c->gpus_per_node : world_size;
    return (PlacementGroup){.n_members = world_size, .n_nodes = n_nodes, .per_node = per_node,
                            .nic_sharers = n_nodes > 1 ? per_node : 0};
}
