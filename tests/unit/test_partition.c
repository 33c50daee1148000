// The cost model, the stage partitioner and `yolopipe profile`.
//
// The partitioner's dynamic program is checked against a brute force written here, independently of
// partition.c: it enumerates every contiguous split, finds the cut tensors and prices each stage
// from the cost model with the formula partition.h states (compute, then two messages per transfer
// of a cut tensor, summed in layer order as partition.c sums them, so the comparison is exact).
// Byte counts are checked against YOLOv8n's shapes and parameter count as Ultralytics reports them.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/cli/cli.h"
#include "framework/core/fsutil.h"
#include "partition/partition.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

static char tmp_dir[] = "/tmp/yp-partition-XXXXXX";

typedef struct Model {
    ModelSpec *spec;
    Graph *g;
    CostModel *cost;
} Model;

static Model model_load(const char *rel_path, const char *scale, int64_t imgsz, int64_t micro) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", getenv("YP_SOURCE_ROOT"), rel_path);
    Model m = {0};
    Error err = {0};
    if (!model_spec_load(path, &(ModelOptions){.scale = scale}, &m.spec, &err)) fail_msg("%s", err.message);
    GraphOptions opt = {.batch = 1, .imgsz_h = imgsz, .imgsz_w = imgsz};
    if (!graph_create(m.spec, &opt, &m.g, &err)) fail_msg("%s", err.message);
    m.cost = cost_model_estimate(m.g, micro, cost_device_find("cpu")->flops_per_s);
    return m;
}

static void model_free(Model *m) {
    cost_model_destroy(m->cost);
    graph_destroy(m->g);
    model_spec_destroy(m->spec);
}

static Model yolov8(const char *scale) { return model_load("experiments/models/yolov8.yaml", scale, 640, 8); }

// ---- the reference: a brute force over contiguous splits -----------------------------------------

typedef struct Setting {
    int n_stages;
    LinkModel link;
    int64_t cap;           // per device, 0: none
    int in_flight[PLAN_MAX_STAGES];
} Setting;

static Setting setting_1f1b(int n_stages, LinkModel link, int64_t cap) {
    Setting s = {.n_stages = n_stages, .link = link, .cap = cap};
    for (int k = 0; k < n_stages; k++) s.in_flight[k] = n_stages - k;  // 1F1B: stage k holds p - k
    return s;
}

static bool reads(const Graph *g, int c, int p) {
    for (int k = 0; k < g->layers[c].n_in; k++)
        if (g->layers[c].in_index[k] == p) return true;
    return false;
}

typedef struct Evaluation {
    double slowest_s;
    int64_t peak_bytes;    // the largest stage memory
    int peak_stage;
    int64_t memory[PLAN_MAX_STAGES];
} Evaluation;

// Prices the split whose stage k starts at first[k], following partition.h's definitions.
static Evaluation evaluate(const Model *m, const Setting *s, const int *first) {
    enum { MAX_LAYERS = 64 };
    const Graph *g = m->g;
    const CostModel *c = m->cost;
    int n = g->n_layers, S = s->n_stages;
    assert_true(n <= MAX_LAYERS && S <= 8);
    int stage_of[MAX_LAYERS];
    for (int k = 0; k < S; k++)
        for (int l = first[k]; l < (k + 1 < S ? first[k + 1] : n); l++) stage_of[l] = k;
    // Each (producer, consuming stage) pair is one transfer: the consumer receives it, the
    // producer's stage sends it; the consumer keeps it for its backward.
    int transfers[8][MAX_LAYERS] = {{0}};
    bool pair_seen[8][MAX_LAYERS] = {{false}};
    int64_t received[8] = {0};
    for (int l = 0; l < n; l++) {
        for (int i = 0; i < g->layers[l].n_in; i++) {
            int p = g->layers[l].in_index[i], to = stage_of[l];
            if (p < 0 || stage_of[p] == to || pair_seen[to][p]) continue;
            pair_seen[to][p] = true;
            transfers[to][p]++;
            transfers[stage_of[p]][p]++;
            received[to] += c->layers[p].output_bytes;
        }
    }
    Evaluation e = {.slowest_s = -1, .peak_bytes = -1};
    for (int k = 0; k < S; k++) {
        int lo = first[k], hi = k + 1 < S ? first[k + 1] - 1 : n - 1;
        double t = 0;
        int64_t params = 0, kept = received[k] + (lo == 0 ? c->input_bytes : 0);
        for (int l = lo; l <= hi; l++) {
            t += c->layers[l].fwd_s + c->layers[l].bwd_input_s + c->layers[l].bwd_weight_s;
            params += c->layers[l].param_bytes;
            kept += c->layers[l].activation_bytes;
        }
        // Two messages per transfer (activation forward, gradient backward), in layer order.
        for (int p = 0; p <= hi; p++) {
            if (!transfers[k][p]) continue;
            double msg = s->link.latency_s + (double)c->layers[p].output_bytes / s->link.bandwidth_bytes_per_s;
            t += (double)transfers[k][p] * 2.0 * msg;
        }
        e.memory[k] = PARTITION_PARAM_COPIES * params + s->in_flight[k] * kept;
        if (e.memory[k] > e.peak_bytes) e.peak_bytes = e.memory[k], e.peak_stage = k;
        if (t > e.slowest_s) e.slowest_s = t;
    }
    return e;
}

// Every split's slowest stage and peak memory under one link and in-flight setting (its cap aside).
typedef struct BruteForce {
    long n_splits, cap;
    double *slowest_s;     // per split
    int64_t *peak_bytes;   // per split
    int64_t least_peak;    // the least peak memory of any split, reached first by least_peak_first
    int least_peak_first[PLAN_MAX_STAGES];
    Evaluation least_peak_eval;
} BruteForce;

