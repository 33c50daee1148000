// Pipeline stages, micro-batch slots and split backward against the whole-model graph.
//
// A model cut into stage graphs and run stage by stage (cut tensors copied from the producing stage
// into the consuming stage's external buffers, gradients handed back and summed) runs the same
// kernels on the same data as the whole graph: outputs and running statistics are compared exactly
// (tolerance 0). Gradients too, except after one change of summation order: when a producer's
// consumers lie in several stages, the whole graph's backward lets each consumer's kernel add its
// terms one by one into the producer's gradient (col2im adds every overlapping kernel tap), while
// the pipeline adds each stage's finished partial sum (yolov8n's layer 4, read by layers 5 and 14 of
// different stages). That changes the last bits (1e-7 relative), and batch norm's backward amplifies
// the change on its way to earlier layers (measured worst: 1.2e-6 of the tensor's largest gradient,
// model.0.conv.weight): compared with a tolerance of 1e-5 of each tensor's largest gradient, well
// above that and far below the O(1) a wrong or missing term gives.
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/cpu/cpu_backend.h"
#include "layers/graph.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

enum { MAX_STAGES = 4, SEED_PARAMS = 7, SEED_INPUT = 11, SEED_DLOSS = 12 };

typedef struct ModelCase {
    const char *file;      // under experiments/models/
    const char *scale;
    int n_stages;
    int bounds[MAX_STAGES + 1];  // stage s owns layers [bounds[s], bounds[s + 1])
    double grad_tolerance;       // pipeline against whole graph, see the file's comment
} ModelCase;

// Cuts crossing several stages. a: layer 9 feeds layer 10 (stage 1) and layer 20 (stage 2), whose
// kernels (upsample, concat) add one finished value per element, so the sums stay exact; layer 12
// feeds two layers of stage 2. b: layer 4 feeds layer 5 (a 3x3 convolution, stage 1) and layer 14
// (stage 2): the summation order changes.
static const ModelCase yolov8n_cuts_a = {"yolov8.yaml", "n", 3, {0, 5, 15, 23}, 0.0};
static const ModelCase yolov8n_cuts_b = {"yolov8.yaml", "n", 3, {0, 5, 13, 23}, 1e-5};
static const ModelCase yolov8n_cls = {"yolov8-cls.yaml", "n", 3, {0, 3, 7, 10}, 0.0};

static ModelSpec *load_spec(const ModelCase *mc) {
    char path[1024];
    snprintf(path, sizeof path, "%s/experiments/models/%s", getenv("YP_SOURCE_ROOT"), mc->file);
    ModelSpec *spec = NULL;
    Error err = {0};
    if (!model_spec_load(path, &(ModelOptions){.scale = mc->scale}, &spec, &err)) fail_msg("%s", err.message);
    return spec;
}

// Batch 2 of 64x64 images, parameters from one seed; opt gives the range and the other options.
static Graph *build(Backend *be, const ModelSpec *spec, GraphOptions opt) {
    opt.batch = 2;
    opt.imgsz_h = opt.imgsz_w = 64;
    opt.be = be;
    opt.seed = SEED_PARAMS;
    Graph *g = NULL;
    Error err = {0};
    if (!graph_create(spec, &opt, &g, &err)) fail_msg("%s", err.message);
    return g;
}

static void resize(Graph *g, int64_t n, int64_t h, int64_t w) {
    Error err = {0};
    if (!graph_set_input_size(g, n, h, w, &err)) fail_msg("%s", err.message);
}

typedef struct Pipeline {
    int n;
    Graph *stages[MAX_STAGES];
} Pipeline;

static Pipeline pipeline_create(Backend *be, const ModelSpec *spec, const ModelCase *mc, bool split_backward) {
    Pipeline p = {.n = mc->n_stages};
    for (int s = 0; s < p.n; s++)
        p.stages[s] = build(be, spec,
                            (GraphOptions){.layer_begin = mc->bounds[s], .layer_end = mc->bounds[s + 1],
                                           .split_backward = split_backward});
    return p;
}

static void pipeline_destroy(Pipeline *p) {
    for (int s = 0; s < p->n; s++) graph_destroy(p->stages[s]);
}

