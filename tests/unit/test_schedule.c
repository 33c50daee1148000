// Pipeline schedules: the generators, the validator, the simulator and the trace/timeline writers.
//
// The references are independent of the code: the validator's verdicts on hand-broken programs, and
// closed-form results from the papers for equal stage costs and free communication (GPipe and 1F1B:
// bubble (p - 1) / (m + p - 1) of the step; Megatron's interleaved 1F1B: (p - 1) / (v m) of the ideal
// compute time; 1F1B holds at most p micro-batches on the first stage, GPipe m; Zero Bubble H1's
// bubble (p - 1)(F + B - W)). With integer costs every simulated time is an exact sum of integers.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedule/program.h"
#include "schedule/simulate.h"
#include "tests/common/assert_close.h"

// Bubble fractions are ratios of exact integer times: only the final division rounds (< 1e-15).
static const double ratio_tol = 1e-12;


// ---- plans -----------------------------------------------------------------------------------------

enum { ACT_BYTES = 1, PARAM_BYTES = 4000, CUT_BYTES = 300 };

static int cut_compare(const void *a, const void *b) {
    const PlanCut *x = a, *y = b;
    if (x->from_stage != y->from_stage) return x->from_stage - y->from_stage;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->to_stage - y->to_stage;
}

// A plan of `ranks` x `chunks` stages with equal costs (F = 1, B = 1, W = 1 s), free communication
// and one activation byte per micro-batch. Cuts: stage s -> s + 1 (two of them out of stage 0, as
// when a layer's output and a later one both cross); with skips also s -> last stage for every
// s < last - 1 and 1 -> 3 (YOLO's backbone features consumed by the head several stages later).
static PipelinePlan plan_make(int ranks, int chunks, int micro_batches, int replicas, bool skips) {
    PipelinePlan plan = {.n_ranks = ranks, .chunks = chunks, .n_stages = ranks * chunks, .replicas = replicas,
                         .micro_batches = micro_batches, .micro_batch_images = 4};
    int S = plan.n_stages;
    for (int s = 0; s < S; s++)
        plan.stages[s] = (PlanStage){.first_layer = 10 * s, .last_layer = 10 * s + 9, .fwd_s = 1, .bwd_input_s = 1,
                                     .bwd_weight_s = 1, .param_bytes = PARAM_BYTES, .activation_bytes = ACT_BYTES,
                                     .input_bytes = s == 0 ? 1000 : 0};
    plan.cuts = calloc((size_t)(3 * S + 4), sizeof *plan.cuts);
    for (int s = 0; s + 1 < S; s++)
        plan.cuts[plan.n_cuts++] = (PlanCut){.layer = 10 * s + 9, .from_stage = s, .to_stage = s + 1};
    if (S > 1) plan.cuts[plan.n_cuts++] = (PlanCut){.layer = 5, .from_stage = 0, .to_stage = 1};
    if (skips) {
        for (int s = 0; s + 2 < S; s++)
            plan.cuts[plan.n_cuts++] = (PlanCut){.layer = 10 * s + 4, .from_stage = s, .to_stage = S - 1};
        if (S > 4) plan.cuts[plan.n_cuts++] = (PlanCut){.layer = 16, .from_stage = 1, .to_stage = 3};
    }
    qsort(plan.cuts, (size_t)plan.n_cuts, sizeof *plan.cuts, cut_compare);
    for (int c = 0; c < plan.n_cuts; c++) {
        plan.cuts[c].id = c;
        plan.cuts[c].bytes = CUT_BYTES + c;
    }
    plan.cluster.intra = (LinkModel){.latency_s = 0, .bandwidth_bytes_per_s = INFINITY};
    plan.cluster.intra_collective = (LinkModel){.latency_s = 0, .bandwidth_bytes_per_s = INFINITY};
    return plan;
}

