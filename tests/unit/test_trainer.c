// The training loop end to end on tiny synthetic datasets: a resumed run continues bit for bit,
// checkpoints restore every tensor, the exported file carries Ultralytics' state-dict names and
// shapes, a classifier trains and validates, and bad input is a positioned user error.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/train/checkpoint.h"
#include "framework/config/config.h"
#include "framework/core/safetensors.h"
#include "framework/data/synth.h"
#include "framework/eval/canvas.h"
#include "framework/train/trainer.h"
#include "framework/runtime/transport.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/unit/gradcheck.h"

static char tmp[] = "/tmp/yp-trainer-XXXXXX";
static const char *root;
static FILE *quiet;  // the trainer's progress output, discarded

static void generate(SynthTask task, const char *name, int64_t n_train) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    SynthConfig sc = synth_config_default();
    sc.task = task;
    sc.out_dir = dir;
    sc.n_train = n_train;
    sc.n_val = 8;
    sc.imgsz = 64;
    sc.n_classes = 3;
    Error err = {0};
    if (!synth_generate(&sc, NULL, &err)) fail_msg("%s", err.message);
}

// Writes <tmp>/<name>.yaml with the given body (model paths relative to the source tree) and loads it.
static ExperimentConfig *experiment(const char *name, const char *body, int n_set, char **set, Error *err) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.yaml", tmp, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "name: %s\n%s\noutput: {dir: %s/runs}\n", name, body, tmp);
    fclose(f);
    ExperimentConfig *cfg = NULL;
    if (!config_load(path, n_set, set, &cfg, err)) return NULL;
    return cfg;
}

static bool train(const char *name, const char *body, int n_set, char **set, bool resume, Error *err) {
    ExperimentConfig *cfg = experiment(name, body, n_set, set, err);
    if (!cfg) return false;
    Transport *tr = transport_local_create();
    bool ok = trainer_run(cfg, &(TrainerOptions){.resume = resume, .out = quiet, .transport = tr}, err);
    transport_destroy(tr);
    config_destroy(cfg);
    return ok;
}

static char *detect_body(void) {
    static char body[2048];
    // 24 images, batch 4: 6 batches per epoch; nbs 8 accumulates 2 batches per step (1 during the
    // warm-up's ramp), so steps end between epochs too; multi-scale 64..128 changes the graph's size.
    snprintf(body, sizeof body,
             "task: detect\nmodel: %s/tests/reference/models/tiny-detect.yaml\ndata: detect/data.yaml\n"
             "train: {epochs: 3, batch: 4, imgsz: 96, multiscale: 0.34, nbs: 8, warmup_epochs: 1, close_mosaic: 1, "
             "workers: 2, optimizer: SGD}\n",
             root);
    return body;
}

static SafetensorsFile *read_last(const char *run) {
    char path[700];
    snprintf(path, sizeof path, "%s/runs/%s/weights/last/stage-0.safetensors", tmp, run);
    SafetensorsFile *f = NULL;
    Error err = {0};
    if (!safetensors_read(path, &f, &err)) fail_msg("%s", err.message);
    return f;
}

// Every tensor of two checkpoints (model, EMA, optimizer state, pending gradients) must be equal
// bit for bit: every random draw is a function of the seed and the position, and every reduction
// runs in a fixed order.
static void assert_same_tensors(const SafetensorsFile *a, const SafetensorsFile *b) {
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const SafetensorsTensor *ta = &a->tensors[i], *tb = safetensors_file_find(b, ta->name);
        if (!tb) fail_msg("%s missing", ta->name);
        assert_int_equal(ta->n_bytes, tb->n_bytes);
        if (memcmp(ta->data, tb->data, ta->n_bytes)) fail_msg("%s differs", ta->name);
    }
}

