// sched_simulate: discrete-event timing of validated programs (simulate.h has the cost model).
#include <math.h>
#include <stdlib.h>

#include "schedule/simulate.h"

typedef struct Arrivals {  // arrival times of one directed channel's messages, in send order
    double *t;
    int n, read;
} Arrivals;

static double max_d(double a, double b) { return a > b ? a : b; }

static double compute_s(const PlanStage *st, SchedOp op) {
    switch (op) {
    case SCHED_OP_FWD: return st->fwd_s;
    case SCHED_OP_BWD: return st->bwd_input_s + st->bwd_weight_s;
    case SCHED_OP_BWD_INPUT: return st->bwd_input_s;
    case SCHED_OP_BWD_WEIGHT: return st->bwd_weight_s;
    default: return 0.0;
    }
}

// Ring all-reduce of n_bytes over `replicas` ranks: 2 (D - 1) steps, each moving 1/D of the data.
static double allreduce_s(const LinkModel *link, int replicas, int64_t n_bytes) {
    if (replicas <= 1) return 0.0;
    double d = (double)replicas;
    return 2.0 * (d - 1.0) / d * (double)n_bytes / link->bandwidth_bytes_per_s + 2.0 * (d - 1.0) * link->latency_s;
}

void sched_sim_destroy(SchedSim *sim) {
    if (!sim) return;
    for (int r = 0; r < sim->n_ranks; r++) free(sim->spans[r]);
    free(sim->spans);
    free(sim->busy_s);
    free(sim->bubble);
    free(sim->peak_activation_bytes);
    free(sim->link_bytes);
    free(sim);
}

