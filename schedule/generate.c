// The schedule generators: each kind gives every rank an order of compute passes (F, B, or B and W);
// program_expand wraps the passes in their loads, receives, sends, reductions and the final step.
#include <stdlib.h>
#include <string.h>

#include "schedule/program.h"

// Sized by its initialiser: the header's [SCHED_KIND_COUNT] declaration then fails to compile when a kind lacks a name.
const char *const sched_kind_names[] = {
    [SCHED_KIND_GPIPE] = "gpipe",
    [SCHED_KIND_1F1B] = "1f1b",
    [SCHED_KIND_INTERLEAVED] = "interleaved",
    [SCHED_KIND_ZB_H1] = "zb-h1",
};


static const char *const op_names[] = {
    [SCHED_OP_LOAD] = "LOAD",
    [SCHED_OP_RECV_ACT] = "RECV_ACT",
    [SCHED_OP_FWD] = "FWD",
    [SCHED_OP_SEND_ACT] = "SEND_ACT",
    [SCHED_OP_RECV_GRAD] = "RECV_GRAD",
    [SCHED_OP_BWD] = "BWD",
    [SCHED_OP_BWD_INPUT] = "BWD_INPUT",
    [SCHED_OP_BWD_WEIGHT] = "BWD_WEIGHT",
    [SCHED_OP_SEND_GRAD] = "SEND_GRAD",
    [SCHED_OP_REDUCE_GRADS] = "REDUCE_GRADS",
    [SCHED_OP_STEP] = "STEP",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == SCHED_OP_COUNT, "a name for every instruction");

const char *sched_kind_name(SchedKind kind) {
    YP_CHECK(kind >= 0 && kind < SCHED_KIND_COUNT);
    return sched_kind_names[kind];
}

bool sched_kind_parse(const char *name, SchedKind *out) {
    for (int k = 0; k < SCHED_KIND_COUNT; k++) {
        if (strcmp(name, sched_kind_names[k]) == 0) {
            *out = (SchedKind)k;
            return true;
        }
    }
    return false;
}

const char *sched_op_name(SchedOp op) {
    YP_CHECK(op >= 0 && op < SCHED_OP_COUNT);
    return op_names[op];
}

char *sched_instr_format(char *buf, size_t n, const SchedInstr *in) {
    const char *name = in->op >= 0 && in->op < SCHED_OP_COUNT ? op_names[in->op] : "?";
    switch (in->op) {
    case SCHED_OP_RECV_ACT:
    case SCHED_OP_RECV_GRAD:
        snprintf(buf, n, "%s m%d s%d c%d<r%d", name, in->micro, in->stage, in->cut, in->peer);
        break;
    case SCHED_OP_SEND_ACT:
    case SCHED_OP_SEND_GRAD:
        snprintf(buf, n, "%s m%d s%d c%d>r%d", name, in->micro, in->stage, in->cut, in->peer);
        break;
    case SCHED_OP_REDUCE_GRADS:
        snprintf(buf, n, "%s s%d", name, in->stage);
        break;
    case SCHED_OP_STEP:
        snprintf(buf, n, "%s", name);
        break;
    default:
        snprintf(buf, n, "%s m%d s%d", name, in->micro, in->stage);
        break;
    }
    return buf;
}

void sched_destroy(Schedule *s) {
    if (!s) return;
    for (int r = 0; r < s->n_ranks; r++) free(s->programs[r].instrs);
    free(s->programs);
    free(s);
}

// ---- pass orders -------------------------------------------------------------------------------

typedef struct Pass {
    SchedOp op;  // FWD, BWD, BWD_INPUT or BWD_WEIGHT
    int chunk, micro;
} Pass;

typedef struct PassList {
    Pass *items;  // (capacity) = chunks x micro_batches x 3, enough for every schedule
    int n;
} PassList;

static void pass_push(PassList *l, SchedOp op, int chunk, int micro) {
    l->items[l->n++] = (Pass){op, chunk, micro};
}

static int min_int(int a, int b) { return a < b ? a : b; }

static void passes_gpipe(int m, PassList *l) {
    for (int i = 0; i < m; i++) pass_push(l, SCHED_OP_FWD, 0, i);
    for (int i = 0; i < m; i++) pass_push(l, SCHED_OP_BWD, 0, i);
}

static void passes_1f1b(int p, int rank, int m, PassList *l) {
    int warmup = min_int(p - rank - 1, m);
    for (int i = 0; i < warmup; i++) pass_push(l, SCHED_OP_FWD, 0, i);
    for (int k = 0; k < m - warmup; k++) {
        pass_push(l, SCHED_OP_FWD, 0, warmup + k);
        pass_push(l, SCHED_OP_BWD, 0, k);
    }
    for (int k = m - warmup; k < m; k++) pass_push(l, SCHED_OP_BWD, 0, k);
}

