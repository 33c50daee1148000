// Every module's backward against central finite differences, through the real graph code: each
// case is a tiny model whose layer 0 is a Conv (so the module under test has an input with a
// gradient) followed by the module under test. We check the gradient of a projection loss
// L = sum(out * R) with respect to the module's input (layer 0's output) and to every parameter
// of the layers after layer 0, in training mode (batch statistics), batch 2, odd sizes, stride 2.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/cpu/cpu_backend.h"
#include "layers/graph.h"
#include "tests/unit/gradcheck.h"

typedef struct GradCase {
    const char *name;
    const char *rows;  // YAML rows after layer 0, a Conv(3 -> 8, k3, s1)
    int64_t h, w;
    const char *header;  // model keys before the rows ("activation: ..."); NULL: none
} GradCase;

// See run_case for why these values.
static const float fd_step = 1e-2f;
static const double fd_atol = 2e-3, fd_rtol = 1e-2;

typedef struct GradContext {
    Graph *g;
    const float *r;  // projection weights, one per output element
} GradContext;

static Backend *be;

// The loss with everything up to layer 0 fixed: parameters and layer 0's output are perturbed in
// place, so only layers 1.. need to run again.
static double projected_loss(void *p) {
    GradContext *ctx = p;
    graph_forward_layers(ctx->g, 1, ctx->g->n_layers, true);
    Layer *out = graph_output(ctx->g);
    return test_dot(out->out.data, ctx->r, tensor_elems(&out->out));
}

// non_legacy clears the last row's legacy flag, as a C3k2/A2C2f/C2fCIB row before it would (Detect's
// light class branch), until those modules exist to write such a model.
static Graph *build_case(const GradCase *c, bool non_legacy, ModelSpec **spec) {
    char path[] = "/tmp/yolopipe-grad-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "nc: 3\n%sbackbone:\n  - [-1, 1, Conv, [8, 3, 1]]\nhead:\n%s", c->header ? c->header : "", c->rows);
    fclose(f);
    Error err = {0};
    Graph *g = NULL;
    GraphOptions opt = {.batch = 2, .imgsz_h = c->h, .imgsz_w = c->w, .be = be, .seed = 7};
    bool ok = model_spec_load(path, NULL, spec, &err);
    if (ok && non_legacy) (*spec)->rows[(*spec)->n_rows - 1].legacy = false;
    ok = ok && graph_create(*spec, &opt, &g, &err);
    unlink(path);
    if (!ok) fail_msg("%s: %s", c->name, err.message);
    return g;
}

static void run_case(const GradCase *c, bool non_legacy) {
    ModelSpec *spec;
    Graph *g = build_case(c, non_legacy, &spec);
    // Detect's prior biases (2.0 for boxes, about -9 for classes) only shift outputs, yet every
    // output rounds at their magnitude and batch norm makes every output move with any input: the
    // rounding noise would swamp the central differences. Zero them; their gradients are still checked.
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        size_t n = strlen(p->name);
        if (layer_kinds[g->layers[p->layer].kind]->detect_head && n > 7 && !strcmp(p->name + n - 7, ".2.bias"))
            be->ops->fill(be, g->param_data + p->offset, 0.0f, (size_t)p->n_elems);
    }
    test_fill_uniform(g->input.data, tensor_elems(&g->input), -1.0f, 1.0f, 11);
    graph_forward(g, true);
    Layer *out = graph_output(g);
    int64_t n_out = tensor_elems(&out->out);
    float *r = malloc((size_t)n_out * sizeof *r);
    test_fill_uniform(r, n_out, -1.0f, 1.0f, 12);
    be->ops->copy(be, out->dout.data, r, (size_t)n_out * sizeof(float));
    graph_zero_grads(g);
    graph_backward(g);

    // Parameters of layers 1.. start where layer 0's end: they are declared in layer order.
    int64_t first = g->param_elems;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i].layer >= 1 && !(g->params[i].flags & PARAM_BUFFER) && g->params[i].offset < first)
            first = g->params[i].offset;
    int64_t n_params = g->param_elems - first;
    float *grad = malloc((size_t)(n_params > 0 ? n_params : 1) * sizeof *grad);
    memcpy(grad, g->grad_data + first, (size_t)n_params * sizeof *grad);
    Tensor *x = &g->layers[0].out;
    float *dx = malloc((size_t)tensor_elems(x) * sizeof *dx);
    memcpy(dx, g->layers[0].dout.data, (size_t)tensor_elems(x) * sizeof *dx);

    GradContext ctx = {.g = g, .r = r};
    // The float32 forward passes through up to ~10 conv/BN/SiLU steps, and batch norm makes every
    // output move with any input, so L carries rounding noise that depends on the GEMM kernel's
    // summation order: about 4e-6 rms (1e-5 at worst) in Detect's L, a sum of 2680 terms with
    // sum |y r| = 370. A central difference at h = 3e-3 turned that into errors up to 2.3e-3, past
    // the absolute tolerance, at one Detect probe with OpenBLAS's SkylakeX kernels and another with
    // Sandybridge's. The fourth-order five-point difference truncates at ~h^4 f^(5) instead of
    // ~h^2 f''' (a few % on weights under batch norm at h = 1e-2 for the central one), so it takes
    // h = 1e-2, where rounding noise costs about 2.5 times less. The worst probe over all cases and
    // OpenBLAS core types (Haswell, Zen, SkylakeX, Cooperlake, Sandybridge) then uses under half of
    // its tolerance; at h = 2e-2, truncation fails a C3 weight. The absolute floor covers near-zero
    // gradients.
    char what[128];
    snprintf(what, sizeof what, "%s input", c->name);
    bool ok = gradcheck_five_point(&(GradcheckSpec){.what = what, .x = x->data, .analytic = dx, .n = tensor_elems(x),
                                                    .loss = projected_loss, .ctx = &ctx, .h = fd_step, .atol = fd_atol,
                                                    .rtol = fd_rtol, .max_checks = 300});
    snprintf(what, sizeof what, "%s parameters", c->name);
    if (n_params > 0)
        ok &= gradcheck_five_point(&(GradcheckSpec){.what = what, .x = g->param_data + first, .analytic = grad,
                                                    .n = n_params, .loss = projected_loss, .ctx = &ctx, .h = fd_step,
                                                    .atol = fd_atol, .rtol = fd_rtol, .max_checks = 300});
    free(dx);
    free(grad);
    free(r);
    graph_destroy(g);
    model_spec_destroy(spec);
    assert_true(ok);
}

