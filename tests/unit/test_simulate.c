// The simulator's cluster model and step terms (schedule/simulate.h): gradient buckets overlapping
// the last backward, the loss, the loss all-reduce, the optimizer and the statistics average,
// gradient accumulation, the loader's ceiling, NIC sharing across nodes, processor sharing, messages
// that move only inside the sender's transport calls, and weak scaling of a real model from 8 to
// 1,024 GPUs.
//
// References: timelines worked out by hand in the comments (integer and binary-exact costs, so
// most times are exact; where a division by a non-power of two rounds, rtol 1e-12); for weak
// scaling, the property itself (more GPUs at a fixed batch per GPU can only add communication).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/config/config.h"
#include "framework/config/experiment_plan.h"
#include "schedule/simulate.h"
#include "tests/common/assert_close.h"

static const double rtol = 1e-12;
static const LinkModel free_link = {0.0, INFINITY};

// `ranks` stages in a chain (cuts s -> s + 1 of 300 and 301 bytes out of stage 0, 300 elsewhere),
// F = 1, B = W = 1 s, 4000 parameter bytes per stage, free links.
static PipelinePlan chain(int ranks, int micro_batches, int replicas) {
    PipelinePlan plan = {.n_ranks = ranks, .chunks = 1, .n_stages = ranks, .replicas = replicas,
                         .micro_batches = micro_batches, .micro_batch_images = 4,
                         .cluster = {.intra = free_link, .intra_collective = free_link}};
    for (int s = 0; s < ranks; s++)
        plan.stages[s] = (PlanStage){.first_layer = s, .last_layer = s, .fwd_s = 1, .bwd_input_s = 1, .bwd_weight_s = 1,
                                     .param_bytes = 4000, .activation_bytes = 1};
    plan.cuts = calloc((size_t)ranks + 1, sizeof *plan.cuts);
    for (int s = 0; s + 1 < ranks; s++) {
        int id = plan.n_cuts++;
        plan.cuts[id] = (PlanCut){.id = id, .layer = s, .from_stage = s, .to_stage = s + 1, .bytes = 300};
        if (s == 0) {
            id = plan.n_cuts++;
            plan.cuts[id] = (PlanCut){.id = id, .layer = 0, .from_stage = 0, .to_stage = 1, .bytes = 301};
        }
    }
    return plan;
}

static SchedSim *simulate(const PipelinePlan *plan, SchedKind kind) {
    Schedule *s = NULL;
    Error err = {0};
    if (!sched_build(plan, kind, &s, &err) || !sched_validate(plan, s, stderr, &err)) fail_msg("%s", err.message);
    SchedSim *sim = sched_simulate(plan, s);
    sched_destroy(s);
    return sim;
}

static double terms_sum(const SchedSimTerms *t) {
    return t->compute_s + t->bubble_s + t->p2p_s + t->allreduce_s + t->loss_s + t->optimizer_s + t->loader_s;
}

