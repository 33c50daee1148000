// The study file and its points: defaults and units, "key=value" overrides, the sweep's product in
// order (first axis slowest, node counts fastest), where:, the derived replicas and batch, drops with
// their reasons (a constraint, stages that do not divide the GPUs, a combination the experiment
// rejects, a repeated point), study_config_same naming the changed key, and experiments/STUDY.md
// documenting every key of the study file. The expected points and reasons are written out by hand
// from the study texts below.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/core/fsutil.h"
#include "framework/study/study.h"

static char tmp_dir[] = "/tmp/yp-study-XXXXXX";

// The base experiment: 2 stages x 2 replicas x 2 micro-batches, batch 16, 8 epochs. Its model and
// data need not exist: loading an experiment does not open them.
static const char base_experiment[] = "model: models/yolov8.yaml\n"
                                      "data: data/shapes.yaml\n"
                                      "train: {epochs: 8, batch: 16}\n"
                                      "parallel: {stages: 2, replicas: 2, micro_batches: 2}\n";

static const char *tmp_path(const char *name) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static void write_text(const char *name, const char *text) {
    Error err = {0};
    if (!fs_write_file_atomic(tmp_path(name), text, strlen(text), &err)) fail_msg("%s", err.message);
}

static StudyConfig *load_ok(const char *text, int n_set, char *const *set) {
    write_text("study.yaml", text);
    StudyConfig *s = NULL;
    Error err = {0};
    if (!study_config_load(tmp_path("study.yaml"), n_set, set, &s, &err)) fail_msg("unexpected error: %s", err.message);
    return s;
}

// Loads `text` (and expands it when it loads) expecting a failure whose message, after "<tmp>/", is `expected`.
static void fails(const char *text, int n_set, char *const *set, const char *expected) {
    write_text("study.yaml", text);
    StudyConfig *s = NULL;
    StudyPoints points;
    Error err = {0};
    bool ok = study_config_load(tmp_path("study.yaml"), n_set, set, &s, &err);
    if (ok) {
        ok = study_points_expand(s, &points, &err);
        if (ok) study_points_clear(&points);
        study_config_destroy(s);
    } else {
        assert_null(s);
    }
    assert_false(ok);
    const char *msg = err.message;
    size_t n = strlen(tmp_dir);
    if (!strncmp(msg, tmp_dir, n)) msg += n + 1;
    if (strcmp(msg, expected)) fail_msg("message\n  got:      %s\n  expected: %s", msg, expected);
}

// Values held as the file's number x its unit (2.5 us x 1e-6): one rounding of the product away.
static void assert_close_rel(double got, double want) {
    if (!(fabs(got - want) <= 1e-15 * fabs(want))) fail_msg("got %.17g, expected %.17g", got, want);
}

// A point's settings as "k=v k=v".
static const char *settings_text(const StudyPoint *p) {
    static char text[1024];
    text[0] = '\0';
    for (int i = 0; i < p->n_settings; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s=%s", i ? " " : "", p->settings[i].key,
                 p->settings[i].value);
    return text;
}

