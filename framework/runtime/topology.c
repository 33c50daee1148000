#include "framework/runtime/topology.h"

#include "partition/placement.h"

int topology_world_rank(const Topology *t, int pipeline_rank, int replica) {
    return placement_world_rank(t->order, t->pipeline_size, t->replicas, pipeline_rank, replica);
}

Topology topology_make(int world_rank, int pipeline_size, int replicas, RankOrder order) {
    Topology t = {.world_rank = world_rank,
                  .world_size = pipeline_size * replicas,
                  .pipeline_size = pipeline_size,
                  .replicas = replicas,
                  .local_rank = world_rank,
                  .local_size = pipeline_size * replicas,
                  .order = order};
    placement_locate(order, pipeline_size, replicas, world_rank, &t.pipeline_rank, &t.replica);
    return t;
}