static void brute_force_rec(const Model *m, const Setting *s, int *first, int k, BruteForce *bf) {
    int n = m->g->n_layers, S = s->n_stages;
    if (k == S) {
        Evaluation e = evaluate(m, s, first);
        if (bf->n_splits == bf->cap) {
            bf->cap = 2 * bf->cap + 1024;
            bf->slowest_s = realloc(bf->slowest_s, (size_t)bf->cap * sizeof *bf->slowest_s);
            bf->peak_bytes = realloc(bf->peak_bytes, (size_t)bf->cap * sizeof *bf->peak_bytes);
        }
        bf->slowest_s[bf->n_splits] = e.slowest_s;
        bf->peak_bytes[bf->n_splits++] = e.peak_bytes;
        if (e.peak_bytes < bf->least_peak) {
            bf->least_peak = e.peak_bytes;
            bf->least_peak_eval = e;
            memcpy(bf->least_peak_first, first, (size_t)S * sizeof *first);
        }
        return;
    }
    for (first[k] = first[k - 1] + 1; first[k] <= n - (S - k); first[k]++) brute_force_rec(m, s, first, k + 1, bf);
}

static BruteForce brute_force(const Model *m, const Setting *s) {
    BruteForce bf = {.least_peak = INT64_MAX};
    int first[PLAN_MAX_STAGES] = {0};
    brute_force_rec(m, s, first, 1, &bf);
    return bf;
}

static void brute_force_free(BruteForce *bf) {
    free(bf->slowest_s);
    free(bf->peak_bytes);
}

// The least slowest stage among splits whose peak fits `cap` (0: all); INFINITY when none fits.
static double brute_force_best(const BruteForce *bf, int64_t cap) {
    double best = INFINITY;
    for (long i = 0; i < bf->n_splits; i++)
        if ((!cap || bf->peak_bytes[i] <= cap) && bf->slowest_s[i] < best) best = bf->slowest_s[i];
    return best;
}

static PartitionOptions options(const Setting *s) {
    return (PartitionOptions){.n_ranks = s->n_stages, .chunks = 1, .replicas = 1, .micro_batches = 8, .link = s->link,
                              .cluster = {.intra = s->link, .intra_collective = s->link}, .memory_cap_bytes = s->cap,
                              .in_flight = s->in_flight};
}

static bool plan_auto(const Model *m, const Setting *s, PipelinePlan *plan, PartitionReport *report, Error *err) {
    PartitionOptions o = options(s);
    return partition_create(m->g, m->cost, &o, plan, report, err);
}

static void firsts_of(const PipelinePlan *plan, int *first) {
    for (int k = 0; k < plan->n_stages; k++) first[k] = plan->stages[k].first_layer;
}

// The DP's slowest stage equals the brute force's optimum under s's cap, exactly, and the report
// prices its split as the reference does.
static double check_optimal(const Model *m, const Setting *s, const BruteForce *bf) {
    PipelinePlan plan;
    PartitionReport report;
    Error err = {0};
    if (!plan_auto(m, s, &plan, &report, &err)) fail_msg("%s", err.message);
    int first[PLAN_MAX_STAGES];
    firsts_of(&plan, first);
    Evaluation e = evaluate(m, s, first);
    double dp_s = report.stages[report.slowest_stage].time_s, best = brute_force_best(bf, s->cap);
    if (dp_s != best || e.slowest_s != dp_s)
        fail_msg("%s, %d stages: DP %.17g, its split priced here %.17g, brute force %.17g over %ld splits",
                 m->spec->name, s->n_stages, dp_s, e.slowest_s, best, bf->n_splits);
    for (int k = 0; k < s->n_stages; k++) assert_int_equal(report.stages[k].memory_bytes, e.memory[k]);
    if (s->cap) assert_true(e.peak_bytes <= s->cap);
    partition_plan_clear(&plan);
    return dp_s;
}

static void check_optimal_uncapped(const Model *m, const Setting *s) {
    BruteForce bf = brute_force(m, s);
    check_optimal(m, s, &bf);
    brute_force_free(&bf);
}

static void test_dp_matches_brute_force(void **state) {
    (void)state;
    const char *scales[] = {"n", "m"};
    const int stage_counts[] = {2, 4, 8};
    const LinkModel free_link = {0.0, INFINITY};
    // A slow link (1 ms, 1 GB/s) so that cut tensors weigh as much as compute on some stages, and a
    // latency-bound one (50 ms a message) where the number of consuming stages of each tensor decides.
    const LinkModel slow_link = {1e-3, 1e9}, chatty_link = {5e-2, 1e12};
    for (int si = 0; si < 2; si++) {
        Model m = yolov8(scales[si]);
        for (int ci = 0; ci < 3; ci++) {
            int S = stage_counts[ci];
            Setting free = setting_1f1b(S, free_link, 0), chatty = setting_1f1b(S, chatty_link, 0);
            check_optimal_uncapped(&m, &free);
            check_optimal_uncapped(&m, &chatty);

            // GPipe keeps all 8 micro-batches on every stage. Uncapped first; then a cap halfway
            // between the least peak any split reaches and the peak of the unconstrained optimum
            // excludes that optimum: the cap binds, and the program must still find the best split
            // that fits.
            Setting gpipe = {.n_stages = S, .link = slow_link};
            for (int k = 0; k < S; k++) gpipe.in_flight[k] = 8;
            BruteForce bf = brute_force(&m, &gpipe);
            double best = check_optimal(&m, &gpipe, &bf);
            PipelinePlan plan;
            PartitionReport report;
            Error err = {0};
            assert_true(plan_auto(&m, &gpipe, &plan, &report, &err));
            int first[PLAN_MAX_STAGES];
            firsts_of(&plan, first);
            partition_plan_clear(&plan);
            int64_t optimum_peak = evaluate(&m, &gpipe, first).peak_bytes;
            // YOLOv8m in 8 stages: the peak is one layer's own memory whichever the split (its
            // optimum already reaches the least peak), so the tightest cap that fits is used.
            bool degenerate = si == 1 && S == 8;
            assert_true(degenerate ? bf.least_peak == optimum_peak : bf.least_peak < optimum_peak);
            gpipe.cap = degenerate ? bf.least_peak : (bf.least_peak + optimum_peak) / 2;
            assert_true(check_optimal(&m, &gpipe, &bf) >= best);
            brute_force_free(&bf);
        }
        model_free(&m);
    }
}

