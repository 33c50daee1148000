// Where a rank sits in the job: S ranks per pipeline x D replicas = world size (DESIGN.md "Plan").
//
// Two rank orders (parallel.rank_order; the arithmetic is partition/placement.h's), so that the busiest
// links stay inside a node:
//   pipeline-first: world rank = replica * pipeline_size + pipeline_rank (a pipeline's ranks are consecutive);
//   replica-first:  world rank = pipeline_rank * replicas + replica (a stage's replicas are consecutive).
// The transport fills a Topology from MPI (framework/runtime/transport.h); topology_make is the pure part.
#pragma once

#include <stddef.h>

#include "framework/core/error.h"
#include "partition/plan.h"  // RankOrder

enum { TOPOLOGY_HOST_BYTES = 64 };  // one host name and its NUL (Linux's HOST_NAME_MAX; longer names are cut)

typedef struct Topology {
    int world_rank, world_size;
    int pipeline_size;           // ranks per pipeline (parallel.stages)
    int replicas;                // parallel.replicas; world_size == pipeline_size * replicas
    int pipeline_rank;           // this rank's position in its pipeline, [0, pipeline_size)
    int replica;                 // this rank's replica, [0, replicas)
    int local_rank, local_size;  // among the ranks on this node (for GPU binding)
    RankOrder order;
    // Every world rank's host name (gethostname), world_size x TOPOLOGY_HOST_BYTES, each NUL-ended:
    // for messages that name a peer. Borrowed from the transport that filled the topology (valid until
    // it is destroyed); NULL where none is known (topology_make).
    const char *hosts;
} Topology;

// The world rank of the rank at `pipeline_rank` in `replica`.
int topology_world_rank(const Topology *t, int pipeline_rank, int replica);

// Writes this process's host name (gethostname, cut to fit; "?" when unknown) into host: what a
// transport puts in its topology's hosts.
void topology_own_host(char host[TOPOLOGY_HOST_BYTES]);

// World rank `world_rank`'s host name, or NULL when the topology knows none.
const char *topology_host(const Topology *t, int world_rank);

// How a message names a peer of this rank's pipeline: writes "pipeline rank P (world rank W on HOST)"
// (without " on HOST" when the host is unknown) into buf (n bytes, cut to fit) and returns buf.
char *topology_describe_peer(const Topology *t, int pipeline_rank, char *buf, size_t n);

// The topology of `world_rank` in a world of pipeline_size * replicas ranks, with the node-local
// fields set as if every rank were on one node (local_rank = world_rank); the transport overwrites
// them with what MPI reports, and no host names.
Topology topology_make(int world_rank, int pipeline_size, int replicas, RankOrder order);
