// How ranks that oversubscribe a node's cores slow each other down (ClusterModel.cores_per_node),
// for the simulator. A node holds copies of pipeline ranks (a replica's copy of rank r computes when
// r does); a pipeline rank computes at the rate of its slowest copy.
//
// Two models, by ClusterModel.threads_per_rank:
//   - one thread per rank: the OS runs a computing rank on one core until it stops (time slices on
//     per-core run queues), not an even share of all cores. A rank that starts computing takes an
//     idle core, or else joins the core with the fewest ranks; ranks on one core share it equally.
//     When a core falls idle it takes the rank that joined last from the busiest core (that is how
//     Linux balances: three ranks on two cores run at 1, 1/2 and 1/2 until one of them stops, not at
//     2/3 each). A fractional cores_per_node c (the cores' worth, calibrated: shared caches and
//     memory make busy cores slower) gives ceil(c) cores, each at c / busy cores when more than c
//     are busy;
//   - several threads per rank (OpenMP teams spread over the cores): processor sharing, k ranks
//     computing at once with k x threads_per_rank > c each run at c / (k x threads_per_rank).
// Ranks that do not compute wait, polling the transport: while a core is idle their wakes land there
// and cost nothing; when none is, w waiting copies slow every busy core by wait_cost x w / cores
// (measured here: two computing ranks on two cores ran 1.25x slower beside two waiting ones).
#pragma once

#include <stdbool.h>

#include "partition/plan.h"

typedef struct CoreSharing CoreSharing;

// The nodes of `p` pipeline ranks x `replicas` placed by c (c->cores_per_node > 0).
CoreSharing *sharing_create(const ClusterModel *c, int p, int replicas);
void sharing_destroy(CoreSharing *s);

// The ranks computing now are computing[0..p): ranks that stopped leave their cores, idle cores take
// waiting ranks from busy ones, ranks that started are placed. Call it once the ranks' phases settle
// at an instant, before asking rates.
void sharing_update(CoreSharing *s, const bool *computing);

// The fraction of its profiled speed rank r computes at: where it is placed, or, when it is not (it
// starts now), where it would be placed.
double sharing_rate(const CoreSharing *s, int r, const bool *computing);