static Schedule *build_ok(const PipelinePlan *plan, SchedKind kind) {
    Schedule *s = NULL;
    Error err = {0};
    if (!sched_build(plan, kind, &s, &err)) fail_msg("%s: %s", sched_kind_name(kind), err.message);
    if (!sched_validate(plan, s, stderr, &err)) fail_msg("%s: %s", sched_kind_name(kind), err.message);
    return s;
}

// ---- names -----------------------------------------------------------------------------------------

static void test_names(void **state) {
    (void)state;
    const char *names[] = {"gpipe", "1f1b", "interleaved", "zb-h1"};
    for (int k = 0; k < SCHED_KIND_COUNT; k++) {
        SchedKind kind;
        assert_true(sched_kind_parse(names[k], &kind));
        assert_int_equal(kind, k);
        assert_string_equal(sched_kind_name(kind), names[k]);
    }
    SchedKind kind;
    assert_false(sched_kind_parse("1F1B", &kind));
    assert_string_equal(sched_op_name(SCHED_OP_BWD_WEIGHT), "BWD_WEIGHT");
}

// ---- every valid combination validates; the others are refused with what is required ---------------

static void test_validate_all_combinations(void **state) {
    (void)state;
    int n_valid = 0, n_refused = 0;
    for (int kind = 0; kind < SCHED_KIND_COUNT; kind++) {
        for (int chunks = 1; chunks <= 2; chunks++) {
            for (int p = 1; p <= 8; p++) {
                for (int m = 1; m <= 32; m++) {
                    for (int variant = 0; variant < 4; variant++) {
                        bool skips = variant & 1;
                        int replicas = 1 + (variant >> 1);
                        PipelinePlan plan = plan_make(p, chunks, m, replicas, skips);
                        // Some link costs, so that the simulator's waits are exercised too.
                        plan.cluster.intra = (LinkModel){.latency_s = 0.25, .bandwidth_bytes_per_s = 1000};
                        plan.cluster.intra_collective = (LinkModel){.latency_s = 0.1, .bandwidth_bytes_per_s = 2000};
                        const char *refusal = NULL;
                        if (kind != SCHED_KIND_INTERLEAVED && chunks > 1) refusal = "use parallel.chunks: 1";
                        else if (kind == SCHED_KIND_INTERLEAVED && chunks == 1) refusal = "needs parallel.chunks >= 2";
                        else if (kind == SCHED_KIND_INTERLEAVED && m % p)
                            refusal = "to be a multiple of parallel.stages";
                        Schedule *s = NULL;
                        Error err = {0};
                        bool built = sched_build(&plan, (SchedKind)kind, &s, &err);
                        if (refusal) {
                            if (built || !strstr(err.message, refusal))
                                fail_msg("%s p=%d v=%d m=%d: expected a refusal \"%s\", got \"%s\"",
                                         sched_kind_name(kind), p, chunks, m, refusal, err.message);
                            n_refused++;
                        } else {
                            if (!built)
                                fail_msg("%s p=%d v=%d m=%d: %s", sched_kind_name(kind), p, chunks, m, err.message);
                            if (!sched_validate(&plan, s, stderr, &err))
                                fail_msg("%s p=%d v=%d m=%d skips=%d: %s", sched_kind_name(kind), p, chunks, m, skips,
                                         err.message);
                            SchedSim *sim = sched_simulate(&plan, s);
                            assert_true(sim->step_s > 0);
                            sched_sim_destroy(sim);
                            n_valid++;
                        }
                        sched_destroy(s);
                        free(plan.cuts);
                    }
                }
            }
        }
    }
    // gpipe, 1f1b, zb-h1 with one chunk (3 x 8 x 32), interleaved with two where m % p == 0.
    int interleaved = 0;
    for (int p = 1; p <= 8; p++) interleaved += 32 / p;
    assert_int_equal(n_valid, 4 * (3 * 8 * 32 + interleaved));
    // The rest: the other schedules with two chunks, interleaved with one, or with m % p != 0.
    assert_int_equal(n_refused, 4 * (3 * 8 * 32 + 8 * 32 + (8 * 32 - interleaved)));
}

