// sched_simulate: global-time discrete-event timing of validated programs (simulate.h has the model).
//
// Each rank is in one phase: RUN (its next instruction may start at ready_s), COMPUTE (a segment of
// work in progress: a pass between two bucket starts, a loss or an optimizer step), BLOCKED (on a
// receive whose message is not sent yet), BARRIER (at STEP, waiting for every rank) or DONE. The loop
// takes the earliest time at which something happens, finishes what ends then, lets every rank that
// can run do so until it starts a computation or waits, and recomputes the compute rates (they only
// change with shared cores).
#include <math.h>
#include <stdlib.h>

#include "partition/placement.h"
#include "schedule/sharing.h"
#include "schedule/simulate.h"

typedef struct Arrivals {  // one directed channel's messages, in send order
    double *arrive, *sent;  // arrival and send times
    int n, read;
} Arrivals;

typedef enum RankPhase { PHASE_RUN, PHASE_COMPUTE, PHASE_BLOCKED, PHASE_BARRIER, PHASE_DONE } RankPhase;
typedef enum Segment { SEGMENT_PASS, SEGMENT_LOSS, SEGMENT_OPTIMIZER, SEGMENT_LOAD } Segment;
// After the program: the optimizer, then the statistics average, then done.
typedef enum Epilogue { EPILOGUE_OPTIMIZER, EPILOGUE_STATISTICS, EPILOGUE_DONE } Epilogue;

typedef struct RankSim {
    int pc;                // next instruction (n_instrs: the program is done, the epilogue runs)
    RankPhase phase;
    double ready_s;        // RUN: when the next instruction may start
    // COMPUTE: work_s profiled seconds left at since_s, progressing at `rate`, ending at end_s.
    Segment segment;
    double work_s, since_s, rate, end_s;
    double segment_start_s;
    // The pass in progress: its profiled length, how much is done, its next bucket (bucketed passes).
    double pass_s, pass_done_s, segment_target_s;
    int next_bucket, last_bucket;  // [next_bucket, last_bucket) still to start
    double reduce_free_s;  // the reduce channel is free from then
    int64_t reduced_bytes[PLAN_MAX_STAGES];  // per chunk: started this step
    double step_reached_s;  // when it reached STEP (-1 before)
    Epilogue epilogue;
    double blocked_since_s;
    // The critical-path terms, as this rank lives them.
    double compute_s, loss_s, load_s, bubble_s, p2p_s, reduce_wait_s;
    bool loaded;           // inline loading (plan.load_s) done
    int64_t held;          // activation bytes held
} RankSim;

typedef struct Sim {
    const PipelinePlan *plan;
    const Schedule *s;
    SchedSim *out;
    int p;
    RankSim *ranks;
    Arrivals *channels;       // (p x p) [src * p + dst]
    double *link_free;        // (p x p)
    LinkModel *links;         // (p x p): what a message from src to dst sees
    PlacementGroup *groups;   // (p): each pipeline rank's data-parallel group
    int *last_weight;         // (p x chunks): index of each chunk's last weight pass in the program, or -1
    CoreSharing *sharing;     // ranks sharing cores (NULL: each has its own)
    bool *computing;          // (p) scratch: which ranks compute now
    int n_barrier;
    double optimizer_rate;    // seconds per parameter byte
    bool steps;               // the batch ends an accumulation: reduce, step, average the statistics
} Sim;

static double max_d(double a, double b) { return a > b ? a : b; }
static double min_d(double a, double b) { return a < b ? a : b; }

static double compute_s(const PlanStage *st, SchedOp op) {
    switch (op) {
    case SCHED_OP_FWD: return st->fwd_s;
    case SCHED_OP_BWD: return st->bwd_input_s + st->bwd_weight_s;
    case SCHED_OP_BWD_INPUT: return st->bwd_input_s;
    case SCHED_OP_BWD_WEIGHT: return st->bwd_weight_s;
    default: return 0.0;
    }
}

