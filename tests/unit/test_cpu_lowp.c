// The CPU backend with bfloat16 / float16 activations (kernels/cpu/cpu_lowp.c) against its
// definition: every activation slot gives, bit for bit, round(float32 kernel(widened inputs)), the
// float32 kernel being the float32 backend's, run here on the same widened values; convolutions and
// dense layers on their weights rounded to the activation type, and a convolution's weight gradient
// rounded before it is added. Other float32 operands (statistics, biases, their gradients and the
// dense weight gradient) come out bitwise as the float32 backend's, and
// "+=" outputs start from non-zero values so that accumulation onto them is checked. Guard
// elements after every activation tensor must stay untouched. Last, a small model (Conv,
// Bottleneck) in reduced precision against float32, with a tolerance from the formats' precision.
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "framework/core/rng.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "layers/graph.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

// Every activation tensor below has at most this many elements: the scratch reservation.
enum { TEST_LARGEST = 1 << 16 };
enum { TEST_GUARDS = 8 };                      // guard elements after each activation tensor
static const uint16_t test_guard_bits = 0x7bad;  // a finite value in both formats

// The backends of the running test: `lp` stores activations as `t`, `ref` is the float32 backend.
typedef struct TestEnv {
    DType t;
    Backend *lp, *ref;
} TestEnv;

static TestEnv env;

// ---- operands --------------------------------------------------------------------------------------

// An activation operand: n values of type env.t (then guards) for lp, the same values widened for ref.
typedef struct TestAct {
    int64_t n;
    void *lp;
    float *ref;
} TestAct;

// Random values in [lo, hi), rounded to env.t. CPU backend memory is host memory: the test writes
// it directly, independently of the transfers under test.
static TestAct test_act_create(int64_t n, float lo, float hi, uint64_t seed) {
    assert_true(n <= TEST_LARGEST);
    TestAct a = {.n = n,
                 .lp = env.lp->ops->alloc(env.lp, backend_act_bytes(env.lp, n + TEST_GUARDS)),
                 .ref = env.ref->ops->alloc(env.ref, (size_t)n * sizeof(float))};
    test_fill_uniform(a.ref, n, lo, hi, seed);
    for (int64_t i = 0; i < n; i++) {
        dtype_store(env.t, a.lp, (size_t)i, a.ref[i]);
        a.ref[i] = dtype_load(env.t, a.lp, (size_t)i);
    }
    for (int64_t g = 0; g < TEST_GUARDS; g++) ((uint16_t *)a.lp)[n + g] = test_guard_bits;
    return a;
}

// Checks lp == round(ref) bitwise everywhere and the guards intact (on inputs: that they were left
// alone; on outputs: the slot's definition), then sets ref to the widened lp values, so that the
// next slot starts both backends from the same values again.
static void test_act_expect(const char *what, TestAct *a) {
    int64_t wrong = 0;
    for (int64_t i = 0; i < a->n; i++) {
        const uint16_t want = env.t == DTYPE_BF16 ? float_to_bf16(a->ref[i]) : float_to_f16(a->ref[i]);
        const uint16_t got = ((const uint16_t *)a->lp)[i];
        if (got != want && wrong++ < 5)
            fprintf(stderr, "%s %s[%lld]: 0x%04x, want 0x%04x (round of %.9g)\n", dtype_name(env.t), what,
                    (long long)i, got, want, (double)a->ref[i]);
    }
    for (int64_t g = 0; g < TEST_GUARDS; g++)
        if (((const uint16_t *)a->lp)[a->n + g] != test_guard_bits && wrong++ < 5)
            fprintf(stderr, "%s %s: guard %lld overwritten\n", dtype_name(env.t), what, (long long)g);
    if (wrong) fail_msg("%s %s: %lld elements differ", dtype_name(env.t), what, (long long)wrong);
    for (int64_t i = 0; i < a->n; i++) a->ref[i] = dtype_load(env.t, a->lp, (size_t)i);
}

static void test_act_destroy(TestAct *a) {
    env.lp->ops->free(env.lp, a->lp);
    env.ref->ops->free(env.ref, a->ref);
}

// A float32 operand (parameter, statistic, parameter gradient): the same values on both backends.
typedef struct TestParam {
    int64_t n;
    float *lp, *ref;
} TestParam;

static TestParam test_param_create(int64_t n, float lo, float hi, uint64_t seed) {
    TestParam p = {.n = n,
                   .lp = env.lp->ops->alloc(env.lp, (size_t)n * sizeof(float)),
                   .ref = env.ref->ops->alloc(env.ref, (size_t)n * sizeof(float))};
    test_fill_uniform(p.ref, n, lo, hi, seed);
    memcpy(p.lp, p.ref, (size_t)n * sizeof(float));
    return p;
}

// Float32 results are the float32 kernel's on identical inputs: identical bits.
static void test_param_expect(const char *what, const TestParam *p) {
    if (memcmp(p->lp, p->ref, (size_t)p->n * sizeof(float)))
        fail_msg("%s %s: differs from the float32 backend's", dtype_name(env.t), what);
}