static void pipeline_resize(Pipeline *p, int64_t n, int64_t h, int64_t w) {
    for (int s = 0; s < p->n; s++) resize(p->stages[s], n, h, w);
}

static Graph *pipeline_owner(const Pipeline *p, int layer) {
    for (int s = 0; s < p->n; s++)
        if (p->stages[s]->layer_begin <= layer && layer < p->stages[s]->layer_end) return p->stages[s];
    fail_msg("no stage owns layer %d", layer);
    return NULL;
}

static void copy_tensor(Tensor *dst, const Tensor *src) {
    assert_memory_equal(&dst->shape, &src->shape, sizeof dst->shape);
    memcpy(dst->data, src->data, (size_t)tensor_elems(src) * sizeof(float));
}

// Stage by stage: the input where a stage reads it, and every cut tensor from the stage computing it.
static void pipeline_forward(Pipeline *p, const Tensor *input) {
    for (int s = 0; s < p->n; s++) {
        Graph *g = p->stages[s];
        if (g->input.data) copy_tensor(&g->input, input);
        for (int j = 0; j < g->layer_begin; j++)
            if (graph_layer_has_memory(g, j)) copy_tensor(&g->layers[j].out, &pipeline_owner(p, j)->layers[j].out);
        graph_forward(g, true);
    }
}

// Last stage first: each stage zeroes its activation gradients, adds what later stages computed for
// its layers' outputs (the loss gradient for the last), and runs its backward.
static void pipeline_backward(Pipeline *p, const float *dloss, bool split_backward) {
    for (int s = p->n - 1; s >= 0; s--) {
        Graph *g = p->stages[s];
        graph_zero_activation_grads(g);
        if (s == p->n - 1) {
            Tensor *d = &graph_output(g)->dout;
            memcpy(d->data, dloss, (size_t)tensor_elems(&graph_output(g)->out) * sizeof(float));
        }
        for (int j = g->layer_begin; j < g->layer_end; j++)
            for (int t = p->n - 1; t > s; t--)
                if (graph_layer_has_memory(p->stages[t], j))
                    g->be->ops->accumulate(g->be, p->stages[t]->layers[j].dout.data, g->layers[j].dout.data,
                                           (size_t)tensor_elems(&g->layers[j].out));
        if (split_backward) {
            graph_backward_input_layers(g, g->layer_begin, g->layer_end);
            graph_backward_weight(g);
        } else {
            graph_backward_layers(g, g->layer_begin, g->layer_end);
        }
    }
}

// The stages' parameters (or buffers) laid end to end equal the whole graph's (they are in layer order).
static void assert_concat_equal(const Pipeline *p, const Graph *full, bool buffers) {
    int64_t at = 0;
    for (int s = 0; s < p->n; s++) {
        const Graph *g = p->stages[s];
        int64_t n = buffers ? g->buffer_elems : g->param_elems;
        const float *whole = buffers ? full->buffer_data : full->param_data;
        assert_memory_equal(buffers ? g->buffer_data : g->param_data, whole + at, (size_t)n * sizeof(float));
        at += n;
    }
    assert_int_equal(at, buffers ? full->buffer_elems : full->param_elems);
}

// Every trainable tensor of `got` (whose offsets are its own) against the same one in `want` (whose
// offsets are `want_base` further on): at most `tolerance` relative to the tensor's peak.
static void assert_grads_close(const Graph *got, const Graph *want, int64_t want_base, double tolerance) {
    for (int i = 0; i < got->n_params; i++) {
        const ParamInfo *p = &got->params[i];
        if (p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)) continue;
        assert_close_peak(p->name, got->grad_data + p->offset, want->grad_data + want_base + p->offset, p->n_elems,
                          tolerance);
    }
}