SchedSim *sched_simulate(const PipelinePlan *plan, const Schedule *s) {
    YP_CHECK(s->n_ranks == plan->n_ranks);
    const int p = plan->n_ranks;
    YP_CHECK(p == 1 || plan->link.bandwidth_bytes_per_s > 0);
    YP_CHECK(plan->replicas == 1 || plan->reduce_link.bandwidth_bytes_per_s > 0);
    SchedSim *sim = yp_calloc(1, sizeof *sim);
    sim->n_ranks = p;
    sim->busy_s = yp_calloc((size_t)p, sizeof *sim->busy_s);
    sim->bubble = yp_calloc((size_t)p, sizeof *sim->bubble);
    sim->peak_activation_bytes = yp_calloc((size_t)p, sizeof *sim->peak_activation_bytes);
    sim->link_bytes = yp_calloc((size_t)p * (size_t)p, sizeof *sim->link_bytes);
    sim->spans = yp_calloc((size_t)p, sizeof *sim->spans);

    Arrivals *channels = yp_calloc((size_t)p * (size_t)p, sizeof *channels);
    double *clock = yp_calloc((size_t)p, sizeof *clock);        // when each rank is free again
    double *reduce_free = yp_calloc((size_t)p, sizeof *reduce_free);
    double *link_free = yp_calloc((size_t)p * (size_t)p, sizeof *link_free);
    int64_t *held = yp_calloc((size_t)p, sizeof *held);
    int *pc = yp_calloc((size_t)p, sizeof *pc);
    int remaining = 0;
    for (int r = 0; r < p; r++) {
        const SchedProgram *prog = &s->programs[r];
        sim->spans[r] = yp_calloc((size_t)prog->n_instrs + 1, sizeof *sim->spans[r]);
        remaining += prog->n_instrs;
        for (int i = 0; i < prog->n_instrs; i++)
            if (prog->instrs[i].op == SCHED_OP_SEND_ACT || prog->instrs[i].op == SCHED_OP_SEND_GRAD)
                channels[r * p + prog->instrs[i].peer].n++;
    }
    for (int c = 0; c < p * p; c++) {
        channels[c].t = yp_malloc((size_t)channels[c].n * sizeof *channels[c].t + 1);
        channels[c].n = 0;
    }

    // Sends never block, so each rank runs until a receive whose message is not sent yet; the times
    // do not depend on the order in which ranks are visited.
    while (remaining > 0) {
        bool progress = false;
        for (int r = 0; r < p; r++) {
            const SchedProgram *prog = &s->programs[r];
            for (; pc[r] < prog->n_instrs; pc[r]++, remaining--, progress = true) {
                const SchedInstr *in = &prog->instrs[pc[r]];
                SchedSpan *span = &sim->spans[r][pc[r]];
                double t = clock[r];
                *span = (SchedSpan){t, t};
                if (in->op == SCHED_OP_RECV_ACT || in->op == SCHED_OP_RECV_GRAD) {
                    Arrivals *a = &channels[in->peer * p + r];
                    if (a->read == a->n) break;
                    span->end_s = clock[r] = max_d(t, a->t[a->read++]);
                } else if (in->op == SCHED_OP_SEND_ACT || in->op == SCHED_OP_SEND_GRAD) {
                    Arrivals *a = &channels[r * p + in->peer];
                    if (in->peer != r) {
                        double *free_at = &link_free[r * p + in->peer];
                        span->start_s = max_d(t, *free_at);
                        span->end_s = *free_at = span->start_s + plan->link.latency_s +
                                                  (double)in->bytes / plan->link.bandwidth_bytes_per_s;
                        sim->link_bytes[r * p + in->peer] += in->bytes;
                    }
                    a->t[a->n++] = span->end_s;
                } else if (in->op == SCHED_OP_REDUCE_GRADS) {
                    span->start_s = max_d(t, reduce_free[r]);
                    span->end_s = reduce_free[r] =
                        span->start_s + allreduce_s(&plan->reduce_link, plan->replicas, in->bytes);
                } else if (in->op == SCHED_OP_STEP) {
                    span->start_s = span->end_s = clock[r] = max_d(t, reduce_free[r]);
                } else if (in->op != SCHED_OP_LOAD) {
                    const PlanStage *st = &plan->stages[in->stage];
                    double d = compute_s(st, in->op);
                    span->end_s = clock[r] = t + d;
                    sim->busy_s[r] += d;
                    if (in->op == SCHED_OP_FWD) held[r] += st->activation_bytes;
                    if (held[r] > sim->peak_activation_bytes[r]) sim->peak_activation_bytes[r] = held[r];
                    if (in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_WEIGHT) held[r] -= st->activation_bytes;
                }
            }
        }
        YP_CHECK(progress);  // sched_simulate needs a schedule that sched_validate accepts
    }

    for (int r = 0; r < p; r++) sim->step_s = max_d(sim->step_s, clock[r]);
    for (int r = 0; r < p; r++) sim->bubble[r] = sim->step_s > 0 ? 1.0 - sim->busy_s[r] / sim->step_s : 0.0;
    sim->images_per_s = sim->step_s > 0 ? (double)plan->replicas * plan->micro_batches *
                                              (double)plan->micro_batch_images / sim->step_s
                                        : 0.0;

    for (int c = 0; c < p * p; c++) free(channels[c].t);
    free(channels);
    free(clock);
    free(reduce_free);
    free(link_free);
    free(held);
    free(pc);
    return sim;
}

bool sched_in_flight(SchedKind kind, int n_ranks, int chunks, int micro_batches, int *in_flight, Error *err) {
    // A plan whose every stage holds one byte per micro-batch: the simulator's peak is then the count.
    int n_stages = n_ranks * chunks;
    PipelinePlan unit = {.n_stages = n_stages, .n_ranks = n_ranks, .chunks = chunks, .replicas = 1,
                         .micro_batches = micro_batches, .micro_batch_images = 1,
                         .link = {.latency_s = 0, .bandwidth_bytes_per_s = INFINITY},
                         .reduce_link = {.latency_s = 0, .bandwidth_bytes_per_s = INFINITY}};
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
