// sched_validate: every rank's program executed symbolically in lockstep rounds (program.h).
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schedule/program.h"

enum { HISTORY_ROUNDS = 8 };  // rounds shown in the report before where the ranks stopped

typedef struct InFlight {  // a message sent and not yet received: its SEND and the round it was sent
    int rank, index, round;
} InFlight;

typedef struct Queue {
    InFlight *items;
    int head, n, capacity;
} Queue;

typedef enum Outcome { RAN, WAITS, FAILED } Outcome;

typedef struct Validator {
    const PipelinePlan *plan;
    const Schedule *s;
    int p, m;
    Queue *channels;                 // (p x p): [src * p + dst]
    uint8_t *loaded, *fwd, *bin, *wgt;  // (n_stages x m): LOAD, FWD, input gradient, weight gradient done
    uint8_t *sent, *got;             // (2 x n_cuts x m): per direction (0 act, 1 grad), cut, micro-batch
    uint8_t reduced[PLAN_MAX_STAGES];
    uint8_t *stepped;                // (p)
    int *pc;                         // (p): next instruction of each rank
    int *history;  // (HISTORY_ROUNDS x p), a ring: instruction run, -1 waited, -2 finished, -3 no turn
    int n_rounds;
    Error *err;
} Validator;

// ---- naming things in messages -------------------------------------------------------------------

typedef struct Name {
    char text[96];
} Name;

static Name instr_name(const Validator *v, int rank, int index) {
    Name n;
    char buf[64];
    snprintf(n.text, sizeof n.text, "rank %d #%d %s", rank, index,
             sched_instr_format(buf, sizeof buf, &v->s->programs[rank].instrs[index]));
    return n;
}

