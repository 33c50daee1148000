#include "partition/partition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Who reads whom, and per stage boundary b (a stage starting at layer b, 0 <= b <= n) the
// producers before b whose output is still read at or after b: the tensors that cross b.
typedef struct Topology {
    int n;                  // layers
    bool *reads;            // n x n: reads[c * n + p] = layer c reads layer p's output
    int *n_live;            // n + 1 entries
    int *live;              // (n + 1) x n: live[b * n + i] = i-th producer crossing b, increasing
    int *live_pos;          // (n + 1) x n: live_pos[b * n + p] = i when live[b * n + i] = p, else -1
} Topology;

typedef struct Partitioner {
    const Graph *g;
    const CostModel *cost;
    const PartitionOptions *opt;
    int n_stages;
    int64_t stage_cap;  // memory cap of one stage; 0: none
    Topology topo;
    int *n_msgs;        // scratch, n entries (see stage_time)
    int *sig;           // scratch, n entries (a signature of the dynamic program)
} Partitioner;

static void topology_build(Topology *t, const Graph *g) {
    int n = t->n = g->n_layers;
    t->reads = yp_calloc((size_t)n * (size_t)n, sizeof *t->reads);
    for (int c = 0; c < n; c++) {
        const Layer *l = &g->layers[c];
        for (int k = 0; k < l->n_in; k++) {
            int p = l->in_index[k];
            // Only layer 0 reads the network input (model_spec_load's rule), so stage 0 loads it.
            YP_CHECK(p < c && (p >= 0 || c == 0));
            if (p >= 0) t->reads[c * n + p] = true;
        }
    }
    t->n_live = yp_calloc((size_t)n + 1, sizeof *t->n_live);
    t->live = yp_calloc((size_t)(n + 1) * (size_t)n, sizeof *t->live);
    t->live_pos = yp_malloc((size_t)(n + 1) * (size_t)n * sizeof *t->live_pos);
    for (int b = 0; b <= n; b++) {
        for (int p = 0; p < n; p++) {
            t->live_pos[b * n + p] = -1;
            bool crosses = false;
            for (int c = b; p < b && c < n && !crosses; c++) crosses = t->reads[c * n + p];
            if (crosses) {
                t->live_pos[b * n + p] = t->n_live[b];
                t->live[b * n + t->n_live[b]++] = p;
            }
        }
    }
}

static void topology_destroy(Topology *t) {
    free(t->reads);
    free(t->n_live);
    free(t->live);
    free(t->live_pos);
}

// Whether any layer in [first, last] reads layer p.
static bool topology_read_in(const Topology *t, int p, int first, int last) {
    for (int c = first; c <= last; c++)
        if (t->reads[c * t->n + p]) return true;
    return false;
}

// One message of layer p's output over the link.
static double message_s(const Partitioner *pt, int p) {
    const LinkModel *link = &pt->opt->link;
    return link->latency_s + (double)pt->cost->layers[p].output_bytes / link->bandwidth_bytes_per_s;
}

// The stage [first, last]'s time per micro-batch: compute, then n_msgs[p] transfers of layer p's
// output (received or sent), each an activation forward and a gradient backward. The dynamic
// program and the evaluation of a finished partition both call this with the same counts, summed
// in the same order, so that their results agree to the bit.
static double stage_time(const Partitioner *pt, int first, int last, const int *n_msgs) {
    double t = 0.0;
    for (int l = first; l <= last; l++) {
        const LayerCost *c = &pt->cost->layers[l];
        t += c->fwd_s + c->bwd_input_s + c->bwd_weight_s;
    }
    for (int p = 0; p < pt->topo.n; p++)
        if (n_msgs[p]) t += (double)n_msgs[p] * 2.0 * message_s(pt, p);
    return t;
}