static void test_param_destroy(TestParam *p) {
    env.lp->ops->free(env.lp, p->lp);
    env.ref->ops->free(env.ref, p->ref);
}

// The weights as the reduced-precision layers multiply them: rounded to env.t (for the float32 backend).
static TestParam test_param_rounded(const TestParam *w) {
    TestParam r = test_param_create(w->n, 0.0f, 1.0f, 0);
    for (int64_t i = 0; i < w->n; i++) r.ref[i] = dtype_round(env.t, w->ref[i]);
    return r;
}

static int test_setup(void **state) {
    env.t = *(const DType *)*state;
    env.lp = cpu_backend_create(env.t);
    env.ref = cpu_backend_create(DTYPE_F32);
    assert_true(env.lp->act == env.t && env.lp->host_memory);
    env.lp->ops->reserve_activations(env.lp, TEST_LARGEST);
    return 0;
}

static int test_teardown(void **state) {
    (void)state;
    backend_destroy(env.lp);
    backend_destroy(env.ref);
    env = (TestEnv){0};
    return 0;
}

// ---- memory ----------------------------------------------------------------------------------------

// upload_activation rounds as dtype_store, download_activation widens as dtype_load; zero and copy
// move bytes.
static void test_transfers(void **state) {
    (void)state;
    enum { N = 20000 };  // above the kernels' threading threshold
    float *host = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
    assert_true(host && back);
    test_fill_uniform(host, N, -70000.0f, 70000.0f, 1);  // beyond float16's range at both ends
    TestAct a = test_act_create(N, 0.0f, 1.0f, 2), b = test_act_create(N, 0.0f, 1.0f, 3);
    env.lp->ops->upload_activation(env.lp, a.lp, host, N);
    for (int64_t i = 0; i < N; i++) a.ref[i] = host[i];
    test_act_expect("upload_activation", &a);
    env.lp->ops->download_activation(env.lp, back, a.lp, N);
    for (int64_t i = 0; i < N; i++)
        if (dtype_float_bits(back[i]) != dtype_float_bits(dtype_load(env.t, a.lp, (size_t)i)))
            fail_msg("download_activation[%lld] = %a", (long long)i, (double)back[i]);

    env.lp->ops->copy(env.lp, b.lp, a.lp, backend_act_bytes(env.lp, N));
    memcpy(b.ref, back, N * sizeof(float));
    test_act_expect("copy", &b);
    env.lp->ops->zero(env.lp, b.lp, backend_act_bytes(env.lp, N));
    memset(b.ref, 0, N * sizeof(float));
    test_act_expect("zero", &b);
    test_act_destroy(&a);
    test_act_destroy(&b);
    free(host);
    free(back);
}

// upload_images: interleaved bytes to planes, byte * (1 / 255) rounded once; the float32 backend's
// values are checked against that formula too.
static void test_upload_images(void **state) {
    (void)state;
    enum { N = 2, H = 51, W = 67, ELEMS = N * 3 * H * W };
    uint8_t *bytes = malloc(ELEMS);
    assert_non_null(bytes);
    for (int i = 0; i < ELEMS; i++) bytes[i] = (uint8_t)(rng_uniform(5, (uint64_t)i) * 256.0f);
    TestAct a = test_act_create(ELEMS, 0.0f, 1.0f, 6);
    env.ref->ops->upload_images(env.ref, a.ref, bytes, N, H, W);
    env.lp->ops->upload_images(env.lp, a.lp, bytes, N, H, W);
    for (int img = 0; img < N; img++)
        for (int p = 0; p < H * W; p++)
            for (int c = 0; c < 3; c++) {
                float want = (float)bytes[(img * H * W + p) * 3 + c] * (1.0f / 255.0f);
                if (a.ref[(img * 3 + c) * H * W + p] != want) fail_msg("float32 upload_images differs at %d %d %d", img, c, p);
            }
    test_act_expect("upload_images", &a);
    test_act_destroy(&a);
    free(bytes);
}

// ---- convolution -----------------------------------------------------------------------------------

