// Test helpers shared by the transport tests (tests/unit/test_transport.c for MPI,
// tests/device/test_transport_nccl.c for NCCL): the world size and the rank map from DESIGN.md /
// topology.h, written out again so that the tests check the topology against an independent copy.
#pragma once

#include <mpi.h>

#include "framework/transport.h"

static inline int world_size(void) {
    int n = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

static inline int rank_of(ConfigRankOrder order, int pipeline_size, int replicas, int pipeline_rank, int replica) {
    return order == CONFIG_RANK_ORDER_PIPELINE_FIRST ? replica * pipeline_size + pipeline_rank
                                                     : pipeline_rank * replicas + replica;
}

// The world rank of member `index` of this rank's group.
static inline int group_world_rank(const Transport *t, TransportGroup group, int index) {
    const Topology *p = &t->topo;
    if (group == TRANSPORT_WORLD) return index;
    if (group == TRANSPORT_PIPELINE) return rank_of(p->order, p->pipeline_size, p->replicas, index, p->replica);
    return rank_of(p->order, p->pipeline_size, p->replicas, p->pipeline_rank, index);
}

static inline int group_size(const Transport *t, TransportGroup group) {
    const Topology *p = &t->topo;
    return group == TRANSPORT_WORLD ? p->world_size : group == TRANSPORT_PIPELINE ? p->pipeline_size : p->replicas;
}