// Activations the stage keeps per micro-batch: its layers' own and the cut tensors it receives.
static int64_t stage_activation_bytes(const Partitioner *pt, int first, int last) {
    int64_t bytes = 0;
    for (int l = first; l <= last; l++) bytes += pt->cost->layers[l].activation_bytes;
    for (int p = 0; p < first; p++)
        if (topology_read_in(&pt->topo, p, first, last)) bytes += pt->cost->layers[p].output_bytes;
    return bytes;
}

static int stage_in_flight(const Partitioner *pt, int stage) {
    const PartitionOptions *o = pt->opt;
    int n = o->in_flight ? o->in_flight[stage] : o->micro_batches;
    YP_CHECK(n >= 1);
    return n;
}

static int64_t stage_memory_bytes(const Partitioner *pt, int stage, int first, int last) {
    int64_t params = 0;
    for (int l = first; l <= last; l++) params += pt->cost->layers[l].param_bytes;
    int64_t kept = stage_activation_bytes(pt, first, last) + (first == 0 ? pt->cost->input_bytes : 0);
    return PARTITION_PARAM_COPIES * params + stage_in_flight(pt, stage) * kept;
}

static bool stage_fits(const Partitioner *pt, int stage, int first, int last) {
    return !pt->stage_cap || stage_memory_bytes(pt, stage, first, last) <= pt->stage_cap;
}