static const GradCase cases[] = {
    {"Conv k3 s2", "  - [-1, 1, Conv, [6, 3, 2]]\n", 13, 11, NULL},
    {"Conv k1", "  - [-1, 1, Conv, [5, 1, 1]]\n", 9, 7, NULL},
    // The model's activation (Conv.default_act) fused into every Conv, layer 0's included. Hardswish
    // only: with ReLU or LeakyReLU, a probe moves batch-normalised values across the kink at 0 in
    // many places within +/- h (as SPPF's pools do); their kernels are checked in test_cpu_slots.
    {"Conv activation Hardswish", "  - [-1, 1, Conv, [6, 3, 2]]\n", 13, 11, "activation: nn.Hardswish()\n"},
    {"Conv k6 s2 p2", "  - [-1, 1, Conv, [4, 6, 2, 2]]\n", 14, 12, NULL},
    {"Conv groups act=False", "  - [-1, 1, Conv, [8, 3, 1, None, 2, 1, False]]\n", 9, 9, NULL},
    {"Conv dilation 2", "  - [-1, 1, Conv, [6, 3, 1, None, 1, 2]]\n", 11, 9, NULL},
    {"Conv repeated", "  - [-1, 2, Conv, [8, 3, 1]]\n", 7, 9, NULL},
    {"Bottleneck residual", "  - [-1, 1, Bottleneck, [8]]\n", 9, 7, NULL},
    {"Bottleneck no shortcut", "  - [-1, 1, Bottleneck, [8, False]]\n", 9, 7, NULL},
    {"Bottleneck channel change", "  - [-1, 1, Bottleneck, [16]]\n", 7, 7, NULL},
    {"Bottleneck repeated", "  - [-1, 2, Bottleneck, [8]]\n", 7, 5, NULL},
    {"C2f shortcut n2", "  - [-1, 2, C2f, [8, True]]\n", 9, 7, NULL},
    {"C2f n1", "  - [-1, 1, C2f, [16]]\n", 7, 9, NULL},
    {"C3 n2", "  - [-1, 2, C3, [8]]\n", 9, 7, NULL},
    {"C3 no shortcut", "  - [-1, 1, C3, [16, False]]\n", 7, 7, NULL},
    {"C3k2 n2", "  - [-1, 2, C3k2, [8, False, 0.5]]\n", 9, 7, NULL},
    {"C3k2 c3k no shortcut", "  - [-1, 1, C3k2, [16, True, 0.5, False, 1, False]]\n", 7, 9, NULL},
    // The attention family: Attention's q·k softmax, v and the positional depthwise Conv on v, PSABlock's
    // residuals; two heads (A2C2f's c // 32: C2PSA's c // 64 would need 128 channels, whose float32
    // noise swamps the differences) interleave q, k, v per head; AAttn's areas split the positions
    // into runs; A2C2f's gamma layer scale with its residual.
    {"C2PSA n1", "  - [-1, 1, C2PSA, [8]]\n", 5, 7, NULL},
    {"C2PSA n2", "  - [-1, 2, C2PSA, [8, 1.0]]\n", 4, 5, NULL},
    {"C3k2 attn", "  - [-1, 1, C3k2, [16, False, 0.5, True]]\n", 6, 5, NULL},
    {"C3k2 attn no shortcut", "  - [-1, 2, C3k2, [16, False, 0.5, True, 1, False]]\n", 5, 6, NULL},
    {"A2C2f area 4 residual", "  - [-1, 1, Conv, [32, 1, 1]]\n  - [-1, 1, A2C2f, [32, True, 4, True, 1.2, 1.0]]\n", 4,
     6, NULL},
    {"A2C2f two heads", "  - [-1, 1, A2C2f, [64, True, 1, False, 1.0, 1.0]]\n", 5, 5, NULL},
    {"A2C2f C3k blocks", "  - [-1, 2, A2C2f, [64, False, -1]]\n", 6, 7, NULL},
    // SPPF's wiring (concat of the chained pools, their backward chain, the shortcut) with k = 1
    // pools, which have no kinks: with k > 1, moving one cv1 weight shifts a whole map and switches
    // maxima in many windows within +/- h, so central differences measure an average slope. The
    // k > 1 max-pool backward itself is checked on tie-free data in test_cpu_kernels.
    {"SPPF k1", "  - [-1, 1, SPPF, [8, 1]]\n", 9, 11, NULL},
    {"SPPF k1 shortcut n2", "  - [-1, 1, SPPF, [8, 1, 2, True]]\n", 7, 7, NULL},
    {"Upsample and Concat",
     "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, nn.Upsample, [None, 2, 'nearest']]\n  - [[-1, 0], 1, Concat, [1]]\n"
     "  - [-1, 1, Conv, [4, 1, 1]]\n",
     10, 14, NULL},
    {"Detect two levels",
     "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [[1, 2], 1, Detect, [nc]]\n", 8, 8, NULL},
    {"v10Detect",
     "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [[1, 2], 1, v10Detect, [nc]]\n", 8, 8, NULL},
    {"Classify", "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Classify, [5]]\n", 9, 11, NULL},
    // YOLOv9: RepNCSPELAN4's RepCSP branches (RepConv's summed 3x3 and 1x1, the residual), an odd c3
    // (torch.chunk's larger first half), ELAN1, AConv, SPPELAN with kink-free k = 1
    // pools (as SPPF), and YOLOv9e's auxiliary branch: nn.Identity, CBLinear chunks fused into finer
    // levels by CBFuse (upsampled by 2 and summed). ADown's fixed 3x3 max pool has kinks that
    // central differences straddle (see SPPF); its gradients are checked against PyTorch in float64
    // by test_forward_reference's tiny-v9.
    {"RepNCSPELAN4 n2", "  - [-1, 1, RepNCSPELAN4, [8, 8, 4, 2]]\n", 9, 7, NULL},
    {"RepNCSPELAN4 odd c3", "  - [-1, 1, RepNCSPELAN4, [8, 7, 4, 1]]\n", 9, 7, NULL},
    {"ELAN1", "  - [-1, 1, ELAN1, [8, 8, 4]]\n", 9, 7, NULL},
    {"AConv", "  - [-1, 1, AConv, [8]]\n", 10, 9, NULL},
    {"SPPELAN k1", "  - [-1, 1, SPPELAN, [8, 4, 1]]\n", 9, 7, NULL},
    {"CBLinear and CBFuse",
     "  - [-1, 1, nn.Identity, []]\n  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [8, 3, 2]]\n"
     "  - [-1, 1, CBLinear, [[8, 16]]]\n  - [2, 1, Conv, [8, 1, 1]]\n  - [[4, -1], 1, CBFuse, [[0]]]\n"
     "  - [2, 1, Conv, [16, 1, 1]]\n  - [[4, -1], 1, CBFuse, [[1]]]\n  - [[6, 8], 1, Concat, [1]]\n",
     16, 12, NULL},
    // nn.MaxPool2d and nn.ZeroPad2d as rows (YOLOv3-tiny's pad + 2x2 stride-1 pool keeps the size);
    // the pools are 1x1 for SPPF's reason above, so the wiring is what these check.
    {"nn.ZeroPad2d nn.MaxPool2d",
     "  - [-1, 1, nn.ZeroPad2d, [[0, 1, 2, 1]]]\n  - [-1, 1, nn.MaxPool2d, [1, 1, 0]]\n  - [-1, 1, Conv, [4, 3, 2]]\n",
     9, 7, NULL},
    {"nn.MaxPool2d stride 2, nn.ZeroPad2d int", "  - [-1, 1, nn.MaxPool2d, [1, 2]]\n  - [-1, 1, nn.ZeroPad2d, [1]]\n", 9, 7, NULL},
    {"SPP k1", "  - [-1, 1, SPP, [8, [1, 1]]]\n", 9, 7, NULL},
    {"C2 n2", "  - [-1, 2, C2, [8]]\n", 9, 7, NULL},
    {"C2 no shortcut g2", "  - [-1, 1, C2, [16, False, 2]]\n", 7, 7, NULL},
    {"GhostConv k3 s2", "  - [-1, 1, GhostConv, [16, 3, 2]]\n", 11, 9, NULL},
    {"GhostConv act=False g2", "  - [-1, 1, GhostConv, [8, 1, 1, 2, False]]\n", 9, 7, NULL},
    {"DWConv k3 s2", "  - [-1, 1, DWConv, [16, 3, 2]]\n", 11, 9, NULL},
    {"GhostBottleneck s1", "  - [-1, 1, GhostBottleneck, [8]]\n", 9, 7, NULL},
    {"GhostBottleneck s2", "  - [-1, 1, GhostBottleneck, [16, 3, 2]]\n", 11, 9, NULL},
    {"C3Ghost n2", "  - [-1, 2, C3Ghost, [8]]\n", 7, 7, NULL},
    {"SCDown", "  - [-1, 1, SCDown, [16, 3, 2]]\n", 11, 9, NULL},
    {"C2fCIB shortcut", "  - [-1, 2, C2fCIB, [8, True]]\n", 9, 7, NULL},
    {"C2fCIB lk", "  - [-1, 1, C2fCIB, [16, False, True]]\n", 9, 9, NULL},
    {"C2fCIB lk shortcut", "  - [-1, 1, C2fCIB, [8, True, True]]\n", 9, 9, NULL},
    // YOLOv10's PSA: C2PSA's block with its attn and ffn at the top level (one head, as C2PSA's cases).
    {"PSA", "  - [-1, 1, PSA, [8]]\n", 5, 7, NULL},
    {"PSA e=1.0", "  - [-1, 1, PSA, [8, 1.0]]\n", 4, 5, NULL},
    // nn.ConvTranspose2d: YOLOv6's 2x2 stride-2 upsampling, a padded stride-1 one (the size kept), and
    // a padded stride-2 one, whose output ((H - 1)·2 - 2 + 3) is odd.
    {"nn.ConvTranspose2d k2 s2", "  - [-1, 1, nn.ConvTranspose2d, [6, 2, 2, 0]]\n", 5, 7, NULL},
    {"nn.ConvTranspose2d k3 s1 p1", "  - [-1, 1, nn.ConvTranspose2d, [6, 3, 1, 1]]\n", 7, 5, NULL},
    {"nn.ConvTranspose2d k3 s2 p1", "  - [-1, 1, nn.ConvTranspose2d, [4, 3, 2, 1]]\n", 5, 4, NULL},
};