// Trains run `whole` with whole_set, and run `split` with split_set (the same with fewer steps); returns
// where `split` stopped.
static TrainProgress train_whole_and_split(const char *whole, const char *split, int n_set, char **whole_set,
                                           char **split_set) {
    Error err = {0};
    if (!train(whole, detect_body(), n_set, whole_set, false, &err)) fail_msg("%s", err.message);
    if (!train(split, detect_body(), n_set, split_set, false, &err)) fail_msg("%s", err.message);
    TrainProgress at;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/runs/%s/weights/last", tmp, split);
    if (!checkpoint_read_progress(dir, NULL, &at, &err)) fail_msg("%s", err.message);
    return at;
}

// Resumes `split` with whole_set: its last checkpoint must then equal `whole`'s bit for bit.
static void resume_and_compare(const char *whole, const char *split, int n_set, char **whole_set) {
    Error err = {0};
    if (!train(split, detect_body(), n_set, whole_set, true, &err)) fail_msg("%s", err.message);
    SafetensorsFile *a = read_last(whole), *b = read_last(split);
    assert_same_tensors(a, b);
    for (int i = 0; i < a->n_metadata; i++)
        assert_string_equal(a->metadata[i].value, safetensors_file_metadata(b, a->metadata[i].key));
    safetensors_file_destroy(a);
    safetensors_file_destroy(b);
}

static void test_resume_is_bit_identical(void **state) {
    (void)state;
    Error err = {0};
    char *six[] = {"train.max_steps=6"}, *three[] = {"train.max_steps=3"};
    TrainProgress half = train_whole_and_split("whole", "split", 1, six, three);
    assert_int_equal(half.optimizer_steps, 3);
    resume_and_compare("whole", "split", 1, six);
    TrainProgress pa, pb;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/runs/whole/weights/last", tmp);
    assert_true(checkpoint_read_progress(dir, NULL, &pa, &err));
    snprintf(dir, sizeof dir, "%s/runs/split/weights/last", tmp);
    assert_true(checkpoint_read_progress(dir, NULL, &pb, &err));
    assert_int_equal(pa.optimizer_steps, 6);
    assert_int_equal(pa.iteration, pb.iteration);
    assert_true(pa.epoch >= 1);  // the runs crossed an epoch boundary

    // Resuming with settings that change the computation is refused, naming the key.
    char *changed[] = {"train.max_steps=9", "train.lr0=0.02"};
    assert_false(train("split", detect_body(), 2, changed, true, &err));
    assert_non_null(strstr(err.message, "--set train.lr0:1:1: --resume: train.lr0 differs from the run being resumed"));
}

// fp16's dynamic loss scale skips the steps whose gradients overflowed (here the first six, at the
// initial scale of 2^16): AdamW counts only the steps it took, for its bias correction, and a resumed
// run must too (it once restarted that count from all steps, skipped ones included, and its weights
// then differed from the uninterrupted run's).
static void test_fp16_resume_after_skipped_steps(void **state) {
    (void)state;
    char *whole[] = {"train.max_steps=14", "device.precision=fp16", "train.epochs=6", "train.optimizer=AdamW"};
    char *split[] = {"train.max_steps=10", "device.precision=fp16", "train.epochs=6", "train.optimizer=AdamW"};
    TrainProgress half = train_whole_and_split("fp16-whole", "fp16-split", 4, whole, split);
    // Some steps skipped and some taken before the checkpoint, so the two counts differ there.
    if (half.loss_scale.skipped == 0 || half.loss_scale.skipped >= half.optimizer_steps)
        fail_msg("%lld of %lld steps skipped: the test needs some of each", (long long)half.loss_scale.skipped,
                 (long long)half.optimizer_steps);
    resume_and_compare("fp16-whole", "fp16-split", 4, whole);
}