static double mib(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

// "the memory cap of 8.0 MiB per device", or its per-stage share with several chunks per device.
static void cap_describe(const Partitioner *pt, char *buf, size_t cap) {
    if (pt->opt->chunks == 1)
        snprintf(buf, cap, "the memory cap of %.1f MiB per device", mib(pt->opt->memory_cap_bytes));
    else
        snprintf(buf, cap, "its share of the memory cap, %.1f MiB of %.1f MiB per device for %d chunks",
                 mib(pt->stage_cap), mib(pt->opt->memory_cap_bytes), pt->opt->chunks);
}

// ---- the dynamic program -------------------------------------------------------------------------
//
// Cell (k, b): stages k..S-1 cover layers [b, n). A partition of that suffix fixes, for every tensor
// crossing b, to how many of those stages it is sent: its signature, which is all that stages
// before b need to know of the suffix. A cell keeps, per signature, the least slowest-stage time
// over the suffix partitions with that signature; the answer is cell (0, 0), whose signature is
// empty. Signatures stay few: only the handful of skip connections cross a boundary.

typedef struct DpEntry {
    int sig;       // offset of the signature (n_live[b] counts) in the pool
    double value;  // slowest stage among k..S-1
    int last;      // stage k's last layer
    int next;      // the entry of cell (k + 1, last + 1) this one extends; -1 for the last stage
} DpEntry;

typedef struct DpCell {
    int n, cap;
    DpEntry *entries;
} DpCell;

typedef struct Dp {
    DpCell *cells;  // n_stages x (n + 1)
    int *pool;
    int pool_n, pool_cap;
} Dp;

static DpCell *dp_cell(const Partitioner *pt, Dp *dp, int stage, int b) {
    return &dp->cells[stage * (pt->topo.n + 1) + b];
}

// Keeps (sig, value) in the cell unless an entry with the same signature is at least as good.
static void dp_offer(Dp *dp, DpCell *cell, int sig_len, const int *sig, DpEntry e) {
    for (int i = 0; i < cell->n; i++) {
        DpEntry *old = &cell->entries[i];
        if (memcmp(&dp->pool[old->sig], sig, (size_t)sig_len * sizeof *sig)) continue;
        if (e.value < old->value) {
            e.sig = old->sig;
            *old = e;
        }
        return;
    }
    if (dp->pool_n + sig_len > dp->pool_cap) {
        dp->pool_cap = 2 * (dp->pool_n + sig_len) + 64;
        dp->pool = yp_realloc(dp->pool, (size_t)dp->pool_cap * sizeof *dp->pool);
    }
    if (sig_len) memcpy(&dp->pool[dp->pool_n], sig, (size_t)sig_len * sizeof *sig);
    e.sig = dp->pool_n;
    dp->pool_n += sig_len;
    if (cell->n == cell->cap) {
        cell->cap = 2 * cell->cap + 4;
        cell->entries = yp_realloc(cell->entries, (size_t)cell->cap * sizeof *cell->entries);
    }
    cell->entries[cell->n++] = e;
}

// Stage `stage` = [b, last] followed by suffix entry `next` of cell (stage + 1, last + 1) (NULL for
// the last stage): prices the stage and offers the combination to cell (stage, b).
static void dp_extend(Partitioner *pt, Dp *dp, int stage, int b, int last, const DpEntry *next, int next_index) {
    const Topology *t = &pt->topo;
    int n = t->n;
    const int *next_sig = next ? &dp->pool[next->sig] : NULL;
    const int *next_pos = &t->live_pos[(last + 1) * n];
    int *msgs = pt->n_msgs, *sig = pt->sig;
    memset(msgs, 0, (size_t)n * sizeof *msgs);
    for (int i = 0; i < t->n_live[b]; i++) {
        int p = t->live[b * n + i];
        msgs[p] = topology_read_in(t, p, b, last);
        sig[i] = msgs[p] + (next_pos[p] >= 0 ? next_sig[next_pos[p]] : 0);
    }
    for (int p = b; p <= last; p++)
        if (next_pos[p] >= 0) msgs[p] = next_sig[next_pos[p]];
    double t_stage = stage_time(pt, b, last, msgs);
    double value = next && next->value > t_stage ? next->value : t_stage;
    dp_offer(dp, dp_cell(pt, dp, stage, b), t->n_live[b], sig,
             (DpEntry){.value = value, .last = last, .next = next_index});
}

// Runs the dynamic program; on success writes each stage's first layer. False when no partition
// satisfies the memory cap.
static bool dp_solve(Partitioner *pt, int *first_layers, double *slowest_s) {
    int n = pt->topo.n, S = pt->n_stages;
    Dp dp = {.cells = yp_calloc((size_t)S * (size_t)(n + 1), sizeof *dp.cells)};
    for (int k = S - 1; k >= 0; k--) {
        // Stage k starts after k layers at least and leaves one layer to each later stage.
        for (int b = k, b_max = k == 0 ? 0 : n - (S - k); b <= b_max; b++) {
            int last_max = n - (S - k);
            for (int last = k == S - 1 ? n - 1 : b; last <= last_max; last++) {
                if (!stage_fits(pt, k, b, last)) continue;
                if (k == S - 1) {
                    dp_extend(pt, &dp, k, b, last, NULL, -1);
                    continue;
                }
                const DpCell *next = dp_cell(pt, &dp, k + 1, last + 1);
                for (int i = 0; i < next->n; i++) dp_extend(pt, &dp, k, b, last, &next->entries[i], i);
            }
        }
    }
    const DpCell *root = dp_cell(pt, &dp, 0, 0);
    bool found = root->n > 0;
    if (found) {
        YP_CHECK(root->n == 1);  // nothing crosses boundary 0
        const DpEntry *e = &root->entries[0];
        *slowest_s = e->value;
        first_layers[0] = 0;
        for (int k = 1; k < S; k++) {
            first_layers[k] = e->last + 1;
            e = &dp_cell(pt, &dp, k, e->last + 1)->entries[e->next];
        }
    }
    for (int i = 0; i < S * (n + 1); i++) free(dp.cells[i].entries);
    free(dp.cells);
    free(dp.pool);
    return found;
}

// When nothing fits the cap: the partition whose largest stage memory is least (a plain dynamic
// program: memory does not depend on where tensors are sent), to say how far off the cap is.
static bool memory_error(const Partitioner *pt, Error *err) {
    int n = pt->topo.n, S = pt->n_stages;
    int64_t *best = yp_malloc((size_t)(S + 1) * (size_t)(n + 1) * sizeof *best);
    int *choice = yp_malloc((size_t)S * (size_t)(n + 1) * sizeof *choice);
    for (int i = 0; i < (S + 1) * (n + 1); i++) best[i] = INT64_MAX;
    best[S * (n + 1) + n] = 0;
    for (int k = S - 1; k >= 0; k--) {
        for (int b = k; b < n; b++) {
            if ((k == 0) != (b == 0)) continue;
            for (int last = b; last < n; last++) {
                int64_t rest = best[(k + 1) * (n + 1) + last + 1];
                if (rest == INT64_MAX) continue;
                int64_t m = stage_memory_bytes(pt, k, b, last);
                if (m < rest) m = rest;
                if (m < best[k * (n + 1) + b]) best[k * (n + 1) + b] = m, choice[k * (n + 1) + b] = last;
            }
        }
    }
    YP_CHECK(best[0] != INT64_MAX);  // the stage count was checked
    int worst = 0, worst_first = 0, worst_last = 0;
    int64_t worst_bytes = -1;
    for (int k = 0, b = 0; k < S; k++) {
        int last = choice[k * (n + 1) + b];
        int64_t m = stage_memory_bytes(pt, k, b, last);
        if (m > worst_bytes) worst_bytes = m, worst = k, worst_first = b, worst_last = last;
        b = last + 1;
    }
    free(best);
    free(choice);
    char cap[160];
    cap_describe(pt, cap, sizeof cap);
    error_set(err, "no partition into %d stages fits %s: at best stage %d (layers %d-%d) needs %.1f MiB", S, cap,
              worst, worst_first, worst_last, mib(worst_bytes));
    err->code = ERROR_CODE_NO_FIT;
    return false;
}

// ---- manual partitions ---------------------------------------------------------------------------

static bool ranges_to_firsts(const Partitioner *pt, int *first_layers, Error *err) {
    int n = pt->topo.n, S = pt->n_stages;
    const int64_t(*r)[2] = pt->opt->ranges;
    int64_t expected = 0;
    for (int k = 0; k < S; k++) {
        char problem[64] = "";
        if (r[k][0] != expected) snprintf(problem, sizeof problem, "which should start at layer %lld", (long long)expected);
        else if (r[k][1] < r[k][0]) snprintf(problem, sizeof problem, "which is empty");
        else if (r[k][1] >= n) snprintf(problem, sizeof problem, "which goes past the last layer");
        if (problem[0])
            return error_set(err, "partition ranges must cover layers 0-%d exactly, in order: stage %d is [%lld, %lld], %s",
                             n - 1, k, (long long)r[k][0], (long long)r[k][1], problem);
        first_layers[k] = (int)r[k][0];
        expected = r[k][1] + 1;
    }
    if (expected != n)
        return error_set(err, "partition ranges must cover layers 0-%d exactly, in order: the last stage ends at layer %lld",
                         n - 1, (long long)(expected - 1));
    return true;
}

static bool balance_to_firsts(const Partitioner *pt, int *first_layers, Error *err) {
    int n = pt->topo.n, S = pt->n_stages;
    const int64_t *bal = pt->opt->balance;
    int64_t sum = 0;
    for (int k = 0; k < S; k++) {
        if (bal[k] < 1)
            return error_set(err, "partition balance entry %d is %lld: every stage needs at least one layer", k,
                             (long long)bal[k]);
        sum += bal[k];
    }
    if (sum != n) return error_set(err, "partition balance must sum to the model's %d layers, found %lld", n, (long long)sum);
    for (int k = 0, first = 0; k < S; k++) {
        first_layers[k] = first;
        first += (int)bal[k];
    }
    return true;
}

// ---- the plan from a partition -------------------------------------------------------------------

static int stage_last(const Partitioner *pt, const int *first_layers, int k) {
    return k + 1 < pt->n_stages ? first_layers[k + 1] - 1 : pt->topo.n - 1;
}

// Stage k's gradient buckets, appended to plan->buckets (the rule in partition.h).
static void stage_buckets(const Partitioner *pt, PipelinePlan *plan, int k) {
    PlanStage *st = &plan->stages[k];
    st->first_bucket = plan->n_buckets;
    int64_t offset = st->param_bytes, unbucketed_end = st->param_bytes;  // bytes into the stage's gradients
    double done_s = 0;
    for (int l = st->last_layer; l >= st->first_layer; l--) {
        const LayerCost *c = &pt->cost->layers[l];
        done_s += c->bwd_input_s + c->bwd_weight_s;
        offset -= c->param_bytes;
        if (unbucketed_end - offset < (int64_t)PLAN_REDUCE_BUCKET_ELEMS * (int64_t)sizeof(float)) continue;
        plan->buckets = yp_realloc(plan->buckets, (size_t)(plan->n_buckets + 1) * sizeof *plan->buckets);
        plan->buckets[plan->n_buckets++] =
            (PlanBucket){.stage = k, .bytes = unbucketed_end - offset, .ready_s = done_s};
        unbucketed_end = offset;
    }
    st->n_buckets = plan->n_buckets - st->first_bucket;
}

// Fills the plan and report for a partition of the layers; fails only on the memory cap.
static bool partition_fill(Partitioner *pt, const int *first_layers, PipelinePlan *plan, PartitionReport *report,
                           Error *err) {
    const Topology *t = &pt->topo;
    const PartitionOptions *o = pt->opt;
    int n = t->n, S = pt->n_stages;
    for (int k = 0; k < S; k++) {
        int first = first_layers[k], last = stage_last(pt, first_layers, k);
        if (stage_fits(pt, k, first, last)) continue;
        char cap[160];
        cap_describe(pt, cap, sizeof cap);
        error_set(err, "stage %d (layers %d-%d) needs %.1f MiB, over %s", k, first, last,
                  mib(stage_memory_bytes(pt, k, first, last)), cap);
        err->code = ERROR_CODE_NO_FIT;
        return false;
    }
    int *stage_of = yp_malloc((size_t)n * sizeof *stage_of);
    for (int k = 0; k < S; k++)
        for (int l = first_layers[k]; l <= stage_last(pt, first_layers, k); l++) stage_of[l] = k;

    *plan = (PipelinePlan){.n_stages = S, .n_ranks = o->n_ranks, .chunks = o->chunks, .replicas = o->replicas,
                           .micro_batches = o->micro_batches, .micro_batch_images = pt->cost->micro_batch,
                           .cluster = o->cluster};
    *report = (PartitionReport){.n_stages = S};
    // Cuts in (from_stage, layer, to_stage) order: producers in layer order are in stage order.
    for (int p = 0; p < n; p++) {
        for (int to = stage_of[p] + 1; to < S; to++) {
            if (!topology_read_in(t, p, first_layers[to], stage_last(pt, first_layers, to))) continue;
            plan->cuts = yp_realloc(plan->cuts, (size_t)(plan->n_cuts + 1) * sizeof *plan->cuts);
            plan->cuts[plan->n_cuts] = (PlanCut){.id = plan->n_cuts, .layer = p, .from_stage = stage_of[p],
                                                 .to_stage = to, .bytes = pt->cost->layers[p].output_bytes};
            plan->n_cuts++;
        }
    }
    double slowest = -1.0;
    for (int k = 0; k < S; k++) {
        int first = first_layers[k], last = stage_last(pt, first_layers, k);
        PlanStage *st = &plan->stages[k];
        PartitionStageReport *r = &report->stages[k];
        *st = (PlanStage){.first_layer = first, .last_layer = last, .input_bytes = first == 0 ? pt->cost->input_bytes : 0,
                          .activation_bytes = stage_activation_bytes(pt, first, last),
                          .fwd_first_layer_s = pt->cost->layers[first].fwd_s,
                          .bwd_first_layer_input_s = pt->cost->layers[last].bwd_input_s,
                          .bwd_first_layer_weight_s = pt->cost->layers[last].bwd_weight_s};
        *r = (PartitionStageReport){.first_layer = first, .last_layer = last, .activation_bytes = st->activation_bytes,
                                    .in_flight = stage_in_flight(pt, k),
                                    .memory_bytes = stage_memory_bytes(pt, k, first, last)};
        for (int l = first; l <= last; l++) {
            const LayerCost *c = &pt->cost->layers[l];
            st->fwd_s += c->fwd_s;
            st->bwd_input_s += c->bwd_input_s;
            st->bwd_weight_s += c->bwd_weight_s;
            st->param_bytes += c->param_bytes;
            st->buffer_bytes += c->buffer_bytes;
            r->params += pt->g->layers[l].n_params;
            r->gflops += c->flops / 1e9;
            r->compute_s += c->fwd_s + c->bwd_input_s + c->bwd_weight_s;
        }
        memset(pt->n_msgs, 0, (size_t)n * sizeof *pt->n_msgs);
        for (int i = 0; i < plan->n_cuts; i++) {
            const PlanCut *cut = &plan->cuts[i];
            if (cut->from_stage != k && cut->to_stage != k) continue;
            pt->n_msgs[cut->layer]++;
            r->link_s += 2.0 * message_s(pt, cut->layer);
            if (cut->to_stage == k) r->recv_bytes += cut->bytes;
            else r->send_bytes += cut->bytes;
        }
        stage_buckets(pt, plan, k);
        r->time_s = stage_time(pt, first, last, pt->n_msgs);
        if (r->time_s > slowest) slowest = r->time_s, report->slowest_stage = k;
    }
    free(stage_of);
    return true;
}

bool partition_create(const Graph *g, const CostModel *cost, const PartitionOptions *opt, PipelinePlan *plan,
                      PartitionReport *report, Error *err) {
    *plan = (PipelinePlan){0};
    int n = g->n_layers, S = opt->n_ranks * opt->chunks;
    YP_CHECK(cost->n_layers == n && opt->n_ranks >= 1 && opt->chunks >= 1 && opt->micro_batches >= 1);
    YP_CHECK(opt->link.latency_s >= 0 && opt->link.bandwidth_bytes_per_s > 0 && opt->memory_cap_bytes >= 0);
    if (S > PLAN_MAX_STAGES)
        return error_set(err, "%d stages (stages x chunks) are more than a plan holds, %d", S, PLAN_MAX_STAGES);
    if (S > n) return error_set(err, "stage count larger than useful: %d layers cannot fill %d stages", n, S);

    Partitioner pt = {.g = g, .cost = cost, .opt = opt, .n_stages = S,
                      .stage_cap = opt->memory_cap_bytes / opt->chunks, .n_msgs = yp_calloc((size_t)n, sizeof(int)),
                      .sig = yp_calloc((size_t)n, sizeof(int))};
    topology_build(&pt.topo, g);
    int first_layers[PLAN_MAX_STAGES] = {0};
    bool ok = true;
    double dp_slowest = 0.0;
    switch (opt->kind) {
    case PARTITION_KIND_AUTO: ok = dp_solve(&pt, first_layers, &dp_slowest) || memory_error(&pt, err); break;
    case PARTITION_KIND_RANGES: ok = ranges_to_firsts(&pt, first_layers, err); break;
    case PARTITION_KIND_BALANCE: ok = balance_to_firsts(&pt, first_layers, err); break;
    case PARTITION_KIND_COUNT: yp_fatal("bad partition kind");
    }
    ok = ok && partition_fill(&pt, first_layers, plan, report, err);
    // The program and the plan price stages with the same function: they must agree exactly.
    if (ok && opt->kind == PARTITION_KIND_AUTO) YP_CHECK(report->stages[report->slowest_stage].time_s == dp_slowest);
    topology_destroy(&pt.topo);
    free(pt.n_msgs);
    free(pt.sig);
    if (!ok) partition_plan_clear(plan);
    return ok;
}

void partition_plan_clear(PipelinePlan *plan) {
    free(plan->cuts);
    free(plan->buckets);
    *plan = (PipelinePlan){0};
}
