// Test helpers shared by the transport tests (tests/unit/test_transport.c for MPI,
// tests/device/test_transport_nccl.c for NCCL): the world size, the rank map from DESIGN.md /
// topology.h written out again (so that the tests check the topology against an independent copy),
// and the checks of the host-memory collectives, which every transport must pass alike.
// Include after cmocka.h.
#pragma once

#include <mpi.h>
#include <stdlib.h>

#include "framework/runtime/transport.h"

static inline int world_size(void) {
    int n = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

static inline int rank_of(RankOrder order, int pipeline_size, int replicas, int pipeline_rank, int replica) {
    return order == RANK_ORDER_PIPELINE_FIRST ? replica * pipeline_size + pipeline_rank
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

// Broadcast from the last member of every group, then a barrier in it.
static inline void transport_check_broadcast_barrier(Transport *t) {
    for (int group = 0; group < TRANSPORT_GROUP_COUNT; group++) {
        int root = group_size(t, (TransportGroup)group) - 1;
        int value[3] = {t->topo.world_rank, -1, 7};
        t->ops->broadcast(t, value, sizeof value, root, (TransportGroup)group);
        assert_int_equal(value[0], group_world_rank(t, (TransportGroup)group, root));
        assert_int_equal(value[1], -1);
        assert_int_equal(value[2], 7);
        t->ops->barrier(t, (TransportGroup)group);
    }
}

// World rank w sends 3 w bytes (none from rank 0), byte k being (7 w + k) mod 256.
static inline void transport_check_gather(Transport *t) {
    const Topology *p = &t->topo;
    size_t n = 3 * (size_t)p->world_rank;
    unsigned char *mine = malloc(n + 1);
    for (size_t k = 0; k < n; k++) mine[k] = (unsigned char)(7 * p->world_rank + (int)k);
    void *all = (void *)1;
    size_t sizes[8];
    assert_true(p->world_size <= 8);
    t->ops->gather_bytes(t, mine, n, &all, p->world_rank == 0 ? sizes : NULL);
    if (p->world_rank != 0) {
        assert_null(all);
    } else {
        const unsigned char *at = all;
        for (int w = 0; w < p->world_size; w++) {
            assert_int_equal(sizes[w], 3 * (size_t)w);
            for (size_t k = 0; k < sizes[w]; k++) assert_int_equal(*at++, (unsigned char)(7 * w + (int)k));
        }
        free(all);
    }
    free(mine);
}