static void test_refusal_messages(void **state) {
    (void)state;
    PipelinePlan plan = plan_make(4, 2, 6, 1, false);
    Schedule *s = NULL;
    Error err = {0};
    assert_false(sched_build(&plan, SCHED_KIND_INTERLEAVED, &s, &err));
    assert_null(s);
    assert_string_equal(err.message, "schedule interleaved needs parallel.micro_batches (6) to be a multiple of "
                                     "parallel.stages (4), as Megatron-LM requires: use 4 or 8");
    assert_false(sched_build(&plan, SCHED_KIND_ZB_H1, &s, &err));
    assert_string_equal(err.message, "schedule zb-h1 runs one model chunk per rank but parallel.chunks is 2: use "
                                     "parallel.chunks: 1, or schedule interleaved for several chunks");
    free(plan.cuts);
}

// ---- hand-broken programs ---------------------------------------------------------------------------

static int find_instr(const SchedProgram *prog, SchedOp op, int micro, int from) {
    for (int i = from; i < prog->n_instrs; i++)
        if (prog->instrs[i].op == op && (micro < 0 || prog->instrs[i].micro == micro)) return i;
    fail_msg("no %s m%d", sched_op_name(op), micro);
    return -1;
}

static void instr_remove(SchedProgram *prog, int i) {
    memmove(&prog->instrs[i], &prog->instrs[i + 1], (size_t)(prog->n_instrs - i - 1) * sizeof *prog->instrs);
    prog->n_instrs--;
}

static void instr_swap(SchedProgram *prog, int i, int j) {
    SchedInstr t = prog->instrs[i];
    prog->instrs[i] = prog->instrs[j];
    prog->instrs[j] = t;
}

// Moves instruction i to position j < i.
static void instr_move_before(SchedProgram *prog, int i, int j) {
    SchedInstr t = prog->instrs[i];
    memmove(&prog->instrs[j + 1], &prog->instrs[j], (size_t)(i - j) * sizeof *prog->instrs);
    prog->instrs[j] = t;
}

// Validates a broken schedule: it must fail with a message containing every one of `expect` (NULL
// terminated), and the report must show where each rank stopped.
static void expect_invalid(const PipelinePlan *plan, const Schedule *s, const char *const *expect) {
    char *report = NULL;
    size_t report_len = 0;
    FILE *f = open_memstream(&report, &report_len);
    Error err = {0};
    bool ok = sched_validate(plan, s, f, &err);
    fclose(f);
    if (ok) fail_msg("a broken schedule validated");
    for (const char *const *e = expect; *e; e++)
        if (!strstr(err.message, *e)) fail_msg("message \"%s\" lacks \"%s\"\n%s", err.message, *e, report);
    assert_non_null(strstr(report, "round"));
    assert_non_null(strstr(report, "stop"));
    free(report);
}

static void test_dropped_receive(void **state) {
    (void)state;
    // Two cuts from stage 0 to 1: rank 1 receives m0's two activations in a row; drop the first.
    PipelinePlan plan = plan_make(2, 1, 4, 1, false);
    Schedule *s = build_ok(&plan, SCHED_KIND_1F1B);
    SchedProgram *r1 = &s->programs[1];
    int i = find_instr(r1, SCHED_OP_RECV_ACT, 0, 0);
    assert_int_equal(r1->instrs[i].cut, 0);
    instr_remove(r1, i);
    expect_invalid(&plan, s, (const char *[]){"rank 1 #1 RECV_ACT m0 s1 c1<r0", "rank 0 #2 SEND_ACT m0 s0 c0>r1",
                                              "no receive on rank 1 matches it", NULL});
    sched_destroy(s);

    // Dropping the last receive before a pass: the pass runs without its input.
    s = build_ok(&plan, SCHED_KIND_1F1B);
    SchedProgram *r0 = &s->programs[0];
    i = find_instr(r0, SCHED_OP_RECV_GRAD, 2, 0) + 1;
    assert_int_equal(r0->instrs[i].cut, 1);
    instr_remove(r0, i);
    expect_invalid(&plan, s, (const char *[]){"rank 0", "BWD m2 s0: runs before receiving cut 1's gradient", NULL});
    sched_destroy(s);
    free(plan.cuts);
}