static bool op_computes(SchedOp op) {
    return op == SCHED_OP_FWD || op == SCHED_OP_BWD || op == SCHED_OP_BWD_INPUT || op == SCHED_OP_BWD_WEIGHT;
}

// ---- set-up ----------------------------------------------------------------------------------------

// Which ranks compute now, into x->computing.
static const bool *sim_computing(const Sim *x) {
    for (int r = 0; r < x->p; r++) x->computing[r] = x->ranks[r].phase == PHASE_COMPUTE;
    return x->computing;
}

// The rate rank r computes at now (or would, starting now).
static double sim_rate(const Sim *x, int r) {
    return x->sharing ? sharing_rate(x->sharing, r, sim_computing(x)) : 1.0;
}

// ---- compute segments ------------------------------------------------------------------------------

static void segment_start(Sim *x, int r, Segment kind, double work_s, double t) {
    RankSim *rk = &x->ranks[r];
    rk->phase = PHASE_COMPUTE;
    rk->segment = kind;
    rk->work_s = work_s;
    rk->since_s = rk->segment_start_s = t;
    rk->rate = sim_rate(x, r);
    rk->end_s = t + work_s / rk->rate;
}

static void sim_update_rates(Sim *x, double t) {
    if (!x->sharing) return;
    sharing_update(x->sharing, sim_computing(x));
    for (int r = 0; r < x->p; r++) {
        RankSim *rk = &x->ranks[r];
        if (rk->phase != PHASE_COMPUTE) continue;
        double rate = sim_rate(x, r);
        if (rate == rk->rate) continue;
        rk->work_s = max_d(0.0, rk->work_s - (t - rk->since_s) * rk->rate);
        rk->since_s = t;
        rk->rate = rate;
        rk->end_s = t + rk->work_s / rate;
    }
}

// Starts an all-reduce of `bytes` of stage `stage` on rank r's reduce channel at t.
static double sim_reduce(Sim *x, int r, int stage, int64_t bytes, double t) {
    if (x->plan->replicas == 1 || bytes <= 0 || !x->steps) return t;
    RankSim *rk = &x->ranks[r];
    CollectiveCost cost = collective_allreduce(&x->plan->cluster, &x->groups[r], bytes);
    SchedSim *o = x->out;
    double start = max_d(t, rk->reduce_free_s);
    rk->reduce_free_s = start + cost.time_s;
    rk->reduced_bytes[stage / x->p] += bytes;
    o->reductions = yp_realloc(o->reductions, (size_t)(o->n_reductions + 1) * sizeof *o->reductions);
    o->reductions[o->n_reductions++] = (SchedReduction){.rank = r, .stage = stage, .bytes = bytes,
                                                        .inter_algo = cost.inter_algo,
                                                        .span = {start, rk->reduce_free_s}};
    o->allreduce_bytes += cost.bytes_sent * x->plan->replicas;
    return start;
}

// The next piece of the pass in progress: up to its next bucket's start, or to its end.
static void pass_next_segment(Sim *x, int r, double t) {
    RankSim *rk = &x->ranks[r];
    double target = rk->pass_s;
    if (rk->next_bucket < rk->last_bucket) target = min_d(target, x->plan->buckets[rk->next_bucket].ready_s);
    rk->segment_target_s = target;
    segment_start(x, r, SEGMENT_PASS, target - rk->pass_done_s, t);
}

