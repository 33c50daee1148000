#include "framework/runtime/topology.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "partition/placement.h"

int topology_world_rank(const Topology *t, int pipeline_rank, int replica) {
    return placement_world_rank(t->order, t->pipeline_size, t->replicas, pipeline_rank, replica);
}

void topology_own_host(char host[TOPOLOGY_HOST_BYTES]) {
    memset(host, 0, TOPOLOGY_HOST_BYTES);
    if (gethostname(host, TOPOLOGY_HOST_BYTES - 1) != 0 || !host[0]) snprintf(host, TOPOLOGY_HOST_BYTES, "?");
}

const char *topology_host(const Topology *t, int world_rank) {
    YP_CHECK(world_rank >= 0 && world_rank < t->world_size);
    return t->hosts ? t->hosts + (size_t)world_rank * TOPOLOGY_HOST_BYTES : NULL;
}

char *topology_describe_peer(const Topology *t, int pipeline_rank, char *buf, size_t n) {
    int w = topology_world_rank(t, pipeline_rank, t->replica);
    const char *host = topology_host(t, w);
    snprintf(buf, n, "pipeline rank %d (world rank %d%s%s)", pipeline_rank, w, host ? " on " : "", host ? host : "");
    return buf;
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