// One stage, two replicas, two micro-batches (1f1b: F0 B0 F1 B1), every step term on:
//   F0 [0, 1]; loss [1, 1.5]; B0 [1.5, 3.5]; F1 [3.5, 4.5]; loss [4.5, 5]; B1 [5, 7], the last
//   backward: its bucket of 3000 bytes is ready 1 s in, at 6, and all-reduces over the 2 replicas in
//   3000 / 2000 + 2 x 0.25 = 2 s, [6, 8]; REDUCE_GRADS at 7 queues the other 1000 bytes, [8, 9];
//   STEP waits until 9; the loss all-reduce of 56 bytes over the world of 2: 0.028 + 0.5, to 9.528;
//   the optimizer, 4000 bytes x 1 ms: to 13.528; the statistics, 100 bytes: 0.05 + 0.5, to 14.078.
static void test_step_terms(void **state) {
    (void)state;
    PipelinePlan plan = chain(1, 2, 2);
    plan.cluster.intra_collective = (LinkModel){0.25, 2000};
    plan.loss_s = 0.5;
    plan.optimizer_s_per_byte = 1e-3;
    plan.stages[0].buffer_bytes = 100;
    PlanBucket bucket = {.stage = 0, .bytes = 3000, .ready_s = 1.0};
    plan.buckets = &bucket;
    plan.n_buckets = 1;
    plan.stages[0].n_buckets = 1;
    SchedSim *sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 14.078, 0.0, rtol);
    assert_int_equal(sim->n_reductions, 2);
    assert_close(sim->reductions[0].span.start_s, 6.0, 0.0, 0.0);
    assert_close(sim->reductions[0].span.end_s, 8.0, 0.0, 0.0);
    assert_int_equal(sim->reductions[1].bytes, 1000);
    assert_close(sim->reductions[1].span.start_s, 8.0, 0.0, 0.0);
    assert_close(sim->reductions[1].span.end_s, 9.0, 0.0, 0.0);
    assert_close(sim->loss_spans[1].start_s, 4.5, 0.0, 0.0);
    assert_close(sim->loss_spans[1].end_s, 5.0, 0.0, 0.0);
    assert_close(sim->optimizer_spans[0].start_s, 9.528, 0.0, rtol);
    assert_close(sim->optimizer_spans[0].end_s, 13.528, 0.0, rtol);
    const SchedSimTerms *t = &sim->terms;
    assert_close(t->compute_s, 6.0, 0.0, 0.0);
    assert_close(t->loss_s, 1.528, 0.0, rtol);
    assert_close(t->allreduce_s, 2.0 + 0.55, 0.0, rtol);
    assert_close(t->optimizer_s, 4.0, 0.0, rtol);
    assert_true(t->bubble_s == 0 && t->p2p_s == 0 && t->loader_s == 0);
    assert_close(terms_sum(t), sim->step_s, 0.0, rtol);
    // Each replica sends (D - 1) / D x 2 of every all-reduce: 4000 + 100 + 56 bytes; two replicas.
    assert_close(sim->allreduce_bytes, 2 * (4000.0 + 100.0 + 56.0), 0.0, rtol);
    sched_sim_destroy(sim);

    // Without the bucket all 4000 bytes wait for REDUCE_GRADS at 7: [7, 9.5], 0.5 s later.
    plan.n_buckets = plan.stages[0].n_buckets = 0;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 14.578, 0.0, rtol);
    sched_sim_destroy(sim);
    plan.n_buckets = plan.stages[0].n_buckets = 1;

    // Accumulating 4 batches: the 3 others end at 7 + 0.528 (no reduction, optimizer or statistics).
    plan.accumulate = 4;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 14.078, 0.0, rtol);
    assert_close(sim->batch_s, 7.528, 0.0, rtol);
    assert_close(sim->mean_batch_s, (3 * 7.528 + 14.078) / 4, 0.0, rtol);
    assert_close(sim->images_per_s, 2 * 2 * 4 / sim->mean_batch_s, 0.0, rtol);
    sched_sim_destroy(sim);

    // The loader: 16 images per step on the one node at 1 image/s is a 16 s ceiling.
    plan.accumulate = 1;
    plan.cluster.loader_images_per_s = 1.0;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 16.0, 0.0, 0.0);
    assert_close(sim->terms.loader_s, 16.0 - 14.078, 0.0, rtol);
    assert_close(terms_sum(&sim->terms), 16.0, 0.0, rtol);
    sched_sim_destroy(sim);
    free(plan.cuts);
}