// ---- cut tensors -------------------------------------------------------------------------------

static void check_cuts_direct(const Model *m, const PipelinePlan *plan) {
    const Graph *g = m->g;
    int stage_of[256];
    for (int k = 0; k < plan->n_stages; k++)
        for (int l = plan->stages[k].first_layer; l <= plan->stages[k].last_layer; l++) stage_of[l] = k;
    // Exactly one cut per (producer, consuming stage) pair, in (from_stage, layer, to_stage) order.
    int expected = 0;
    for (int p = 0; p < g->n_layers; p++) {
        for (int to = stage_of[p] + 1; to < plan->n_stages; to++) {
            bool used = false;
            for (int c = p + 1; c < g->n_layers; c++) used |= stage_of[c] == to && reads(g, c, p);
            if (!used) continue;
            assert_true(expected < plan->n_cuts);
            const PlanCut *cut = &plan->cuts[expected];
            assert_int_equal(cut->id, expected);
            assert_int_equal(cut->layer, p);
            assert_int_equal(cut->from_stage, stage_of[p]);
            assert_int_equal(cut->to_stage, to);
            assert_int_equal(cut->bytes, m->cost->layers[p].output_bytes);
            expected++;
        }
    }
    assert_int_equal(plan->n_cuts, expected);
}

static void test_cut_tensors_yolov8n(void **state) {
    (void)state;
    Model m = yolov8("n");
    const int64_t mb = 8 * 4;  // images x bytes per float
    // A manual split [0-4] [5-9] [10-15] [16-22]: YOLOv8's Concats read layers 6 (at 11), 4 (at 14),
    // 12 (at 17) and 9 (at 20); Detect reads 15, 18, 21. Output shapes of YOLOv8n at 640 from
    // Ultralytics' model summary.
    const int64_t balance[] = {5, 5, 6, 7};
    Setting s = setting_1f1b(4, (LinkModel){0.0, INFINITY}, 0);
    PartitionOptions o = options(&s);
    o.kind = PARTITION_KIND_BALANCE;
    o.balance = balance;
    PipelinePlan plan;
    PartitionReport report;
    Error err = {0};
    if (!partition_create(m.g, m.cost, &o, &plan, &report, &err)) fail_msg("%s", err.message);
    const PlanCut expected[] = {
        {0, 4, 0, 1, 64 * 80 * 80 * mb},  {1, 4, 0, 2, 64 * 80 * 80 * mb},   // P3 to C2f 5 and to Concat 14, skipping stage 1
        {2, 6, 1, 2, 128 * 40 * 40 * mb}, {3, 9, 1, 2, 256 * 20 * 20 * mb},  // P4 to Concat 11; SPPF to Upsample 10
        {4, 9, 1, 3, 256 * 20 * 20 * mb},                                    // SPPF to Concat 20, skipping stage 2
        {5, 12, 2, 3, 128 * 40 * 40 * mb}, {6, 15, 2, 3, 64 * 80 * 80 * mb}, // 15 feeds Conv 16 and Detect 22: one cut
    };
    assert_int_equal(plan.n_cuts, (int)(sizeof expected / sizeof *expected));
    for (int i = 0; i < plan.n_cuts; i++) {
        assert_int_equal(plan.cuts[i].id, expected[i].id);
        assert_int_equal(plan.cuts[i].layer, expected[i].layer);
        assert_int_equal(plan.cuts[i].from_stage, expected[i].from_stage);
        assert_int_equal(plan.cuts[i].to_stage, expected[i].to_stage);
        assert_int_equal(plan.cuts[i].bytes, expected[i].bytes);
    }
    // Bytes per micro-batch in the report: stage 1 receives layer 4 and sends 6, 9, 9.
    assert_int_equal(report.stages[1].recv_bytes, 64 * 80 * 80 * mb);
    assert_int_equal(report.stages[1].send_bytes, (128 * 40 * 40 + 2 * 256 * 20 * 20) * mb);
    assert_int_equal(report.stages[2].recv_bytes, (64 * 80 * 80 + 128 * 40 * 40 + 256 * 20 * 20) * mb);
    check_cuts_direct(&m, &plan);
    partition_plan_clear(&plan);

    // The automatic 4-stage split: every cut goes straight from producer to consumer.
    Setting slow = setting_1f1b(4, (LinkModel){1e-3, 1e9}, 0);
    if (!plan_auto(&m, &slow, &plan, &report, &err)) fail_msg("%s", err.message);
    check_cuts_direct(&m, &plan);
    partition_plan_clear(&plan);
    model_free(&m);
}

// ---- manual partitions, plan fields, errors ----------------------------------------------------