static void test_swapped_sends(void **state) {
    (void)state;
    PipelinePlan plan = plan_make(2, 1, 4, 1, false);
    Schedule *s = build_ok(&plan, SCHED_KIND_GPIPE);
    SchedProgram *r0 = &s->programs[0];
    int i = find_instr(r0, SCHED_OP_SEND_ACT, 1, 0);
    assert_true(r0->instrs[i + 1].op == SCHED_OP_SEND_ACT && r0->instrs[i + 1].micro == 1);
    instr_swap(r0, i, i + 1);
    char culprit[96];
    snprintf(culprit, sizeof culprit, "rank 0 #%d SEND_ACT m1 s0 c1>r1", i);
    expect_invalid(&plan, s, (const char *[]){"rank 1", "RECV_ACT m1 s1 c0<r0", culprit,
                                              "rank 1 receives it only later", NULL});
    sched_destroy(s);
    free(plan.cuts);
}

static void test_backward_before_forward(void **state) {
    (void)state;
    PipelinePlan plan = plan_make(3, 1, 4, 2, true);
    Schedule *s = build_ok(&plan, SCHED_KIND_1F1B);
    SchedProgram *last = &s->programs[2];
    int f = find_instr(last, SCHED_OP_FWD, 1, 0), b = find_instr(last, SCHED_OP_BWD, 1, 0);
    instr_move_before(last, b, f);
    char culprit[96];
    snprintf(culprit, sizeof culprit, "rank 2 #%d BWD m1 s2: backward before its FWD m1 s2", f);
    expect_invalid(&plan, s, (const char *[]){culprit, NULL});
    sched_destroy(s);

    // zb-h1: a weight gradient before its input gradient.
    s = build_ok(&plan, SCHED_KIND_ZB_H1);
    SchedProgram *r1 = &s->programs[1];
    int bi = find_instr(r1, SCHED_OP_BWD_INPUT, 0, 0), w = find_instr(r1, SCHED_OP_BWD_WEIGHT, 0, 0);
    instr_move_before(r1, w, bi);
    expect_invalid(&plan, s, (const char *[]){"rank 1", "BWD_WEIGHT m0 s1: weight gradient before BWD_INPUT", NULL});
    sched_destroy(s);
    free(plan.cuts);
}

static void test_deadlock_and_step(void **state) {
    (void)state;
    PipelinePlan plan = plan_make(2, 1, 2, 1, false);
    Schedule *s = build_ok(&plan, SCHED_KIND_1F1B);
    // Rank 0 waits for a gradient before sending the activation that would produce it.
    SchedProgram *r0 = &s->programs[0];
    instr_move_before(r0, find_instr(r0, SCHED_OP_RECV_GRAD, 0, 0), 0);
    expect_invalid(&plan, s, (const char *[]){"deadlock", "rank 0 #0 RECV_GRAD m0 s0 c0<r1 for rank 1",
                                              "rank 1 #1 RECV_ACT m0 s1 c0<r0 for rank 0", NULL});
    sched_destroy(s);

    // The optimizer step before the gradient reduction.
    s = build_ok(&plan, SCHED_KIND_1F1B);
    r0 = &s->programs[0];
    int step = r0->n_instrs - 1, reduce = find_instr(r0, SCHED_OP_REDUCE_GRADS, -1, 0);
    instr_move_before(r0, step, reduce);
    expect_invalid(&plan, s, (const char *[]){"rank 0", "STEP: steps before REDUCE_GRADS of stage 0", NULL});
    sched_destroy(s);

    // A rank that ends early: its peer waits forever.
    s = build_ok(&plan, SCHED_KIND_1F1B);
    SchedProgram *r1 = &s->programs[1];
    r1->n_instrs = find_instr(r1, SCHED_OP_RECV_ACT, 1, 0);
    expect_invalid(&plan, s,
                   (const char *[]){"deadlock", "rank 0 #11 RECV_GRAD m1 s0 c0<r1 for rank 1, which has finished", NULL});
    // Both end early: rank 0's last activations are never received.
    s->programs[0].n_instrs = find_instr(&s->programs[0], SCHED_OP_SEND_ACT, 1, 0) + 1;
    expect_invalid(&plan, s, (const char *[]){"rank 0 #6 SEND_ACT m1 s0 c0>r1: never received by rank 1", NULL});
    sched_destroy(s);
    free(plan.cuts);
}

