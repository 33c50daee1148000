// What the simulator's spans look like: Chrome-trace JSON and a text timeline (simulate.h).
#include <stdlib.h>

#include "schedule/simulate.h"

typedef enum TraceCategory {
    TRACE_FWD,
    TRACE_BWD,
    TRACE_WGRAD,
    TRACE_SEND,
    TRACE_RECV,
    TRACE_REDUCE,
    TRACE_LOSS,
    TRACE_OPTIMIZER,
    TRACE_COUNT
} TraceCategory;

// Category names and colours from Chrome's trace viewer palette (Perfetto picks its own).
static const struct {
    const char *name, *cname;
} categories[] = {
    [TRACE_FWD] = {"fwd", "good"},
    [TRACE_BWD] = {"bwd", "rail_response"},
    [TRACE_WGRAD] = {"wgrad", "rail_animation"},
    [TRACE_SEND] = {"send", "yellow"},
    [TRACE_RECV] = {"recv", "grey"},
    [TRACE_REDUCE] = {"reduce", "terrible"},
    [TRACE_LOSS] = {"loss", "olive"},
    [TRACE_OPTIMIZER] = {"optimizer", "cq_build_running"},
};
_Static_assert(sizeof categories / sizeof categories[0] == TRACE_COUNT, "a name and colour per category");

// Pass letters: F forward, B backward (or its input part), W weight gradient.
static char pass_letter(SchedOp op) {
    switch (op) {
    case SCHED_OP_FWD: return 'F';
    case SCHED_OP_BWD:
    case SCHED_OP_BWD_INPUT: return 'B';
    case SCHED_OP_BWD_WEIGHT: return 'W';
    default: return 0;
    }
}

// Tracks: rank r is tid r; the link from a to b is tid p + a p + b; rank r's reduce channel
// p + p p + r; the per-batch loss all-reduce p + p p + p.
static int link_tid(int p, int src, int dst) { return p + src * p + dst; }
static int reduce_tid(int p, int rank) { return p + p * p + rank; }
static int loss_reduce_tid(int p) { return p + p * p + p; }

static void trace_event(FILE *f, bool *first, const char *name, TraceCategory cat, int tid, const SchedSpan *span) {
    fprintf(f, "%s\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
               "\"cname\":\"%s\"",
            *first ? "" : ",", name, categories[cat].name, tid, span->start_s * 1e6,
            (span->end_s - span->start_s) * 1e6, categories[cat].cname);
    *first = false;
}

static void trace_track(FILE *f, bool *first, int tid, const char *name) {
    fprintf(f, "%s\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"args\":{\"name\":\"%s\"}},"
               "\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"args\":{\"sort_index\":%d}}",
            *first ? "" : ",", tid, name, tid, tid);
    *first = false;
}