// Two stages on two nodes (replica-first, 2 GPUs per node: node 0 holds both replicas of stage 0),
// one NIC of 100 B/s and 0.5 s per node. gpipe, one micro-batch: the two replicas' copies of each
// message leave node 0 at once and get 50 B/s each. F0 [0, 1]; cuts of 300 and 301 bytes, 6.5 and
// 6.52 s one after the other: arrival 14.02; F1, B1 to 17.02; the gradients back: 30.04; B0 to
// 32.04. The stage groups are inside a node (free links); the loss all-reduce spans 2 nodes of 2
// ranks: free in the node, the ring over 2 nodes of a 28-byte shard at 50 B/s: 0.56 + 1 s.
static void test_across_nodes(void **state) {
    (void)state;
    PipelinePlan plan = chain(2, 1, 2);
    plan.cluster = (ClusterModel){.gpus_per_node = 2, .intra = free_link, .intra_collective = free_link,
                                  .inter = {0.5, 100}, .nics_per_node = 1, .rank_order = RANK_ORDER_REPLICA_FIRST};
    SchedSim *sim = simulate(&plan, SCHED_KIND_GPIPE);
    assert_close(sim->step_s, 32.04 + 1.56, 0.0, rtol);
    // Stage 0 (the critical rank) waits from 1 to 30.04 for its gradient: 13.02 s of it while the
    // gradients travel (from 17.02), the rest while stage 1 works and waits (its bubble).
    assert_int_equal(sim->terms.critical_rank, 0);
    assert_close(sim->terms.p2p_s, 6.5 + 6.52, 0.0, rtol);
    assert_close(sim->terms.bubble_s, 17.02 - 1, 0.0, rtol);
    assert_close(terms_sum(&sim->terms), sim->step_s, 0.0, rtol);
    assert_int_equal(sim->p2p_bytes, 2 * 2 * 601);  // both directions, both replicas
    sched_sim_destroy(sim);
    // Pipeline-first: each pipeline on its own node, all free.
    plan.cluster.rank_order = RANK_ORDER_PIPELINE_FIRST;
    plan.cluster.intra_collective = (LinkModel){0.0, 1e9};
    sim = simulate(&plan, SCHED_KIND_GPIPE);
    // Compute 6 s; the gradients of 4000 bytes per stage cross the 2 nodes at 100 B/s (one member per
    // node, 2 ranks of the node in groups that span nodes: 50 B/s): the ring over 2 nodes,
    // 4000 / 50 + 1 = 81 s after stage 0's backward; the loss all-reduce: in the node (2 members),
    // 2 x 28 / 1e9 (28 bytes of the ring's reduce-scatter and all-gather each), then 0.56 + 1 s.
    assert_close(sim->step_s, 6 + 81 + 56e-9 + 1.56, 0.0, rtol);
    sched_sim_destroy(sim);
    free(plan.cuts);
}