static void test_conv_case(const ConvDesc *d, bool with_bias) {
    const size_t ws = env.ref->ops->conv_workspace_bytes(env.ref, d);
    env.ref->ops->reserve_workspace(env.ref, ws);
    env.lp->ops->reserve_workspace(env.lp, env.lp->ops->conv_workspace_bytes(env.lp, d));
    const int64_t n_x = (int64_t)conv_desc_x_elems(d), n_y = (int64_t)conv_desc_y_elems(d);
    const int64_t n_w = (int64_t)conv_desc_w_elems(d);
    TestAct x = test_act_create(n_x, -2.0f, 2.0f, 10), y = test_act_create(n_y, -1.0f, 1.0f, 11);
    TestAct dy = test_act_create(n_y, -1.0f, 1.0f, 12), dx = test_act_create(n_x, -1.0f, 1.0f, 13);
    TestParam w = test_param_create(n_w, -0.3f, 0.3f, 14), bias = test_param_create(d->c_out, -0.5f, 0.5f, 15);
    TestParam dw = test_param_create(n_w, -1.0f, 1.0f, 16), dbias = test_param_create(d->c_out, -1.0f, 1.0f, 17);
    TestParam w_rounded = test_param_rounded(&w), dw_step = test_param_create(n_w, 0.0f, 0.0f, 18);
    const float *b_lp = with_bias ? bias.lp : NULL, *b_ref = with_bias ? bias.ref : NULL;

    env.lp->ops->conv2d_forward(env.lp, d, x.lp, w.lp, b_lp, y.lp);
    env.ref->ops->conv2d_forward(env.ref, d, x.ref, w_rounded.ref, b_ref, y.ref);
    test_act_expect("conv2d_forward y", &y);
    test_act_expect("conv2d_forward x", &x);

    env.lp->ops->conv2d_backward_data(env.lp, d, dy.lp, w.lp, dx.lp);
    env.ref->ops->conv2d_backward_data(env.ref, d, dy.ref, w_rounded.ref, dx.ref);
    test_act_expect("conv2d_backward_data dx", &dx);
    test_act_expect("conv2d_backward_data dy", &dy);

    env.lp->ops->conv2d_backward_filter(env.lp, d, x.lp, dy.lp, dw.lp, with_bias ? dbias.lp : NULL);
    env.ref->ops->conv2d_backward_filter(env.ref, d, x.ref, dy.ref, dw_step.ref, with_bias ? dbias.ref : NULL);
    for (int64_t i = 0; i < n_w; i++) dw.ref[i] += dtype_round(env.t, dw_step.ref[i]);
    test_param_expect("conv2d_backward_filter dw", &dw);
    test_param_expect("conv2d_backward_filter dbias", &dbias);
    test_param_expect("conv2d weights", &w);

    test_act_destroy(&x);
    test_act_destroy(&y);
    test_act_destroy(&dy);
    test_act_destroy(&dx);
    test_param_destroy(&w);
    test_param_destroy(&bias);
    test_param_destroy(&dw);
    test_param_destroy(&dbias);
    test_param_destroy(&w_rounded);
    test_param_destroy(&dw_step);
}

static void test_conv(void **state) {
    (void)state;
    // Strided, padded, grouped, with a bias; then pointwise without.
    ConvDesc strided = conv_desc_make(&(ConvDesc){.n = 2, .c_in = 8, .h_in = 40, .w_in = 36, .c_out = 12, .kh = 3,
                                                  .kw = 3, .stride = 2, .pad = 1, .dilation = 1, .groups = 2});
    ConvDesc pointwise = conv_desc_make(&(ConvDesc){.n = 2, .c_in = 16, .h_in = 24, .w_in = 24, .c_out = 8, .kh = 1,
                                                    .kw = 1, .stride = 1, .pad = 0, .dilation = 1, .groups = 1});
    test_conv_case(&strided, true);
    test_conv_case(&pointwise, false);
}

// ---- batch norm ------------------------------------------------------------------------------------

