// The optimizer, its schedule and the EMA against Ultralytics' trainer and PyTorch's optimizers.
//
// tests/reference/optimizer_reference.safetensors (make_optimizer_reference.py) holds a small model
// (Conv, Conv, Linear, named as in Ultralytics) trained for 15 iterations by Ultralytics' own loop:
// build_optimizer's three groups, the warm-up block of _do_train (lr, momentum and accumulate
// ramps), clip_grad_norm_(10), torch.optim.SGD(nesterov) or AdamW, ModelEMA; gradients and running
// statistics are inputs. This test replays the loop with yolopipe's functions and compares every
// iteration's lr, momentum and accumulate, every gradient norm, and the final parameters, optimizer
// state and EMA. It also compares the schedule of eight other runs, optimizer=auto's choice, the
// accumulate/decay helpers, and the parameter groups of real models (optimizer_groups.tsv).
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/train/ema.h"
#include "framework/train/optim.h"
#include "framework/train/optim_schedule.h"
#include "framework/train/loss_scale.h"
#include "framework/core/safetensors.h"
#include "gradcheck.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/assert_close.h"

static SafetensorsFile *ref;

static const char *source_root(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    return root ? root : ".";
}

static int setup(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/optimizer_reference.safetensors", source_root());
    Error err = {0};
    if (!safetensors_read(path, &ref, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    safetensors_file_destroy(ref);
    return 0;
}

// ---- reading the reference ---------------------------------------------------------------------

static const SafetensorsTensor *tensor(const char *name, SafetensorsDtype dtype) {
    const SafetensorsTensor *t = safetensors_file_find(ref, name);
    if (!t) fail_msg("reference has no tensor %s", name);
    assert_int_equal(t->dtype, dtype);
    return t;
}

static int64_t elems(const char *name, SafetensorsDtype dtype) { return safetensors_tensor_elems(tensor(name, dtype)); }

// Element i of the flattened tensor (copied out: the data may be unaligned).
static double f64(const char *name, int64_t i) {
    const SafetensorsTensor *t = tensor(name, SAFETENSORS_F64);
    assert_true(i < safetensors_tensor_elems(t));
    double v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static int64_t i64(const char *name, int64_t i) {
    const SafetensorsTensor *t = tensor(name, SAFETENSORS_I64);
    assert_true(i < safetensors_tensor_elems(t));
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

// The whole F32 tensor into a new buffer.
static float *f32_copy(const char *name, int64_t *n) {
    const SafetensorsTensor *t = tensor(name, SAFETENSORS_F32);
    *n = safetensors_tensor_elems(t);
    float *out = malloc((size_t)(*n ? *n : 1) * sizeof *out);
    memcpy(out, t->data, t->n_bytes);
    return out;
}

// got against the reference tensor want_name: at most tol relative to the tensor's peak.
static void assert_matches_reference(const char *what, const float *got, const char *want_name, int64_t n,
                                     double tol) {
    int64_t n_want;
    float *want = f32_copy(want_name, &n_want);
    assert_int_equal(n_want, n);
    double e = close_peak_error(got, want, n);
    free(want);
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %.3g", what, e, tol);
}

// The schedule's doubles follow Ultralytics' formulas operation for operation (np.interp's and
// LambdaLR's arithmetic, Python's round): they must agree to the last bit but for libm's cos.
static const double schedule_rtol = 1e-15;

// ---- helpers -----------------------------------------------------------------------------------

static void test_accumulate_and_decay(void **state) {
    (void)state;
    int64_t n = elems("accum.accumulate", SAFETENSORS_I64);
    for (int64_t i = 0; i < n; i++) {
        int64_t nbs = i64("accum.inputs", 2 * i), batch = i64("accum.inputs", 2 * i + 1);
        int64_t acc = optim_accumulate(nbs, batch);
        assert_int_equal(acc, i64("accum.accumulate", i));
        assert_close_named("scaled weight decay", optim_scaled_weight_decay(0.0005, batch, acc, nbs),
                           f64("accum.decay", i), 0.0, schedule_rtol);
    }
}

static void test_auto_choice(void **state) {
    (void)state;
    int64_t n = elems("auto.kind", SAFETENSORS_I64);
    for (int64_t i = 0; i < n; i++) {
        int64_t in[5];
        for (int k = 0; k < 5; k++) in[k] = i64("auto.inputs", 5 * i + k);
        OptimAutoChoice c = optim_auto_choose(in[0], in[1], in[2], in[3], (int)in[4]);
        assert_int_equal(c.kind, i64("auto.kind", i));
        assert_close_named("auto lr0", c.lr0, f64("auto.values", 3 * i), 0.0, schedule_rtol);
        assert_close_named("auto momentum", c.momentum, f64("auto.values", 3 * i + 1), 0.0, schedule_rtol);
        assert_close_named("auto warmup_bias_lr", c.warmup_bias_lr, f64("auto.values", 3 * i + 2), 0.0,
                           schedule_rtol);
    }
}

// The schedule of case `c` of sched.config_*: (lr0, lrf, momentum, warmup_momentum, warmup_bias_lr,
// initial momentum, warmup_epochs, cos_lr) and (kind, epochs, nb, batch, nbs, nw, accumulate).
static OptimSchedule schedule_of_case(int64_t c) {
    const char *cf = "sched.config_f64", *ci = "sched.config_i64";
    int64_t epochs = i64(ci, 7 * c + 1), nb = i64(ci, 7 * c + 2), batch = i64(ci, 7 * c + 3), nbs = i64(ci, 7 * c + 4);
    OptimSchedule s = {
        .kind = (OptimKind)i64(ci, 7 * c),
        .lr0 = f64(cf, 8 * c),
        .lrf = f64(cf, 8 * c + 1),
        .momentum = f64(cf, 8 * c + 2),
        .warmup_momentum = f64(cf, 8 * c + 3),
        .warmup_bias_lr = f64(cf, 8 * c + 4),
        .initial_momentum = f64(cf, 8 * c + 5),
        .cos_lr = f64(cf, 8 * c + 7) != 0.0,
        .epochs = epochs,
        .warmup_iters = optim_schedule_warmup_iters(f64(cf, 8 * c + 6), epochs, nb),
    };
    int64_t acc = optim_accumulate(nbs, batch);
    s.accumulate = acc < nb * epochs ? acc : nb * epochs;
    assert_int_equal(s.warmup_iters, i64(ci, 7 * c + 5));
    assert_int_equal(s.accumulate, i64(ci, 7 * c + 6));
    return s;
}

static void test_schedule_points(void **state) {
    (void)state;
    int64_t n = elems("sched.momentum", SAFETENSORS_F64);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = i64("sched.points", 3 * i), ni = i64("sched.points", 3 * i + 1), epoch = i64("sched.points", 3 * i + 2);
        OptimSchedule s = schedule_of_case(c);
        OptimIteration it = optim_schedule_at(&s, ni, epoch);
        char what[96];
        for (int g = 0; g < OPTIM_GROUP_COUNT; g++) {
            snprintf(what, sizeof what, "case %lld ni %lld lr[%s]", (long long)c, (long long)ni, optim_group_name(g));
            assert_close_named(what, it.hyper.lr[g], f64("sched.lr", 3 * i + g), 0.0, schedule_rtol);
        }
        snprintf(what, sizeof what, "case %lld ni %lld momentum", (long long)c, (long long)ni);
        assert_close_named(what, it.hyper.momentum, f64("sched.momentum", i), 0.0, schedule_rtol);
        assert_int_equal(it.accumulate, i64("sched.accumulate", i));
    }
}

// ---- parameter groups of real models -----------------------------------------------------------

static void test_groups_match_ultralytics(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/optimizer_groups.tsv", source_root());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512], model[64] = "", scale[8] = "";
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    int next = 0, checked = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char m[64], s[8], name[PARAM_NAME_MAX], group[16];
        int requires_grad;
        assert_int_equal(sscanf(line, "%63s %7s %95s %15s %d", m, s, name, group, &requires_grad), 5);
        if (strcmp(m, model) || strcmp(s, scale)) {  // a new model: its graph, described only
            if (g) assert_int_equal(next, g->n_params);
            graph_destroy(g);
            model_spec_destroy(spec);
            snprintf(model, sizeof model, "%s", m);
            snprintf(scale, sizeof scale, "%s", s);
            snprintf(path, sizeof path, "%s/experiments/models/%s.yaml", source_root(), model);
            ModelOptions opt = {.scale = scale};
            GraphOptions gopt = {.batch = 1, .imgsz_h = 64, .imgsz_w = 64};
            Error err = {0};
            if (!model_spec_load(path, &opt, &spec, &err) || !graph_create(spec, &gopt, &g, &err))
                fail_msg("%s", err.message);
            next = 0;
        }
        while (next < g->n_params && (g->params[next].flags & PARAM_BUFFER)) next++;  // not parameters
        assert_true(next < g->n_params);
        const ParamInfo *p = &g->params[next++];
        assert_string_equal(p->name, name);
        if (strcmp(optim_group_name(optim_group_of(p->name, p->flags)), group))
            fail_msg("%s%s %s: group %s, Ultralytics %s", model, scale, name,
                     optim_group_name(optim_group_of(p->name, p->flags)), group);
        assert_int_equal(!(p->flags & PARAM_NO_GRAD), requires_grad);
        checked++;
    }
    while (next < g->n_params && (g->params[next].flags & PARAM_BUFFER)) next++;
    assert_int_equal(next, g->n_params);
    graph_destroy(g);
    model_spec_destroy(spec);
    fclose(f);
    assert_true(checked > 400);  // yolov8n, yolov5n, yolov8n-cls
}

// ---- training against PyTorch ------------------------------------------------------------------

// Final parameters, state and EMA after 7 steps, relative to each tensor's largest value. PyTorch's
// vectorised CPU kernels fuse some multiply-adds (add with alpha, lerp) and compute the norm in
// float32, so single operations may differ by an ulp (6e-8); a few such differences per step over 7
// steps stay below 1e-6. Gradient norms: PyTorch's float32 norm against our double sum, 1e-6.
static const double train_tol = 1e-6;

static void run_training(OptimKind kind, const char *prefix) {
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s%s", prefix, suffix), key)
    // The model: parameters then running statistics, named in the metadata in that order.
    int64_t n_params, n_buffers;
    float *params = f32_copy("train.init_params", &n_params);
    float *buffers = f32_copy("train.init_buffers", &n_buffers);
    float *grads = calloc((size_t)n_params, sizeof *grads);
    int64_t n_iters_params, n_iters_buffers;
    float *iter_grads = f32_copy("train.grads", &n_iters_params);
    float *iter_buffers = f32_copy("train.buffers", &n_iters_buffers);
    const int n_p = (int)elems("train.sizes", SAFETENSORS_I64), n_b = (int)elems("train.buffer_sizes", SAFETENSORS_I64);

    char *names = strdup(safetensors_file_metadata(ref, "names"));
    OptimParam op[16];
    EmaEntry entries[32];
    assert_true(n_p <= 16 && n_p + n_b <= 32);
    int64_t offset = 0, buffer_offset = 0;
    char *save = NULL;
    for (int i = 0; i < n_p + n_b; i++) {
        const char *name = strtok_r(i ? NULL : names, ",", &save);
        assert_non_null(name);
        if (i < n_p) {
            int64_t n = i64("train.sizes", i);
            OptimGroup group = (OptimGroup)i64("train.groups", i);
            // The builder marks batch-norm weights and biases PARAM_NO_DECAY.
            assert_int_equal(optim_group_of(name, strstr(name, ".bn.") ? PARAM_NO_DECAY : 0), group);
            op[i] = (OptimParam){name, params + offset, grads + offset, n, group};
            entries[i] = (EmaEntry){name, params + offset, n};
            offset += n;
        } else {
            int64_t n = i64("train.buffer_sizes", i - n_p);
            entries[i] = (EmaEntry){name, buffers + buffer_offset, n};
            buffer_offset += n;
        }
    }
    assert_int_equal(offset, n_params);
    assert_int_equal(buffer_offset, n_buffers);

    // The run: 3 epochs of 5 iterations, batch 24, warm-up 1.5 epochs, weight decay 0.05.
    const int64_t epochs = 3, nb = 5, batch = 24;
    int64_t accumulate = optim_accumulate(OPTIM_NBS, batch);
    if (accumulate > nb * epochs) accumulate = nb * epochs;
    assert_int_equal(accumulate, i64("train.accumulate", 0));
    double wd = optim_scaled_weight_decay(0.05, batch, accumulate, OPTIM_NBS);
    assert_close_named("weight decay", wd, f64("train.weight_decay", 0), 0.0, schedule_rtol);
    OptimSchedule s = {.kind = kind,
                       .lr0 = kind == OPTIM_SGD ? 0.01 : 0.002,
                       .lrf = 0.01,
                       .epochs = epochs,
                       .warmup_iters = optim_schedule_warmup_iters(1.5, epochs, nb),
                       .warmup_bias_lr = 0.1,
                       .warmup_momentum = 0.8,
                       .momentum = 0.937,
                       .initial_momentum = 0.937,
                       .accumulate = accumulate};
    assert_int_equal(s.warmup_iters, i64(KEY("nw"), 0));

    // CPU backend memory is host memory: the arrays above serve as the model's storage.
    Backend *be = cpu_backend_create(DTYPE_F32);
    Optimizer *opt = optim_create(be, kind, wd, op, n_p);
    ModelEma *ema = ema_create(be, entries, n_p + n_b, EMA_DECAY, EMA_TAU);
    ema_set_updates(ema, 1000);

    int64_t last_step = -1;
    for (int64_t epoch = 0; epoch < epochs; epoch++) {
        for (int64_t i = 0; i < nb; i++) {
            int64_t ni = i + nb * epoch;
            OptimIteration it = optim_schedule_at(&s, ni, epoch);
            for (int g = 0; g < OPTIM_GROUP_COUNT; g++)
                assert_close_named("lr", it.hyper.lr[g], f64(KEY("lr"), 3 * ni + g), 0.0, schedule_rtol);
            assert_close_named("momentum", it.hyper.momentum, f64(KEY("momentum"), ni), 0.0, schedule_rtol);
            assert_int_equal(it.accumulate, i64(KEY("accumulate"), ni));
            for (int64_t k = 0; k < n_params; k++) grads[k] += iter_grads[ni * n_params + k];  // backward
            memcpy(buffers, iter_buffers + ni * n_buffers, (size_t)n_buffers * sizeof *buffers);  // forward
            bool step = ni - last_step >= it.accumulate;
            assert_int_equal(step, i64(KEY("stepped"), ni));
            if (!step) continue;
            double norm = optim_clip_grad_norm(opt, OPTIM_CLIP_MAX_NORM);
            double want = f64(KEY("grad_norm"), ni);
            if (!close_enough(norm, want, 0.0, train_tol))
                fail_msg("ni %lld: grad norm %.9g, PyTorch %.9g", (long long)ni, norm, want);
            optim_step(opt, &it.hyper);
            memset(grads, 0, (size_t)n_params * sizeof *grads);
            ema_update(ema);
            last_step = ni;
        }
    }

    assert_matches_reference("parameters", params, KEY("params"), n_params, train_tol);
    int n_kinds = kind == OPTIM_SGD ? 1 : 2;
    static const char *const state_names[2][2] = {{"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}};
    assert_int_equal(optim_state_count(opt), n_kinds * n_p);
    for (int k = 0; k < n_kinds; k++) {
        // The state of the first parameter starts a buffer laid out like the parameters.
        const OptimState *first = optim_state_get(opt, k * n_p);
        for (int i = 0; i < n_p; i++) {
            const OptimState *st = optim_state_get(opt, k * n_p + i);
            char name[160];
            snprintf(name, sizeof name, "%s.%s", op[i].name, state_names[kind][k]);
            assert_string_equal(st->name, name);
            assert_ptr_equal(optim_state_find(opt, name), st);
            assert_ptr_equal(st->data, first->data + (op[i].value - params));
            assert_int_equal(st->n_elems, op[i].n_elems);
        }
        assert_matches_reference(state_names[kind][k], first->data, KEY(state_names[kind][k]), n_params, train_tol);
    }
    assert_null(optim_state_find(opt, "model.0.conv.weight.nothing"));
    assert_int_equal(optim_step_count(opt), kind == OPTIM_ADAMW ? i64(KEY("step"), 0) : 7);

    int64_t n0;
    float *ema_data = ema_get(ema, 0, &n0);
    assert_matches_reference("EMA", ema_data, KEY("ema"), n_params + n_buffers, train_tol);
    assert_int_equal(ema_updates(ema), i64(KEY("ema_updates"), 0));
    int64_t n_found;
    assert_ptr_equal(ema_find(ema, ema_name(ema, n_p), &n_found), ema_data + n_params);  // buffers follow
    assert_int_equal(n_found, i64("train.buffer_sizes", 0));

    optim_destroy(opt);
    ema_destroy(ema);
    backend_destroy(be);
    free(names);
    free(params), free(buffers), free(grads), free(iter_grads), free(iter_buffers);
#undef KEY
}

static void test_train_sgd(void **state) {
    (void)state;
    run_training(OPTIM_SGD, "train.sgd.");
}

static void test_train_adamw(void **state) {
    (void)state;
    run_training(OPTIM_ADAMW, "train.adamw.");
}

// ---- determinism and the graph helpers ---------------------------------------------------------

// Three steps of `kind` plus EMA updates with `threads` OpenMP threads on tensors that span many
// chunks; returns everything that was computed, concatenated.
static float *run_with_threads(OptimKind kind, int threads, double *norm_out) {
    static const int64_t sizes[3] = {100003, 17, 40000};
    const int64_t n = sizes[0] + sizes[1] + sizes[2];
    float *p = malloc((size_t)n * sizeof *p), *g = malloc((size_t)n * sizeof *g);
    test_fill_uniform(p, n, -1, 1, 11);
    OptimParam op[3];
    EmaEntry entries[3];
    int64_t off = 0;
    for (int i = 0; i < 3; i++) {
        op[i] = (OptimParam){i == 1 ? "b.bias" : "w", p + off, g + off, sizes[i], i == 1 ? OPTIM_GROUP_BIAS : OPTIM_GROUP_WEIGHT};
        entries[i] = (EmaEntry){(const char *[]){"a", "b", "c"}[i], p + off, sizes[i]};
        off += sizes[i];
    }
    omp_set_num_threads(threads);
    Backend *be = cpu_backend_create(DTYPE_F32);
    Optimizer *opt = optim_create(be, kind, 0.01, op, 3);
    ModelEma *ema = ema_create(be, entries, 3, EMA_DECAY, EMA_TAU);
    OptimHyper h = {.lr = {0.01, 0.01, 0.05}, .momentum = 0.9};
    for (int step = 0; step < 3; step++) {
        test_fill_uniform(g, n, -3, 3, 100 + (uint64_t)step);
        *norm_out = optim_clip_grad_norm(opt, OPTIM_CLIP_MAX_NORM);
        optim_step(opt, &h);
        ema_update(ema);
    }
    int n_state = optim_state_count(opt) / 3;
    float *out = malloc((size_t)(n * (2 + n_state)) * sizeof *out);
    memcpy(out, p, (size_t)n * sizeof *out);
    int64_t n_ema;
    memcpy(out + n, ema_get(ema, 0, &n_ema), (size_t)n * sizeof *out);
    for (int k = 0; k < n_state; k++) memcpy(out + (2 + k) * n, optim_state_get(opt, 3 * k)->data, (size_t)n * sizeof *out);
    optim_destroy(opt);
    ema_destroy(ema);
    backend_destroy(be);
    free(p), free(g);
    return out;
}

static void test_thread_count_independent(void **state) {
    (void)state;
    const int64_t n = 100003 + 17 + 40000;
    int saved = omp_get_max_threads();
    for (OptimKind kind = 0; kind < OPTIM_KIND_COUNT; kind++) {
        double norm1, norm3;
        float *one = run_with_threads(kind, 1, &norm1);
        float *three = run_with_threads(kind, 3, &norm3);
        assert_true(norm1 == norm3);  // bit for bit
        assert_memory_equal(one, three, (size_t)(n * (kind == OPTIM_SGD ? 3 : 4)) * sizeof(float));
        free(one), free(three);
    }
    omp_set_num_threads(saved);
}

static void test_graph_helpers(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/models/tiny-detect.yaml", source_root());
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    Error err = {0};
    GraphOptions gopt = {.batch = 1, .imgsz_h = 64, .imgsz_w = 64, .be = be, .seed = 1};
    if (!model_spec_load(path, NULL, &spec, &err) || !graph_create(spec, &gopt, &g, &err)) fail_msg("%s", err.message);

    OptimParam *op = malloc((size_t)g->n_params * sizeof *op);
    int n = optim_params_from_graph(g, 0, g->n_layers, op);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += op[i].n_elems;
    assert_int_equal(total, g->grad_elems);  // everything that has a gradient, nothing else
    assert_ptr_equal(op[0].value, g->param_data);
    assert_ptr_equal(op[0].grad, g->grad_data);
    // A stage owning layers [2, 5): only their parameters.
    int n_stage = optim_params_from_graph(g, 2, 5, op);
    assert_true(n_stage > 0 && n_stage < n);
    for (int i = 0; i < n_stage; i++) assert_true(strncmp(op[i].name, "model.", 6) == 0 && atoi(op[i].name + 6) >= 2 && atoi(op[i].name + 6) < 5);

    // The EMA of the whole graph mirrors [param_data | buffer_data].
    EmaEntry *entries = malloc((size_t)g->n_params * sizeof *entries);
    int n_entries = ema_entries_from_graph(g, 0, g->n_layers, entries);
    assert_int_equal(n_entries, g->n_params);
    ModelEma *ema = ema_create(be, entries, n_entries, EMA_DECAY, EMA_TAU);
    int64_t n0;
    float *copy = ema_get(ema, 0, &n0);
    assert_memory_equal(copy, g->param_data, (size_t)g->param_elems * sizeof(float));
    assert_memory_equal(copy + g->param_elems, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        int64_t n_elems;
        float *e = ema_find(ema, p->name, &n_elems);
        assert_ptr_equal(e, copy + p->offset + (p->flags & PARAM_BUFFER ? g->param_elems : 0));
        assert_int_equal(n_elems, p->n_elems);
    }
    ema_destroy(ema);
    free(entries);
    free(op);
    graph_destroy(g);
    model_spec_destroy(spec);
    backend_destroy(be);
}

// fp16's loss scale follows torch.amp.GradScaler's update (init 2^16, backoff 0.5 on a non-finite
// gradient with the step skipped, growth 2 after 2000 finite steps in a row); off, it stays 1. In
// both, a non-finite gradient skips the step and counts it, over the run and in a row.
static void test_loss_scale(void **state) {
    (void)state;
    LossScale off = loss_scale_make(false);
    assert_true(off.scale == 1.0);
    assert_false(loss_scale_update(&off, false, false));  // fp32/bf16 skip a NaN step too
    assert_false(loss_scale_update(&off, false, false));
    assert_true(off.scale == 1.0 && off.skipped == 2 && off.in_a_row == 2);
    assert_true(loss_scale_update(&off, false, true));
    assert_true(off.scale == 1.0 && off.skipped == 2 && off.in_a_row == 0 && off.good_steps == 0);

    LossScale ls = loss_scale_make(true);
    assert_true(ls.scale == 65536.0);
    assert_false(loss_scale_update(&ls, true, false));
    assert_true(ls.scale == 32768.0 && ls.skipped == 1 && ls.in_a_row == 1 && ls.good_steps == 0);
    for (int i = 0; i < LOSS_SCALE_GROWTH_INTERVAL - 1; i++) assert_true(loss_scale_update(&ls, true, true));
    assert_true(ls.scale == 32768.0 && ls.good_steps == LOSS_SCALE_GROWTH_INTERVAL - 1);
    assert_false(loss_scale_update(&ls, true, false));  // an overflow restarts the count
    assert_true(ls.scale == 16384.0 && ls.good_steps == 0 && ls.skipped == 2);
    for (int i = 0; i < LOSS_SCALE_GROWTH_INTERVAL; i++) assert_true(loss_scale_update(&ls, true, true));
    assert_true(ls.scale == 32768.0 && ls.good_steps == 0 && ls.skipped == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accumulate_and_decay),
        cmocka_unit_test(test_loss_scale),
        cmocka_unit_test(test_auto_choice),
        cmocka_unit_test(test_schedule_points),
        cmocka_unit_test(test_groups_match_ultralytics),
        cmocka_unit_test(test_train_sgd),
        cmocka_unit_test(test_train_adamw),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_graph_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
