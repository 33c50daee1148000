// Where a rank sits in the job: S ranks per pipeline x D replicas = world size (DESIGN.md "Plan").
//
// Two rank orders (parallel.rank_order; the arithmetic is partition/placement.h's), so that the busiest
// links stay inside a node:
//   pipeline-first: world rank = replica * pipeline_size + pipeline_rank (a pipeline's ranks are consecutive);
//   replica-first:  world rank = pipeline_rank * replicas + replica (a stage's replicas are consecutive).
// The transport fills a Topology from MPI (framework/runtime/transport.h); topology_make is the pure part.
#pragma once

#include "framework/core/error.h"
#include "partition/plan.h"  // RankOrder

typedef struct Topology {
    int world_rank, world_size;
    int pipeline_size;           // ranks per pipeline (parallel.stages)
    int replicas;                // parallel.replicas; world_size == pipeline_size * replicas
    int pipeline_rank;           // this rank's position in its pipeline, [0, pipeline_size)
    int replica;                 // this rank's replica, [0, replicas)
    int local_rank, local_size;  // among the ranks on this node (for GPU binding)
    RankOrder order;
} Topology;

// The world rank of the rank at `pipeline_rank` in `replica`.
int topology_world_rank(const Topology *t, int pipeline_rank, int replica);

// The topology of `world_rank` in a world of pipeline_size * replicas ranks, with the node-local
// fields set as if every rank were on one node (local_rank = world_rank); the transport overwrites
// them with what MPI reports.
Topology topology_make(int world_rank, int pipeline_size, int replicas, RankOrder order);