// ---- simulated bubbles and memory --------------------------------------------------------------------

static SchedSim *simulate(const PipelinePlan *plan, SchedKind kind) {
    Schedule *s = build_ok(plan, kind);
    SchedSim *sim = sched_simulate(plan, s);
    sched_destroy(s);
    return sim;
}

static void test_bubble_gpipe_1f1b(void **state) {
    (void)state;
    for (int p = 1; p <= 8; p++) {
        for (int m = 1; m <= 32; m++) {
            for (int skips = 0; skips < 2; skips++) {
                PipelinePlan plan = plan_make(p, 1, m, 1, skips);
                for (SchedKind kind = SCHED_KIND_GPIPE; kind <= SCHED_KIND_1F1B; kind++) {
                    SchedSim *sim = simulate(&plan, kind);
                    // F = 1 and B = 2 per stage: step (m + p - 1) (F + B), busy m (F + B) on every rank.
                    assert_close(sim->step_s, 3.0 * (m + p - 1), 0.0, 0.0);
                    for (int r = 0; r < p; r++) {
                        assert_close(sim->busy_s[r], 3.0 * m, 0.0, 0.0);
                        assert_close(sim->bubble[r], (double)(p - 1) / (m + p - 1), ratio_tol, 0.0);
                    }
                    // Activations in flight: GPipe all m everywhere, 1F1B at most p - s on stage s.
                    for (int r = 0; r < p; r++)
                        assert_int_equal(sim->peak_activation_bytes[r],
                                         kind == SCHED_KIND_GPIPE ? m : (m < p - r ? m : p - r));
                    assert_close(sim->images_per_s, m * 4 / sim->step_s, 1e-12 * sim->images_per_s, 0.0);
                    sched_sim_destroy(sim);
                }
                free(plan.cuts);
            }
        }
    }
}

// Narayanan et al. 2021 (Megatron-LM, section 2.2.2): with v chunks per rank the bubble time is
// (p - 1)(t_f + t_b) / v where t_f, t_b are a rank's whole forward and backward of one micro-batch,
// against an ideal time m (t_f + t_b): bubble / ideal = (p - 1) / (v m). Here a chunk takes F = 1,
// B = 2, so t_f + t_b = 3 v, the ideal time (= each rank's busy time) 3 v m, and the bubble
// step - busy should be 3 (p - 1).
static void test_bubble_interleaved(void **state) {
    (void)state;
    for (int v = 2; v <= 3; v++) {
        for (int p = 1; p <= 8; p++) {
            for (int m = p; m <= 32; m += p) {
                PipelinePlan plan = plan_make(p, v, m, 1, true);
                SchedSim *sim = simulate(&plan, SCHED_KIND_INTERLEAVED);
                for (int r = 0; r < p; r++) {
                    assert_close(sim->busy_s[r], 3.0 * v * m, 0.0, 0.0);
                    double bubble_over_ideal = (sim->step_s - sim->busy_s[r]) / sim->busy_s[r];
                    if (!close_enough(bubble_over_ideal, (double)(p - 1) / (v * m), ratio_tol, 0.0))
                        fail_msg("p=%d v=%d m=%d rank %d: bubble/ideal %g, expected %g", p, v, m, r, bubble_over_ideal,
                                 (double)(p - 1) / (v * m));
                }
                sched_sim_destroy(sim);
                free(plan.cuts);
            }
        }
    }
}