// Detect built after a C3k2/A2C2f/C2fCIB row (YOLO11/12/26): the light class branch, depthwise 3x3
// Convs between 1x1 ones.
static const GradCase non_legacy_cases[] = {
    {"Detect non-legacy",
     "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [[1, 2], 1, Detect, [nc]]\n", 8, 8, NULL},
    // YOLO26's head: no DFL, and the one-to-one branches declared, whose gradients stay zero (forward
    // runs the one-to-many branches only), as the finite differences confirm.
    {"Detect non-legacy reg_max 1 end2end",
     "  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [[1, 2], 1, Detect, [nc]]\n",
     8, 8, "reg_max: 1\nend2end: True\n"},
};

static void test_case(void **state) { run_case(*state, false); }
static void test_non_legacy_case(void **state) { run_case(*state, true); }

static int setup(void **state) {
    (void)state;
    be = cpu_backend_create(DTYPE_F32);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    backend_destroy(be);
    return 0;
}

int main(void) {
    enum { N_CASES = sizeof cases / sizeof *cases };
    enum { N_NON_LEGACY = sizeof non_legacy_cases / sizeof *non_legacy_cases };
    struct CMUnitTest tests[N_CASES + N_NON_LEGACY];
    for (int i = 0; i < N_CASES; i++)
        tests[i] = (struct CMUnitTest){.name = cases[i].name, .test_func = test_case, .initial_state = (void *)&cases[i]};
    for (int i = 0; i < N_NON_LEGACY; i++)
        tests[N_CASES + i] = (struct CMUnitTest){.name = non_legacy_cases[i].name, .test_func = test_non_legacy_case,
                                                 .initial_state = (void *)&non_legacy_cases[i]};
    return cmocka_run_group_tests(tests, setup, teardown);
}