static void test_manual_partitions(void **state) {
    (void)state;
    Model m = yolov8("n");
    const int64_t ranges[][2] = {{0, 9}, {10, 22}};
    const int64_t balance[] = {10, 13};
    Setting s = setting_1f1b(2, (LinkModel){5e-6, 2.5e10}, 0);
    for (int kind = PARTITION_KIND_RANGES; kind <= PARTITION_KIND_BALANCE; kind++) {
        PartitionOptions o = options(&s);
        o.replicas = 3;
        o.micro_batches = 4;
        o.cluster = (ClusterModel){.gpus_per_node = 8, .intra = s.link, .intra_collective = {1e-5, 1e10},
                                   .inter = {2e-5, 5e9}, .nics_per_node = 2, .rank_order = RANK_ORDER_REPLICA_FIRST};
        o.kind = (PartitionKind)kind;
        o.ranges = ranges;
        o.balance = balance;
        PipelinePlan plan;
        PartitionReport report;
        Error err = {0};
        if (!partition_create(m.g, m.cost, &o, &plan, &report, &err)) fail_msg("%s", err.message);
        assert_int_equal(plan.n_stages, 2);
        assert_int_equal(plan.n_ranks, 2);
        assert_int_equal(plan.chunks, 1);
        assert_int_equal(plan.replicas, 3);
        assert_int_equal(plan.micro_batches, 4);
        assert_int_equal(plan.micro_batch_images, 8);
        assert_true(plan.cluster.intra.latency_s == 5e-6 && plan.cluster.intra.bandwidth_bytes_per_s == 2.5e10);
        assert_true(plan.cluster.intra_collective.latency_s == 1e-5 &&
                    plan.cluster.intra_collective.bandwidth_bytes_per_s == 1e10);
        assert_true(plan.cluster.gpus_per_node == 8 && plan.cluster.nics_per_node == 2 &&
                    plan.cluster.inter.bandwidth_bytes_per_s == 5e9);
        assert_int_equal(plan.cluster.rank_order, RANK_ORDER_REPLICA_FIRST);
        assert_int_equal(plan.stages[0].first_layer, 0);
        assert_int_equal(plan.stages[0].last_layer, 9);
        assert_int_equal(plan.stages[1].first_layer, 10);
        assert_int_equal(plan.stages[1].last_layer, 22);
        // Parameters split exactly; YOLOv8n has 3157200 (Ultralytics' count).
        assert_int_equal(plan.stages[0].param_bytes + plan.stages[1].param_bytes, 3157200 * 4);
        assert_int_equal(report.stages[0].params + report.stages[1].params, 3157200);
        assert_int_equal(plan.stages[0].input_bytes, 3 * 640 * 640 * 8 * 4);
        assert_int_equal(plan.stages[1].input_bytes, 0);
        // Layers 4, 6 and 9 cross the boundary: stage 1 keeps them for its backward.
        int64_t own = 0;
        for (int l = 10; l <= 22; l++) own += m.cost->layers[l].activation_bytes;
        assert_int_equal(plan.stages[1].activation_bytes, own + (64 * 80 * 80 + 128 * 40 * 40 + 256 * 20 * 20) * 32);
        assert_int_equal(plan.n_cuts, 3);
        partition_plan_clear(&plan);
    }
    model_free(&m);
}

static void expect_error(const Model *m, PartitionOptions o, const char *expected) {
    PipelinePlan plan;
    PartitionReport report;
    Error err = {0};
    assert_false(partition_create(m->g, m->cost, &o, &plan, &report, &err));
    if (strcmp(err.message, expected)) fail_msg("message\n  got:      %s\n  expected: %s", err.message, expected);
    assert_null(plan.cuts);
}

static void test_errors(void **state) {
    (void)state;
    Model m = yolov8("n");
    Setting s = setting_1f1b(2, (LinkModel){0.0, INFINITY}, 0);
    PartitionOptions o = options(&s);

    PartitionOptions many = o;
    many.n_ranks = 12;
    many.chunks = 2;
    many.in_flight = NULL;
    expect_error(&m, many, "stage count larger than useful: 23 layers cannot fill 24 stages");

    PartitionOptions r = o;
    r.kind = PARTITION_KIND_RANGES;
    const int64_t gap[][2] = {{0, 9}, {11, 22}}, empty[][2] = {{0, 9}, {10, 8}}, past[][2] = {{0, 9}, {10, 30}},
                  shorter[][2] = {{0, 9}, {10, 20}}, late[][2] = {{1, 9}, {10, 22}};
    r.ranges = gap;
    expect_error(&m, r, "partition ranges must cover layers 0-22 exactly, in order: stage 1 is [11, 22], which should start at layer 10");
    r.ranges = empty;
    expect_error(&m, r, "partition ranges must cover layers 0-22 exactly, in order: stage 1 is [10, 8], which is empty");
    r.ranges = past;
    expect_error(&m, r, "partition ranges must cover layers 0-22 exactly, in order: stage 1 is [10, 30], which goes past the last layer");
    r.ranges = shorter;
    expect_error(&m, r, "partition ranges must cover layers 0-22 exactly, in order: the last stage ends at layer 20");
    r.ranges = late;
    expect_error(&m, r, "partition ranges must cover layers 0-22 exactly, in order: stage 0 is [1, 9], which should start at layer 0");

    PartitionOptions b = o;
    b.kind = PARTITION_KIND_BALANCE;
    const int64_t short_sum[] = {10, 12}, zero[] = {23, 0};
    b.balance = short_sum;
    expect_error(&m, b, "partition balance must sum to the model's 23 layers, found 22");
    b.balance = zero;
    expect_error(&m, b, "partition balance entry 1 is 0: every stage needs at least one layer");

    // Memory: the automatic partition names the least peak any split reaches (the reference's).
    Setting tight = setting_1f1b(2, (LinkModel){0.0, INFINITY}, 0);
    BruteForce bf = brute_force(&m, &tight);
    tight.cap = bf.least_peak - 1;
    char expected[512];
    int k = bf.least_peak_eval.peak_stage;
    int lo = bf.least_peak_first[k], hi = k + 1 < 2 ? bf.least_peak_first[k + 1] - 1 : 22;
    snprintf(expected, sizeof expected,
             "no partition into 2 stages fits the memory cap of %.1f MiB per device: at best stage %d (layers %d-%d) "
             "needs %.1f MiB",
             (double)tight.cap / 1048576.0, k, lo, hi, (double)bf.least_peak / 1048576.0);
    brute_force_free(&bf);
    expect_error(&m, options(&tight), expected);
    // A manual split names its first stage over the cap.
    PartitionOptions capped = options(&tight);
    capped.kind = PARTITION_KIND_RANGES;
    const int64_t split[][2] = {{0, 9}, {10, 22}};
    capped.ranges = split;
    Evaluation e = evaluate(&m, &tight, (int[]){0, 10});
    int over = e.memory[0] > tight.cap ? 0 : 1;
    snprintf(expected, sizeof expected, "stage %d (layers %s) needs %.1f MiB, over the memory cap of %.1f MiB per device",
             over, over == 0 ? "0-9" : "10-22", (double)e.memory[over] / 1048576.0, (double)tight.cap / 1048576.0);
    expect_error(&m, capped, expected);
    // With two chunks per device each stage gets half the cap.
    PartitionOptions chunked = options(&tight);
    chunked.n_ranks = 1;
    chunked.chunks = 2;
    chunked.memory_cap_bytes = 2 * 1048576;
    chunked.kind = PARTITION_KIND_RANGES;
    chunked.ranges = split;
    snprintf(expected, sizeof expected,
             "stage 0 (layers 0-9) needs %.1f MiB, over its share of the memory cap, 1.0 MiB of 2.0 MiB per device for 2 chunks",
             (double)e.memory[0] / 1048576.0);
    expect_error(&m, chunked, expected);
    model_free(&m);
}