// Qi et al. 2023 (Zero Bubble Pipeline Parallelism, section 3.1): ZB-H1's bubble is (p - 1)(F + B - W)
// against 1F1B's (p - 1)(F + B + W), at the same peak of p micro-batches in flight.
static void test_bubble_zb_h1(void **state) {
    (void)state;
    for (int p = 2; p <= 8; p++) {
        for (int m = p; m <= 32; m++) {
            PipelinePlan plan = plan_make(p, 1, m, 1, false);
            SchedSim *zb = simulate(&plan, SCHED_KIND_ZB_H1), *base = simulate(&plan, SCHED_KIND_1F1B);
            assert_true(zb->step_s < base->step_s);
            assert_close(zb->step_s, 3.0 * m + (p - 1), 0.0, 0.0);
            int64_t peak_zb = 0, peak_base = 0;
            for (int r = 0; r < p; r++) {
                peak_zb = zb->peak_activation_bytes[r] > peak_zb ? zb->peak_activation_bytes[r] : peak_zb;
                peak_base = base->peak_activation_bytes[r] > peak_base ? base->peak_activation_bytes[r] : peak_base;
            }
            assert_int_equal(peak_zb, p);
            assert_int_equal(peak_base, p);
            sched_sim_destroy(zb);
            sched_sim_destroy(base);
            free(plan.cuts);
        }
    }
}

// Link and reduction costs on cases small enough to time by hand.
static void test_communication_costs(void **state) {
    (void)state;
    // Two stages, one micro-batch, gpipe, latency 0.5 s and 100 B/s: F0 (1 s); cuts 0 (300 bytes) and
    // 1 (301 bytes) one after the other on link 0 -> 1 (3.5 s, 3.51 s); F1 (1 s), B1 (2 s); the two
    // gradients back on link 1 -> 0; B0 (2 s).
    PipelinePlan plan = plan_make(2, 1, 1, 1, false);
    plan.cluster.intra = (LinkModel){.latency_s = 0.5, .bandwidth_bytes_per_s = 100};
    SchedSim *sim = simulate(&plan, SCHED_KIND_GPIPE);
    double acts = 1 + (0.5 + 3.00) + (0.5 + 3.01), grads = (0.5 + 3.00) + (0.5 + 3.01);
    assert_close(sim->step_s, acts + 1 + 2 + grads + 2, 1e-12, 0.0);
    assert_int_equal(sim->link_bytes[0 * 2 + 1], 601);
    assert_int_equal(sim->link_bytes[1 * 2 + 0], 601);
    assert_int_equal(sim->link_bytes[0], 0);
    sched_sim_destroy(sim);
    free(plan.cuts);

    // One stage, two replicas: the ring all-reduce of 4000 bytes over D = 2 moves 2 (D - 1) / D x 4000
    // bytes = 4000 at 2000 B/s plus 2 (D - 1) latencies of 0.25 s: 2.5 s after the last backward.
    // Then the per-batch loss all-reduce of PLAN_BATCH_REDUCE_BYTES (56) over the world's 2 ranks on
    // the same link: 56 / 2000 + 2 x 0.25 = 0.528 s. (56 / 2000 rounds: 1e-12.)
    plan = plan_make(1, 1, 4, 2, false);
    plan.cluster.intra_collective = (LinkModel){.latency_s = 0.25, .bandwidth_bytes_per_s = 2000};
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 4 * 3.0 + 2.5 + 0.528, 1e-12, 0.0);
    assert_close(sim->images_per_s, 2 * 4 * 4 / 15.028, 1e-12, 0.0);
    assert_close(sim->terms.allreduce_s, 2.5, 1e-12, 0.0);
    assert_close(sim->terms.loss_s, 0.528, 1e-12, 0.0);
    assert_close(sim->terms.compute_s, 12.0, 0.0, 0.0);
    // Bytes sent: each of the 2 ranks sends 2 (D - 1) / D x 4000 of gradients and 56 of loss parts.
    assert_close(sim->allreduce_bytes, 2 * (4000.0 + 56.0), 0.0, 0.0);
    sched_sim_destroy(sim);
    plan.replicas = 1;  // the same programs, no reduction cost
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 12.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    free(plan.cuts);
}

