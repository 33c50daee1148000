// Ranks sharing a node's cores (sharing.h has the two models).
#include "schedule/sharing.h"

#include <math.h>
#include <stdlib.h>

#include "framework/core/error.h"
#include "partition/placement.h"

// One distinct node: how many copies of each pipeline rank it holds and, with one thread per rank,
// which core each copy computes on.
typedef struct NodeCores {
    int *copies;      // (p) copies of each pipeline rank
    int n_instances;  // copies summed
    int *rank;        // (n_instances) the pipeline rank of each copy
    int *core;        // (n_instances) its core, -1 while it does not compute
    long *joined;     // (n_instances) when it joined its core (a sequence number)
    int *load;        // (n_cores) copies on each core
} NodeCores;

struct CoreSharing {
    int p;
    double worth;  // ClusterModel.cores_per_node
    int threads;   // ClusterModel.threads_per_rank
    double wait_cost;
    int n_cores;   // ceil(worth)
    int n_nodes;   // distinct ones
    NodeCores *nodes;
    long joins;
};

static double min_d(double a, double b) { return a < b ? a : b; }

// The node compositions that differ (copies of each pipeline rank per node).
static void sharing_nodes(CoreSharing *s, const ClusterModel *c, int replicas) {
    int p = s->p, world = p * replicas, n_nodes = placement_nodes(c, world);
    int *rows = yp_calloc((size_t)n_nodes * (size_t)p, sizeof *rows);
    for (int w = 0; w < world; w++) {
        int r, d;
        placement_locate(c->rank_order, p, replicas, w, &r, &d);
        rows[placement_node(c, w) * p + r]++;
    }
    s->nodes = yp_calloc((size_t)n_nodes, sizeof *s->nodes);
    for (int n = 0; n < n_nodes; n++) {
        const int *row = &rows[n * p];
        bool seen = false;
        for (int k = 0; k < s->n_nodes && !seen; k++) {
            seen = true;
            for (int r = 0; r < p && seen; r++) seen = s->nodes[k].copies[r] == row[r];
        }
        if (seen) continue;
        NodeCores *node = &s->nodes[s->n_nodes++];
        node->copies = yp_malloc((size_t)p * sizeof *node->copies);
        for (int r = 0; r < p; r++) node->n_instances += node->copies[r] = row[r];
        node->rank = yp_malloc((size_t)node->n_instances * sizeof *node->rank);
        node->core = yp_malloc((size_t)node->n_instances * sizeof *node->core);
        node->joined = yp_calloc((size_t)node->n_instances, sizeof *node->joined);
        node->load = yp_calloc((size_t)s->n_cores, sizeof *node->load);
        for (int r = 0, i = 0; r < p; r++)
            for (int k = 0; k < row[r]; k++, i++) node->rank[i] = r, node->core[i] = -1;
    }
    free(rows);
}

CoreSharing *sharing_create(const ClusterModel *c, int p, int replicas) {
    YP_CHECK(c->cores_per_node > 0 && c->threads_per_rank >= 1);
    CoreSharing *s = yp_calloc(1, sizeof *s);
    s->p = p;
    s->worth = c->cores_per_node;
    s->threads = c->threads_per_rank;
    s->wait_cost = c->wait_cost;
    s->n_cores = (int)ceil(c->cores_per_node);
    sharing_nodes(s, c, replicas);
    return s;
}

void sharing_destroy(CoreSharing *s) {
    if (!s) return;
    for (int k = 0; k < s->n_nodes; k++) {
        NodeCores *node = &s->nodes[k];
        free(node->copies);
        free(node->rank);
        free(node->core);
        free(node->joined);
        free(node->load);
    }
    free(s->nodes);
    free(s);
}

// The core with the fewest copies on it (the first of equals).
static int least_loaded(const CoreSharing *s, const NodeCores *node) {
    int best = 0;
    for (int q = 1; q < s->n_cores; q++)
        if (node->load[q] < node->load[best]) best = q;
    return best;
}