// ---- the cost model -----------------------------------------------------------------------------

// bf16 activations halve what a stage keeps and what a cut tensor carries; parameters stay float32.
static void test_cost_model_activation_type(void **state) {
    (void)state;
    Model a = yolov8("n"), b = yolov8("n");
    cost_model_set_activation_type(b.cost, DTYPE_BF16);
    assert_int_equal(b.cost->input_bytes * 2, a.cost->input_bytes);
    for (int i = 0; i < a.cost->n_layers; i++) {
        assert_int_equal(b.cost->layers[i].activation_bytes * 2, a.cost->layers[i].activation_bytes);
        assert_int_equal(b.cost->layers[i].output_bytes * 2, a.cost->layers[i].output_bytes);
        assert_int_equal(b.cost->layers[i].param_bytes, a.cost->layers[i].param_bytes);
    }
    model_free(&a);
    model_free(&b);
}

static void test_cost_model(void **state) {
    (void)state;
    Model m = yolov8("n");
    const CostModel *c = m.cost;
    double flops = 0;
    int64_t params = 0;
    for (int l = 0; l < c->n_layers; l++) flops += c->layers[l].flops, params += c->layers[l].param_bytes;
    // Relative 1e-12: the same FLOPs summed in another order and scaled by the micro-batch.
    assert_close(flops / 8 / 1e9, graph_gflops(m.g), 0.0, 1e-12);
    assert_int_equal(params, 3157200 * 4);
    assert_int_equal(c->input_bytes, 3 * 640 * 640 * 8 * 4);
    assert_int_equal(c->layers[4].output_bytes, 64 * 80 * 80 * 8 * 4);
    assert_int_equal(c->layers[22].output_bytes, (64 + 80) * 8400 * 8 * 4);  // 4 x reg_max box + nc, 8400 anchors
    assert_int_equal(c->layers[4].activation_bytes, m.g->layers[4].activation_elems * 8 * 4);
    // Layer 0 has no input gradient; Concat no weight gradient; a Conv both, each one forward.
    const double flops_per_s = cost_device_find("cpu")->flops_per_s;
    assert_true(c->layers[0].bwd_input_s == 0 && c->layers[0].bwd_weight_s == c->layers[0].fwd_s);
    assert_true(c->layers[11].bwd_weight_s == 0 && c->layers[11].bwd_input_s == c->layers[11].fwd_s);
    assert_true(c->layers[3].bwd_input_s == c->layers[3].fwd_s && c->layers[3].bwd_weight_s == c->layers[3].fwd_s);
    assert_true(c->layers[3].fwd_s == c->layers[3].flops / flops_per_s);
    assert_non_null(cost_device_find("h100"));
    assert_null(cost_device_find("tpu"));
    model_free(&m);
}

// Attention's softmax, which thop does not count, weighs in the cost model but not in Layer.ops:
// yolo11n's C2PSA (layer 10) attends over 20x20 positions at 640 with 2 heads (c = 128, c // 64),
// about two multiply-adds per score (2 heads x 400^2 scores); the matmuls are in thop's count.
static void test_cost_model_attention(void **state) {
    (void)state;
    Model m = model_load("experiments/models/yolo11.yaml", "n", 640, 2);
    const Layer *l = &m.g->layers[10];
    assert_string_equal(l->row->module, "C2PSA");
    assert_true(l->uncounted_ops == 2.0 * 2 * 400.0 * 400.0);
    assert_close(m.cost->layers[10].flops, 2.0 * (l->ops + l->uncounted_ops) * 2, 0.0, 1e-15);
    assert_true(m.g->layers[9].uncounted_ops == 0);  // SPPF: nothing thop misses
    model_free(&m);
}

static const char *write_file(const char *name, const char *text) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    test_write_text(path, text);
    return path;
}

static void expect_profile_error(const char *text, const char *expected) {
    const char *path = write_file("bad.csv", text);
    CostProfile *p = NULL;
    Error err = {0};
    assert_false(cost_profile_load(path, &p, &err));
    assert_null(p);
    const char *msg = err.message + strlen(tmp_dir) + 1;
    if (strcmp(msg, expected)) fail_msg("message\n  got:      %s\n  expected: %s", msg, expected);
}