// ---- trace and timeline ----------------------------------------------------------------------------

// A tiny JSON syntax checker that also counts trace events by category and "ph".
typedef struct Json {
    const char *p;
    int n_complete, n_by_cat[8];
} Json;

static const char *const cats[] = {"fwd", "bwd", "wgrad", "send", "recv", "reduce", "loss", "optimizer"};

static void json_ws(Json *j) {
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}

static bool json_string(Json *j, char *out, size_t n) {
    if (*j->p != '"') return false;
    size_t len = 0;
    for (j->p++; *j->p != '"'; j->p++) {
        if (!*j->p || (unsigned char)*j->p < 0x20) return false;
        if (*j->p == '\\') {
            j->p++;
            if (*j->p == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (!strchr("0123456789abcdefABCDEF", j->p[k]) || !j->p[k]) return false;
                j->p += 4;
            } else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
                return false;
            }
        }
        if (len + 1 < n) out[len++] = *j->p;
    }
    j->p++;
    out[len] = '\0';
    return true;
}

static bool json_value(Json *j, const char *key);

static bool json_object(Json *j) {
    j->p++;
    json_ws(j);
    if (*j->p == '}') return j->p++, true;
    for (;;) {
        char key[64];
        json_ws(j);
        if (!json_string(j, key, sizeof key)) return false;
        json_ws(j);
        if (*j->p++ != ':') return false;
        if (!json_value(j, key)) return false;
        json_ws(j);
        if (*j->p == '}') return j->p++, true;
        if (*j->p++ != ',') return false;
    }
}

static bool json_array(Json *j) {
    j->p++;
    json_ws(j);
    if (*j->p == ']') return j->p++, true;
    for (;;) {
        if (!json_value(j, "")) return false;
        json_ws(j);
        if (*j->p == ']') return j->p++, true;
        if (*j->p++ != ',') return false;
    }
}

static bool json_value(Json *j, const char *key) {
    json_ws(j);
    if (*j->p == '{') return json_object(j);
    if (*j->p == '[') return json_array(j);
    if (*j->p == '"') {
        char s[128];
        if (!json_string(j, s, sizeof s)) return false;
        if (strcmp(key, "ph") == 0 && strcmp(s, "X") == 0) j->n_complete++;
        for (int c = 0; c < 8 && strcmp(key, "cat") == 0; c++) j->n_by_cat[c] += strcmp(s, cats[c]) == 0;
        return true;
    }
    if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) return j->p += 4, true;
    if (strncmp(j->p, "false", 5) == 0) return j->p += 5, true;
    char *end;
    strtod(j->p, &end);
    if (end == j->p || !strchr("-0123456789", *j->p)) return false;
    j->p = end;
    return true;
}