// Images rendered by the backend from recipes (augment.render: backend) train exactly as the host
// loader's images do: the same bytes reach the network (mosaic, multi-scale and the close-mosaic
// epoch included).
static void test_backend_rendering_trains_alike(void **state) {
    (void)state;
    Error err = {0};
    char *host[] = {"train.max_steps=7", "augment.render=host"}, *backend[] = {"train.max_steps=7", "augment.render=backend"};
    if (!train("render-host", detect_body(), 2, host, false, &err)) fail_msg("%s", err.message);
    if (!train("render-backend", detect_body(), 2, backend, false, &err)) fail_msg("%s", err.message);
    SafetensorsFile *a = read_last("render-host"), *b = read_last("render-backend");
    assert_same_tensors(a, b);
    safetensors_file_destroy(a);
    safetensors_file_destroy(b);
}

static void test_export_has_ultralytics_names(void **state) {
    (void)state;
    char body[1024];
    snprintf(body, sizeof body,
             "task: detect\nmodel: %s/experiments/models/yolov8.yaml\nscale: n\ndata: detect/data.yaml\n"
             "train: {epochs: 1, max_steps: 1, batch: 2, nbs: 2, imgsz: 64, workers: 0}\n",
             root);
    Error err = {0};
    if (!train("v8n", body, 0, NULL, false, &err)) fail_msg("%s", err.message);
    char dir[700], out[700];
    snprintf(dir, sizeof dir, "%s/runs/v8n/weights/last", tmp);
    snprintf(out, sizeof out, "%s/v8n.safetensors", tmp);
    if (!checkpoint_export(dir, out, &err)) fail_msg("%s", err.message);
    SafetensorsFile *f = NULL;
    if (!safetensors_read(out, &f, &err)) fail_msg("%s", err.message);

    // Ultralytics' own state dict of yolov8n (80 classes; this model has the dataset's 3). Names
    // include every batch norm's num_batches_tracked, an int64 scalar.
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/state_dict.tsv", root);
    FILE *ref = fopen(path, "r");
    assert_non_null(ref);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, ref)) {
        char model[32], scale[8], name[160], shape[64] = "";
        if (sscanf(line, "%31s %7s %159s %63s", model, scale, name, shape) < 3 || strcmp(model, "yolov8") ||
            strcmp(scale, "n"))
            continue;
        const SafetensorsTensor *t = safetensors_file_find(f, name);
        if (!t) fail_msg("exported file lacks %s", name);
        char got[64] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        // The class branch's widths follow the class count (80 there, 3 here); every other shape must match.
        if (strcmp(got, shape) && strncmp(name, "model.22.cv3.", 13))
            fail_msg("%s: shape %s, Ultralytics has %s", name, got, shape);
        n++;
    }
    fclose(ref);
    assert_int_equal(n, f->n_tensors);  // nothing more, nothing less
    safetensors_file_destroy(f);
}