// `yolopipe profile` on the tiny model; its CSV reads back into a cost model.
static void test_profile_command(void **state) {
    (void)state;
    char model[1024], exp_text[1600], out[700];
    snprintf(model, sizeof model, "%s/tests/reference/models/tiny-detect.yaml", getenv("YP_SOURCE_ROOT"));
    snprintf(exp_text, sizeof exp_text,
             "model: %s\ndata: none.yaml\ntrain: {batch: 4, imgsz: 64}\nparallel: {micro_batches: 2}\n", model);
    const char *exp_path = write_file("exp.yaml", exp_text);
    char exp_copy[700];
    snprintf(exp_copy, sizeof exp_copy, "%s", exp_path);
    snprintf(out, sizeof out, "%s/profile.csv", tmp_dir);
    char *argv[] = {exp_copy, "--out", out, "--repeats", "2", "--set", "train.seed=3"};
    assert_int_equal(cmd_profile(7, argv), 0);

    CostProfile *p = NULL;
    Error err = {0};
    if (!cost_profile_load(out, &p, &err)) fail_msg("%s", err.message);
    assert_int_equal(p->n_layers, 23);
    assert_int_equal(p->batch, 2);  // train.batch / micro_batches
    assert_int_equal(p->imgsz, 64);
    assert_string_equal(p->rows[1].module, "Bottleneck");
    assert_string_equal(p->rows[22].module, "Detect");
    for (int i = 0; i < p->n_layers; i++) assert_true(p->rows[i].fwd_s > 0 && p->rows[i].bwd_s > 0);
    // No dataset (none.yaml, no synth: block): the optimizer and EMA are timed, the loss and loader not.
    assert_true(p->optimizer_s_per_param_byte > 0 && p->ema_s_per_param_byte > 0);
    assert_true(p->loss_s_per_image == 0 && p->loader_images_per_s_per_worker == 0);

    Model m = model_load("tests/reference/models/tiny-detect.yaml", NULL, 64, 2);
    CostModel *c = NULL;
    if (!cost_model_measured(m.g, 2, p, &c, &err)) fail_msg("%s", err.message);
    assert_int_equal(c->profile_batch, 0);
    assert_true(c->layers[5].fwd_s == p->rows[5].fwd_s);
    // Layer 5 (a Conv): B and W as the profile measured them.
    assert_true(c->layers[5].bwd_weight_s == p->rows[5].bwd_weight_s);
    assert_true(fabs(c->layers[5].bwd_input_s + c->layers[5].bwd_weight_s - p->rows[5].bwd_s) <= 1e-15);
    assert_true(c->layers[0].bwd_input_s == 0 && c->layers[0].bwd_weight_s == p->rows[0].bwd_s);
    assert_true(c->layers[11].bwd_weight_s == 0 && c->layers[11].bwd_input_s == p->rows[11].bwd_s);
    assert_int_equal(c->layers[5].output_bytes, m.cost->layers[5].output_bytes);
    cost_model_destroy(c);
    // Another micro-batch size scales the times linearly, and says so.
    if (!cost_model_measured(m.g, 6, p, &c, &err)) fail_msg("%s", err.message);
    assert_int_equal(c->profile_batch, 2);
    assert_true(c->layers[5].fwd_s == p->rows[5].fwd_s * 3.0);
    cost_model_destroy(c);
    // A profile of another model or size is refused.
    snprintf(p->rows[3].module, sizeof p->rows[3].module, "Conv");
    assert_false(cost_model_measured(m.g, 2, p, &c, &err));
    char expected[1024];
    snprintf(expected, sizeof expected, "%s:5:1: layer 3 is Conv in the profile but C2f in the model tiny-detect", out);
    assert_string_equal(err.message, expected);
    p->imgsz = 96;
    assert_false(cost_model_measured(m.g, 2, p, &c, &err));
    snprintf(expected, sizeof expected,
             "%s: profiled at imgsz 96 but the plan is for 64x64 images; run yolopipe profile at that size", out);
    assert_string_equal(err.message, expected);
    cost_profile_destroy(p);
    model_free(&m);
}

// With a dataset (generated from the synth: block, 8 training images: the loader's 3 timed batches of
// 4 run into a second epoch), the loss and loader lines are there too.
static void test_profile_command_with_data(void **state) {
    (void)state;
    char model[1024], exp_text[2400], out[700];
    snprintf(model, sizeof model, "%s/tests/reference/models/tiny-detect.yaml", getenv("YP_SOURCE_ROOT"));
    snprintf(exp_text, sizeof exp_text,
             "model: %s\ndata: %s/shapes/data.yaml\nsynth: {train: 8, val: 2, imgsz: 64, classes: 3, seed: 1}\n"
             "train: {batch: 4, imgsz: 64, workers: 1}\nparallel: {micro_batches: 2}\n",
             model, tmp_dir);
    const char *exp_path = write_file("exp-data.yaml", exp_text);
    char exp_copy[700];
    snprintf(exp_copy, sizeof exp_copy, "%s", exp_path);
    snprintf(out, sizeof out, "%s/profile-data.csv", tmp_dir);
    char *argv[] = {exp_copy, "--out", out, "--repeats", "2"};
    assert_int_equal(cmd_profile(5, argv), 0);
    CostProfile *p = NULL;
    Error err = {0};
    if (!cost_profile_load(out, &p, &err)) fail_msg("%s", err.message);
    assert_int_equal(p->n_layers, 23);
    assert_true(p->optimizer_s_per_param_byte > 0 && p->ema_s_per_param_byte > 0);
    assert_true(p->loss_s_per_image > 0 && p->loader_images_per_s_per_worker > 0);
    // B and W timed apart: W is a part of each backward, strictly inside it for some layer.
    int split = 0;
    for (int i = 0; i < p->n_layers; i++) {
        assert_true(p->rows[i].bwd_weight_s >= 0 && p->rows[i].bwd_weight_s <= p->rows[i].bwd_s);
        split += p->rows[i].bwd_weight_s > 0 && p->rows[i].bwd_weight_s < p->rows[i].bwd_s;
    }
    assert_true(split > 0);
    cost_profile_destroy(p);
    // The class count defaults to the dataset's; a model with fewer classes than the data is refused.
    char *few[] = {exp_copy, "--out", out, "--repeats", "1", "--nc", "2"};
    assert_int_equal(cmd_profile(7, few), 2);
}