// The pass of the compute instruction at pc starts at t (after its loss, if any).
static void pass_begin(Sim *x, int r, double t) {
    RankSim *rk = &x->ranks[r];
    const SchedInstr *in = &x->s->programs[r].instrs[rk->pc];
    const PlanStage *st = &x->plan->stages[in->stage];
    x->out->spans[r][rk->pc] = (SchedSpan){t, t};
    if (in->op == SCHED_OP_FWD) {
        rk->held += st->activation_bytes;
        if (rk->held > x->out->peak_activation_bytes[r]) x->out->peak_activation_bytes[r] = rk->held;
    }
    rk->pass_s = compute_s(st, in->op);
    rk->pass_done_s = 0;
    // The executor buckets a chunk's last whole backward, when there are replicas to reduce over.
    bool bucketed = in->op == SCHED_OP_BWD && x->last_weight[r * x->plan->chunks + in->chunk] == rk->pc &&
                    x->plan->replicas > 1 && x->steps;
    rk->next_bucket = bucketed ? st->first_bucket : 0;
    rk->last_bucket = bucketed ? st->first_bucket + st->n_buckets : 0;
    pass_next_segment(x, r, t);
}

// The compute instruction at pc starts at t: on the last stage a backward first computes the loss.
static void instr_compute(Sim *x, int r, double t) {
    const SchedInstr *in = &x->s->programs[r].instrs[x->ranks[r].pc];
    bool loss = in->stage == x->plan->n_stages - 1 && (in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_INPUT);
    if (!loss || x->plan->loss_s <= 0) {
        pass_begin(x, r, t);
        return;
    }
    x->out->loss_spans[in->micro] = (SchedSpan){t, t};
    segment_start(x, r, SEGMENT_LOSS, x->plan->loss_s, t);
}

// The segment in progress on rank r ends at t.
static void segment_end(Sim *x, int r, double t) {
    RankSim *rk = &x->ranks[r];
    rk->phase = PHASE_RUN;
    rk->ready_s = t;
    if (rk->segment == SEGMENT_OPTIMIZER) {
        x->out->optimizer_spans[r] = (SchedSpan){rk->segment_start_s, t};
        x->out->busy_s[r] += t - rk->segment_start_s;
        rk->epilogue = EPILOGUE_STATISTICS;
        return;
    }
    const SchedInstr *in = &x->s->programs[r].instrs[rk->pc];
    if (rk->segment == SEGMENT_LOAD) {
        x->out->spans[r][rk->pc].end_s = t;
        x->out->busy_s[r] += t - rk->segment_start_s;
        rk->load_s += t - rk->segment_start_s;
        rk->pc++;
        return;
    }
    if (rk->segment == SEGMENT_LOSS) {
        x->out->loss_spans[in->micro].end_s = t;
        x->out->busy_s[r] += t - rk->segment_start_s;
        rk->loss_s += t - rk->segment_start_s;
        pass_begin(x, r, t);
        return;
    }
    rk->pass_done_s = rk->segment_target_s;
    // Buckets whose layers are done start now (several when one layer closes more than one).
    while (rk->next_bucket < rk->last_bucket &&
           (x->plan->buckets[rk->next_bucket].ready_s <= rk->pass_done_s || rk->pass_done_s >= rk->pass_s)) {
        sim_reduce(x, r, in->stage, x->plan->buckets[rk->next_bucket].bytes, t);
        rk->next_bucket++;
    }
    if (rk->pass_done_s < rk->pass_s) {
        pass_next_segment(x, r, t);
        return;
    }
    SchedSpan *span = &x->out->spans[r][rk->pc];
    span->end_s = t;
    x->out->busy_s[r] += t - span->start_s;
    rk->compute_s += t - span->start_s;
    if (in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_WEIGHT)
        rk->held -= x->plan->stages[in->stage].activation_bytes;
    rk->pc++;
}

// ---- instructions ----------------------------------------------------------------------------------

// A message from `src` arrives for the blocked or waiting receiver: the receive at its pc ends then.
static void recv_complete(Sim *x, int r, const Arrivals *a, int k, double reached_s) {
    RankSim *rk = &x->ranks[r];
    double arrive = a->arrive[k], wait = max_d(0.0, arrive - reached_s);
    double in_flight = min_d(wait, arrive - a->sent[k]);
    rk->p2p_s += in_flight;
    rk->bubble_s += wait - in_flight;
    x->out->spans[r][rk->pc] = (SchedSpan){reached_s, max_d(reached_s, arrive)};
    rk->phase = PHASE_RUN;
    rk->ready_s = max_d(reached_s, arrive);
    rk->pc++;
}