static void test_checkpoint_restores_everything(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/models/tiny-detect.yaml", root);
    ModelSpec *spec = NULL;
    Error err = {0};
    assert_true(model_spec_load(path, &(ModelOptions){0}, &spec, &err));
    Backend *be = cpu_backend_create(DTYPE_F32);
    Graph *g[2];
    Optimizer *opt[2];
    ModelEma *ema[2];
    for (int k = 0; k < 2; k++) {
        GraphOptions go = {.batch = 1, .imgsz_h = 64, .imgsz_w = 64, .be = be, .seed = (uint64_t)k};
        assert_true(graph_create(spec, &go, &g[k], &err));
        OptimParam *params = malloc((size_t)g[k]->n_params * sizeof *params);
        opt[k] = optim_create(be, OPTIM_ADAMW, 1e-3, params, optim_params_from_graph(g[k], 0, g[k]->n_layers, params));
        free(params);
        EmaEntry *entries = malloc((size_t)g[k]->n_params * sizeof *entries);
        ema[k] = ema_create(be, entries, ema_entries_from_graph(g[k], 0, g[k]->n_layers, entries), EMA_DECAY, EMA_TAU);
        free(entries);
    }
    // Make every piece of state distinct: a step, different gradients, EMA updates.
    test_fill_uniform(g[0]->grad_data, g[0]->param_elems, -1, 1, 5);
    optim_step(opt[0], &(OptimHyper){.lr = {0.1, 0.1, 0.1}, .momentum = 0.9});
    ema_update(ema[0]);
    test_fill_uniform(g[0]->grad_data, g[0]->param_elems, -1, 1, 6);
    for (int i = 0; i < g[0]->n_params; i++)  // fixed tensors (DFL's projection) never have a gradient
        if (g[0]->params[i].flags & PARAM_NO_GRAD)
            memset(g[0]->grad_data + g[0]->params[i].offset, 0, (size_t)g[0]->params[i].n_elems * sizeof(float));
    test_fill_uniform(g[0]->buffer_data, g[0]->buffer_elems, 0, 1, 7);
    // Three optimizer steps of which fp16's loss scale skipped two: the optimizer took one (AdamW's
    // bias correction counts it alone), the EMA was updated after each.
    ema_update(ema[0]);
    ema_update(ema[0]);
    TrainProgress saved = {.epoch = 2, .batch = 5, .iteration = 17, .last_step_iteration = 16, .optimizer_steps = 3,
                           .bn_batches = 17, .best_fitness = 0.25, .seed = 3,
                           .loss_scale = {.scale = 1024, .good_steps = 1, .skipped = 2}};
    ExperimentConfig *cfg = experiment("ckpt", "model: m.yaml\ndata: d.yaml", 0, NULL, &err);
    assert_non_null(cfg);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    assert_true(checkpoint_save(dir, &saved, cfg, &(CheckpointModel){.graph = g[0], .ema = ema[0], .optimizer = opt[0]}, &err));
    TrainProgress loaded;
    if (!checkpoint_load(dir, NULL, &loaded, &(CheckpointModel){.graph = g[1], .ema = ema[1], .optimizer = opt[1]}, &err)) fail_msg("%s", err.message);
    assert_memory_equal(&loaded, &saved, sizeof saved);
    assert_memory_equal(g[0]->param_data, g[1]->param_data, (size_t)g[0]->param_elems * sizeof(float));
    assert_memory_equal(g[0]->grad_data, g[1]->grad_data, (size_t)g[0]->param_elems * sizeof(float));
    assert_memory_equal(g[0]->buffer_data, g[1]->buffer_data, (size_t)g[0]->buffer_elems * sizeof(float));
    for (int i = 0; i < optim_state_count(opt[0]); i++) {
        const OptimState *a = optim_state_get(opt[0], i), *b = optim_state_get(opt[1], i);
        assert_memory_equal(a->data, b->data, (size_t)a->n_elems * sizeof(float));
    }
    assert_int_equal(optim_step_count(opt[1]), 1);
    for (int i = 0; i < ema_count(ema[0]); i++) {
        int64_t n = 0;
        float *a = ema_get(ema[0], i, &n), *b = ema_get(ema[1], i, &n);
        assert_memory_equal(a, b, (size_t)n * sizeof(float));
    }
    assert_int_equal(ema_updates(ema[1]), 3);
    // A second save replaces the first atomically: no temporary directory is left beside it.
    assert_true(checkpoint_save(dir, &saved, cfg, &(CheckpointModel){.graph = g[0], .ema = ema[0], .optimizer = opt[0]}, &err));
    char cmd[900];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -a %s | grep -E 'tmp|old')\"", tmp);
    assert_int_equal(system(cmd), 0);
    config_destroy(cfg);
    for (int k = 0; k < 2; k++) {
        ema_destroy(ema[k]);
        optim_destroy(opt[k]);
        graph_destroy(g[k]);
    }
    backend_destroy(be);
    model_spec_destroy(spec);
}

// The model, its EMA and its AdamW state over layers [begin, end) of spec (end 0: all), initialised from `seed`.
typedef struct TestModel {
    Graph *graph;
    Optimizer *optimizer;
    ModelEma *ema;
} TestModel;