// Each slot with `act` fused in; with SiLU the float32 kernel keeps z in float, so only y and dx
// are rounded, as for the plain batch norm.
static void test_batchnorm_case(ActivationSpec act) {
    enum { N = 2, C = 6, HW = 40 * 40, ELEMS = N * C * HW };
    TestAct x = test_act_create(ELEMS, -3.0f, 5.0f, 20), y = test_act_create(ELEMS, -1.0f, 1.0f, 21);
    TestAct dy = test_act_create(ELEMS, -1.0f, 1.0f, 22), dx = test_act_create(ELEMS, -1.0f, 1.0f, 23);
    TestParam gamma = test_param_create(C, 0.5f, 1.5f, 24), beta = test_param_create(C, -0.5f, 0.5f, 25);
    TestParam mean = test_param_create(C, -0.1f, 0.1f, 26), var = test_param_create(C, 0.5f, 1.5f, 27);
    TestParam save_mean = test_param_create(C, 0.0f, 1.0f, 28), save_invstd = test_param_create(C, 0.0f, 1.0f, 29);
    TestParam dgamma = test_param_create(C, -1.0f, 1.0f, 30), dbeta = test_param_create(C, -1.0f, 1.0f, 31);

    env.lp->ops->batchnorm_forward_infer(env.lp, &(BatchNormInferArgs){.n = N, .c = C, .hw = HW, .x = x.lp,
                                                                       .gamma = gamma.lp, .beta = beta.lp,
                                                                       .running_mean = mean.lp, .running_var = var.lp,
                                                                       .eps = 1e-3f, .act = act, .y = y.lp});
    env.ref->ops->batchnorm_forward_infer(env.ref, &(BatchNormInferArgs){.n = N, .c = C, .hw = HW, .x = x.ref,
                                                                         .gamma = gamma.ref, .beta = beta.ref,
                                                                         .running_mean = mean.ref,
                                                                         .running_var = var.ref, .eps = 1e-3f,
                                                                         .act = act, .y = y.ref});
    test_act_expect("batchnorm_forward_infer y", &y);

    env.lp->ops->batchnorm_forward_train(env.lp, &(BatchNormTrainArgs){.n = N, .c = C, .hw = HW, .x = x.lp,
                                                                       .gamma = gamma.lp, .beta = beta.lp,
                                                                       .running_mean = mean.lp, .running_var = var.lp,
                                                                       .momentum = 0.1f, .eps = 1e-3f, .act = act,
                                                                       .y = y.lp, .save_mean = save_mean.lp,
                                                                       .save_invstd = save_invstd.lp});
    env.ref->ops->batchnorm_forward_train(env.ref, &(BatchNormTrainArgs){.n = N, .c = C, .hw = HW, .x = x.ref,
                                                                         .gamma = gamma.ref, .beta = beta.ref,
                                                                         .running_mean = mean.ref,
                                                                         .running_var = var.ref, .momentum = 0.1f,
                                                                         .eps = 1e-3f, .act = act, .y = y.ref,
                                                                         .save_mean = save_mean.ref,
                                                                         .save_invstd = save_invstd.ref});
    test_act_expect("batchnorm_forward_train y", &y);
    test_param_expect("batchnorm running_mean", &mean);
    test_param_expect("batchnorm running_var", &var);
    test_param_expect("batchnorm save_mean", &save_mean);
    test_param_expect("batchnorm save_invstd", &save_invstd);

    env.lp->ops->batchnorm_backward(env.lp, &(BatchNormBackwardArgs){.n = N, .c = C, .hw = HW, .x = x.lp, .dy = dy.lp,
                                                                     .gamma = gamma.lp, .beta = beta.lp,
                                                                     .save_mean = save_mean.lp,
                                                                     .save_invstd = save_invstd.lp, .act = act,
                                                                     .dx = dx.lp, .dgamma = dgamma.lp,
                                                                     .dbeta = dbeta.lp});
    env.ref->ops->batchnorm_backward(env.ref, &(BatchNormBackwardArgs){.n = N, .c = C, .hw = HW, .x = x.ref,
                                                                       .dy = dy.ref, .gamma = gamma.ref,
                                                                       .beta = beta.ref, .save_mean = save_mean.ref,
                                                                       .save_invstd = save_invstd.ref, .act = act,
                                                                       .dx = dx.ref, .dgamma = dgamma.ref,
                                                                       .dbeta = dbeta.ref});
    test_act_expect("batchnorm_backward dx", &dx);
    test_act_expect("batchnorm_backward x", &x);
    test_act_expect("batchnorm_backward dy", &dy);
    test_param_expect("batchnorm_backward dgamma", &dgamma);
    test_param_expect("batchnorm_backward dbeta", &dbeta);

    TestAct *acts[] = {&x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) test_act_destroy(acts[i]);
    TestParam *params[] = {&gamma, &beta, &mean, &var, &save_mean, &save_invstd, &dgamma, &dbeta};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) test_param_destroy(params[i]);
}

static void test_batchnorm(void **state) {
    (void)state;
    test_batchnorm_case(ACTIVATION_SPEC_NONE);
    test_batchnorm_case(ACTIVATION_SPEC_SILU);
}

// ---- element-wise ----------------------------------------------------------------------------------

static void test_elementwise(void **state) {
    (void)state;
    enum { N = 20000 };
    TestAct x = test_act_create(N, -6.0f, 6.0f, 40), y = test_act_create(N, -1.0f, 1.0f, 41);
    TestAct dy = test_act_create(N, -1.0f, 1.0f, 42), dx = test_act_create(N, -1.0f, 1.0f, 43);

    for (int k = 0; k < ACTIVATION_COUNT; k++) {
        const ActivationSpec act = {.kind = (Activation)k, .negative_slope = 0.1f};
        env.lp->ops->activation_forward(env.lp, act, x.lp, y.lp, N);
        env.ref->ops->activation_forward(env.ref, act, x.ref, y.ref, N);
        test_act_expect("activation_forward y", &y);
        env.lp->ops->activation_backward(env.lp, act, x.lp, dy.lp, dx.lp, N);
        env.ref->ops->activation_backward(env.ref, act, x.ref, dy.ref, dx.ref, N);
        test_act_expect("activation_backward dx", &dx);
    }
    env.lp->ops->add(env.lp, x.lp, dy.lp, y.lp, N);
    env.ref->ops->add(env.ref, x.ref, dy.ref, y.ref, N);
    test_act_expect("add y", &y);
    env.lp->ops->accumulate(env.lp, x.lp, dx.lp, N);
    env.ref->ops->accumulate(env.ref, x.ref, dx.ref, N);
    test_act_expect("accumulate dst", &dx);
    test_act_expect("element-wise x", &x);
    test_act_expect("element-wise dy", &dy);

    test_act_destroy(&x);
    test_act_destroy(&y);
    test_act_destroy(&dy);
    test_act_destroy(&dx);
}