// The profiled seconds of rank r's optimizer step (0 in a batch that does not step).
static double rank_optimizer_s(const Sim *x, int r) {
    int64_t params = 0;
    for (int c = 0; c < x->plan->chunks; c++) params += x->plan->stages[c * x->p + r].param_bytes;
    return x->steps ? (double)params * x->optimizer_rate : 0.0;
}

// When a message that rank r sends at t starts to move under ClusterModel.host_progress: at r's next
// transport call after the receiver has answered its header. Sends, loads and receives whose message
// is there return at once; a receive or a step that waits polls, so the message moves then; a pass
// tests what is in flight after its first layer (the loss runs before the last stage's backward);
// after the program the optimizer step runs first.
static double host_progress_start(const Sim *x, int r, double t) {
    if (!x->plan->cluster.host_progress) return t;
    const PipelinePlan *plan = x->plan;
    const SchedProgram *prog = &x->s->programs[r];
    int *unread = yp_calloc((size_t)x->p, sizeof *unread);  // receives passed per peer
    double start = -1;
    for (int i = x->ranks[r].pc + 1; i < prog->n_instrs && start < 0; i++) {
        const SchedInstr *in = &prog->instrs[i];
        const PlanStage *st = op_computes(in->op) ? &plan->stages[in->stage] : NULL;
        switch (in->op) {
        case SCHED_OP_FWD: start = t + st->fwd_first_layer_s / sim_rate(x, r); break;
        case SCHED_OP_BWD_INPUT:
        case SCHED_OP_BWD: {
            double first = st->bwd_first_layer_input_s + (in->op == SCHED_OP_BWD ? st->bwd_first_layer_weight_s : 0);
            if (in->stage == plan->n_stages - 1) first += plan->loss_s;
            start = t + first / sim_rate(x, r);
            break;
        }
        case SCHED_OP_BWD_WEIGHT: start = t + st->bwd_weight_s / sim_rate(x, r); break;  // one call, no tests
        case SCHED_OP_RECV_ACT:
        case SCHED_OP_RECV_GRAD: {
            const Arrivals *a = &x->channels[in->peer * x->p + r];
            int k = a->read + unread[in->peer]++;
            if (k >= a->n || a->arrive[k] > t) start = t;
            break;
        }
        case SCHED_OP_STEP: start = t; break;
        default: break;
        }
    }
    free(unread);
    return start >= 0 ? start : t + rank_optimizer_s(x, r) / sim_rate(x, r);
}

static void instr_send(Sim *x, int r, const SchedInstr *in, double t) {
    const int p = x->p;
    Arrivals *a = &x->channels[r * p + in->peer];
    SchedSpan *span = &x->out->spans[r][x->ranks[r].pc];
    *span = (SchedSpan){t, t};
    if (in->peer != r) {
        const LinkModel *link = &x->links[r * p + in->peer];
        YP_CHECK(link->bandwidth_bytes_per_s > 0);
        double *free_at = &x->link_free[r * p + in->peer];
        span->start_s = max_d(host_progress_start(x, r, t), *free_at);
        span->end_s = *free_at = span->start_s + link->latency_s + (double)in->bytes / link->bandwidth_bytes_per_s;
        x->out->link_bytes[r * p + in->peer] += in->bytes;
    }
    a->sent[a->n] = t;
    a->arrive[a->n++] = span->end_s;
    RankSim *dst = &x->ranks[in->peer];
    if (dst->phase == PHASE_BLOCKED) {
        const SchedInstr *want = &x->s->programs[in->peer].instrs[dst->pc];
        if (want->peer == r && a->read == a->n - 1) recv_complete(x, in->peer, a, a->read++, dst->blocked_since_s);
    }
}