// Forward and backward of the whole graph and of the pipeline at the current input size; compares
// output and running statistics exactly, parameter gradients as the file's comment says.
static void compare_step(Pipeline *p, Graph *full, bool split_backward, double grad_tolerance) {
    test_fill_uniform(full->input.data, tensor_elems(&full->input), 0.0f, 1.0f, SEED_INPUT);
    graph_forward(full, true);
    pipeline_forward(p, &full->input);
    Layer *out = graph_output(full), *stage_out = graph_output(p->stages[p->n - 1]);
    assert_memory_equal(&stage_out->out.shape, &out->out.shape, sizeof(Shape));
    assert_memory_equal(stage_out->out.data, out->out.data, (size_t)tensor_elems(&out->out) * sizeof(float));
    assert_concat_equal(p, full, true);

    test_fill_uniform(out->dout.data, tensor_elems(&out->out), -1.0f, 1.0f, SEED_DLOSS);
    graph_zero_grads(full);
    graph_backward(full);
    for (int s = 0; s < p->n; s++) graph_zero_grads(p->stages[s]);
    pipeline_backward(p, out->dout.data, split_backward);
    int64_t base = 0;
    for (int s = 0; s < p->n; s++) {
        assert_grads_close(p->stages[s], full, base, grad_tolerance);
        base += p->stages[s]->param_elems;
    }
}

static void check_stages_match_full_model(const ModelCase *mc) {
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(mc);
    Graph *full = build(be, spec, (GraphOptions){0});
    Pipeline p = pipeline_create(be, spec, mc, false);
    assert_concat_equal(&p, full, false);  // initialisation is keyed by name
    assert_concat_equal(&p, full, true);
    compare_step(&p, full, false, mc->grad_tolerance);

    // Only the first stage holds the network input; only the last has an output.
    assert_non_null(p.stages[0]->input.data);
    for (int s = 1; s < p.n; s++) assert_null(p.stages[s]->input.data);
    graph_destroy(full);
    pipeline_destroy(&p);
    model_spec_destroy(spec);
    backend_destroy(be);
}

static void test_stages_match_full_model(void **state) {
    (void)state;
    check_stages_match_full_model(&yolov8n_cuts_a);
    check_stages_match_full_model(&yolov8n_cuts_b);
    check_stages_match_full_model(&yolov8n_cls);
}

// Which earlier layers a stage holds memory for: exactly those its layers read.
static void test_external_producers(void **state) {
    (void)state;
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(&yolov8n_cuts_b);
    Graph *head = build(be, spec, (GraphOptions){.layer_begin = 13});
    for (int j = 0; j < head->n_layers; j++) {
        bool want = j >= 13 || j == 4 || j == 9 || j == 12;  // 14 reads 4, 20 reads 9, 13 and 17 read 12
        assert_int_equal(graph_layer_has_memory(head, j), want);
        assert_int_equal(head->layers[j].out.data != NULL, want);
        assert_int_equal(head->layers[j].dout.data != NULL, want);
    }
    graph_destroy(head);
    model_spec_destroy(spec);
    backend_destroy(be);
}

// Smaller inputs: graph_layer_shape agrees with the shapes the whole graph's forward produces, for
// every layer, and the pipeline still matches the whole graph exactly.
static void test_stages_resized(void **state) {
    (void)state;
    const ModelCase *cases[] = {&yolov8n_cuts_b, &yolov8n_cls};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        Backend *be = cpu_backend_create(DTYPE_F32);
        ModelSpec *spec = load_spec(cases[c]);
        Graph *full = build(be, spec, (GraphOptions){0});
        Pipeline p = pipeline_create(be, spec, cases[c], false);
        resize(full, 1, 32, 64);
        pipeline_resize(&p, 1, 32, 64);
        // Before any forward at this size: the executor sizes its messages from these.
        Shape before[64];
        assert_true(full->n_layers <= 64);
        for (int j = 0; j < full->n_layers; j++) before[j] = graph_layer_shape(p.stages[0], j);
        compare_step(&p, full, false, cases[c]->grad_tolerance);
        for (int j = 0; j < full->n_layers; j++) {
            Shape want = full->layers[j].out.shape;
            assert_memory_equal(&before[j], &want, sizeof want);
            for (int s = 0; s < p.n; s++) {
                Shape got = graph_layer_shape(p.stages[s], j);
                assert_memory_equal(&got, &want, sizeof want);
                if (graph_layer_has_memory(p.stages[s], j))
                    assert_memory_equal(&p.stages[s]->layers[j].out.shape, &want, sizeof want);
            }
        }
        graph_destroy(full);
        pipeline_destroy(&p);
        model_spec_destroy(spec);
        backend_destroy(be);
    }
}