static void test_trace_and_timeline(void **state) {
    (void)state;
    const int p = 4, m = 8;
    PipelinePlan plan = plan_make(p, 2, m, 2, true);
    plan.cluster.intra = (LinkModel){.latency_s = 0.01, .bandwidth_bytes_per_s = 1e5};
    plan.cluster.intra_collective = (LinkModel){.latency_s = 0.01, .bandwidth_bytes_per_s = 1e4};
    Schedule *s = build_ok(&plan, SCHED_KIND_INTERLEAVED);
    SchedSim *sim = sched_simulate(&plan, s);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sched_trace_write(f, &plan, s, sim);
    fclose(f);
    Json j = {.p = text};
    if (!json_value(&j, "")) fail_msg("trace JSON is malformed at offset %td", j.p - text);
    json_ws(&j);
    assert_int_equal(*j.p, '\0');
    assert_non_null(strstr(text, "\"traceEvents\":["));
    int n_stages = p * 2, n_sends = 0;
    for (int r = 0; r < p; r++)
        for (int i = 0; i < s->programs[r].n_instrs; i++) {
            const SchedInstr *in = &s->programs[r].instrs[i];
            n_sends += (in->op == SCHED_OP_SEND_ACT || in->op == SCHED_OP_SEND_GRAD) && in->peer != r;
        }
    assert_int_equal(j.n_by_cat[0], n_stages * m);  // fwd
    assert_int_equal(j.n_by_cat[1], n_stages * m);  // bwd
    assert_int_equal(j.n_by_cat[2], 0);             // no W outside zb-h1
    assert_int_equal(j.n_by_cat[3], n_sends);
    assert_int_equal(j.n_by_cat[5], n_stages);      // one bucket per stage
    assert_int_equal(j.n_by_cat[6], 1);             // the loss all-reduce (the plan's loss takes no time)
    assert_int_equal(j.n_by_cat[7], 0);             // nor its optimizer
    assert_int_equal(j.n_complete, 2 * n_stages * m + n_sends + n_stages + 1 + j.n_by_cat[4]);  // + receive waits
    assert_non_null(strstr(text, "\"name\":\"F3\""));
    assert_non_null(strstr(text, "\"name\":\"send F3 c"));
    free(text);

    f = open_memstream(&text, &len);
    sched_timeline_print(f, &plan, s, sim, 100);
    fclose(f);
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        assert_true(nl - line <= 100);
        if (lines == 1) {
            assert_true(strncmp(line, "r0 |F", 5) == 0);
            assert_non_null(memchr(line, 'f', (size_t)(nl - line)));  // the second chunk
            assert_non_null(memchr(line, 'b', (size_t)(nl - line)));
        }
    }
    assert_int_equal(lines, 1 + p);
    assert_non_null(strstr(text, "interleaved: 4 ranks x 2 chunks, 8 micro-batches"));
    free(text);
    sched_sim_destroy(sim);
    sched_destroy(s);
    free(plan.cuts);
}

// What the partitioner is told about memory: gpipe keeps all m micro-batches on every stage, 1f1b
// min(p - rank, m), zb-h1 min(p, m) (its W passes hold activations longer), interleaved charges a
// rank's whole peak to each of its chunks.
static void test_in_flight(void **state) {
    (void)state;
    int n[16];
    Error err = {0};
    assert_true(sched_in_flight(SCHED_KIND_GPIPE, 4, 1, 8, n, &err));
    for (int k = 0; k < 4; k++) assert_int_equal(n[k], 8);
    assert_true(sched_in_flight(SCHED_KIND_1F1B, 4, 1, 8, n, &err));
    for (int k = 0; k < 4; k++) assert_int_equal(n[k], 4 - k);
    assert_true(sched_in_flight(SCHED_KIND_1F1B, 4, 1, 2, n, &err));
    assert_int_equal(n[0], 2);
    assert_int_equal(n[3], 1);
    assert_true(sched_in_flight(SCHED_KIND_ZB_H1, 4, 1, 8, n, &err));
    for (int k = 0; k < 4; k++) assert_int_equal(n[k], 4);
    assert_true(sched_in_flight(SCHED_KIND_INTERLEAVED, 2, 2, 4, n, &err));
    assert_int_equal(n[0], n[2]);  // stages 0 and 2 share rank 0
    assert_false(sched_in_flight(SCHED_KIND_INTERLEAVED, 4, 2, 6, n, &err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate_all_combinations),
        cmocka_unit_test(test_refusal_messages),
        cmocka_unit_test(test_dropped_receive),
        cmocka_unit_test(test_swapped_sends),
        cmocka_unit_test(test_backward_before_forward),
        cmocka_unit_test(test_deadlock_and_step),
        cmocka_unit_test(test_bubble_gpipe_1f1b),
        cmocka_unit_test(test_bubble_interleaved),
        cmocka_unit_test(test_bubble_zb_h1),
        cmocka_unit_test(test_communication_costs),
        cmocka_unit_test(test_trace_and_timeline),
        cmocka_unit_test(test_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