static void test_defaults_and_units(void **state) {
    (void)state;
    StudyConfig *s = load_ok("experiment: base.yaml\n", 0, NULL);
    assert_string_equal(s->name, "study");
    assert_string_equal(s->out, "studies/study");
    assert_string_equal(s->experiment, tmp_path("base.yaml"));
    assert_int_equal(s->mode, STUDY_MODE_SIMULATE);
    assert_int_equal(s->measure.steps, 6);
    assert_int_equal(s->measure.warmup, 2);
    assert_string_equal(s->measure.launcher, "mpirun -np {world} --oversubscribe");
    assert_true(s->measure.time_limit_s == 600);
    assert_false(s->cluster.present);
    assert_int_equal(s->cluster.gpus_per_node, 8);
    assert_int_equal(s->cluster.nics_per_node, 1);
    assert_string_equal(s->cluster.device.name, "cpu");  // the base experiment's backend is auto
    assert_false(s->train_for.present);
    assert_int_equal(s->train_for.epochs, 8);  // the base experiment's train.epochs
    study_config_destroy(s);

    write_text("profile.csv", "layer,module,fwd_s,bwd_s,batch,imgsz\n");
    write_text("coco.yaml", "path: .\n");
    s = load_ok("name: units\n"
                "experiment: base.yaml\n"
                "set: {train.epochs: 3}\n"
                "cluster:\n"
                "  nodes: {from: 1, to: 20, factor: 4}\n"
                "  gpus_per_node: 4\n"
                "  device: {name: a100, peak_tflops: 312, efficiency: 0.45, memory_gb: 80}\n"
                "  profile: profile.csv\n"
                "  intra: {bandwidth_gbps: 370, latency_us: 2.5}\n"
                "  inter: {bandwidth_gbps: 48, latency_us: 5}\n"
                "  nics_per_node: 8\n"
                "  loader_images_per_s: 2500\n"
                "train_for: {dataset: coco.yaml, val_s_per_epoch: 30}\n"
                "cost:\n"
                "  - {name: cloud, on_demand: 3.5, spot: 1.25}\n"
                "  - name: lab\n"
                "    local: {purchase_per_gpu: 25000, years: 4, watts_per_gpu: 700, electricity_per_kwh: 0.3}\n",
                0, NULL);
    assert_string_equal(s->out, "studies/units");
    assert_true(s->cluster.present);
    assert_int_equal(s->cluster.n_nodes, 3);  // 1, 4, 16: the next, 64, is past 20
    assert_int_equal(s->cluster.nodes[0], 1);
    assert_int_equal(s->cluster.nodes[1], 4);
    assert_int_equal(s->cluster.nodes[2], 16);
    assert_string_equal(s->cluster.device.name, "a100");
    assert_true(s->cluster.device.peak_flops == 312e12);
    assert_true(s->cluster.device.efficiency == 0.45);
    assert_int_equal(s->cluster.device.memory_bytes, 80LL << 30);
    assert_string_equal(s->cluster.device.profile, tmp_path("profile.csv"));
    assert_true(s->cluster.intra.bandwidth_bytes_per_s == 370e9);
    assert_close_rel(s->cluster.intra.latency_s, 2.5e-6);
    assert_true(s->cluster.inter.bandwidth_bytes_per_s == 48e9);
    assert_close_rel(s->cluster.inter.latency_s, 5e-6);
    assert_int_equal(s->cluster.nics_per_node, 8);
    assert_true(s->cluster.loader_images_per_s == 2500);
    assert_true(s->train_for.present);
    assert_int_equal(s->train_for.epochs, 3);  // as set: leaves train.epochs
    assert_int_equal(s->train_for.images, 0);
    assert_string_equal(s->train_for.dataset, tmp_path("coco.yaml"));
    assert_true(s->train_for.val_s_per_epoch == 30);
    assert_int_equal(s->n_platforms, 2);
    assert_int_equal(s->platforms[0].kind, STUDY_PLATFORM_CLOUD);
    assert_true(s->platforms[0].on_demand_per_gpu_hour == 3.5 && s->platforms[0].spot_per_gpu_hour == 1.25);
    assert_int_equal(s->platforms[1].kind, STUDY_PLATFORM_LOCAL);
    assert_true(s->platforms[1].purchase_per_gpu == 25000 && s->platforms[1].years == 4);
    assert_true(s->platforms[1].utilisation == 1);  // the default: used all the time
    assert_true(s->platforms[1].watts_per_gpu == 700 && s->platforms[1].electricity_per_kwh == 0.3);
    study_config_destroy(s);

    // A named device keeps the planner's figures (0); a path in set: resolves against the study's folder.
    s = load_ok("experiment: base.yaml\ncluster: {device: h100}\nset: {model: other.yaml}\n", 0, NULL);
    assert_string_equal(s->cluster.device.name, "h100");
    assert_true(s->cluster.device.peak_flops == 0 && s->cluster.device.memory_bytes == 0);
    char quoted[700];
    snprintf(quoted, sizeof quoted, "\"%s\"", tmp_path("other.yaml"));
    assert_string_equal(s->set[0].value, quoted);
    study_config_destroy(s);
}