// What is left after the program: the optimizer step, then the statistics average.
static void rank_epilogue(Sim *x, int r, double t) {
    RankSim *rk = &x->ranks[r];
    const PipelinePlan *plan = x->plan;
    int64_t buffers = 0;
    for (int c = 0; c < plan->chunks; c++) buffers += plan->stages[c * x->p + r].buffer_bytes;
    if (rk->epilogue == EPILOGUE_OPTIMIZER) {
        segment_start(x, r, SEGMENT_OPTIMIZER, rank_optimizer_s(x, r), t);
        return;
    }
    if (rk->epilogue == EPILOGUE_STATISTICS) {
        double d = 0;
        if (plan->replicas > 1 && buffers > 0 && x->steps) {
            CollectiveCost cost = collective_allreduce(&plan->cluster, &x->groups[r], buffers);
            d = cost.time_s;
            x->out->allreduce_bytes += cost.bytes_sent * plan->replicas;
        }
        x->out->statistics_spans[r] = (SchedSpan){t, t + d};
        rk->epilogue = EPILOGUE_DONE;
        rk->ready_s = t + d;
        return;
    }
    rk->phase = PHASE_DONE;
}

// Runs rank r's instructions at t until it computes, waits or is done.
static void rank_run(Sim *x, int r, double t) {
    RankSim *rk = &x->ranks[r];
    const SchedProgram *prog = &x->s->programs[r];
    while (rk->phase == PHASE_RUN && rk->ready_s <= t) {
        if (rk->pc == prog->n_instrs) {
            rank_epilogue(x, r, t);
            continue;
        }
        const SchedInstr *in = &prog->instrs[rk->pc];
        SchedSpan *span = &x->out->spans[r][rk->pc];
        switch (in->op) {
        case SCHED_OP_RECV_ACT:
        case SCHED_OP_RECV_GRAD: {
            Arrivals *a = &x->channels[in->peer * x->p + r];
            if (a->read == a->n) {
                rk->phase = PHASE_BLOCKED;
                rk->blocked_since_s = t;
            } else {
                recv_complete(x, r, a, a->read++, t);
            }
            break;
        }
        case SCHED_OP_SEND_ACT:
        case SCHED_OP_SEND_GRAD:
            instr_send(x, r, in, t);
            rk->pc++;
            break;
        case SCHED_OP_REDUCE_GRADS: {
            const PlanStage *st = &x->plan->stages[in->stage];
            int64_t rest = st->param_bytes - rk->reduced_bytes[in->chunk];
            double start = sim_reduce(x, r, in->stage, rest, t);
            *span = (SchedSpan){start, x->plan->replicas > 1 && rest > 0 && x->steps ? rk->reduce_free_s : start};
            rk->pc++;
            break;
        }
        case SCHED_OP_STEP:
            if (rk->step_reached_s < 0) rk->step_reached_s = t;
            if (rk->reduce_free_s > t) {
                rk->ready_s = rk->reduce_free_s;
                break;
            }
            *span = (SchedSpan){rk->step_reached_s, t};
            rk->reduce_wait_s += t - rk->step_reached_s;
            rk->phase = PHASE_BARRIER;
            x->n_barrier++;
            rk->pc++;
            break;
        case SCHED_OP_LOAD:
            *span = (SchedSpan){t, t};
            // Inline loading: the trainer loads the whole batch on stage 0's rank before its program
            // runs (it shares the cores like a pass), so the first LOAD carries every micro-batch's.
            if (in->stage == 0 && x->plan->load_s > 0 && !rk->loaded) {
                rk->loaded = true;
                segment_start(x, r, SEGMENT_LOAD, x->plan->load_s * x->plan->micro_batches, t);
            } else rk->pc++;
            break;
        default:
            YP_CHECK(op_computes(in->op));
            instr_compute(x, r, t);
            break;
        }
    }
}

// ---- the whole step --------------------------------------------------------------------------------