void sched_trace_write(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim) {
    const int p = s->n_ranks;
    bool first = true;
    char name[96];
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"schedule\":\"%s\",\"ranks\":%d,\"chunks\":%d,"
               "\"micro_batches\":%d,\"replicas\":%d,\"step_s\":%.9g,\"images_per_s\":%.9g",
            sched_kind_name(s->kind), p, plan->chunks, plan->micro_batches, plan->replicas, sim->step_s,
            sim->images_per_s);
    if (sim->optimizer_spans) {  // simulated: the terms and bytes
        const SchedSimTerms *t = &sim->terms;
        fprintf(f, ",\"critical_rank\":%d,\"compute_s\":%.9g,\"bubble_s\":%.9g,\"p2p_s\":%.9g,\"allreduce_s\":%.9g,"
                   "\"loss_s\":%.9g,\"optimizer_s\":%.9g,\"loader_s\":%.9g,\"p2p_bytes\":%lld,\"allreduce_bytes\":%.0f",
                t->critical_rank, t->compute_s, t->bubble_s, t->p2p_s, t->allreduce_s, t->loss_s, t->optimizer_s,
                t->loader_s, (long long)sim->p2p_bytes, sim->allreduce_bytes);
    }
    fprintf(f, "},\n\"traceEvents\":[");
    bool *linked = yp_calloc((size_t)p * (size_t)p, sizeof *linked);  // links that carry a message
    for (int r = 0; r < p; r++)
        for (int i = 0; i < s->programs[r].n_instrs; i++) {
            const SchedInstr *in = &s->programs[r].instrs[i];
            bool send = in->op == SCHED_OP_SEND_ACT || in->op == SCHED_OP_SEND_GRAD;
            if (send && in->peer != r) linked[r * p + in->peer] = true;
        }
    for (int r = 0; r < p; r++) {
        snprintf(name, sizeof name, "rank %d", r);
        trace_track(f, &first, r, name);
        if (plan->replicas > 1) {
            snprintf(name, sizeof name, "rank %d reduce", r);
            trace_track(f, &first, reduce_tid(p, r), name);
        }
        for (int dst = 0; dst < p; dst++) {
            if (!linked[r * p + dst]) continue;
            snprintf(name, sizeof name, "link %d \\u2192 %d", r, dst);
            trace_track(f, &first, link_tid(p, r, dst), name);
        }
    }
    free(linked);
    if (sim->loss_reduce.end_s > sim->loss_reduce.start_s)
        trace_track(f, &first, loss_reduce_tid(p), "loss all-reduce");
    for (int r = 0; r < p; r++) {
        const SchedProgram *prog = &s->programs[r];
        for (int i = 0; i < prog->n_instrs; i++) {
            const SchedInstr *in = &prog->instrs[i];
            const SchedSpan *span = &sim->spans[r][i];
            // Messages are named after the pass of the micro-batch they carry: F (activation) or B (gradient).
            char pass = in->op == SCHED_OP_SEND_ACT || in->op == SCHED_OP_RECV_ACT ? 'F' : 'B';
            switch (in->op) {
            case SCHED_OP_FWD:
            case SCHED_OP_BWD:
            case SCHED_OP_BWD_INPUT:
            case SCHED_OP_BWD_WEIGHT:
                snprintf(name, sizeof name, "%c%d", pass_letter(in->op), in->micro);
                trace_event(f, &first, name,
                            in->op == SCHED_OP_FWD          ? TRACE_FWD
                            : in->op == SCHED_OP_BWD_WEIGHT ? TRACE_WGRAD
                                                            : TRACE_BWD,
                            r, span);
                fprintf(f, ",\"args\":{\"micro\":%d,\"stage\":%d,\"chunk\":%d}}", in->micro, in->stage, in->chunk);
                break;
            case SCHED_OP_SEND_ACT:
            case SCHED_OP_SEND_GRAD:
                if (in->peer == r) break;  // local hand-over: no link
                snprintf(name, sizeof name, "send %c%d c%d \\u2192 r%d", pass, in->micro, in->cut, in->peer);
                trace_event(f, &first, name, TRACE_SEND, link_tid(p, r, in->peer), span);
                fprintf(f, ",\"args\":{\"bytes\":%lld,\"stage\":%d}}", (long long)in->bytes, in->stage);
                break;
            case SCHED_OP_RECV_ACT:
            case SCHED_OP_RECV_GRAD:
                if (span->end_s <= span->start_s) break;  // only waits are worth drawing
                snprintf(name, sizeof name, "recv %c%d c%d \\u2190 r%d", pass, in->micro, in->cut, in->peer);
                trace_event(f, &first, name, TRACE_RECV, r, span);
                fprintf(f, ",\"args\":{\"bytes\":%lld,\"stage\":%d}}", (long long)in->bytes, in->stage);
                break;
            case SCHED_OP_REDUCE_GRADS:
                // A simulated step draws its reductions below; a measured one (no reductions) the
                // instruction's own span.
                if (plan->replicas == 1 || sim->reductions) break;
                snprintf(name, sizeof name, "reduce s%d", in->stage);
                trace_event(f, &first, name, TRACE_REDUCE, reduce_tid(p, r), span);
                fprintf(f, ",\"args\":{\"bytes\":%lld,\"chunk\":%d}}", (long long)in->bytes, in->chunk);
                break;
            default: break;  // LOAD and STEP take no time
            }
        }
        const SchedSpan *opt = sim->optimizer_spans ? &sim->optimizer_spans[r] : NULL;
        const SchedSpan *stats = sim->statistics_spans ? &sim->statistics_spans[r] : NULL;
        if (opt && opt->end_s > opt->start_s) {
            trace_event(f, &first, "optimizer", TRACE_OPTIMIZER, r, opt);
            fprintf(f, "}");
        }
        if (stats && stats->end_s > stats->start_s) {
            trace_event(f, &first, "average statistics", TRACE_REDUCE, r, stats);
            fprintf(f, "}");
        }
    }
    int last_rank = (plan->n_stages - 1) % p;
    for (int m = 0; m < plan->micro_batches && sim->loss_spans; m++) {
        if (sim->loss_spans[m].end_s <= sim->loss_spans[m].start_s) continue;
        snprintf(name, sizeof name, "loss %d", m);
        trace_event(f, &first, name, TRACE_LOSS, last_rank, &sim->loss_spans[m]);
        fprintf(f, ",\"args\":{\"micro\":%d,\"stage\":%d}}", m, plan->n_stages - 1);
    }
    for (int i = 0; i < sim->n_reductions; i++) {
        const SchedReduction *red = &sim->reductions[i];
        snprintf(name, sizeof name, "reduce s%d", red->stage);
        trace_event(f, &first, name, TRACE_REDUCE, reduce_tid(p, red->rank), &red->span);
        fprintf(f, ",\"args\":{\"bytes\":%lld,\"stage\":%d,\"across_nodes\":\"%s\"}}", (long long)red->bytes,
                red->stage, collective_algo_names[red->inter_algo]);
    }
    if (sim->loss_reduce.end_s > sim->loss_reduce.start_s) {
        trace_event(f, &first, "loss all-reduce", TRACE_LOSS, loss_reduce_tid(p), &sim->loss_reduce);
        fprintf(f, ",\"args\":{\"bytes\":%d}}", (int)PLAN_BATCH_REDUCE_BYTES);
    }
    fprintf(f, "\n]}\n");
}