static void test_product_order_where_and_drops(void **state) {
    (void)state;
    StudyConfig *s = load_ok("experiment: base.yaml\n"
                             "sweep:\n"
                             "  parallel.stages: [1, 2, 4]\n"
                             "  parallel.schedule: [gpipe, 1f1b]\n"
                             "  parallel.micro_batches: [2, 3]\n"
                             "where:\n"
                             "  - world <= 4\n"
                             "  - parallel.schedule != gpipe\n",
                             0, NULL);
    assert_int_equal(s->n_axes, 3);
    assert_int_equal(s->n_where, 2);
    assert_int_equal(s->where[0].op, STUDY_LE);
    assert_string_equal(s->where[0].lhs, "world");
    assert_string_equal(s->where[0].rhs, "4");
    StudyPoints p;
    Error err = {0};
    assert_true(study_points_expand(s, &p, &err));
    // 3 x 2 x 2 = 12 combinations; micro_batches 3 passes the load (it divides other batches) but
    // not this experiment's 16 = 2 replicas x micro-batches x images.
    assert_int_equal(p.n, 2);
    assert_string_equal(p.points[0].label, "parallel.stages=1 parallel.schedule=1f1b parallel.micro_batches=2");
    assert_int_equal(p.points[0].world, 2);
    assert_int_equal(p.points[0].nodes, 1);
    assert_string_equal(p.points[1].label, "parallel.stages=2 parallel.schedule=1f1b parallel.micro_batches=2");
    assert_int_equal(p.points[1].world, 4);
    assert_string_equal(settings_text(&p.points[1]),
                        "parallel.stages=2 parallel.schedule=1f1b parallel.micro_batches=2");
    static const char *const dropped[] = {
        "parallel.stages=1 parallel.schedule=gpipe parallel.micro_batches=2: excluded by where: parallel.schedule != gpipe",
        "parallel.stages=1 parallel.schedule=gpipe parallel.micro_batches=3: excluded by where: parallel.schedule != gpipe",
        "parallel.stages=1 parallel.schedule=1f1b parallel.micro_batches=3: train.batch (16) must be a multiple of "
        "parallel.replicas x parallel.micro_batches (2 x 3)",
        "parallel.stages=2 parallel.schedule=gpipe parallel.micro_batches=2: excluded by where: parallel.schedule != gpipe",
        "parallel.stages=2 parallel.schedule=gpipe parallel.micro_batches=3: excluded by where: parallel.schedule != gpipe",
        "parallel.stages=2 parallel.schedule=1f1b parallel.micro_batches=3: train.batch (16) must be a multiple of "
        "parallel.replicas x parallel.micro_batches (2 x 3)",
        "parallel.stages=4 parallel.schedule=gpipe parallel.micro_batches=2: excluded by where: world <= 4",
        "parallel.stages=4 parallel.schedule=gpipe parallel.micro_batches=3: excluded by where: world <= 4",
        "parallel.stages=4 parallel.schedule=1f1b parallel.micro_batches=2: excluded by where: world <= 4",
        "parallel.stages=4 parallel.schedule=1f1b parallel.micro_batches=3: excluded by where: world <= 4",
    };
    assert_int_equal(p.n_dropped, 10);
    for (int i = 0; i < 10; i++) assert_string_equal(p.dropped[i], dropped[i]);
    study_points_clear(&p);
    assert_int_equal(p.n, 0);
    study_config_destroy(s);
}