// Two ranks on one core (1f1b, m = 2, F = 1, B = 2): alone a rank runs at full speed, together
// each at half.
//   t = 0..1   r0 F0 alone.
//   t = 1..3   r0 F1 and r1 F0 together, 1 s of work each at 1/2.
//   t = 3..5   r0 waits for B0's gradient; r1 B0 alone.
//   t = 5..7   r0 B0 and r1 F1 together: r1 F1 ends at 7, r0 B0 is half done.
//   t = 7..9   r0 B0 (1 s left) and r1 B1 together: r0 B0 ends at 9; r1 B1 has 1 s left.
//   t = 9..10  r1 B1 alone; r0 waits for its gradient.
//   t = 10..12 r0 B1 alone. Step 12 s (9 s without sharing), each rank busy 9 s of wall time.
static void test_processor_sharing(void **state) {
    (void)state;
    PipelinePlan plan = chain(2, 2, 1);
    SchedSim *sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 9.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    plan.cluster.cores_per_node = 1;
    plan.cluster.threads_per_rank = 1;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 12.0, 0.0, 0.0);
    assert_close(sim->busy_s[0], 9.0, 0.0, 0.0);
    assert_close(sim->busy_s[1], 9.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    // Two threads each on two cores is the same sharing; one thread each on two cores none.
    plan.cluster.cores_per_node = 2;
    plan.cluster.threads_per_rank = 2;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 12.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    plan.cluster.threads_per_rank = 1;
    sim = simulate(&plan, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 9.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    // Replicas share the node too: one stage, 2 replicas on 1 core run every pass at half speed.
    PipelinePlan dp = chain(1, 2, 2);
    dp.cluster.cores_per_node = 1;
    dp.cluster.threads_per_rank = 1;
    sim = simulate(&dp, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 2 * 2 * 3.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    // Three replicas on two cores, one thread each: the OS runs one rank per core, so one core runs
    // two of them at half speed and the step waits for those (12 s), where processor sharing (two
    // threads each on four cores) gives every rank 4/6 of its speed (9 s).
    PipelinePlan dp3 = chain(1, 2, 3);
    dp3.cluster.cores_per_node = 2;
    dp3.cluster.threads_per_rank = 1;
    sim = simulate(&dp3, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 2 * 2 * 3.0, 0.0, 0.0);
    sched_sim_destroy(sim);
    dp3.cluster.cores_per_node = 4;
    dp3.cluster.threads_per_rank = 2;
    sim = simulate(&dp3, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 1.5 * 2 * 3.0, 0.0, 1e-12);
    sched_sim_destroy(sim);
    // Cores worth 1.5 together (calibrated): two replicas on two cores each run at 0.75.
    dp.cluster.cores_per_node = 1.5;
    sim = simulate(&dp, SCHED_KIND_1F1B);
    assert_close(sim->step_s, 2 * 3.0 / 0.75, 0.0, 1e-12);
    sched_sim_destroy(sim);
    // Waiting ranks' wakes cost the busy cores when none is idle: gpipe over 2 ranks with one
    // micro-batch never computes on both, so on one core every pass runs beside a waiting rank at
    // 1 - 0.5 of its speed (6 s of work in 12 s); on two cores the idle one takes the wakes.
    PipelinePlan two = chain(2, 1, 1);
    two.cluster.cores_per_node = 1;
    two.cluster.threads_per_rank = 1;
    two.cluster.wait_cost = 0.5;
    sim = simulate(&two, SCHED_KIND_GPIPE);
    assert_close(sim->step_s, 12.0, 0.0, 1e-12);
    sched_sim_destroy(sim);
    two.cluster.cores_per_node = 2;
    sim = simulate(&two, SCHED_KIND_GPIPE);
    assert_close(sim->step_s, 6.0, 0.0, 1e-12);
    sched_sim_destroy(sim);
    free(plan.cuts);
    free(dp.cuts);
    free(dp3.cuts);
    free(two.cuts);
}

// ---- weak scaling ----------------------------------------------------------------------------------

typedef struct Loaded {
    ExperimentConfig *cfg;
    ModelSpec *spec;
} Loaded;

// experiments/default.yaml with the settings given.
static Loaded load(int n, char **sets) {
    char path[4096];
    snprintf(path, sizeof path, "%s/experiments/default.yaml", getenv("YP_SOURCE_ROOT"));
    Loaded l = {0};
    Error err = {0};
    if (!config_load(path, n, sets, &l.cfg, &err)) fail_msg("%s", err.message);
    if (!model_spec_load(l.cfg->model, &(ModelOptions){.scale = l.cfg->scale, .nc = 4}, &l.spec, &err))
        fail_msg("%s", err.message);
    return l;
}

static void loaded_free(Loaded *l) {
    model_spec_destroy(l->spec);
    config_destroy(l->cfg);
}

// YOLOv8n at 320 px, 16 images per GPU, on 1 to 128 nodes of 8 H100s: images/s per GPU never rises.
static void weak_scaling(int stages, int micro_batches, RankOrder order) {
    const CostDevice *h100 = cost_device_find("h100");
    double first = 0, prev = INFINITY;
    for (int nodes = 1; nodes <= 128; nodes *= 2) {
        int world = 8 * nodes;
        char sets[6][64];
        snprintf(sets[0], sizeof sets[0], "parallel.stages=%d", stages);
        snprintf(sets[1], sizeof sets[1], "parallel.replicas=%d", world / stages);
        snprintf(sets[2], sizeof sets[2], "parallel.micro_batches=%d", micro_batches);
        snprintf(sets[3], sizeof sets[3], "train.batch=%d", 16 * world);
        snprintf(sets[4], sizeof sets[4], "train.imgsz=320");
        snprintf(sets[5], sizeof sets[5], "parallel.rank_order=%s",
                 order == RANK_ORDER_PIPELINE_FIRST ? "pipeline-first" : "replica-first");
        Loaded l = load(6, (char *[]){sets[0], sets[1], sets[2], sets[3], sets[4], sets[5]});
        ClusterModel cluster = {.gpus_per_node = 8, .intra = h100->link, .intra_collective = h100->collective,
                                .inter = h100->nic, .nics_per_node = 8};
        ExperimentPlan ep;
        Error err = {0};
        if (!experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.device_name = "h100", .cluster = &cluster}, &ep, &err))
            fail_msg("%s", err.message);
        SchedSim *sim = sched_simulate(&ep.plan, ep.schedule);
        double per_gpu = sim->images_per_s / world;
        if (nodes == 1) first = per_gpu;
        if (per_gpu > prev * (1 + rtol))
            fail_msg("S=%d: %d GPUs reach %.6g images/s per GPU, more than %.6g at half as many", stages, world,
                     per_gpu, prev);
        prev = per_gpu;
        sched_sim_destroy(sim);
        experiment_plan_clear(&ep);
        loaded_free(&l);
    }
    // Communication does cost something at 1,024 GPUs.
    assert_true(prev < first);
}