// A box of channels x positions between tensors of different shapes; elements outside the box keep
// their values (test_act_expect compares them too).
static void test_copy_box(void **state) {
    (void)state;
    enum { N = 2, SRC_C = 10, SRC_S = 300, DST_C = 7, DST_S = 400 };
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        TestAct src = test_act_create(N * SRC_C * SRC_S, -1.0f, 1.0f, 50);
        TestAct dst = test_act_create(N * DST_C * DST_S, -1.0f, 1.0f, 51);
        CopyBoxArgs box = {.n = N, .src = src.lp, .src_c = SRC_C, .src_c0 = 3, .src_s = SRC_S, .src_s0 = 20,
                           .dst = dst.lp, .dst_c = DST_C, .dst_c0 = 1, .dst_s = DST_S, .dst_s0 = 100, .count_c = 5,
                           .count_s = 250, .accumulate = accumulate};
        env.lp->ops->copy_box(env.lp, &box);
        box.src = src.ref;
        box.dst = dst.ref;
        env.ref->ops->copy_box(env.ref, &box);
        test_act_expect(accumulate ? "copy_box accumulate dst" : "copy_box dst", &dst);
        test_act_expect("copy_box src", &src);
        test_act_destroy(&src);
        test_act_destroy(&dst);
    }
}

// ---- resampling and pooling ------------------------------------------------------------------------

static void test_pooling(void **state) {
    (void)state;
    enum { N = 2, C = 4, H = 30, W = 40, F = 2, K = 5, ELEMS = N * C * H * W };
    TestAct x = test_act_create(ELEMS, -2.0f, 2.0f, 60), dx = test_act_create(ELEMS, -1.0f, 1.0f, 61);
    TestAct up = test_act_create(ELEMS * F * F, -1.0f, 1.0f, 62), dup = test_act_create(ELEMS * F * F, -1.0f, 1.0f, 63);
    TestAct pooled = test_act_create(ELEMS, -1.0f, 1.0f, 64), dpooled = test_act_create(ELEMS, -1.0f, 1.0f, 65);
    TestAct avg = test_act_create(N * C, -1.0f, 1.0f, 66), davg = test_act_create(N * C, -1.0f, 1.0f, 67);

    env.lp->ops->upsample_nearest_forward(env.lp, N, C, H, W, F, x.lp, up.lp);
    env.ref->ops->upsample_nearest_forward(env.ref, N, C, H, W, F, x.ref, up.ref);
    test_act_expect("upsample_nearest_forward y", &up);
    env.lp->ops->upsample_nearest_backward(env.lp, N, C, H, W, F, dup.lp, dx.lp);
    env.ref->ops->upsample_nearest_backward(env.ref, N, C, H, W, F, dup.ref, dx.ref);
    test_act_expect("upsample_nearest_backward dx", &dx);

    const Pool2dArgs sppf = pool2d_args_out(&(Pool2dArgs){.n = N, .c = C, .h = H, .w = W, .k = K, .stride = 1, .pad = K / 2});
    Pool2dArgs lp = sppf, ref = sppf;
    lp.x = x.lp, lp.y = pooled.lp, lp.dy = dpooled.lp, lp.dx = dx.lp;
    ref.x = x.ref, ref.y = pooled.ref, ref.dy = dpooled.ref, ref.dx = dx.ref;
    env.lp->ops->maxpool2d_forward(env.lp, &lp);
    env.ref->ops->maxpool2d_forward(env.ref, &ref);
    test_act_expect("maxpool2d_forward y", &pooled);
    env.lp->ops->maxpool2d_backward(env.lp, &lp);
    env.ref->ops->maxpool2d_backward(env.ref, &ref);
    test_act_expect("maxpool2d_backward dx", &dx);

    env.lp->ops->avgpool_forward(env.lp, N, C, H * W, x.lp, avg.lp);
    env.ref->ops->avgpool_forward(env.ref, N, C, H * W, x.ref, avg.ref);
    test_act_expect("avgpool_forward y", &avg);
    env.lp->ops->avgpool_backward(env.lp, N, C, H * W, davg.lp, dx.lp);
    env.ref->ops->avgpool_backward(env.ref, N, C, H * W, davg.ref, dx.ref);
    test_act_expect("avgpool_backward dx", &dx);

    // The general pools (stride 2, padding 1) and zero padding, into the same buffers (smaller outputs).
    const Pool2dArgs strided = pool2d_args_out(&(Pool2dArgs){.n = N, .c = C, .h = H, .w = W, .k = 3, .stride = 2, .pad = 1});
    lp = strided, ref = strided;
    lp.x = x.lp, lp.y = pooled.lp, lp.dy = dpooled.lp, lp.dx = dx.lp;
    ref.x = x.ref, ref.y = pooled.ref, ref.dy = dpooled.ref, ref.dx = dx.ref;
    env.lp->ops->maxpool2d_forward(env.lp, &lp);
    env.ref->ops->maxpool2d_forward(env.ref, &ref);
    test_act_expect("maxpool2d_forward strided y", &pooled);
    env.lp->ops->maxpool2d_backward(env.lp, &lp);
    env.ref->ops->maxpool2d_backward(env.ref, &ref);
    test_act_expect("maxpool2d_backward strided dx", &dx);
    env.lp->ops->avgpool2d_forward(env.lp, &lp);
    env.ref->ops->avgpool2d_forward(env.ref, &ref);
    test_act_expect("avgpool2d_forward y", &pooled);
    env.lp->ops->avgpool2d_backward(env.lp, &lp);
    env.ref->ops->avgpool2d_backward(env.ref, &ref);
    test_act_expect("avgpool2d_backward dx", &dx);
    // Pad (30, 40) to (31, 41) into up, which holds four times as many elements.
    const Pad2dArgs pad = {.n = N, .c = C, .h = H, .w = W, .right = 1, .bottom = 1};
    Pad2dArgs pad_lp = pad, pad_ref = pad;
    pad_lp.x = x.lp, pad_lp.y = up.lp, pad_lp.dy = dup.lp, pad_lp.dx = dx.lp;
    pad_ref.x = x.ref, pad_ref.y = up.ref, pad_ref.dy = dup.ref, pad_ref.dx = dx.ref;
    env.lp->ops->pad2d_forward(env.lp, &pad_lp);
    env.ref->ops->pad2d_forward(env.ref, &pad_ref);
    test_act_expect("pad2d_forward y", &up);
    env.lp->ops->pad2d_backward(env.lp, &pad_lp);
    env.ref->ops->pad2d_backward(env.ref, &pad_ref);
    test_act_expect("pad2d_backward dx", &dx);
    TestParam bias = test_param_create(C, -1.0f, 1.0f, 68), dbias = test_param_create(C, -1.0f, 1.0f, 69);
    env.lp->ops->channel_bias_forward(env.lp, N, C, H * W, bias.lp, dx.lp);
    env.ref->ops->channel_bias_forward(env.ref, N, C, H * W, bias.ref, dx.ref);
    test_act_expect("channel_bias_forward y", &dx);
    env.lp->ops->channel_bias_backward(env.lp, N, C, H * W, x.lp, dbias.lp);
    env.ref->ops->channel_bias_backward(env.ref, N, C, H * W, x.ref, dbias.ref);
    test_param_expect("channel_bias_backward db", &dbias);
    test_param_destroy(&bias);
    test_param_destroy(&dbias);

    test_act_expect("pooling x", &x);
    test_act_expect("pooling dy", &dup);
    TestAct *acts[] = {&x, &dx, &up, &dup, &pooled, &dpooled, &avg, &davg};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) test_act_destroy(acts[i]);
}

