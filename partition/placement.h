// Where ranks sit (DESIGN.md "Cluster model"): world rank <-> (pipeline rank, replica) under
// parallel.rank_order, the node of a rank, the link class of a pair of ranks, and the shapes of the
// groups that collectives run over. Pure arithmetic on a ClusterModel (partition/plan.h); the
// runtime's topology (framework/runtime/topology.c) uses the same mapping.
//
// Rank orders, for S ranks per pipeline and D replicas:
//   pipeline-first: world rank = replica x S + pipeline_rank (a pipeline's ranks are consecutive);
//   replica-first:  world rank = pipeline_rank x D + replica (a stage's replicas are consecutive).
// Node of world rank w: w / gpus_per_node (0 for every rank when gpus_per_node is 0).
#pragma once

#include "partition/plan.h"

typedef enum LinkClass {
    LINK_CLASS_LOCAL,  // the same rank: a hand-over, free
    LINK_CLASS_INTRA,  // two ranks of one node
    LINK_CLASS_INTER,  // two nodes, through their NICs
    LINK_CLASS_COUNT
} LinkClass;

int placement_world_rank(RankOrder order, int pipeline_size, int replicas, int pipeline_rank, int replica);
void placement_locate(RankOrder order, int pipeline_size, int replicas, int world_rank, int *pipeline_rank,
                      int *replica);

int placement_node(const ClusterModel *c, int world_rank);
// Nodes that a world of world_size ranks fills (1 when gpus_per_node is 0).
int placement_nodes(const ClusterModel *c, int world_size);
LinkClass placement_link_class(const ClusterModel *c, int world_a, int world_b);

// What one of `sharers` flows leaving (or entering) a node at once gets of its NICs:
// min(inter bandwidth, nics_per_node x inter bandwidth / sharers), at the inter latency.
LinkModel placement_nic_share(const ClusterModel *c, int sharers);

// The point-to-point link from pipeline rank a to pipeline rank b as the simulated pipeline sees
// it. Every replica runs the same transfer at the same moment; the pair's class is the slowest that
// any replica's pair has (the step waits for the slowest replica). Across nodes, the replicas' copies
// of this transfer that leave one node (or enter one) at once share its nics_per_node NICs: each gets
// min(inter bandwidth, nics_per_node x inter bandwidth / sharers), sharers counted on the busiest
// node. Transfers of other pairs are not counted (they run at other moments of the schedule).
typedef struct PlacementLink {
    LinkClass cls;
    int sharers;     // copies of the transfer on the busiest node's NICs (INTER), else 1
    LinkModel link;  // what one message sees: intra, or inter at its share of the NICs
} PlacementLink;
PlacementLink placement_p2p_link(const ClusterModel *c, int pipeline_size, int replicas, int a, int b);

// The shape of a group that a collective runs over.
typedef struct PlacementGroup {
    int n_members;
    int n_nodes;      // nodes holding members
    int per_node;     // the most members on one node
    int nic_sharers;  // the most ranks on one of those nodes that send across nodes in collectives
                      // of the same kind at once (>= per_node when n_nodes > 1, else 0)
} PlacementGroup;

// Each pipeline rank's data-parallel group (its D replicas), into groups[0 .. pipeline_size). The
// gradient all-reduces of the stages overlap at the end of a step, so every rank of a node whose
// own group spans nodes counts as a NIC sharer (exact with one stage, an upper bound otherwise).
void placement_replica_groups(const ClusterModel *c, int pipeline_size, int replicas, PlacementGroup *groups);
// The group of every rank (the per-batch loss all-reduce).
PlacementGroup placement_world_group(const ClusterModel *c, int world_size);