// Sets err to "<rank r #i INSTR>: <what>" and returns FAILED.
static Outcome fail(Validator *v, int rank, int index, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static Outcome fail(Validator *v, int rank, int index, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    error_set(v->err, "%s: %s", instr_name(v, rank, index).text, what);
    return FAILED;
}

// ---- state ----------------------------------------------------------------------------------------

static int sm(const Validator *v, int stage, int micro) { return stage * v->m + micro; }

static int msg_index(const Validator *v, bool grad, int cut, int micro) {
    return ((grad ? 1 : 0) * v->plan->n_cuts + cut) * v->m + micro;
}

static bool is_send(SchedOp op) { return op == SCHED_OP_SEND_ACT || op == SCHED_OP_SEND_GRAD; }
static bool is_recv(SchedOp op) { return op == SCHED_OP_RECV_ACT || op == SCHED_OP_RECV_GRAD; }
static bool is_grad(SchedOp op) { return op == SCHED_OP_SEND_GRAD || op == SCHED_OP_RECV_GRAD; }

static void queue_push(Queue *q, InFlight f) {
    if (q->head + q->n == q->capacity) {
        q->capacity = q->capacity ? 2 * q->capacity : 16;
        q->items = yp_realloc(q->items, (size_t)q->capacity * sizeof *q->items);
    }
    q->items[q->head + q->n++] = f;
}

// ---- instruction checks ----------------------------------------------------------------------------

// Fields that must agree with the plan whatever the order: stage on this rank, micro-batch in range,
// the cut's ends, the peer and the byte counts.
static Outcome check_fields(Validator *v, int rank, int index) {
    const PipelinePlan *plan = v->plan;
    const SchedInstr *in = &v->s->programs[rank].instrs[index];
    if (in->op < 0 || in->op >= SCHED_OP_COUNT) return fail(v, rank, index, "unknown instruction %d", (int)in->op);
    if (in->op == SCHED_OP_STEP) return RAN;
    if (in->stage < 0 || in->stage >= plan->n_stages || in->stage % v->p != rank || in->chunk != in->stage / v->p)
        return fail(v, rank, index, "stage %d, chunk %d is not a stage of rank %d (stage = chunk x %d + rank)",
                    in->stage, in->chunk, rank, v->p);
    if (in->op == SCHED_OP_REDUCE_GRADS) {
        if (in->bytes != plan->stages[in->stage].param_bytes)
            return fail(v, rank, index, "reduces %lld bytes, stage %d has %lld", (long long)in->bytes, in->stage,
                        (long long)plan->stages[in->stage].param_bytes);
        return RAN;
    }
    if (in->micro < 0 || in->micro >= v->m)
        return fail(v, rank, index, "micro-batch %d out of [0, %d)", in->micro, v->m);
    if (in->op == SCHED_OP_LOAD && in->bytes != (in->stage == 0 ? plan->stages[0].input_bytes : 0))
        return fail(v, rank, index, "loads %lld bytes, stage %d's input has %lld", (long long)in->bytes, in->stage,
                    (long long)(in->stage == 0 ? plan->stages[0].input_bytes : 0));
    if (!is_send(in->op) && !is_recv(in->op)) return RAN;
    if (in->cut < 0 || in->cut >= plan->n_cuts) return fail(v, rank, index, "no cut %d", in->cut);
    const PlanCut *c = &plan->cuts[in->cut];
    // Activations leave from_stage and enter to_stage; gradients the other way round.
    bool at_producer = is_grad(in->op) == is_recv(in->op);
    int own = at_producer ? c->from_stage : c->to_stage, other = at_producer ? c->to_stage : c->from_stage;
    if (in->stage != own)
        return fail(v, rank, index, "cut %d runs from stage %d to stage %d: this end is stage %d", in->cut,
                    c->from_stage, c->to_stage, own);
    if (in->peer != other % v->p)
        return fail(v, rank, index, "peer should be rank %d (stage %d)", other % v->p, other);
    if (in->bytes != c->bytes)
        return fail(v, rank, index, "%lld bytes, cut %d has %lld", (long long)in->bytes, in->cut, (long long)c->bytes);
    return RAN;
}

// The first cut a pass still lacks: the activations entering `stage` for FWD (grad false), the
// gradients of those leaving it for a backward (grad true). -1 when all are there.
static int missing_cut(const Validator *v, int stage, int micro, bool grad) {
    for (int c = 0; c < v->plan->n_cuts; c++) {
        const PlanCut *cut = &v->plan->cuts[c];
        if ((grad ? cut->from_stage : cut->to_stage) == stage && !v->got[msg_index(v, grad, c, micro)]) return c;
    }
    return -1;
}

static Outcome run_recv(Validator *v, int rank, int index, int round) {
    const SchedInstr *in = &v->s->programs[rank].instrs[index];
    Queue *q = &v->channels[in->peer * v->p + rank];
    if (q->n == 0 || q->items[q->head].round >= round) return WAITS;
    InFlight f = q->items[q->head];
    const SchedInstr *out = &v->s->programs[f.rank].instrs[f.index];
    bool same = is_grad(out->op) == is_grad(in->op) && out->micro == in->micro && out->cut == in->cut &&
                out->bytes == in->bytes;
    if (!same) {
        // Say whether this rank receives that message later (receives out of order) or never.
        const SchedProgram *prog = &v->s->programs[rank];
        int later = -1;
        for (int j = index + 1; j < prog->n_instrs && later < 0; j++) {
            const SchedInstr *o = &prog->instrs[j];
            if (is_recv(o->op) && is_grad(o->op) == is_grad(out->op) && o->micro == out->micro &&
                o->cut == out->cut && o->peer == f.rank)
                later = j;
        }
        char where[64];
        if (later >= 0) snprintf(where, sizeof where, "rank %d receives it only later, at #%d", rank, later);
        else snprintf(where, sizeof where, "no receive on rank %d matches it", rank);
        return fail(v, rank, index, "the next message from rank %d is %s (%lld bytes), and %s", f.rank,
                    instr_name(v, f.rank, f.index).text, (long long)out->bytes, where);
    }
    int k = msg_index(v, is_grad(in->op), in->cut, in->micro);
    if (v->got[k]) return fail(v, rank, index, "received twice");
    v->got[k] = 1;
    q->head++;
    q->n--;
    return RAN;
}

static Outcome run_send(Validator *v, int rank, int index, int round) {
    const SchedInstr *in = &v->s->programs[rank].instrs[index];
    bool grad = is_grad(in->op);
    if (!grad && !v->fwd[sm(v, in->stage, in->micro)])
        return fail(v, rank, index, "sends an activation before FWD m%d s%d", in->micro, in->stage);
    if (grad && !v->bin[sm(v, in->stage, in->micro)])
        return fail(v, rank, index, "sends a gradient before the backward of m%d s%d", in->micro, in->stage);
    int k = msg_index(v, grad, in->cut, in->micro);
    if (v->sent[k]) return fail(v, rank, index, "sent twice");
    v->sent[k] = 1;
    queue_push(&v->channels[rank * v->p + in->peer], (InFlight){rank, index, round});
    return RAN;
}

static Outcome run_compute(Validator *v, int rank, int index) {
    const SchedInstr *in = &v->s->programs[rank].instrs[index];
    int k = sm(v, in->stage, in->micro), cut;
    bool loads = in->stage == 0 || in->stage == v->plan->n_stages - 1;
    switch (in->op) {
    case SCHED_OP_LOAD:
        if (!loads) return fail(v, rank, index, "only stage 0 and the last stage load data");
        if (v->loaded[k]) return fail(v, rank, index, "loaded twice");
        v->loaded[k] = 1;
        return RAN;
    case SCHED_OP_FWD:
        if (v->fwd[k]) return fail(v, rank, index, "second forward of this micro-batch");
        if (loads && !v->loaded[k]) return fail(v, rank, index, "runs before its LOAD");
        if ((cut = missing_cut(v, in->stage, in->micro, false)) >= 0)
            return fail(v, rank, index, "runs before receiving cut %d's activation (from rank %d)", cut,
                        v->plan->cuts[cut].from_stage % v->p);
        v->fwd[k] = 1;
        return RAN;
    case SCHED_OP_BWD:
    case SCHED_OP_BWD_INPUT:
        if (!v->fwd[k]) return fail(v, rank, index, "backward before its FWD m%d s%d", in->micro, in->stage);
        if (v->bin[k]) return fail(v, rank, index, "second backward of this micro-batch");
        if ((cut = missing_cut(v, in->stage, in->micro, true)) >= 0)
            return fail(v, rank, index, "runs before receiving cut %d's gradient (from rank %d)", cut,
                        v->plan->cuts[cut].to_stage % v->p);
        v->bin[k] = 1;
        if (in->op == SCHED_OP_BWD) v->wgt[k] = 1;
        return RAN;
    case SCHED_OP_BWD_WEIGHT:
        if (!v->bin[k]) return fail(v, rank, index, "weight gradient before BWD_INPUT m%d s%d", in->micro, in->stage);
        if (v->wgt[k]) return fail(v, rank, index, "second weight gradient of this micro-batch");
        v->wgt[k] = 1;
        return RAN;
    default:
        yp_fatal("not a compute instruction: %d", (int)in->op);
    }
}

// The first micro-batch whose weight gradient `stage` still lacks; -1 when none.
static int missing_weight(const Validator *v, int stage) {
    for (int i = 0; i < v->m; i++)
        if (!v->wgt[sm(v, stage, i)]) return i;
    return -1;
}

static Outcome run_instr(Validator *v, int rank, int index, int round) {
    Outcome o = check_fields(v, rank, index);
    if (o != RAN) return o;
    const SchedInstr *in = &v->s->programs[rank].instrs[index];
    int micro;
    switch (in->op) {
    case SCHED_OP_RECV_ACT:
    case SCHED_OP_RECV_GRAD: return run_recv(v, rank, index, round);
    case SCHED_OP_SEND_ACT:
    case SCHED_OP_SEND_GRAD: return run_send(v, rank, index, round);
    case SCHED_OP_REDUCE_GRADS:
        if ((micro = missing_weight(v, in->stage)) >= 0)
            return fail(v, rank, index, "reduces before the weight gradient of m%d s%d", micro, in->stage);
        if (v->reduced[in->stage]) return fail(v, rank, index, "gradients reduced twice");
        v->reduced[in->stage] = 1;
        return RAN;
    case SCHED_OP_STEP:
        if (v->stepped[rank]) return fail(v, rank, index, "second optimizer step");
        for (int stage = rank; stage < v->plan->n_stages; stage += v->p) {
            if ((micro = missing_weight(v, stage)) >= 0)
                return fail(v, rank, index, "steps before the weight gradient of m%d s%d", micro, stage);
            if (!v->reduced[stage]) return fail(v, rank, index, "steps before REDUCE_GRADS of stage %d", stage);
        }
        v->stepped[rank] = 1;
        return RAN;
    default: return run_compute(v, rank, index);
    }
}

// ---- the report -----------------------------------------------------------------------------------

// The last rounds (one row each: what every rank ran, '.' waited, '-' finished, blank: no turn
// before the failure) and a final row with the instruction each rank stopped at ('>' waiting
// there, '!' the failing one).
static void report_write(const Validator *v, FILE *f, int failed_rank) {
    enum { CELL = 48 };
    const int p = v->p, first = v->n_rounds > HISTORY_ROUNDS ? v->n_rounds - HISTORY_ROUNDS : 0;
    const int n_rows = v->n_rounds - first + 2;  // header, rounds, stop
    char(*cells)[CELL] = yp_calloc((size_t)n_rows * (size_t)p, CELL);
    char text[CELL];
    for (int r = 0; r < p; r++) {
        const SchedProgram *prog = &v->s->programs[r];
        snprintf(cells[r], CELL, "rank %d", r);
        for (int t = first; t < v->n_rounds; t++) {
            int idx = v->history[(t % HISTORY_ROUNDS) * p + r];
            char *cell = cells[(t - first + 1) * p + r];
            if (idx >= 0)
                snprintf(cell, CELL, "#%d %s", idx, sched_instr_format(text, sizeof text, &prog->instrs[idx]));
            else snprintf(cell, CELL, "%s", idx == -1 ? "." : idx == -2 ? "-" : "");
        }
        char *cell = cells[(n_rows - 1) * p + r];
        if (v->pc[r] >= prog->n_instrs) snprintf(cell, CELL, "(finished)");
        else snprintf(cell, CELL, "%c#%d %s", r == failed_rank ? '!' : '>', v->pc[r],
                      sched_instr_format(text, sizeof text, &prog->instrs[v->pc[r]]));
    }
    int *width = yp_calloc((size_t)p, sizeof *width);
    for (int i = 0; i < n_rows * p; i++) {
        int len = (int)strlen(cells[i]);
        if (len > width[i % p]) width[i % p] = len;
    }
    for (int row = 0; row < n_rows; row++) {
        if (row == 0) fprintf(f, "%-5s", "round");
        else if (row == n_rows - 1) fprintf(f, "%-5s", "stop");
        else fprintf(f, "%-5d", first + row - 1);
        for (int r = 0; r < p; r++) fprintf(f, " | %-*s", width[r], cells[row * p + r]);
        fputc('\n', f);
    }
    free(width);
    free(cells);
}

// ---- the end state ---------------------------------------------------------------------------------

static bool check_deadlock(Validator *v) {
    char text[1000];
    size_t len = (size_t)snprintf(text, sizeof text, "deadlock, every rank waits:");
    const char *sep = " ";
    for (int r = 0; r < v->p && len < sizeof text; r++) {
        if (v->pc[r] >= v->s->programs[r].n_instrs) continue;
        int peer = v->s->programs[r].instrs[v->pc[r]].peer;
        bool peer_done = v->pc[peer] >= v->s->programs[peer].n_instrs;
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s for rank %d%s", sep,
                                instr_name(v, r, v->pc[r]).text, peer, peer_done ? ", which has finished" : "");
        sep = "; ";
    }
    return error_set(v->err, "%s", text);
}