static void sim_setup(Sim *x) {
    const PipelinePlan *plan = x->plan;
    const Schedule *s = x->s;
    const int p = x->p;
    SchedSim *o = x->out;
    const ClusterModel *c = &plan->cluster;
    x->ranks = yp_calloc((size_t)p, sizeof *x->ranks);
    x->channels = yp_calloc((size_t)p * (size_t)p, sizeof *x->channels);
    x->link_free = yp_calloc((size_t)p * (size_t)p, sizeof *x->link_free);
    x->links = yp_calloc((size_t)p * (size_t)p, sizeof *x->links);
    x->groups = yp_calloc((size_t)p, sizeof *x->groups);
    x->last_weight = yp_malloc((size_t)p * (size_t)plan->chunks * sizeof *x->last_weight);
    placement_replica_groups(c, p, plan->replicas, x->groups);
    bool *linked = yp_calloc((size_t)p * (size_t)p, sizeof *linked);
    for (int r = 0; r < p; r++) {
        const SchedProgram *prog = &s->programs[r];
        o->spans[r] = yp_calloc((size_t)prog->n_instrs + 1, sizeof *o->spans[r]);
        x->ranks[r] = (RankSim){.phase = PHASE_RUN, .step_reached_s = -1};
        for (int k = 0; k < plan->chunks; k++) x->last_weight[r * plan->chunks + k] = -1;
        for (int i = 0; i < prog->n_instrs; i++) {
            const SchedInstr *in = &prog->instrs[i];
            if (in->op == SCHED_OP_SEND_ACT || in->op == SCHED_OP_SEND_GRAD) {
                x->channels[r * p + in->peer].n++;
                linked[r * p + in->peer] = true;
            }
            if (in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_WEIGHT)
                x->last_weight[r * plan->chunks + in->chunk] = i;
        }
    }
    for (int k = 0; k < p * p; k++) {
        Arrivals *a = &x->channels[k];
        a->arrive = yp_malloc((size_t)a->n * sizeof *a->arrive + 1);
        a->sent = yp_malloc((size_t)a->n * sizeof *a->sent + 1);
        a->n = 0;
        if (linked[k] && k / p != k % p) x->links[k] = placement_p2p_link(c, p, plan->replicas, k / p, k % p).link;
    }
    free(linked);
    if (c->cores_per_node > 0) x->sharing = sharing_create(c, p, plan->replicas);
    x->computing = yp_calloc((size_t)p, sizeof *x->computing);
    x->optimizer_rate = plan->optimizer_s_per_byte;
}

static void sim_teardown(Sim *x) {
    for (int k = 0; k < x->p * x->p; k++) {
        free(x->channels[k].arrive);
        free(x->channels[k].sent);
    }
    free(x->channels);
    free(x->link_free);
    free(x->links);
    free(x->groups);
    free(x->last_weight);
    sharing_destroy(x->sharing);
    free(x->computing);
    free(x->ranks);
}

// Every rank is at the barrier at t: the loss all-reduce, then each rank's epilogue.
static void sim_barrier(Sim *x, double t) {
    const PipelinePlan *plan = x->plan;
    int world = x->p * plan->replicas;
    PlacementGroup all = placement_world_group(&plan->cluster, world);
    CollectiveCost cost = collective_allreduce(&plan->cluster, &all, PLAN_BATCH_REDUCE_BYTES);
    x->out->loss_reduce = (SchedSpan){t, t + cost.time_s};
    x->out->allreduce_bytes += cost.bytes_sent * world;
    for (int r = 0; r < x->p; r++) {
        x->ranks[r].phase = PHASE_RUN;
        x->ranks[r].ready_s = t + cost.time_s;
        x->ranks[r].epilogue = EPILOGUE_OPTIMIZER;
    }
    x->n_barrier = 0;
}

// The earliest time after which something happens (INFINITY: nothing will).
static double sim_next_time(const Sim *x) {
    double next = INFINITY;
    for (int r = 0; r < x->p; r++) {
        const RankSim *rk = &x->ranks[r];
        if (rk->phase == PHASE_RUN) next = min_d(next, rk->ready_s);
        else if (rk->phase == PHASE_COMPUTE) next = min_d(next, rk->end_s);
    }
    return next;
}