static void test_profile_reader_errors(void **state) {
    (void)state;
    expect_profile_error("layer,module,fwd_s\n0,Conv,1\n",
                         "bad.csv:1:1: expected the header 'layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s' (or one without "
                         "bwd_weight_s), found 'layer,module,fwd_s'");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n",
                         "bad.csv:1:1: no layer lines after the header");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,0.1,0.2,4\n",
                         "bad.csv:2:1: expected 6 comma-separated fields (layer,module,fwd_s,bwd_s,batch,imgsz), found fewer");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s\n0,Conv,0.1,0.2,4,64\n",
                         "bad.csv:2:1: expected 7 comma-separated fields (layer,module,fwd_s,bwd_s,batch,imgsz,"
                         "bwd_weight_s), found fewer");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s\n0,Conv,0.1,0.2,4,64,0.3\n",
                         "bad.csv:2:21: bwd_weight_s 0.3 is more than bwd_s 0.2: it is a part of it");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s\n0,Conv,0.1,0.2,4,64,w\n",
                         "bad.csv:2:21: bwd_weight_s must be a non-negative number of seconds, found 'w'");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n1,Conv,0.1,0.2,4,64\n",
                         "bad.csv:2:1: expected layer 0, found '1'");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,-0.1,0.2,4,64\n",
                         "bad.csv:2:8: fwd_s must be a non-negative number of seconds, found '-0.1'");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,0.1,0.2,4,64\n1,Conv,0.1,0.2,8,64\n",
                         "bad.csv:3:16: every line must have the same batch and imgsz: found 8 and 64, line 2 has 4 and 64");
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,0.1,0.2,4,x\n",
                         "bad.csv:2:18: imgsz must be a positive integer, found 'x'");
    // Written and read back: the same numbers.
    CostProfile *p = cost_profile_create(2, 4, 64);
    snprintf(p->rows[0].module, sizeof p->rows[0].module, "Conv");
    snprintf(p->rows[1].module, sizeof p->rows[1].module, "nn.Upsample");
    p->rows[0].fwd_s = 0.125, p->rows[0].bwd_s = 0.25, p->rows[1].fwd_s = 1e-6, p->rows[1].bwd_s = 0;
    p->rows[0].bwd_weight_s = 0.0625;  // layer 1's is not measured
    char path[600];
    snprintf(path, sizeof path, "%s/round.csv", tmp_dir);
    FILE *f = fopen(path, "w");
    cost_profile_write(p, f);
    fclose(f);
    CostProfile *q = NULL;
    Error err = {0};
    if (!cost_profile_load(path, &q, &err)) fail_msg("%s", err.message);
    assert_int_equal(q->n_layers, 2);
    assert_int_equal(q->batch, 4);
    assert_string_equal(q->rows[1].module, "nn.Upsample");
    assert_true(q->rows[0].bwd_s == 0.25 && q->rows[1].fwd_s == 1e-6);
    assert_true(q->rows[0].bwd_weight_s == 0.0625 && q->rows[1].bwd_weight_s == -1);
    // Without step lines (what a profile written before them holds): the step fields read 0.
    assert_true(q->optimizer_s_per_param_byte == 0 && q->ema_s_per_param_byte == 0 && q->loss_s_per_image == 0 &&
                q->loader_images_per_s_per_worker == 0);
    cost_profile_destroy(q);
    // With them (values exact in 9 digits): the same numbers back; a 0 field writes no line.
    p->optimizer_s_per_param_byte = 1.25e-9, p->ema_s_per_param_byte = 7.5e-11, p->loss_s_per_image = 1.5e-4;
    f = fopen(path, "w");
    cost_profile_write(p, f);
    fclose(f);
    if (!cost_profile_load(path, &q, &err)) fail_msg("%s", err.message);
    assert_true(q->optimizer_s_per_param_byte == 1.25e-9 && q->ema_s_per_param_byte == 7.5e-11 &&
                q->loss_s_per_image == 1.5e-4 && q->loader_images_per_s_per_worker == 0);
    cost_profile_destroy(q);
    char *text;
    size_t n_bytes;
    assert_true(fs_read_file(path, FS_READ_CSV, &text, &n_bytes, &err));
    assert_string_equal(text, "layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s\n0,Conv,0.125,0.25,4,64,0.0625\n"
                              "1,nn.Upsample,1e-06,0,4,64,\nstep,optimizer,1.25e-09,s_per_param_byte\n"
                              "step,ema,7.5e-11,s_per_param_byte\nstep,loss,0.00015,s_per_image\n");
    free(text);
    cost_profile_destroy(p);
    // An old file, as written before the step lines and bwd_weight_s, still loads.
    const char *old = write_file("old.csv", "layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,0.5,1,8,160\n");
    if (!cost_profile_load(old, &q, &err)) fail_msg("%s", err.message);
    assert_true(q->n_layers == 1 && q->rows[0].bwd_s == 1 && q->rows[0].bwd_weight_s == -1 &&
                q->loader_images_per_s_per_worker == 0);
    cost_profile_destroy(q);
}