// The stages' tables laid end to end are the whole model's, with offsets counted from each stage's
// own storage; the stage totals add up to the model's. Describing only (no backend).
static void check_param_tables(const ModelCase *mc) {
    ModelSpec *spec = load_spec(mc);
    GraphOptions opt = {.batch = 2, .imgsz_h = 64, .imgsz_w = 64, .seed = SEED_PARAMS};
    Graph *full = NULL;
    Error err = {0};
    if (!graph_create(spec, &opt, &full, &err)) fail_msg("%s", err.message);
    int at = 0;
    int64_t param_elems = 0, grad_elems = 0, buffer_elems = 0, activation_elems = 0, leaves = 0;
    double ops = 0.0;
    for (int s = 0; s < mc->n_stages; s++) {
        opt.layer_begin = mc->bounds[s];
        opt.layer_end = mc->bounds[s + 1];
        Graph *g = NULL;
        if (!graph_create(spec, &opt, &g, &err)) fail_msg("%s", err.message);
        int64_t param_base = -1, buffer_base = -1;
        for (int i = 0; i < g->n_params; i++, at++) {
            const ParamInfo *got = &g->params[i], *want = &full->params[at];
            assert_string_equal(got->name, want->name);
            assert_int_equal(got->ndim, want->ndim);
            assert_memory_equal(got->dims, want->dims, sizeof got->dims);
            assert_int_equal(got->n_elems, want->n_elems);
            assert_int_equal(got->flags, want->flags);
            assert_int_equal(got->layer, want->layer);
            assert_true(opt.layer_begin <= got->layer && got->layer < opt.layer_end);
            int64_t *base = got->flags & PARAM_BUFFER ? &buffer_base : &param_base;
            if (*base < 0) *base = want->offset - got->offset;
            assert_int_equal(got->offset, want->offset - *base);
        }
        // Each stage's first parameter (and buffer) is at offset 0 of its own storage.
        if (param_base >= 0) assert_int_equal(param_base, param_elems);
        if (buffer_base >= 0) assert_int_equal(buffer_base, buffer_elems);
        param_elems += g->param_elems;
        grad_elems += g->grad_elems;
        buffer_elems += g->buffer_elems;
        activation_elems += g->activation_elems;
        leaves += g->leaf_modules;
        ops += g->ops;
        graph_destroy(g);
    }
    assert_int_equal(at, full->n_params);
    assert_int_equal(param_elems, full->param_elems);
    assert_int_equal(grad_elems, full->grad_elems);
    assert_int_equal(buffer_elems, full->buffer_elems);
    assert_int_equal(activation_elems, full->activation_elems);
    assert_int_equal(leaves, full->leaf_modules);
    assert_close(ops, full->ops, 0.0, 1e-9);  // a sum of the same terms regrouped
    graph_destroy(full);
    model_spec_destroy(spec);
}

static void test_param_tables(void **state) {
    (void)state;
    check_param_tables(&yolov8n_cuts_a);
    check_param_tables(&yolov8n_cuts_b);
    check_param_tables(&yolov8n_cls);
}