static void test_cluster_derived_settings_and_points(void **state) {
    (void)state;
    StudyConfig *s = load_ok("experiment: base.yaml\n"
                             "set: {train.epochs: 1}\n"
                             "batch_per_gpu: 2\n"
                             "sweep: {parallel.stages: [1, 2, 3]}\n"
                             "cluster: {nodes: [1, 2], gpus_per_node: 4}\n"
                             "points:\n"
                             "  - {parallel.stages: 2}\n"
                             "  - {parallel.stages: 4, parallel.schedule: gpipe}\n",
                             0, NULL);
    StudyPoints p;
    Error err = {0};
    assert_true(study_points_expand(s, &p, &err));
    // Product: stages {1, 2, 3} x nodes {1, 2}, nodes fastest; then each explicit point at each node count.
    static const struct {
        const char *label, *settings;
        int64_t world, nodes;
    } expected[] = {
        {"parallel.stages=1 nodes=1", "train.epochs=1 parallel.stages=1 parallel.replicas=4 train.batch=8", 4, 1},
        {"parallel.stages=1 nodes=2", "train.epochs=1 parallel.stages=1 parallel.replicas=8 train.batch=16", 8, 2},
        {"parallel.stages=2 nodes=1", "train.epochs=1 parallel.stages=2 parallel.replicas=2 train.batch=8", 4, 1},
        {"parallel.stages=2 nodes=2", "train.epochs=1 parallel.stages=2 parallel.replicas=4 train.batch=16", 8, 2},
        {"parallel.stages=4 parallel.schedule=gpipe nodes=1",
         "train.epochs=1 parallel.stages=4 parallel.schedule=gpipe parallel.replicas=1 train.batch=8", 4, 1},
        {"parallel.stages=4 parallel.schedule=gpipe nodes=2",
         "train.epochs=1 parallel.stages=4 parallel.schedule=gpipe parallel.replicas=2 train.batch=16", 8, 2},
    };
    assert_int_equal(p.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(p.points[i].label, expected[i].label);
        assert_string_equal(settings_text(&p.points[i]), expected[i].settings);
        assert_int_equal(p.points[i].world, expected[i].world);
        assert_int_equal(p.points[i].nodes, expected[i].nodes);
    }
    assert_int_equal(p.n_dropped, 4);
    assert_string_equal(p.dropped[0], "parallel.stages=3 nodes=1: 3 stages do not divide 4 GPUs");
    assert_string_equal(p.dropped[1], "parallel.stages=3 nodes=2: 3 stages do not divide 8 GPUs");
    assert_string_equal(p.dropped[2], "parallel.stages=2 nodes=1: the same settings as point 3 (parallel.stages=2 nodes=1)");
    assert_string_equal(p.dropped[3], "parallel.stages=2 nodes=2: the same settings as point 4 (parallel.stages=2 nodes=2)");
    study_points_clear(&p);
    study_config_destroy(s);

    // Without node counts: world from the experiment's layout, nodes from gpus_per_node.
    s = load_ok("experiment: base.yaml\ncluster: {gpus_per_node: 3}\n", 0, NULL);
    assert_true(study_points_expand(s, &p, &err));
    assert_int_equal(p.n, 1);
    assert_string_equal(p.points[0].label, "the base experiment");
    assert_int_equal(p.points[0].n_settings, 0);
    assert_int_equal(p.points[0].world, 4);
    assert_int_equal(p.points[0].nodes, 2);
    study_points_clear(&p);
    study_config_destroy(s);
}

static void test_overrides(void **state) {
    (void)state;
    static const char study[] = "experiment: base.yaml\nset: {train.epochs: 3}\nsweep: {parallel.stages: [1, 2]}\n";
    char *set[] = {"measure.steps=3", "measure={warmup: 1, time_limit: 30}", "set.train.epochs=5",
                   "set.parallel.micro_batches=4", "sweep.parallel.stages=[1]", "sweep.parallel.schedule=[gpipe, zb-h1]",
                   "cluster.gpus_per_node=4", "mode=both", "measure.launcher=sh -c {world}", "name=renamed"};
    StudyConfig *s = load_ok(study, 10, set);
    assert_int_equal(s->measure.steps, 3);
    assert_int_equal(s->measure.warmup, 1);
    assert_true(s->measure.time_limit_s == 30);
    assert_int_equal(s->n_set, 2);
    assert_string_equal(s->set[0].key, "train.epochs");
    assert_string_equal(s->set[0].value, "5");
    assert_string_equal(s->set[1].key, "parallel.micro_batches");
    assert_int_equal(s->n_axes, 2);
    assert_int_equal(s->axes[0].n_values, 1);
    assert_string_equal(s->axes[1].values[1].value, "zb-h1");
    assert_true(s->cluster.present);
    assert_int_equal(s->cluster.gpus_per_node, 4);
    assert_int_equal(s->mode, STUDY_MODE_BOTH);
    assert_string_equal(s->name, "renamed");
    assert_string_equal(s->out, "studies/renamed");
    assert_int_equal(s->train_for.epochs, 5);
    assert_string_equal(s->axes[1].pos.file, "--set sweep.parallel.schedule");
    study_config_destroy(s);

    fails(study, 1, (char *[]){"measure.step=3"},
          "--set measure.step=3: unknown key 'measure.step' (did you mean 'measure.steps'?)");
    fails(study, 1, (char *[]){"measure.steps=0"}, "--set measure.steps:1:1: measure.steps must be between 1 and 1000000, found 0");
    fails(study, 1, (char *[]){"mode"}, "--set mode: expected key=value, e.g. --set measure.steps=3 or --set set.train.epochs=2");
    fails(study, 1, (char *[]){"set.train.epoch=2"},
          "--set set.train.epoch: set: no experiment has a key 'train.epoch' (did you mean 'train.epochs'?)");
    fails(study, 1, (char *[]){"sweep.parallel.stages=[1, 99]"},
          "--set sweep.parallel.stages:1:5: parallel.stages must be between 1 and 64, found 99");
    fails(study, 1, (char *[]){"where=[world < x]"}, "--set where:1:2: where entry 'world < x': '<' compares numbers but 'x' is not one");
}