// ---- dense -----------------------------------------------------------------------------------------

static void test_linear(void **state) {
    (void)state;
    enum { N = 4, IN = 300, OUT = 50 };
    TestAct x = test_act_create(N * IN, -2.0f, 2.0f, 70), y = test_act_create(N * OUT, -1.0f, 1.0f, 71);
    TestAct dy = test_act_create(N * OUT, -1.0f, 1.0f, 72), dx = test_act_create(N * IN, -1.0f, 1.0f, 73);
    TestParam w = test_param_create(OUT * IN, -0.1f, 0.1f, 74), b = test_param_create(OUT, -0.5f, 0.5f, 75);
    TestParam dw = test_param_create(OUT * IN, -1.0f, 1.0f, 76), db = test_param_create(OUT, -1.0f, 1.0f, 77);
    TestParam w_rounded = test_param_rounded(&w);

    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        env.lp->ops->linear_forward(env.lp, N, IN, OUT, x.lp, w.lp, with_bias ? b.lp : NULL, y.lp);
        env.ref->ops->linear_forward(env.ref, N, IN, OUT, x.ref, w_rounded.ref, with_bias ? b.ref : NULL, y.ref);
        test_act_expect(with_bias ? "linear_forward y (bias)" : "linear_forward y", &y);
    }
    env.lp->ops->linear_backward(env.lp, &(LinearBackwardArgs){.n = N, .in = IN, .out = OUT, .x = x.lp, .w = w.lp,
                                                               .dy = dy.lp, .dx = dx.lp, .dw = dw.lp, .db = db.lp});
    env.ref->ops->linear_backward(env.ref, &(LinearBackwardArgs){.n = N, .in = IN, .out = OUT, .x = x.ref,
                                                                 .w = w_rounded.ref, .dy = dy.ref, .dx = dx.ref,
                                                                 .dw = dw.ref, .db = db.ref});
    test_act_expect("linear_backward dx", &dx);
    test_param_expect("linear_backward dw", &dw);
    test_param_expect("linear_backward db", &db);
    // Without dx (the first layer) and without a bias: the weight gradient alone.
    env.lp->ops->linear_backward(env.lp, &(LinearBackwardArgs){.n = N, .in = IN, .out = OUT, .x = x.lp, .w = w.lp,
                                                               .dy = dy.lp, .dx = NULL, .dw = dw.lp, .db = NULL});
    env.ref->ops->linear_backward(env.ref, &(LinearBackwardArgs){.n = N, .in = IN, .out = OUT, .x = x.ref,
                                                                 .w = w_rounded.ref, .dy = dy.ref, .dx = NULL,
                                                                 .dw = dw.ref, .db = NULL});
    test_param_expect("linear_backward dw (no dx)", &dw);
    test_act_expect("linear_backward dx (untouched)", &dx);
    test_act_expect("linear x", &x);
    test_act_expect("linear dy", &dy);

    TestAct *acts[] = {&x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) test_act_destroy(acts[i]);
    TestParam *params[] = {&w, &b, &dw, &db, &w_rounded};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) test_param_destroy(params[i]);
}