static bool check_complete(Validator *v) {
    const PipelinePlan *plan = v->plan;
    for (int src = 0; src < v->p; src++) {
        for (int dst = 0; dst < v->p; dst++) {
            const Queue *q = &v->channels[src * v->p + dst];
            if (q->n > 0)
                return error_set(v->err, "%s: never received by rank %d",
                                 instr_name(v, q->items[q->head].rank, q->items[q->head].index).text, dst);
        }
    }
    for (int stage = 0; stage < plan->n_stages; stage++) {
        int rank = stage % v->p;
        for (int i = 0; i < v->m; i++) {
            const char *missing = !v->fwd[sm(v, stage, i)]   ? "FWD"
                                  : !v->bin[sm(v, stage, i)] ? "a backward"
                                  : !v->wgt[sm(v, stage, i)] ? "BWD_WEIGHT"
                                                             : NULL;
            if (missing) return error_set(v->err, "rank %d never runs %s of m%d s%d", rank, missing, i, stage);
        }
        if (!v->reduced[stage])
            return error_set(v->err, "rank %d never reduces the gradients of stage %d", rank, stage);
    }
    for (int r = 0; r < v->p; r++)
        if (!v->stepped[r]) return error_set(v->err, "rank %d never runs STEP", r);
    return true;
}