static void test_errors_beyond_the_corpus(void **state) {
    (void)state;
    fails("experiment: base.yaml\nsweep: {parallel.micro_batches: [5]}\n", 0, NULL,
          "study.yaml:1:1: no points left: all 1 combinations were dropped (the first: parallel.micro_batches=5: train.batch "
          "(16) must be a multiple of parallel.replicas x parallel.micro_batches (2 x 5))");
    fails("experiment: base.yaml\nsweep: {parallel.stages: [1, 2, 1]}\n", 0, NULL,
          "study.yaml:2:33: sweep parallel.stages lists this value twice (first on line 2)");
    fails("experiment: base.yaml\nbatch_per_gpu: 4\npoints: [{train.batch: 32}]\n", 0, NULL,
          "study.yaml:3:24: train.batch is derived from batch_per_gpu for every point (batch_per_gpu x world); give one or "
          "the other");
    fails("experiment: base.yaml\ncost: [{name: a, on_demand: 1}, {name: a, on_demand: 2}]\n", 0, NULL,
          "study.yaml:2:33: two cost entries are named 'a'");
    fails("experiment: base.yaml\ncluster: {device: {name: x, efficiency: 0.5}}\n", 0, NULL,
          "study.yaml:2:19: cluster.device 'x' is not a device the planner knows: give its peak_tflops");
    fails("experiment: base.yaml\nmeasure: {launcher: 'srun -n {world} {gpus}'}\n", 0, NULL,
          "study.yaml:2:21: measure.launcher: '{gpus}' is no placeholder; use {world} and {nodes}");
    fails("experiment: base.yaml\ncluster: {intra: {bandwidth_gbps: 0}}\n", 0, NULL,
          "study.yaml:2:35: cluster.intra.bandwidth_gbps must be above 0 and at most 1e+06, found 0");
    fails("experiment: base.yaml\ntrain_for: {images: 100, dataset: base.yaml}\n", 0, NULL,
          "study.yaml:2:35: train_for: give images or dataset, not both");
}

static void test_same_names_the_changed_key(void **state) {
    (void)state;
    static const char study[] = "experiment: base.yaml\nsweep: {parallel.stages: [1, 2]}\n";
    StudyConfig *a = load_ok(study, 0, NULL);
    const char *key = "unset";
    StudyConfig *b = load_ok(study, 0, NULL);
    assert_true(study_config_same(a, b, &key));
    assert_null(key);
    study_config_destroy(b);
    // What does not decide the results may change.
    b = load_ok(study, 3, (char *[]){"out=elsewhere", "measure.time_limit=5", "name=other"});
    assert_true(study_config_same(a, b, &key));
    study_config_destroy(b);
    static const struct {
        const char *override, *key;
    } changes[] = {
        {"measure.steps=7", "measure.steps"},
        {"sweep.parallel.stages=[1, 4]", "sweep"},
        {"set.train.epochs=2", "set"},
        {"cluster.nodes=[1, 2]", "cluster"},  // a cluster where there was none
        {"cluster.device={name: h100, peak_tflops: 990}", "cluster"},
        {"where=[world < 3]", "where"},
        {"mode=simulate", NULL},
    };
    for (size_t i = 0; i < sizeof changes / sizeof *changes; i++) {
        b = load_ok(study, 1, (char *[]){(char *)changes[i].override});
        bool same = study_config_same(a, b, &key);
        if (!changes[i].key) {
            assert_true(same);
        } else {
            assert_false(same);
            assert_string_equal(key, changes[i].key);
        }
        study_config_destroy(b);
    }
    // Within a cluster both have, the first differing key of the cluster.
    study_config_destroy(a);
    a = load_ok("experiment: base.yaml\ncluster: {nodes: [1, 2]}\n", 0, NULL);
    b = load_ok("experiment: base.yaml\ncluster: {nodes: [1, 2]}\n", 1, (char *[]){"cluster.inter.latency_us=3"});
    assert_false(study_config_same(a, b, &key));
    assert_string_equal(key, "cluster.inter.latency_us");
    study_config_destroy(b);
    study_config_destroy(a);
}