// Megatron-LM's forward_backward_pipelining_with_interleaving: virtual micro-batch k (of m x v) runs
// chunk (k mod p v) / p (reversed for backward) on micro-batch (k / p v) p + k mod p; rank r warms up
// with 2 (p - r - 1) + (v - 1) p forwards, or all of them when m == p.
static void pass_push_virtual(PassList *l, int p, int v, int k, bool forward) {
    int chunk = (k % (p * v)) / p;
    pass_push(l, forward ? SCHED_OP_FWD : SCHED_OP_BWD, forward ? chunk : v - 1 - chunk, (k / (p * v)) * p + k % p);
}

static void passes_interleaved(int p, int v, int rank, int m, PassList *l) {
    int total = m * v;
    int warmup = m == p ? total : min_int(2 * (p - rank - 1) + (v - 1) * p, total);
    for (int k = 0; k < warmup; k++) pass_push_virtual(l, p, v, k, true);
    for (int k = 0; k < total - warmup; k++) {
        pass_push_virtual(l, p, v, warmup + k, true);
        pass_push_virtual(l, p, v, k, false);
    }
    for (int k = total - warmup; k < total; k++) pass_push_virtual(l, p, v, k, false);
}

// ZB-H1 as in the authors' DeepSpeed version (sail-sg/zero-bubble-pipeline-parallelism): 1f1b's
// order with each backward split into B and W; rank r postpones the W of its first r steady-state
// micro-batches, then runs one W after every B, and the r postponed ones fill the cool-down's end.
// Activations then live until W: at most p micro-batches on every rank, 1f1b's peak on rank 0.
static void passes_zb_h1(int p, int rank, int m, PassList *l) {
    int warmup = min_int(p - rank - 1, m), next_w = 0;
    for (int i = 0; i < warmup; i++) pass_push(l, SCHED_OP_FWD, 0, i);
    for (int k = 0; k < m - warmup; k++) {
        pass_push(l, SCHED_OP_FWD, 0, warmup + k);
        pass_push(l, SCHED_OP_BWD_INPUT, 0, k);
        if (k >= rank) pass_push(l, SCHED_OP_BWD_WEIGHT, 0, next_w++);
    }
    for (int k = m - warmup; k < m; k++) {
        pass_push(l, SCHED_OP_BWD_INPUT, 0, k);
        pass_push(l, SCHED_OP_BWD_WEIGHT, 0, next_w++);
    }
    while (next_w < m) pass_push(l, SCHED_OP_BWD_WEIGHT, 0, next_w++);
}

// ---- expansion into programs ---------------------------------------------------------------------

enum { DIR_ACT, DIR_GRAD };

typedef struct Message {
    int dir, cut, micro;
} Message;

typedef struct Channel {  // messages from one rank to another, in send order
    Message *items;
    int n, capacity;
} Channel;

typedef struct Expander {
    const PipelinePlan *plan;
    int p;
    Channel *channels;  // (p x p): [src * p + dst]
    int *seq;           // (2 x n_cuts x micro_batches): a message's position in its channel
} Expander;

static int stage_rank(const Expander *x, int stage) { return stage % x->p; }

static int message_index(const Expander *x, int dir, int cut, int micro) {
    return (dir * x->plan->n_cuts + cut) * x->plan->micro_batches + micro;
}

// The rank a message travels from and to.
static void message_ends(const Expander *x, int dir, int cut, int *src, int *dst) {
    const PlanCut *c = &x->plan->cuts[cut];
    int from = stage_rank(x, c->from_stage), to = stage_rank(x, c->to_stage);
    *src = dir == DIR_ACT ? from : to;
    *dst = dir == DIR_ACT ? to : from;
}

static bool is_backward_input(SchedOp op) { return op == SCHED_OP_BWD || op == SCHED_OP_BWD_INPUT; }

// The cuts a pass on `stage` exchanges, in cut order: FWD receives the activations of the cuts
// entering the stage and sends those of the cuts leaving it; BWD/BWD_INPUT receives the gradients of
// the cuts leaving and sends those of the cuts entering. Returns the count and sets the direction.
static int pass_cuts(const PipelinePlan *plan, SchedOp op, int stage, bool sends, int *cuts, int *dir) {
    int n = 0;
    *dir = op == SCHED_OP_FWD ? DIR_ACT : DIR_GRAD;
    if (op != SCHED_OP_FWD && !is_backward_input(op)) return 0;
    bool producer_side = (op == SCHED_OP_FWD) == sends;
    for (int c = 0; c < plan->n_cuts; c++)
        if ((producer_side ? plan->cuts[c].from_stage : plan->cuts[c].to_stage) == stage) cuts[n++] = c;
    return n;
}