// Host progress (ClusterModel.host_progress): two stages, gpipe, two micro-batches, F = 1, B = 2 s,
// first layers F 0.25 s and B 0.5 + 0.25 s, free links. Without it the step is 9 s: F0 [0, 1] and
// F1 [1, 2] on rank 0, F0 [1, 2] and F1 [2, 3] on rank 1, its B0 [3, 5] and B1 [5, 7], rank 0's B0
// [5, 7] and B1 [7, 9]. With it, rank 0's F0 messages move once F1's first layer ends, at 1.25, so
// rank 1 runs F0 [1.25, 2.25], F1 [2.25, 3.25] (F1's messages move at once: rank 0 then waits),
// B0 [3.25, 5.25]; B0's gradient moves after B1's first layer, at 6, so rank 0 runs B0 [6, 8] and
// B1 [8, 10] (B1's gradient moves at once: rank 1 then waits at STEP).
static void test_host_progress(void **state) {
    (void)state;
    PipelinePlan plan = chain(2, 2, 1);
    for (int s = 0; s < 2; s++) {
        plan.stages[s].fwd_first_layer_s = 0.25;
        plan.stages[s].bwd_first_layer_input_s = 0.5;
        plan.stages[s].bwd_first_layer_weight_s = 0.25;
    }
    SchedSim *sim = simulate(&plan, SCHED_KIND_GPIPE);
    assert_close(sim->step_s, 9.0, 0.0, rtol);
    sched_sim_destroy(sim);
    plan.cluster.host_progress = true;
    sim = simulate(&plan, SCHED_KIND_GPIPE);
    assert_close(sim->step_s, 10.0, 0.0, rtol);
    assert_close(sim->terms.p2p_s + sim->terms.bubble_s + sim->terms.compute_s, 10.0, 0.0, rtol);
    sched_sim_destroy(sim);
    free(plan.cuts);
}

// A custom device (half an H100's FLOP rate) doubles every estimated pass; devices and clusters the
// simulator cannot time are refused with a message.
static void test_plan_target(void **state) {
    (void)state;
    Loaded l = load(1, (char *[]){"parallel.replicas=1"});
    CostDevice half = *cost_device_find("h100");
    half.name = "half-h100";
    half.flops_per_s /= 2;
    ExperimentPlan a, b;
    Error err = {0};
    assert_true(experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.device_name = "h100"}, &a, &err));
    assert_true(experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.device_name = "cpu", .device = &half}, &b, &err));
    assert_string_equal(b.device.name, "half-h100");
    for (int i = 0; i < a.cost->n_layers; i++) {
        assert_close(b.cost->layers[i].fwd_s, 2 * a.cost->layers[i].fwd_s, 0.0, rtol);
        assert_close(b.cost->layers[i].bwd_input_s, 2 * a.cost->layers[i].bwd_input_s, 0.0, rtol);
    }
    assert_string_equal(a.optimizer_source, "estimate");
    // train.optimizer auto: AdamW's 14 passes at 0.7 x 3.35 TB/s.
    assert_close(a.plan.optimizer_s_per_byte, 14 / (0.7 * 3.35e12), 0.0, rtol);
    experiment_plan_clear(&a);
    experiment_plan_clear(&b);
    half.memory_bytes_per_s = 0;
    assert_false(experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.device = &half}, &a, &err));
    assert_non_null(strstr(err.message, "device half-h100: flops_per_s and memory_bytes_per_s must be positive"));
    // 2 ranks on nodes of 1 without NICs.
    ClusterModel c = experiment_plan_default_cluster(cost_device_find("cpu"));
    c.gpus_per_node = 1;
    c.nics_per_node = 0;
    assert_false(experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.cluster = &c}, &a, &err));
    assert_non_null(strstr(err.message, "cluster: 2 ranks span nodes of 1: nics_per_node must be 1 or more"));
    assert_false(experiment_plan_build(l.cfg, l.spec, &(PlanTarget){.device_name = "tpu"}, &a, &err));
    assert_string_equal(err.message, "--device must be cpu, h100 or a100, found 'tpu'");
    loaded_free(&l);
}

static void test_weak_scaling(void **state) {
    (void)state;
    weak_scaling(1, 1, RANK_ORDER_PIPELINE_FIRST);
    weak_scaling(2, 4, RANK_ORDER_PIPELINE_FIRST);
    weak_scaling(4, 8, RANK_ORDER_REPLICA_FIRST);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_terms),
        cmocka_unit_test(test_across_nodes),
        cmocka_unit_test(test_processor_sharing),
        cmocka_unit_test(test_host_progress),
        cmocka_unit_test(test_weak_scaling),
        cmocka_unit_test(test_plan_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