// Reads experiments/STUDY.md into *text (the caller frees it).
static void read_study_md(char **text) {
    const char *root = getenv("YP_SOURCE_ROOT");
    assert_non_null(root);
    char path[1024];
    snprintf(path, sizeof path, "%s/experiments/STUDY.md", root);
    size_t n = 0;
    Error err;
    if (!fs_read_file(path, FS_READ_TEXT, text, &n, &err)) fail_msg("%s", err.message);
}

static bool is_study_key(const char *name) {
    for (int i = 0; i < study_key_count(); i++)
        if (!strcmp(study_key_name(i), name)) return true;
    return false;
}

// A row for every key, and every row of a key table (a line "| `key` | ...") names a key.
static void test_study_md_documents_every_key(void **state) {
    (void)state;
    char *text = NULL;
    read_study_md(&text);
    for (int i = 0; i < study_key_count(); i++) {
        char cell[160];
        snprintf(cell, sizeof cell, "| `%s` |", study_key_name(i));
        if (!strstr(text, cell)) fail_msg("experiments/STUDY.md has no row for key %s", study_key_name(i));
    }
    for (const char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "| `", 3)) continue;
        const char *end = strchr(line + 3, '`');
        assert_non_null(end);
        char name[160];
        snprintf(name, sizeof name, "%.*s", (int)(end - line - 3), line + 3);
        if (!is_study_key(name)) fail_msg("experiments/STUDY.md has a row for '%s', which is no study key", name);
    }
    free(text);
}

// The complete example of STUDY.md (its first yaml block) loads, from experiments/studies/ beside
// the base experiment it names, and has the points its text counts: 3 x 3 x 1 combinations at 4
// node counts, less the interleaved ones, plus the explicit point at 4 node counts.
static void test_study_md_example_loads(void **state) {
    (void)state;
    char *text = NULL;
    read_study_md(&text);
    const char *begin = strstr(text, "```yaml\n");
    assert_non_null(begin);
    begin += strlen("```yaml\n");
    const char *end = strstr(begin, "```");
    assert_non_null(end);
    char *example = yp_strdup(begin);
    example[end - begin] = '\0';
    free(text);
    write_text("default.yaml", base_experiment);
    char study_dir[700];
    snprintf(study_dir, sizeof study_dir, "%s", tmp_path("studies"));
    Error err = {0};
    assert_true(fs_mkdir_p(study_dir, &err));
    write_text("studies/example.yaml", example);
    free(example);
    StudyConfig *s = NULL;
    // Simulated only: the example measures with mpirun, which this check does not need.
    if (!study_config_load(tmp_path("studies/example.yaml"), 1, (char *[]){"mode=simulate"}, &s, &err))
        fail_msg("the example of STUDY.md: %s", err.message);
    StudyPoints p;
    if (!study_points_expand(s, &p, &err)) fail_msg("the example of STUDY.md: %s", err.message);
    assert_int_equal(p.n, 6 * 4 + 4);
    assert_int_equal(p.n_dropped, 3 * 4);
    assert_string_equal(p.points[0].label, "parallel.stages=1 parallel.schedule=gpipe parallel.partition=auto nodes=1");
    assert_int_equal(p.points[0].world, 8);
    assert_string_equal(p.points[p.n - 1].label, "parallel.stages=2 parallel.schedule=zb-h1 nodes=8");
    assert_int_equal(p.points[p.n - 1].world, 64);
    study_points_clear(&p);
    study_config_destroy(s);
}

static int make_tmp(void **state) {
    (void)state;
    if (!mkdtemp(tmp_dir)) return -1;
    write_text("base.yaml", base_experiment);
    return 0;
}

static int remove_tmp(void **state) {
    (void)state;
    Error err = {0};
    return fs_remove_tree(tmp_dir, &err) ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_units),
        cmocka_unit_test(test_product_order_where_and_drops),
        cmocka_unit_test(test_cluster_derived_settings_and_points),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_errors_beyond_the_corpus),
        cmocka_unit_test(test_same_names_the_changed_key),
        cmocka_unit_test(test_study_md_documents_every_key),
        cmocka_unit_test(test_study_md_example_loads),
    };
    return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