static void channel_push(Channel *ch, Message msg) {
    if (ch->n == ch->capacity) {
        ch->capacity = ch->capacity ? 2 * ch->capacity : 16;
        ch->items = yp_realloc(ch->items, (size_t)ch->capacity * sizeof *ch->items);
    }
    ch->items[ch->n++] = msg;
}

static void program_push(SchedProgram *prog, int *capacity, SchedInstr in) {
    if (prog->n_instrs == *capacity) {
        *capacity = *capacity ? 2 * *capacity : 64;
        prog->instrs = yp_realloc(prog->instrs, (size_t)*capacity * sizeof *prog->instrs);
    }
    prog->instrs[prog->n_instrs++] = in;
}

static SchedInstr instr_make(SchedOp op, int micro, int chunk, int stage) {
    return (SchedInstr){.op = op, .micro = micro, .chunk = chunk, .stage = stage, .peer = -1, .cut = -1, .bytes = 0};
}

static SchedInstr instr_message(const Expander *x, bool send, Message msg, int rank) {
    int src, dst;
    message_ends(x, msg.dir, msg.cut, &src, &dst);
    const PlanCut *c = &x->plan->cuts[msg.cut];
    SchedOp op = msg.dir == DIR_ACT ? (send ? SCHED_OP_SEND_ACT : SCHED_OP_RECV_ACT)
                                    : (send ? SCHED_OP_SEND_GRAD : SCHED_OP_RECV_GRAD);
    // The stage this rank works on: the producer for activations sent and gradients received.
    int stage = (msg.dir == DIR_ACT) == send ? c->from_stage : c->to_stage;
    SchedInstr in = instr_make(op, msg.micro, stage / x->p, stage);
    in.peer = send ? dst : src;
    in.cut = msg.cut;
    in.bytes = c->bytes;
    YP_CHECK(stage_rank(x, stage) == rank);
    return in;
}

// Phase 1: the messages every rank sends, in its program order, numbered per channel.
static void expander_record_sends(Expander *x, int rank, const PassList *passes, int *cuts) {
    for (int i = 0; i < passes->n; i++) {
        const Pass *ps = &passes->items[i];
        int stage = ps->chunk * x->p + rank, dir;
        int n = pass_cuts(x->plan, ps->op, stage, true, cuts, &dir);
        for (int j = 0; j < n; j++) {
            int src, dst;
            message_ends(x, dir, cuts[j], &src, &dst);
            Channel *ch = &x->channels[src * x->p + dst];
            x->seq[message_index(x, dir, cuts[j], ps->micro)] = ch->n;
            channel_push(ch, (Message){dir, cuts[j], ps->micro});
        }
    }
}

// Phase 2: one rank's program. Before a pass, each message it needs is received together with every
// earlier message on the same channel not received yet, so receives follow their channel's send order.
static void expander_build_program(const Expander *x, int rank, const PassList *passes, int *cuts,
                                   SchedProgram *prog) {
    const PipelinePlan *plan = x->plan;
    int p = x->p, capacity = 0;
    int *received = yp_calloc((size_t)p, sizeof *received);  // next position to receive, per source
    int last_weight[PLAN_MAX_STAGES];                          // per chunk: its last weight-gradient pass
    for (int c = 0; c < plan->chunks; c++) last_weight[c] = -1;
    for (int i = 0; i < passes->n; i++)
        if (passes->items[i].op == SCHED_OP_BWD || passes->items[i].op == SCHED_OP_BWD_WEIGHT)
            last_weight[passes->items[i].chunk] = i;

    for (int i = 0; i < passes->n; i++) {
        const Pass *ps = &passes->items[i];
        int stage = ps->chunk * p + rank, dir;
        if (ps->op == SCHED_OP_FWD && (stage == 0 || stage == plan->n_stages - 1)) {
            SchedInstr load = instr_make(SCHED_OP_LOAD, ps->micro, ps->chunk, stage);
            load.bytes = stage == 0 ? plan->stages[0].input_bytes : 0;
            program_push(prog, &capacity, load);
        }
        int n = pass_cuts(plan, ps->op, stage, false, cuts, &dir);
        for (int j = 0; j < n; j++) {
            int src, dst;
            message_ends(x, dir, cuts[j], &src, &dst);
            const Channel *ch = &x->channels[src * p + dst];
            int want = x->seq[message_index(x, dir, cuts[j], ps->micro)];
            for (; received[src] <= want; received[src]++)
                program_push(prog, &capacity, instr_message(x, false, ch->items[received[src]], rank));
        }
        program_push(prog, &capacity, instr_make(ps->op, ps->micro, ps->chunk, stage));
        n = pass_cuts(plan, ps->op, stage, true, cuts, &dir);
        for (int j = 0; j < n; j++)
            program_push(prog, &capacity, instr_message(x, true, (Message){dir, cuts[j], ps->micro}, rank));
        if (i == last_weight[ps->chunk]) {
            SchedInstr reduce = instr_make(SCHED_OP_REDUCE_GRADS, -1, ps->chunk, stage);
            reduce.bytes = plan->stages[stage].param_bytes;
            program_push(prog, &capacity, reduce);
        }
    }
    program_push(prog, &capacity, instr_make(SCHED_OP_STEP, -1, -1, -1));
    free(received);
}