// ---- attention -------------------------------------------------------------------------------------

// attention_forward stores P = round(the float32 backend's P) and y = round(V · Pᵀ) of the stored P,
// computed here per (image, area, head) with the float32 gemm slot on the widened values;
// attention_backward is the float32 kernel with dS rounded to the activation type
// (cpu_attention_backward_rounded) on the widened qkv, stored P, dy and dqkv.
static void test_attention_case(const AttentionArgs *shape, uint64_t seed) {
    const int64_t na = attention_area_tokens(shape), t = shape->tokens;
    const int64_t n_qkv = (int64_t)attention_qkv_elems(shape), n_y = (int64_t)attention_y_elems(shape);
    TestAct qkv = test_act_create(n_qkv, -1.5f, 1.5f, seed), probs = test_act_create((int64_t)attention_probs_elems(shape), 0.0f, 1.0f, seed + 1);
    TestAct y = test_act_create(n_y, -1.0f, 1.0f, seed + 2), dy = test_act_create(n_y, -1.0f, 1.0f, seed + 3);
    TestAct dqkv = test_act_create(n_qkv, -1.0f, 1.0f, seed + 4);
    AttentionArgs lp = *shape, ref = *shape;
    lp.qkv = qkv.lp, lp.probs = probs.lp, lp.y = y.lp, lp.dy = dy.lp, lp.dqkv = dqkv.lp;
    ref.qkv = qkv.ref, ref.probs = probs.ref, ref.y = y.ref, ref.dy = dy.ref, ref.dqkv = dqkv.ref;
    env.lp->ops->reserve_workspace(env.lp, env.lp->ops->attention_workspace_bytes(env.lp, &lp));
    env.ref->ops->reserve_workspace(env.ref, env.ref->ops->attention_workspace_bytes(env.ref, &ref));

    env.lp->ops->attention_forward(env.lp, &lp);
    env.ref->ops->attention_forward(env.ref, &ref);
    test_act_expect("attention_forward probs", &probs);
    for (int64_t item = 0; item < shape->n * shape->areas * shape->heads; item++) {
        const int64_t h = item % shape->heads, area = item / shape->heads % shape->areas;
        const int64_t img = item / (shape->heads * shape->areas);
        const float *v = qkv.ref + (img * shape->qkv_c + h * shape->head_stride + shape->v_c0) * t + area * na;
        float *yh = y.ref + (img * shape->heads + h) * shape->head_dim * t + area * na;
        env.ref->ops->gemm(env.ref, false, true, shape->head_dim, na, na, 1.0f, v, t, probs.ref + item * na * na, na,
                           0.0f, yh, t);
    }
    test_act_expect("attention_forward y", &y);

    env.lp->ops->attention_backward(env.lp, &lp);
    const size_t work_bytes = cpu_attention_rows_bytes(&ref);
    float *work = malloc(work_bytes);
    assert_non_null(work);
    cpu_attention_backward_rounded(env.ref, &ref, env.t, work, work_bytes);
    free(work);
    test_act_expect("attention_backward dqkv", &dqkv);
    test_act_expect("attention qkv", &qkv);
    test_act_expect("attention dy", &dy);
    TestAct *acts[] = {&qkv, &probs, &y, &dy, &dqkv};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) test_act_destroy(acts[i]);
}

// Attention's layout (key_dim 4 ≠ head_dim 6, 7 tokens, 3 channels past the heads) and AAttn's (4 areas).
static void test_attention(void **state) {
    (void)state;
    test_attention_case(&(AttentionArgs){.n = 2, .tokens = 7, .areas = 1, .heads = 3, .key_dim = 4, .head_dim = 6,
                                         .qkv_c = 45, .head_stride = 14, .q_c0 = 0, .k_c0 = 4, .v_c0 = 8,
                                         .scale = 0.5f},
                        80);
    test_attention_case(&(AttentionArgs){.n = 2, .tokens = 16, .areas = 4, .heads = 3, .key_dim = 4, .head_dim = 4,
                                         .qkv_c = 36, .head_stride = 12, .q_c0 = 0, .k_c0 = 4, .v_c0 = 8,
                                         .scale = 0.5f},
                        90);
}

// ---- a whole module --------------------------------------------------------------------------------

static Graph *test_graph_create(Backend *be, const char *yaml_path, ModelSpec **spec) {
    Error err = {0};
    Graph *g = NULL;
    GraphOptions opt = {.batch = 2, .imgsz_h = 24, .imgsz_w = 20, .be = be, .seed = 7};
    if (!model_spec_load(yaml_path, NULL, spec, &err) || !graph_create(*spec, &opt, &g, &err))
        fail_msg("%s", err.message);
    return g;
}