// A slot shares its owner's weights: same output, no parameter memory of its own, gradients into
// the owner's. Two micro-batches in flight (forward in two slots, backward in reverse order) against
// the whole graph running them one after the other.
static void test_slots_share_weights(void **state) {
    (void)state;
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(&yolov8n_cuts_b);
    Graph *owner = build(be, spec, (GraphOptions){0});
    Graph *slot = build(be, spec, (GraphOptions){.share_weights = owner});
    Graph *serial = build(be, spec, (GraphOptions){0});
    assert_ptr_equal(slot->param_data, owner->param_data);
    assert_ptr_equal(slot->grad_data, owner->grad_data);
    assert_ptr_equal(slot->buffer_data, owner->buffer_data);
    assert_ptr_equal(slot->scratch, owner->scratch);
    int64_t weight_bytes = (2 * owner->param_elems + owner->buffer_elems + owner->scratch_elems) * (int64_t)sizeof(float);
    assert_int_equal(slot->allocated_bytes, owner->allocated_bytes - weight_bytes);

    int64_t n_in = tensor_elems(&owner->input);
    int64_t n_out = tensor_elems(&graph_output(owner)->out);
    float *x[2], *dloss[2], *serial_out[2];
    for (int m = 0; m < 2; m++) {
        x[m] = malloc((size_t)n_in * sizeof(float));
        dloss[m] = malloc((size_t)n_out * sizeof(float));
        serial_out[m] = malloc((size_t)n_out * sizeof(float));
        test_fill_uniform(x[m], n_in, 0.0f, 1.0f, SEED_INPUT + 10 * (uint64_t)m);
        test_fill_uniform(dloss[m], n_out, -1.0f, 1.0f, SEED_DLOSS + 10 * (uint64_t)m);
    }
    // Same output as the owner (inference mode leaves the shared running statistics alone).
    memcpy(owner->input.data, x[0], (size_t)n_in * sizeof(float));
    memcpy(slot->input.data, x[0], (size_t)n_in * sizeof(float));
    graph_forward(owner, false);
    graph_forward(slot, false);
    assert_memory_equal(graph_output(slot)->out.data, graph_output(owner)->out.data, (size_t)n_out * sizeof(float));

    graph_zero_grads(serial);
    for (int m = 0; m < 2; m++) {
        memcpy(serial->input.data, x[m], (size_t)n_in * sizeof(float));
        graph_forward(serial, true);
        memcpy(serial_out[m], graph_output(serial)->out.data, (size_t)n_out * sizeof(float));
        memcpy(graph_output(serial)->dout.data, dloss[m], (size_t)n_out * sizeof(float));
        graph_backward(serial);
    }
    Graph *slots[2] = {owner, slot};
    graph_zero_grads(slot);  // the owner's gradients
    for (int m = 0; m < 2; m++) {
        memcpy(slots[m]->input.data, x[m], (size_t)n_in * sizeof(float));
        graph_forward(slots[m], true);
    }
    for (int m = 1; m >= 0; m--) {
        memcpy(graph_output(slots[m])->dout.data, dloss[m], (size_t)n_out * sizeof(float));
        graph_backward(slots[m]);
    }
    // Outputs and running statistics: the same forwards in the same order, exact.
    for (int m = 0; m < 2; m++)
        assert_memory_equal(graph_output(slots[m])->out.data, serial_out[m], (size_t)n_out * sizeof(float));
    assert_memory_equal(owner->buffer_data, serial->buffer_data, (size_t)owner->buffer_elems * sizeof(float));
    // Gradients: the weight-gradient kernels add image by image into the gradient, so the slots add
    // micro-batch 1's images before micro-batch 0's: float rounding (measured worst 1.8e-7 of the
    // tensor's largest gradient); 1e-6 is above that and far below a missing micro-batch.
    assert_grads_close(owner, serial, 0, 1e-6);
    for (int m = 0; m < 2; m++) {
        free(x[m]);
        free(dloss[m]);
        free(serial_out[m]);
    }
    graph_destroy(slot);
    graph_destroy(owner);
    graph_destroy(serial);
    model_spec_destroy(spec);
    backend_destroy(be);
}

// One stage's forward with fixed external inputs, then a backward from fixed output gradients on
// every layer of the range: the plain backward, or input passes (over `n_parts` pieces of the range,
// last first) followed by the weight pass.
static void run_stage(Graph *g, int n_parts) {
    if (g->input.data) test_fill_uniform(g->input.data, tensor_elems(&g->input), 0.0f, 1.0f, SEED_INPUT);
    for (int j = 0; j < g->layer_begin; j++)
        if (graph_layer_has_memory(g, j))
            test_fill_uniform(g->layers[j].out.data, tensor_elems(&g->layers[j].out), -1.0f, 1.0f, 100 + (uint64_t)j);
    graph_forward(g, true);
    graph_zero_grads(g);
    graph_zero_activation_grads(g);
    for (int j = g->layer_begin; j < g->layer_end; j++)
        test_fill_uniform(g->layers[j].dout.data, tensor_elems(&g->layers[j].out), -1.0f, 1.0f, 200 + (uint64_t)j);
    if (!n_parts) {
        graph_backward_layers(g, g->layer_begin, g->layer_end);
        return;
    }
    int n = g->layer_end - g->layer_begin;
    for (int k = n_parts - 1; k >= 0; k--)
        graph_backward_input_layers(g, g->layer_begin + n * k / n_parts, g->layer_begin + n * (k + 1) / n_parts);
    graph_backward_weight(g);
}