static TestModel test_model_create(const ModelSpec *spec, Backend *be, int begin, int end, uint64_t seed) {
    TestModel m = {0};
    Error err = {0};
    GraphOptions go = {.batch = 1, .imgsz_h = 64, .imgsz_w = 64, .be = be, .seed = seed, .layer_begin = begin,
                       .layer_end = end};
    if (!graph_create(spec, &go, &m.graph, &err)) fail_msg("%s", err.message);
    OptimParam *params = malloc((size_t)m.graph->n_params * sizeof *params);
    m.optimizer = optim_create(be, OPTIM_ADAMW, 1e-3, params,
                               optim_params_from_graph(m.graph, m.graph->layer_begin, m.graph->layer_end, params));
    free(params);
    EmaEntry *entries = malloc((size_t)m.graph->n_params * sizeof *entries);
    m.ema = ema_create(be, entries, ema_entries_from_graph(m.graph, m.graph->layer_begin, m.graph->layer_end, entries),
                       EMA_DECAY, EMA_TAU);
    free(entries);
    return m;
}

static void test_model_destroy(TestModel *m) {
    ema_destroy(m->ema);
    optim_destroy(m->optimizer);
    graph_destroy(m->graph);
}

// Writes a two-stage checkpoint as trainer_save does (each stage its file, then the manifest).
static void save_pipeline(const char *dir, const TestModel *stages, int cut, const ExperimentConfig *cfg) {
    Error err = {0};
    FsAtomicDir *ad = NULL;
    TrainProgress at = {.last_step_iteration = -1, .best_fitness = -1, .loss_scale = {.scale = 1}};
    assert_true(checkpoint_dir_begin(dir, &ad, &err));
    for (int k = 0; k < 2; k++)
        assert_true(checkpoint_save_stage(fs_atomic_dir_path(ad), k, &at,
                                          &(CheckpointModel){.graph = stages[k].graph, .ema = stages[k].ema,
                                                             .optimizer = stages[k].optimizer},
                                          &err));
    const int layers[2][2] = {{0, cut - 1}, {cut, stages[1].graph->n_layers - 1}};
    assert_true(checkpoint_write_manifest(fs_atomic_dir_path(ad), &at, cfg, 2, layers, &err));
    assert_true(fs_atomic_dir_commit(ad, &err));
}

// A pipeline's checkpoint (two stage files) loads into another partitioning (the whole model): every
// parameter arrives by name. A NaN in the second stage file is refused, naming that file and tensor.
static void test_pipeline_checkpoint_is_checked(void **state) {
    (void)state;
    char path[1024], dir[700];
    snprintf(path, sizeof path, "%s/tests/reference/models/tiny-detect.yaml", root);
    snprintf(dir, sizeof dir, "%s/pipeline-ckpt", tmp);
    ModelSpec *spec = NULL;
    Error err = {0};
    assert_true(model_spec_load(path, &(ModelOptions){0}, &spec, &err));
    Backend *be = cpu_backend_create(DTYPE_F32);
    enum { CUT = 6 };
    TestModel stages[2] = {test_model_create(spec, be, 0, CUT, 1), test_model_create(spec, be, CUT, 0, 2)};
    TestModel whole = test_model_create(spec, be, 0, 0, 3);
    ExperimentConfig *cfg = experiment("pipeline-ckpt", "model: m.yaml\ndata: d.yaml", 0, NULL, &err);
    assert_non_null(cfg);
    save_pipeline(dir, stages, CUT, cfg);
    TrainProgress loaded;
    CheckpointModel into = {.graph = whole.graph, .ema = whole.ema, .optimizer = whole.optimizer};
    if (!checkpoint_load(dir, NULL, &loaded, &into, &err)) fail_msg("%s", err.message);
    int found = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < stages[k].graph->n_params; i++) {
            const ParamInfo *a = &stages[k].graph->params[i];
            const float *from = (a->flags & PARAM_BUFFER ? stages[k].graph->buffer_data : stages[k].graph->param_data);
            for (int j = 0; j < whole.graph->n_params; j++) {
                const ParamInfo *b = &whole.graph->params[j];
                const float *to = (b->flags & PARAM_BUFFER ? whole.graph->buffer_data : whole.graph->param_data);
                if (strcmp(a->name, b->name)) continue;
                assert_memory_equal(from + a->offset, to + b->offset, (size_t)a->n_elems * sizeof(float));
                found++;
            }
        }
    assert_int_equal(found, whole.graph->n_params);

    const ParamInfo *first = &stages[1].graph->params[0];
    stages[1].graph->param_data[first->offset + 2] = NAN;
    save_pipeline(dir, stages, CUT, cfg);
    assert_false(checkpoint_load(dir, NULL, &loaded, &into, &err));
    char want[1200];
    snprintf(want, sizeof want, "%s/stage-1.safetensors: tensor '%s' holds NaN at element 2; a checkpoint holds finite values only",
             dir, first->name);
    assert_string_equal(err.message, want);
    config_destroy(cfg);
    for (int k = 0; k < 2; k++) test_model_destroy(&stages[k]);
    test_model_destroy(&whole);
    backend_destroy(be);
    model_spec_destroy(spec);
}