// A duration with a unit that keeps it readable.
static void duration_format(char *buf, size_t n, double seconds) {
    if (seconds >= 1.0 || seconds == 0.0) snprintf(buf, n, "%.3g s", seconds);
    else if (seconds >= 1e-3) snprintf(buf, n, "%.3g ms", seconds * 1e3);
    else snprintf(buf, n, "%.3g us", seconds * 1e6);
}

void sched_timeline_print(FILE *f, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim, int width) {
    const int p = s->n_ranks;
    width = width < 24 ? 24 : width > 100 ? 100 : width;
    char label[16], step[32], column[32];
    int label_len = snprintf(label, sizeof label, "r%d |", p - 1);
    int cells = width - label_len;
    duration_format(step, sizeof step, sim->step_s);
    duration_format(column, sizeof column, sim->step_s / cells);
    fprintf(f, "%s: %d rank%s x %d chunk%s, %d micro-batches; step %s, one column %s\n", sched_kind_name(s->kind),
            p, p == 1 ? "" : "s", plan->chunks, plan->chunks == 1 ? "" : "s", plan->micro_batches, step, column);
    char *row = yp_malloc((size_t)cells + 1);
    for (int r = 0; r < p; r++) {
        const SchedProgram *prog = &s->programs[r];
        int i = 0;  // compute passes are sequential: one forward scan finds each column's pass
        for (int c = 0; c < cells; c++) {
            double t = (c + 0.5) * sim->step_s / cells;
            row[c] = '.';
            for (; i < prog->n_instrs; i++) {
                const SchedInstr *in = &prog->instrs[i];
                const SchedSpan *span = &sim->spans[r][i];
                if (!pass_letter(in->op) || span->end_s <= t) continue;
                char letter = pass_letter(in->op);
                if (span->start_s <= t) row[c] = (char)(in->chunk % 2 ? letter - 'A' + 'a' : letter);
                break;
            }
        }
        // Idle columns may hold the step terms: the last stage's loss, every rank's optimizer step.
        for (int c = 0; c < cells; c++) {
            double t = (c + 0.5) * sim->step_s / cells;
            const SchedSpan *opt = sim->optimizer_spans ? &sim->optimizer_spans[r] : NULL;
            if (row[c] != '.') continue;
            if (opt && opt->start_s <= t && t < opt->end_s) row[c] = 'O';
            for (int m = 0; m < plan->micro_batches && sim->loss_spans && r == (plan->n_stages - 1) % p; m++)
                if (sim->loss_spans[m].start_s <= t && t < sim->loss_spans[m].end_s) row[c] = 'L';
        }
        row[cells] = '\0';
        snprintf(label, sizeof label, "r%d", r);
        fprintf(f, "%-*s|%s\n", label_len - 1, label, row);
    }
    free(row);
}