static void sim_run(Sim *x) {
    double t = 0;
    for (;;) {
        bool changed = true;
        while (changed) {
            changed = false;
            for (int r = 0; r < x->p; r++) {
                RankSim *rk = &x->ranks[r];
                if (rk->phase == PHASE_COMPUTE && rk->end_s <= t) segment_end(x, r, t), changed = true;
                if (rk->phase == PHASE_RUN && rk->ready_s <= t) rank_run(x, r, t), changed = true;
            }
            if (x->n_barrier == x->p) sim_barrier(x, t), changed = true;
        }
        sim_update_rates(x, t);
        double next = sim_next_time(x);
        if (next == INFINITY) break;
        t = next;
    }
    for (int r = 0; r < x->p; r++) YP_CHECK(x->ranks[r].phase == PHASE_DONE);  // sched_validate accepted it
}

// The loader's ceiling: the most images that one node's stage-0 ranks load per step.
static double loader_floor_s(const PipelinePlan *plan) {
    const ClusterModel *c = &plan->cluster;
    if (c->loader_images_per_s <= 0) return 0.0;
    int world = plan->n_ranks * plan->replicas, n_nodes = placement_nodes(c, world), most = 0;
    int *loaders = yp_calloc((size_t)n_nodes, sizeof *loaders);
    for (int d = 0; d < plan->replicas; d++) {
        int w = placement_world_rank(c->rank_order, plan->n_ranks, plan->replicas, 0, d);
        int k = ++loaders[placement_node(c, w)];
        if (k > most) most = k;
    }
    free(loaders);
    return (double)most * plan->micro_batches * (double)plan->micro_batch_images / c->loader_images_per_s;
}

// The terms along the critical rank (simulate.h), and the step.
static void sim_terms(Sim *x) {
    SchedSim *o = x->out;
    SchedSimTerms *t = &o->terms;
    int critical = 0, last = 0;
    double engine_s = 0;
    for (int r = 0; r < x->p; r++) {
        if (x->ranks[r].step_reached_s + x->ranks[r].reduce_wait_s >
            x->ranks[critical].step_reached_s + x->ranks[critical].reduce_wait_s)
            critical = r;
        if (x->ranks[r].ready_s > x->ranks[last].ready_s) last = r;
        engine_s = max_d(engine_s, x->ranks[r].ready_s);
    }
    const RankSim *c = &x->ranks[critical];
    *t = (SchedSimTerms){.critical_rank = critical, .compute_s = c->compute_s, .bubble_s = c->bubble_s,
                         .p2p_s = c->p2p_s, .allreduce_s = c->reduce_wait_s, .loss_s = c->loss_s,
                         .loader_s = c->load_s};
    t->loss_s += o->loss_reduce.end_s - o->loss_reduce.start_s;
    t->optimizer_s = o->optimizer_spans[last].end_s - o->optimizer_spans[last].start_s;
    t->allreduce_s += o->statistics_spans[last].end_s - o->statistics_spans[last].start_s;
    o->loader_floor_s = loader_floor_s(x->plan);
    o->step_s = max_d(engine_s, o->loader_floor_s);
    t->loader_s += o->step_s - engine_s;
}

void sched_sim_destroy(SchedSim *sim) {
    if (!sim) return;
    for (int r = 0; r < sim->n_ranks; r++) free(sim->spans[r]);
    free(sim->spans);
    free(sim->busy_s);
    free(sim->bubble);
    free(sim->peak_activation_bytes);
    free(sim->link_bytes);
    free(sim->reductions);
    free(sim->loss_spans);
    free(sim->optimizer_spans);
    free(sim->statistics_spans);
    free(sim);
}

