#include "framework/runtime/topology.h"

int topology_world_rank(const Topology *t, int pipeline_rank, int replica) {
    YP_CHECK(pipeline_rank >= 0 && pipeline_rank < t->pipeline_size && replica >= 0 && replica < t->replicas);
    if (t->order == RANK_ORDER_PIPELINE_FIRST) return replica * t->pipeline_size + pipeline_rank;
    return pipeline_rank * t->replicas + replica;
}

Topology topology_make(int world_rank, int pipeline_size, int replicas, RankOrder order) {
    YP_CHECK(pipeline_size > 0 && replicas > 0 && world_rank >= 0 && world_rank < pipeline_size * replicas);
    Topology t = {.world_rank = world_rank,
                  .world_size = pipeline_size * replicas,
                  .pipeline_size = pipeline_size,
                  .replicas = replicas,
                  .local_rank = world_rank,
                  .local_size = pipeline_size * replicas,
                  .order = order};
    if (order == RANK_ORDER_PIPELINE_FIRST) {
        t.replica = world_rank / pipeline_size;
        t.pipeline_rank = world_rank % pipeline_size;
    } else {
        t.pipeline_rank = world_rank / replicas;
        t.replica = world_rank % replicas;
    }
    return t;
}