static void place(CoreSharing *s, NodeCores *node, int i, int core) {
    if (node->core[i] >= 0) node->load[node->core[i]]--;
    node->core[i] = core;
    node->load[core]++;
    node->joined[i] = ++s->joins;
}

// An idle core takes the copy that joined the busiest core last, while one has two or more.
static void rebalance(CoreSharing *s, NodeCores *node) {
    for (;;) {
        int idle = -1, busiest = 0;
        for (int q = 0; q < s->n_cores; q++) {
            if (node->load[q] == 0 && idle < 0) idle = q;
            if (node->load[q] > node->load[busiest]) busiest = q;
        }
        if (idle < 0 || node->load[busiest] < 2) return;
        int last = -1;
        for (int i = 0; i < node->n_instances; i++)
            if (node->core[i] == busiest && (last < 0 || node->joined[i] > node->joined[last])) last = i;
        place(s, node, last, idle);
    }
}

void sharing_update(CoreSharing *s, const bool *computing) {
    if (s->threads > 1) return;
    for (int k = 0; k < s->n_nodes; k++) {
        NodeCores *node = &s->nodes[k];
        for (int i = 0; i < node->n_instances; i++)
            if (node->core[i] >= 0 && !computing[node->rank[i]]) node->load[node->core[i]]--, node->core[i] = -1;
        rebalance(s, node);
        for (int i = 0; i < node->n_instances; i++)
            if (node->core[i] < 0 && computing[node->rank[i]]) place(s, node, i, least_loaded(s, node));
    }
}

// Each busy core's speed when `busy` of them compute (the cores' worth shared out), times what the
// `waiting` copies' wakes leave of it when no core is idle for them.
static double core_speed(const CoreSharing *s, double busy, int waiting) {
    double speed = busy > s->worth ? s->worth / busy : 1.0;
    if (busy >= s->n_cores && waiting > 0) speed *= fmax(0.1, 1.0 - s->wait_cost * waiting / s->n_cores);
    return speed;
}

// Copies on the node of the ranks that do not compute (r counts as computing: it asks its rate).
static int waiting_copies(const CoreSharing *s, const NodeCores *node, int r, const bool *computing) {
    int w = 0;
    for (int q = 0; q < s->p; q++) w += computing[q] || q == r ? 0 : node->copies[q];
    return w;
}

static double queue_rate(const CoreSharing *s, const NodeCores *node, int r, const bool *computing) {
    int busy = 0, waiting = waiting_copies(s, node, r, computing);
    for (int q = 0; q < s->n_cores; q++) busy += node->load[q] > 0;
    double rate = 1.0;
    for (int i = 0; i < node->n_instances; i++) {
        if (node->rank[i] != r) continue;
        int core = node->core[i], sharing = core >= 0 ? node->load[core] : 0, cores = busy;
        if (core < 0) {  // where it would go
            core = least_loaded(s, node);
            sharing = node->load[core] + 1;
            cores += node->load[core] == 0;
        }
        rate = min_d(rate, core_speed(s, cores, waiting) / sharing);
    }
    return rate;
}

// Processor sharing: the computing copies' threads spread evenly over the cores.
static double processor_sharing_rate(const CoreSharing *s, const NodeCores *node, int r, const bool *computing) {
    int busy = 0;
    for (int q = 0; q < s->p; q++) busy += computing[q] || q == r ? node->copies[q] : 0;
    return core_speed(s, (double)busy * s->threads, waiting_copies(s, node, r, computing));
}

double sharing_rate(const CoreSharing *s, int r, const bool *computing) {
    double rate = 1.0;
    for (int k = 0; k < s->n_nodes; k++) {
        const NodeCores *node = &s->nodes[k];
        if (!node->copies[r]) continue;
        rate = min_d(rate, s->threads > 1 ? processor_sharing_rate(s, node, r, computing)
                                          : queue_rate(s, node, r, computing));
    }
    return rate;
}