// One training-mode forward and backward of a Conv (k3 s2: convolution, batch norm, SiLU) then a
// Bottleneck (two Convs and the residual add) in reduced precision against float32 from the same
// parameters and input: the output and every parameter gradient within 2e-2 of the tensor's largest
// value. Why 2e-2: bfloat16 keeps 8 significant bits, so each stored activation is off by up to
// 2^-8 = 3.9e-3 relative, and every value here has passed through a few such roundings (input,
// convolution, batch norm, SiLU, per block; the same again backward) whose errors mostly average
// out (measured: 7.9e-3 at worst in bf16, 3.2e-3 in fp16, which keeps 11 bits). Deeper chains need
// more: in a C2f, cv1's batch-norm gradients are sums of terms that the batch norms after it made
// zero-mean, and that cancellation takes them to 3.8e-2 in bf16.
static void test_module(void **state) {
    (void)state;
    char path[] = "/tmp/yolopipe-lowp-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    close(fd);
    test_write_text(path, "nc: 3\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\n  - [-1, 1, Bottleneck, [8]]\nhead: []\n");
    ModelSpec *spec_lp, *spec_ref;
    Graph *lp = test_graph_create(env.lp, path, &spec_lp), *ref = test_graph_create(env.ref, path, &spec_ref);
    unlink(path);
    assert_int_equal(lp->param_elems, ref->param_elems);
    assert_memory_equal(lp->param_data, ref->param_data, (size_t)lp->param_elems * sizeof(float));

    const int64_t n_in = tensor_elems(&ref->input);
    float *input = malloc((size_t)n_in * sizeof(float));
    assert_non_null(input);
    test_fill_uniform(input, n_in, -1.0f, 1.0f, 80);
    Graph *graphs[] = {lp, ref};
    for (int k = 0; k < 2; k++) {
        Backend *be = graphs[k]->be;
        be->ops->upload_activation(be, graphs[k]->input.data, input, (size_t)n_in);
        graph_forward(graphs[k], true);
    }
    const int64_t n_out = tensor_elems(&graph_output(ref)->out);
    float *out[2], *r = malloc((size_t)n_out * sizeof(float));
    assert_non_null(r);
    test_fill_uniform(r, n_out, -1.0f, 1.0f, 81);
    for (int k = 0; k < 2; k++) {
        Backend *be = graphs[k]->be;
        Layer *o = graph_output(graphs[k]);
        out[k] = malloc((size_t)n_out * sizeof(float));
        assert_non_null(out[k]);
        be->ops->download_activation(be, out[k], o->out.data, (size_t)n_out);
        be->ops->upload_activation(be, o->dout.data, r, (size_t)n_out);
        graph_zero_grads(graphs[k]);
        graph_backward(graphs[k]);
    }
    const double tol = 2e-2;
    double err = close_peak_error(out[0], out[1], n_out), worst = err;
    if (!(err <= tol)) fail_msg("%s output: %.3g relative to float32", dtype_name(env.t), err);
    for (int i = 0; i < ref->n_params; i++) {
        const ParamInfo *p = &ref->params[i];
        if (p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)) continue;
        err = close_peak_error(lp->grad_data + p->offset, ref->grad_data + p->offset, p->n_elems);
        if (!(err <= tol)) fail_msg("%s %s gradient: %.3g relative to float32", dtype_name(env.t), p->name, err);
        worst = fmax(worst, err);
    }
    fprintf(stderr, "%s module: worst relative error %.3g (tolerance %.3g)\n", dtype_name(env.t), worst, tol);
    for (int k = 0; k < 2; k++) free(out[k]);
    free(r);
    free(input);
    graph_destroy(lp);
    graph_destroy(ref);
    model_spec_destroy(spec_lp);
    model_spec_destroy(spec_ref);
}

int main(void) {
    static const DType types[] = {DTYPE_BF16, DTYPE_F16};
    static const struct {
        const char *name;
        CMUnitTestFunction func;
    } checks[] = {{"transfers", test_transfers}, {"upload_images", test_upload_images}, {"conv", test_conv},
                  {"batchnorm", test_batchnorm},
                  {"elementwise", test_elementwise}, {"copy_box", test_copy_box}, {"pooling", test_pooling},
                  {"linear", test_linear},       {"attention", test_attention}, {"module", test_module}};
    enum { N_TYPES = sizeof types / sizeof *types, N_CHECKS = sizeof checks / sizeof *checks };
    static char names[N_TYPES][N_CHECKS][32];
    struct CMUnitTest tests[N_TYPES * N_CHECKS];
    for (int t = 0; t < N_TYPES; t++) {
        for (int k = 0; k < N_CHECKS; k++) {
            snprintf(names[t][k], sizeof names[t][k], "%s %s", dtype_name(types[t]), checks[k].name);
            tests[t * N_CHECKS + k] = (struct CMUnitTest){.name = names[t][k], .test_func = checks[k].func,
                                                          .setup_func = test_setup, .teardown_func = test_teardown,
                                                          .initial_state = (void *)&types[t]};
        }
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