static SchedSim *sim_alloc(const PipelinePlan *plan) {
    const int p = plan->n_ranks;
    SchedSim *o = yp_calloc(1, sizeof *o);
    o->n_ranks = p;
    o->busy_s = yp_calloc((size_t)p, sizeof *o->busy_s);
    o->bubble = yp_calloc((size_t)p, sizeof *o->bubble);
    o->peak_activation_bytes = yp_calloc((size_t)p, sizeof *o->peak_activation_bytes);
    o->link_bytes = yp_calloc((size_t)p * (size_t)p, sizeof *o->link_bytes);
    o->spans = yp_calloc((size_t)p, sizeof *o->spans);
    o->loss_spans = yp_calloc((size_t)plan->micro_batches, sizeof *o->loss_spans);
    o->optimizer_spans = yp_calloc((size_t)p, sizeof *o->optimizer_spans);
    o->statistics_spans = yp_calloc((size_t)p, sizeof *o->statistics_spans);
    return o;
}

// One batch, stepping or not, into o (from sim_alloc).
static void sim_batch(const PipelinePlan *plan, const Schedule *s, bool steps, SchedSim *o) {
    Sim x = {.plan = plan, .s = s, .out = o, .p = plan->n_ranks, .steps = steps};
    sim_setup(&x);
    sim_run(&x);
    sim_terms(&x);
    sim_teardown(&x);
    for (int k = 0; k < x.p * x.p; k++) o->p2p_bytes += o->link_bytes[k] * plan->replicas;
    for (int r = 0; r < x.p; r++) o->bubble[r] = o->step_s > 0 ? 1.0 - o->busy_s[r] / o->step_s : 0.0;
}

SchedSim *sched_simulate(const PipelinePlan *plan, const Schedule *s) {
    YP_CHECK(s->n_ranks == plan->n_ranks && plan->chunks <= PLAN_MAX_STAGES);
    SchedSim *o = sim_alloc(plan);
    sim_batch(plan, s, true, o);
    int accumulate = plan->accumulate > 1 ? plan->accumulate : 1;
    o->batch_s = o->step_s;
    if (accumulate > 1) {
        SchedSim *other = sim_alloc(plan);
        sim_batch(plan, s, false, other);
        o->batch_s = other->step_s;
        sched_sim_destroy(other);
    }
    o->mean_batch_s = ((accumulate - 1) * o->batch_s + o->step_s) / accumulate;
    o->images_per_s = o->mean_batch_s > 0 ? (double)plan->replicas * plan->micro_batches *
                                                (double)plan->micro_batch_images / o->mean_batch_s
                                          : 0.0;
    return o;
}

bool sched_in_flight(SchedKind kind, int n_ranks, int chunks, int micro_batches, int *in_flight, Error *err) {
    // A plan whose every stage holds one byte per micro-batch: the simulator's peak is then the count.
    int n_stages = n_ranks * chunks;
    LinkModel free_link = {.latency_s = 0, .bandwidth_bytes_per_s = INFINITY};
    PipelinePlan unit = {.n_stages = n_stages, .n_ranks = n_ranks, .chunks = chunks, .replicas = 1,
                         .micro_batches = micro_batches, .micro_batch_images = 1,
                         .cluster = {.intra = free_link, .intra_collective = free_link}};
    for (int k = 0; k < n_stages; k++)
        unit.stages[k] = (PlanStage){.first_layer = k, .last_layer = k, .fwd_s = 1, .bwd_input_s = 1,
                                     .bwd_weight_s = 1, .activation_bytes = 1};
    Schedule *s = NULL;
    if (!sched_build(&unit, kind, &s, err)) return false;
    SchedSim *sim = sched_simulate(&unit, s);
    // A rank's chunks share its peak; each stage is charged the rank's whole count (an upper bound
    // for interleaved, exact with one chunk).
    for (int k = 0; k < n_stages; k++) in_flight[k] = (int)sim->peak_activation_bytes[k % n_ranks];
    sched_sim_destroy(sim);
    sched_destroy(s);
    return true;
}