// ---- sched_build ---------------------------------------------------------------------------------

static void plan_check(const PipelinePlan *plan) {
    YP_CHECK(plan->n_ranks >= 1 && plan->chunks >= 1 && plan->n_stages == plan->n_ranks * plan->chunks);
    YP_CHECK(plan->n_stages <= PLAN_MAX_STAGES);
    YP_CHECK(plan->micro_batches >= 1 && plan->replicas >= 1 && plan->n_cuts >= 0);
    for (int c = 0; c < plan->n_cuts; c++) {
        const PlanCut *cut = &plan->cuts[c];
        YP_CHECK(cut->id == c && cut->bytes >= 0);
        YP_CHECK(cut->from_stage >= 0 && cut->from_stage < cut->to_stage && cut->to_stage < plan->n_stages);
    }
}

// User-facing limits of each schedule, in terms of the experiment's keys.
static bool sched_check_kind(const PipelinePlan *plan, SchedKind kind, Error *err) {
    const char *name = sched_kind_name(kind);
    if (kind != SCHED_KIND_INTERLEAVED && plan->chunks != 1)
        return error_set(err,
                         "schedule %s runs one model chunk per rank but parallel.chunks is %d: use "
                         "parallel.chunks: 1, or schedule interleaved for several chunks",
                         name, plan->chunks);
    if (kind == SCHED_KIND_INTERLEAVED && plan->chunks < 2)
        return error_set(err,
                         "schedule interleaved needs parallel.chunks >= 2 model chunks per rank (it is "
                         "%d); with one chunk use schedule 1f1b",
                         plan->chunks);
    if (kind == SCHED_KIND_INTERLEAVED && plan->micro_batches % plan->n_ranks != 0) {
        int p = plan->n_ranks, below = plan->micro_batches / p * p, above = below + p;
        if (below > 0)
            return error_set(err,
                             "schedule interleaved needs parallel.micro_batches (%d) to be a multiple of "
                             "parallel.stages (%d), as Megatron-LM requires: use %d or %d",
                             plan->micro_batches, p, below, above);
        return error_set(err,
                         "schedule interleaved needs parallel.micro_batches (%d) to be a multiple of "
                         "parallel.stages (%d), as Megatron-LM requires: use %d",
                         plan->micro_batches, p, above);
    }
    return true;
}

bool sched_build(const PipelinePlan *plan, SchedKind kind, Schedule **out, Error *err) {
    YP_CHECK(kind >= 0 && kind < SCHED_KIND_COUNT);
    plan_check(plan);
    *out = NULL;
    if (!sched_check_kind(plan, kind, err)) return false;

    int p = plan->n_ranks, m = plan->micro_batches;
    Expander x = {.plan = plan, .p = p};
    x.channels = yp_calloc((size_t)p * (size_t)p, sizeof *x.channels);
    x.seq = yp_malloc((size_t)(2 * plan->n_cuts * m + 1) * sizeof *x.seq);
    int *cuts = yp_malloc((size_t)(plan->n_cuts + 1) * sizeof *cuts);
    PassList *passes = yp_calloc((size_t)p, sizeof *passes);
    for (int r = 0; r < p; r++) {
        passes[r].items = yp_malloc((size_t)plan->chunks * (size_t)m * 3 * sizeof *passes[r].items);
        switch (kind) {
        case SCHED_KIND_GPIPE: passes_gpipe(m, &passes[r]); break;
        case SCHED_KIND_1F1B: passes_1f1b(p, r, m, &passes[r]); break;
        case SCHED_KIND_INTERLEAVED: passes_interleaved(p, plan->chunks, r, m, &passes[r]); break;
        case SCHED_KIND_ZB_H1: passes_zb_h1(p, r, m, &passes[r]); break;
        case SCHED_KIND_COUNT: yp_fatal("no schedule kind %d", (int)kind);
        }
        expander_record_sends(&x, r, &passes[r], cuts);
    }

    Schedule *s = yp_calloc(1, sizeof *s);
    s->kind = kind;
    s->n_ranks = p;
    s->programs = yp_calloc((size_t)p, sizeof *s->programs);
    for (int r = 0; r < p; r++) expander_build_program(&x, r, &passes[r], cuts, &s->programs[r]);

    for (int r = 0; r < p; r++) free(passes[r].items);
    free(passes);
    free(cuts);
    for (int c = 0; c < p * p; c++) free(x.channels[c].items);
    free(x.channels);
    free(x.seq);
    *out = s;
    return true;
}