static void check_split_backward(const ModelCase *mc, int begin, int end, int n_parts) {
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(mc);
    Graph *plain = build(be, spec, (GraphOptions){.layer_begin = begin, .layer_end = end});
    Graph *split = build(be, spec, (GraphOptions){.layer_begin = begin, .layer_end = end, .split_backward = true});
    assert_true(split->activation_elems > plain->activation_elems);  // the kept conv output gradients
    for (int step = 0; step < 2; step++) {  // a second step: nothing left over from the first
        run_stage(plain, 0);
        run_stage(split, n_parts);
        assert_memory_equal(split->grad_data, plain->grad_data, (size_t)plain->param_elems * sizeof(float));
        for (int j = 0; j < plain->layer_end; j++)
            if (graph_layer_has_memory(plain, j))  // the input gradients sent to earlier stages among them
                assert_memory_equal(split->layers[j].dout.data, plain->layers[j].dout.data,
                                    (size_t)tensor_elems(&plain->layers[j].out) * sizeof(float));
    }
    graph_destroy(plain);
    graph_destroy(split);
    model_spec_destroy(spec);
    backend_destroy(be);
}

// B then W computes the same kernels on the same values as the plain backward: exact.
static void test_split_backward(void **state) {
    (void)state;
    check_split_backward(&yolov8n_cuts_b, 5, 13, 1);
    check_split_backward(&yolov8n_cuts_b, 5, 13, 3);  // several input passes before one weight pass
    check_split_backward(&yolov8n_cuts_b, 0, 0, 1);   // the whole model
    check_split_backward(&yolov8n_cls, 0, 0, 1);      // Classify's linear gradient in B
    // The pipeline with split backward matches the whole graph too.
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(&yolov8n_cuts_a);
    Graph *full = build(be, spec, (GraphOptions){0});
    Pipeline p = pipeline_create(be, spec, &yolov8n_cuts_a, true);
    compare_step(&p, full, true, yolov8n_cuts_a.grad_tolerance);
    graph_destroy(full);
    pipeline_destroy(&p);
    model_spec_destroy(spec);
    backend_destroy(be);
}

// Runs fn(arg) in a child process and expects it to abort (a failed YP_CHECK).
static void assert_aborts(void (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        fn(arg);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void call_backward_weight(void *g) { graph_backward_weight(g); }
static void call_forward(void *g) { graph_forward(g, true); }
static void call_backward_outside_range(void *g) { graph_backward_layers(g, 0, 13); }

static void test_split_backward_misuse(void **state) {
    (void)state;
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = load_spec(&yolov8n_cuts_b);
    Graph *plain = build(be, spec, (GraphOptions){.layer_begin = 5, .layer_end = 13});
    Graph *split = build(be, spec, (GraphOptions){.layer_begin = 5, .layer_end = 13, .split_backward = true});
    assert_aborts(call_backward_weight, split);  // W before B
    assert_aborts(call_backward_weight, plain);  // no split backward
    assert_aborts(call_backward_outside_range, plain);
    run_stage(split, 1);
    graph_backward_input_layers(split, 5, 13);
    assert_aborts(call_forward, split);  // a forward would overwrite what W reads
    graph_backward_weight(split);
    assert_aborts(call_backward_weight, split);  // W twice
    graph_destroy(plain);
    graph_destroy(split);
    model_spec_destroy(spec);
    backend_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stages_match_full_model), cmocka_unit_test(test_external_producers),
        cmocka_unit_test(test_stages_resized),          cmocka_unit_test(test_param_tables),
        cmocka_unit_test(test_slots_share_weights),     cmocka_unit_test(test_split_backward),
        cmocka_unit_test(test_split_backward_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