static void test_classifier_trains_and_validates(void **state) {
    (void)state;
    char body[1024];
    snprintf(body, sizeof body,
             "task: classify\nmodel: %s/tests/reference/models/tiny-classify.yaml\ndata: classify\n"
             "train: {epochs: 2, batch: 4, imgsz: 64, nbs: 4, workers: 1}\n",
             root);
    Error err = {0};
    if (!train("cls", body, 0, NULL, false, &err)) fail_msg("%s", err.message);
    char path[700], line[512];
    snprintf(path, sizeof path, "%s/runs/cls/results.csv", tmp);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "metrics/accuracy_top1"));
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    assert_int_equal(rows, 2);
}

static void test_user_errors(void **state) {
    (void)state;
    Error err = {0};
    char body[1024];
    // A dataset that does not exist and has no synth: block.
    snprintf(body, sizeof body, "model: %s/tests/reference/models/tiny-detect.yaml\ndata: nowhere/data.yaml\n", root);
    assert_false(train("missing", body, 0, NULL, false, &err));
    assert_non_null(strstr(err.message, "nowhere/data.yaml"));
    // A classification experiment with a detection model.
    snprintf(body, sizeof body, "task: classify\nmodel: %s/tests/reference/models/tiny-detect.yaml\ndata: classify\n",
             root);
    assert_false(train("mismatch", body, 0, NULL, false, &err));
    assert_non_null(strstr(err.message, "mismatch.yaml:2:7: task is classify but the model's last layer is Detect"));
    // Resuming a run that never started.
    assert_false(train("never", detect_body(), 0, NULL, true, &err));
    assert_non_null(strstr(err.message, "--resume:"));
    assert_non_null(strstr(err.message, "does not exist"));
}

static int setup(void **state) {
    (void)state;
    root = getenv("YP_SOURCE_ROOT");
    if (!root || !mkdtemp(tmp)) return -1;
    quiet = fopen("/dev/null", "w");
    generate(SYNTH_TASK_DETECT, "detect", 24);
    generate(SYNTH_TASK_CLASSIFY, "classify", 24);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fclose(quiet);
    canvas_release_fonts();  // the runs drew their pictures: the leak check at exit sees only our memory
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_restores_everything),
        cmocka_unit_test(test_pipeline_checkpoint_is_checked),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_fp16_resume_after_skipped_steps),
        cmocka_unit_test(test_backend_rendering_trains_alike),
        cmocka_unit_test(test_export_has_ultralytics_names),
        cmocka_unit_test(test_classifier_trains_and_validates),
        cmocka_unit_test(test_user_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