bool sched_validate(const PipelinePlan *plan, const Schedule *s, FILE *report, Error *err) {
    YP_CHECK(s->n_ranks == plan->n_ranks && plan->n_stages == plan->n_ranks * plan->chunks);
    const int p = plan->n_ranks, m = plan->micro_batches;
    size_t n_sm = (size_t)plan->n_stages * (size_t)m, n_msg = 2 * (size_t)plan->n_cuts * (size_t)m + 1;
    Validator v = {.plan = plan, .s = s, .p = p, .m = m, .err = err};
    v.channels = yp_calloc((size_t)p * (size_t)p, sizeof *v.channels);
    v.loaded = yp_calloc(n_sm, 1);
    v.fwd = yp_calloc(n_sm, 1);
    v.bin = yp_calloc(n_sm, 1);
    v.wgt = yp_calloc(n_sm, 1);
    v.sent = yp_calloc(n_msg, 1);
    v.got = yp_calloc(n_msg, 1);
    v.stepped = yp_calloc((size_t)p, 1);
    v.pc = yp_calloc((size_t)p, sizeof *v.pc);
    v.history = yp_calloc((size_t)HISTORY_ROUNDS * (size_t)p, sizeof *v.history);

    bool ok = true;
    int failed_rank = -1;
    for (int round = 0;; round++) {
        bool all_done = true, ran = false;
        for (int r = 0; r < p; r++) all_done = all_done && v.pc[r] >= s->programs[r].n_instrs;
        if (all_done) {
            ok = check_complete(&v);
            break;
        }
        int *row = &v.history[(round % HISTORY_ROUNDS) * p];
        v.n_rounds = round + 1;
        for (int r = 0; r < p; r++) row[r] = v.pc[r] >= s->programs[r].n_instrs ? -2 : -3;
        for (int r = 0; r < p && ok; r++) {
            if (v.pc[r] >= s->programs[r].n_instrs) continue;
            Outcome o = run_instr(&v, r, v.pc[r], round);
            row[r] = o == RAN ? v.pc[r]++ : -1;
            ran = ran || o == RAN;
            if (o == FAILED) {
                ok = false;
                failed_rank = r;
            }
        }
        if (ok && !ran) ok = check_deadlock(&v);
        if (!ok) break;
    }
    if (!ok && report) report_write(&v, report, failed_rank);

    for (int c = 0; c < p * p; c++) free(v.channels[c].items);
    free(v.channels);
    free(v.loaded);
    free(v.fwd);
    free(v.bin);
    free(v.wgt);
    free(v.sent);
    free(v.got);
    free(v.stepped);
    free(v.pc);
    free(v.history);
    return ok;
}