static void test_profile_step_errors(void **state) {
    (void)state;
    const char *head = "layer,module,fwd_s,bwd_s,batch,imgsz\n0,Conv,0.1,0.2,4,64\n";
    char text[512];
    snprintf(text, sizeof text, "%sstep,loader,120,images_per_s_per_worker\n", head);
    CostProfile *p = NULL;
    Error err = {0};
    if (!cost_profile_load(write_file("one-step.csv", text), &p, &err)) fail_msg("%s", err.message);
    assert_true(p->loader_images_per_s_per_worker == 120 && p->optimizer_s_per_param_byte == 0);
    cost_profile_destroy(p);
    struct {
        const char *lines, *expected;
    } cases[] = {
        {"step,optimizer,1e-9\n", "bad.csv:3:1: expected 4 comma-separated fields (step,name,value,unit), found fewer"},
        {"step,optimiser,1e-9,s_per_param_byte\n",
         "bad.csv:3:6: unknown step 'optimiser': expected optimizer, ema, loss or loader"},
        {"step,ema,1e-9,s_per_param_byte\nstep,ema,2e-9,s_per_param_byte\n",
         "bad.csv:4:6: step 'ema' again (first on line 3)"},
        {"step,loss,0.001,s_per_batch\n", "bad.csv:3:17: step 'loss' is in s_per_image, found 's_per_batch'"},
        {"step,loader,-5,images_per_s_per_worker\n",
         "bad.csv:3:13: step 'loader' must be a non-negative number, found '-5'"},
        {"step,loss,0.001,s_per_image\n1,Conv,0.1,0.2,4,64\n",
         "bad.csv:4:1: a layer line after the step lines (from line 3): layers come first"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(text, sizeof text, "%s%s", head, cases[i].lines);
        expect_profile_error(text, cases[i].expected);
    }
    expect_profile_error("layer,module,fwd_s,bwd_s,batch,imgsz\nstep,loss,0.001,s_per_image\n",
                         "bad.csv:2:1: no layer lines after the header");
}

static int make_tmp(void **state) {
    (void)state;
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp(void **state) {
    (void)state;
    Error err = {0};
    return fs_remove_tree(tmp_dir, &err) ? 0 : -1;
}

// Gradient buckets (partition.h's rule, as the executor closes them) for yolov8m in 1 to 4 stages:
// each stage's buckets tile its gradients from the end, each starting at a layer's first parameter
// and closing at the first layer that brings it to 4 MiB; what is left for REDUCE_GRADS is under
// 4 MiB; a bucket is ready after the backward of the layers it covers and those after it. The
// running statistics are the batch norms' means and variances: 2 floats per channel.
static void test_buckets(void **state) {
    (void)state;
    Model m = yolov8("m");
    const int64_t threshold = (int64_t)PLAN_REDUCE_BUCKET_ELEMS * 4;
    for (int S = 1; S <= 4; S++) {
        PipelinePlan plan;
        PartitionReport report;
        Error err = {0};
        Setting setting = setting_1f1b(S, (LinkModel){0, INFINITY}, 0);
        if (!plan_auto(&m, &setting, &plan, &report, &err)) fail_msg("%s", err.message);
        int next = 0, n_buckets = 0;
        for (int k = 0; k < S; k++) {
            const PlanStage *st = &plan.stages[k];
            assert_int_equal(st->first_bucket, next);
            int64_t end = st->param_bytes;   // the gradients not bucketed yet end here
            int layer = st->last_layer + 1;  // and start at this layer's parameters
            double done_s = 0;
            for (int b = st->first_bucket; b < st->first_bucket + st->n_buckets; b++) {
                const PlanBucket *bk = &plan.buckets[b];
                assert_int_equal(bk->stage, k);
                assert_true(bk->bytes >= threshold);
                // Walk down the layers it covers: it must end exactly at one's first parameter.
                int64_t covered = 0, last_layer_bytes = 0;
                while (covered < bk->bytes) {
                    layer--;
                    assert_true(layer >= st->first_layer);
                    covered += m.cost->layers[layer].param_bytes;
                    last_layer_bytes = m.cost->layers[layer].param_bytes;
                    done_s += m.cost->layers[layer].bwd_input_s + m.cost->layers[layer].bwd_weight_s;
                }
                assert_int_equal(covered, bk->bytes);
                assert_true(bk->bytes - last_layer_bytes < threshold);  // closed at the first layer that sufficed
                assert_close(bk->ready_s, done_s, 0.0, 1e-12);
                end -= bk->bytes;
            }
            assert_true(end >= 0 && end < threshold);
            next += st->n_buckets;
            n_buckets += st->n_buckets;
            int64_t buffers = 0;
            for (int l = st->first_layer; l <= st->last_layer; l++) buffers += m.cost->layers[l].buffer_bytes;
            assert_int_equal(st->buffer_bytes, buffers);
        }
        assert_int_equal(plan.n_buckets, n_buckets);
        // yolov8m: 25.9 M parameters, 104 MB: at most 24 buckets of 4 MiB or more; fewer, as a bucket
        // takes whole layers (YOLOv8m's largest hold over 10 MB each).
        int64_t total = 0;
        for (int k = 0; k < S; k++) total += plan.stages[k].param_bytes;
        assert_in_range(n_buckets, 1, total / threshold);
        partition_plan_clear(&plan);
    }
    // Running statistics: a mean and a variance per batch-norm channel, 2 x 4 bytes.
    int64_t buffers = 0;
    for (int l = 0; l < m.g->n_layers; l++) buffers += m.cost->layers[l].buffer_bytes;
    int64_t bn_channels = 0;
    for (int p = 0; p < m.g->n_params; p++)
        if (strstr(m.g->params[p].name, ".bn.running_mean")) bn_channels += m.g->params[p].n_elems;
    assert_true(bn_channels > 0);
    assert_int_equal(buffers, 2 * 4 * bn_channels);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_model),
        cmocka_unit_test(test_cost_model_attention),
        cmocka_unit_test(test_cost_model_activation_type),
        cmocka_unit_test(test_dp_matches_brute_force),
        cmocka_unit_test(test_cut_tensors_yolov8n),
        cmocka_unit_test(test_manual_partitions),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_profile_reader_errors),
        cmocka_unit_test(test_profile_step_errors),
        cmocka_unit_test(test_profile_command),
        cmocka_unit_test(test_profile_command_with_data),
    };
    return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
