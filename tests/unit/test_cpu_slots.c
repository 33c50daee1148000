// The CPU backend's issue-17 slots (activations, fused batch-norm activations, general max- and
// average pools, zero padding, the per-channel bias) against naive double references written here
// from PyTorch's definitions, and every backward against central finite differences of its forward.
// CPU backend memory is host memory, so the kernels run on malloc'd arrays directly.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

static Backend *be;

static float *floats(int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    assert_non_null(p);
    return p;
}

static double *doubles(int64_t n) {
    double *p = calloc((size_t)n, sizeof(double));
    assert_non_null(p);
    return p;
}

// ---- activations -------------------------------------------------------------------------------------

static const ActivationSpec all_acts[] = {
    {ACTIVATION_NONE, 0.0f},      {ACTIVATION_SILU, 0.0f},      {ACTIVATION_RELU, 0.0f},
    {ACTIVATION_LEAKY_RELU, 0.1f}, {ACTIVATION_RELU6, 0.0f},     {ACTIVATION_HARDSWISH, 0.0f},
    {ACTIVATION_SIGMOID, 0.0f},   {ACTIVATION_TANH, 0.0f},
};
enum { N_ACTS = sizeof all_acts / sizeof *all_acts };
_Static_assert((int)N_ACTS == (int)ACTIVATION_COUNT, "every activation has a case");

// PyTorch's forward and its backward's derivative, in double (the derivative's conventions at the
// kinks: ReLU 0 at 0, LeakyReLU the slope at 0, ReLU6 0 at 0 and 6, Hardswish x / 3 + 0.5 on [-3, 3]).
static double ref_act(ActivationSpec a, double x, double *deriv) {
    const double s = 1.0 / (1.0 + exp(-x)), t = tanh(x);
    switch (a.kind) {
    case ACTIVATION_SILU: *deriv = s * (1.0 + x * (1.0 - s)); return x * s;
    case ACTIVATION_RELU: *deriv = x > 0 ? 1.0 : 0.0; return x > 0 ? x : 0.0;
    case ACTIVATION_LEAKY_RELU: *deriv = x > 0 ? 1.0 : a.negative_slope; return x > 0 ? x : a.negative_slope * x;
    case ACTIVATION_RELU6: *deriv = x > 0 && x < 6 ? 1.0 : 0.0; return fmin(fmax(x, 0.0), 6.0);
    case ACTIVATION_HARDSWISH:
        *deriv = x < -3 ? 0.0 : x <= 3 ? x / 3.0 + 0.5 : 1.0;
        return x * fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
    case ACTIVATION_SIGMOID: *deriv = s * (1.0 - s); return s;
    case ACTIVATION_TANH: *deriv = 1.0 - t * t; return t;
    default: *deriv = 1.0; return x;
    }
}

typedef struct ActProbe {
    ActivationSpec act;
    float *x, *y, *r;
    int64_t n;
} ActProbe;

static double act_loss(void *ctx) {
    ActProbe *p = ctx;
    be->ops->activation_forward(be, p->act, p->x, p->y, (size_t)p->n);
    return test_dot(p->y, p->r, p->n);
}

// Inputs away from the kinks (|x - kink| > 2h) for the finite differences; the kinks themselves
// are checked exactly against the conventions.
static void test_activations(void **state) {
    (void)state;
    enum { N = 20000 };  // the threaded path
    for (int k = 0; k < N_ACTS; k++) {
        const ActivationSpec act = all_acts[k];
        ActProbe p = {.act = act, .x = floats(N), .y = floats(N), .r = floats(N), .n = N};
        float *dx = floats(N);
        double *want = doubles(N), *dwant = doubles(N);
        test_fill_uniform(p.x, N, -8.0f, 8.0f, 100 + (uint64_t)k);
        test_fill_uniform(p.r, N, -1.0f, 1.0f, 200 + (uint64_t)k);
        for (int i = 0; i < N; i++) {
            const float kinks[] = {0.0f, 6.0f, -3.0f, 3.0f};
            for (int j = 0; j < 4; j++)
                if (fabsf(p.x[i] - kinks[j]) < 0.05f) p.x[i] = kinks[j] + 0.05f;
            double d;
            want[i] = ref_act(act, p.x[i], &d);
            dwant[i] = p.r[i] * d;
        }
        char what[64];
        be->ops->activation_forward(be, act, p.x, p.y, N);
        snprintf(what, sizeof what, "activation %d forward", (int)act.kind);
        // expf, tanhf and the division are each within a few ulps.
        assert_true(close_elements(what, p.y, want, N, 1e-6, 1e-5));
        be->ops->activation_backward(be, act, p.x, p.r, dx, N);
        snprintf(what, sizeof what, "activation %d backward", (int)act.kind);
        assert_true(close_elements(what, dx, dwant, N, 1e-6, 1e-5));
        // h = 1e-2 < the 0.05 gap to a kink; O(h^2) truncation against rounding / 2h.
        assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = p.x, .analytic = dx, .n = N, .loss = act_loss,
                                               .ctx = &p, .h = 1e-2f, .atol = 1e-4, .rtol = 1e-3,
                                               .max_checks = 300}));
        // Accumulates: a second call doubles dx.
        float *once = floats(N);
        memcpy(once, dx, N * sizeof(float));
        be->ops->activation_backward(be, act, p.x, p.r, dx, N);
        for (int i = 0; i < N; i++) assert_true(dx[i] == 2.0f * once[i]);
        free(once);
        free(p.x);
        free(p.y);
        free(p.r);
        free(dx);
        free(want);
        free(dwant);
    }
}

// PyTorch's values and gradients at the kinks, exactly.
static void test_activation_kinks(void **state) {
    (void)state;
    const struct {
        ActivationSpec act;
        float x, y, grad;  // grad: d act / dx at x, with dy = 1
    } cases[] = {
        {{ACTIVATION_RELU, 0}, 0.0f, 0.0f, 0.0f},         {{ACTIVATION_LEAKY_RELU, 0.1f}, 0.0f, 0.0f, 0.1f},
        {{ACTIVATION_LEAKY_RELU, 0.1f}, -2.0f, -0.2f, 0.1f}, {{ACTIVATION_RELU6, 0}, 0.0f, 0.0f, 0.0f},
        {{ACTIVATION_RELU6, 0}, 6.0f, 6.0f, 0.0f},        {{ACTIVATION_RELU6, 0}, 7.0f, 6.0f, 0.0f},
        {{ACTIVATION_HARDSWISH, 0}, -3.0f, 0.0f, -0.5f},  {{ACTIVATION_HARDSWISH, 0}, 3.0f, 3.0f, 1.5f},
        {{ACTIVATION_HARDSWISH, 0}, -4.0f, 0.0f, 0.0f},   {{ACTIVATION_HARDSWISH, 0}, 4.0f, 4.0f, 1.0f},
        {{ACTIVATION_SIGMOID, 0}, 0.0f, 0.5f, 0.25f},     {{ACTIVATION_TANH, 0}, 0.0f, 0.0f, 1.0f},
        {{ACTIVATION_SILU, 0}, 0.0f, 0.0f, 0.5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float y = NAN, dx = 0.0f, one = 1.0f;
        be->ops->activation_forward(be, cases[i].act, &cases[i].x, &y, 1);
        be->ops->activation_backward(be, cases[i].act, &cases[i].x, &one, &dx, 1);
        if (y != cases[i].y || dx != cases[i].grad)
            fail_msg("activation %d at %g: y %g (want %g), grad %g (want %g)", (int)cases[i].act.kind,
                     (double)cases[i].x, (double)y, (double)cases[i].y, (double)dx, (double)cases[i].grad);
    }
}

// ---- batch norm with each activation fused -------------------------------------------------------------

// The fused slots against batch norm → activation_forward and activation_backward → batch-norm
// backward, bit for bit (backend.h), for every activation.
static void test_batchnorm_fused(void **state) {
    (void)state;
    enum { N = 2, C = 3, HW = 37, E = N * C * HW };
    for (int k = 1; k < N_ACTS; k++) {
        const ActivationSpec act = all_acts[k];
        float *x = floats(E), *r = floats(E), *gamma = floats(C), *beta = floats(C);
        float *rm[2] = {floats(C), floats(C)}, *rv[2] = {floats(C), floats(C)};
        float *sm[2] = {floats(C), floats(C)}, *si[2] = {floats(C), floats(C)};
        float *y[2] = {floats(E), floats(E)}, *z = floats(E), *dz = floats(E);
        float *dx[2] = {floats(E), floats(E)}, *dg[2] = {floats(C), floats(C)}, *db[2] = {floats(C), floats(C)};
        test_fill_uniform(x, E, -3.0f, 5.0f, 300 + (uint64_t)k);
        test_fill_uniform(r, E, -1.0f, 1.0f, 310 + (uint64_t)k);
        test_fill_uniform(gamma, C, 0.5f, 2.0f, 320);
        test_fill_uniform(beta, C, -1.0f, 1.0f, 321);
        for (int s = 0; s < 2; s++) {
            be->ops->fill(be, rv[s], 1.0f, C);
            test_fill_uniform(dx[s], E, -1.0f, 1.0f, 330);  // accumulating onto priors
            be->ops->batchnorm_forward_train(be, &(BatchNormTrainArgs){
                .n = N, .c = C, .hw = HW, .x = x, .gamma = gamma, .beta = beta, .running_mean = rm[s],
                .running_var = rv[s], .momentum = 0.03f, .eps = 1e-3f, .act = s ? ACTIVATION_SPEC_NONE : act,
                .y = s ? z : y[0], .save_mean = sm[s], .save_invstd = si[s]});
        }
        be->ops->activation_forward(be, act, z, y[1], E);
        assert_memory_equal(y[0], y[1], E * sizeof(float));
        be->ops->activation_backward(be, act, z, r, dz, E);
        for (int s = 0; s < 2; s++)
            be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){
                .n = N, .c = C, .hw = HW, .x = x, .dy = s ? dz : r, .gamma = gamma, .beta = beta,
                .save_mean = sm[s], .save_invstd = si[s], .act = s ? ACTIVATION_SPEC_NONE : act, .dx = dx[s],
                .dgamma = dg[s], .dbeta = db[s]});
        assert_memory_equal(dx[0], dx[1], E * sizeof(float));
        assert_memory_equal(dg[0], dg[1], C * sizeof(float));
        assert_memory_equal(db[0], db[1], C * sizeof(float));
        be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = N, .c = C, .hw = HW, .x = x, .gamma = gamma,
                                                                   .beta = beta, .running_mean = rm[0],
                                                                   .running_var = rv[0], .eps = 1e-3f, .act = act,
                                                                   .y = y[0]});
        be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = N, .c = C, .hw = HW, .x = x, .gamma = gamma,
                                                                   .beta = beta, .running_mean = rm[0],
                                                                   .running_var = rv[0], .eps = 1e-3f,
                                                                   .act = ACTIVATION_SPEC_NONE, .y = z});
        be->ops->activation_forward(be, act, z, y[1], E);
        assert_memory_equal(y[0], y[1], E * sizeof(float));
        float *all[] = {x, r, gamma, beta, z, dz, rm[0], rm[1], rv[0], rv[1], sm[0], sm[1], si[0], si[1],
                        y[0], y[1], dx[0], dx[1], dg[0], dg[1], db[0], db[1]};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    }
}

// ---- pools ---------------------------------------------------------------------------------------------

typedef struct PoolProbe {
    Pool2dArgs a;
    bool avg;
    float *x, *y, *r;
} PoolProbe;

static double pool_loss(void *ctx) {
    PoolProbe *p = ctx;
    Pool2dArgs a = p->a;
    a.x = p->x;
    a.y = p->y;
    if (p->avg) be->ops->avgpool2d_forward(be, &a);
    else be->ops->maxpool2d_forward(be, &a);
    return test_dot(p->y, p->r, a.n * a.c * a.h_out * a.w_out);
}

// Naive pools over the zero-padded plane in double: max over the window's real elements (padding
// never wins), first maximum in row-major order; average over k·k with padding counting 0.
static void pool_reference(const Pool2dArgs *a, bool avg, const float *x, const float *dy, double *y, double *dx) {
    for (int64_t p = 0; p < a->n * a->c; p++)
        for (int64_t oh = 0; oh < a->h_out; oh++)
            for (int64_t ow = 0; ow < a->w_out; ow++) {
                const int64_t o = (p * a->h_out + oh) * a->w_out + ow;
                int64_t best = -1;
                double sum = 0.0;
                for (int64_t i = 0; i < a->k; i++)
                    for (int64_t j = 0; j < a->k; j++) {
                        const int64_t ih = oh * a->stride - a->pad + i, iw = ow * a->stride - a->pad + j;
                        if (ih < 0 || ih >= a->h || iw < 0 || iw >= a->w) continue;
                        const int64_t at = (p * a->h + ih) * a->w + iw;
                        sum += x[at];
                        if (avg && dy) dx[at] += dy[o] / (double)(a->k * a->k);
                        if (best < 0 || x[at] > x[best]) best = at;
                    }
                y[o] = avg ? sum / (double)(a->k * a->k) : x[best];
                if (!avg && dy) dx[best] += dy[o];
            }
}

static void pool_check(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad, bool avg,
                       uint64_t seed) {
    PoolProbe p = {.a = pool2d_args_out(&(Pool2dArgs){.n = n, .c = c, .h = h, .w = w, .k = k, .stride = stride,
                                                      .pad = pad}),
                   .avg = avg};
    const int64_t nx = n * c * h * w, ny = n * c * p.a.h_out * p.a.w_out;
    p.x = floats(nx);
    p.y = floats(ny);
    p.r = floats(ny);
    float *dx = floats(nx);
    double *want = doubles(ny), *dwant = doubles(nx);
    // Max: distinct negative values 0.01 apart (a permutation, nx not a multiple of 7919): no ties,
    // zero padding would win if it took part, and h = 1e-3 never changes an argmax. Average: U(-1, 1).
    if (avg) test_fill_uniform(p.x, nx, -1.0f, 1.0f, seed + 1000);
    for (int64_t i = 0; i < nx && !avg; i++) p.x[i] = -0.01f * (float)((i * 7919) % nx) - 1.0f;
    test_fill_uniform(p.r, ny, -1.0f, 1.0f, seed);
    pool_loss(&p);
    pool_reference(&p.a, avg, p.x, p.r, want, dwant);
    char what[96];
    snprintf(what, sizeof what, "%s k%lld s%lld p%lld %lldx%lld", avg ? "avgpool" : "maxpool", (long long)k,
             (long long)stride, (long long)pad, (long long)h, (long long)w);
    // Max: a selection, exact. Average: a float sum of at most 25 values, a few ulps.
    assert_true(close_elements(what, p.y, want, ny, avg ? 1e-6 : 0.0, avg ? 1e-6 : 0.0));
    Pool2dArgs a = p.a;
    a.x = p.x;
    a.dy = p.r;
    a.dx = dx;
    if (avg) be->ops->avgpool2d_backward(be, &a);
    else be->ops->maxpool2d_backward(be, &a);
    assert_true(close_elements(what, dx, dwant, nx, 1e-6, 1e-6));
    // L is piecewise linear in x (linear for the average): only rounding.
    assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = p.x, .analytic = dx, .n = nx, .loss = pool_loss,
                                           .ctx = &p, .h = 1e-3f, .atol = 1e-3, .rtol = 1e-3, .max_checks = 200}));
    free(p.x);
    free(p.y);
    free(p.r);
    free(dx);
    free(want);
    free(dwant);
}

static void test_pools(void **state) {
    (void)state;
    const int64_t ks[] = {2, 3, 5};
    uint64_t seed = 500;
    for (int avg = 0; avg < 2; avg++)
        for (int i = 0; i < 3; i++)
            for (int64_t stride = 1; stride <= 2; stride++)
                for (int64_t pad = 0; pad <= 1 && pad <= ks[i] / 2; pad++) {
                    pool_check(2, 3, 11, 9, ks[i], stride, pad, avg, seed++);  // odd sizes
                    pool_check(1, 2, 8, 13, ks[i], stride, pad, avg, seed++);
                }
    pool_check(2, 64, 13, 13, 5, 1, 2, false, seed++);  // SPPF's pool, threaded
    pool_check(2, 64, 40, 40, 2, 2, 0, true, seed++);   // threaded
}

// Ties go to the first maximum in row-major order, a NaN wins, and overlapping windows add up.
static void test_maxpool_ties(void **state) {
    (void)state;
    const Pool2dArgs a0 = pool2d_args_out(&(Pool2dArgs){.n = 1, .c = 1, .h = 3, .w = 3, .k = 2, .stride = 1});
    float x[9] = {1, 1, 0, 1, 1, 0, 0, 0, NAN}, y[4], dy[4] = {1, 2, 4, 8}, dx[9] = {0};
    Pool2dArgs a = a0;
    a.x = x, a.y = y, a.dy = dy, a.dx = dx;
    be->ops->maxpool2d_forward(be, &a);
    assert_true(y[0] == 1 && y[1] == 1 && y[2] == 1 && isnan(y[3]));
    be->ops->maxpool2d_backward(be, &a);
    const float want[9] = {1, 2, 0, 4, 0, 0, 0, 0, 8};
    assert_memory_equal(dx, want, sizeof want);
}

// ---- zero padding and the per-channel bias ------------------------------------------------------------

static void test_pad2d(void **state) {
    (void)state;
    const Pad2dArgs shape = {.n = 2, .c = 3, .h = 5, .w = 4, .left = 2, .right = 1, .top = 0, .bottom = 3};
    const int64_t ho = 8, wo = 7, nx = 2 * 3 * 5 * 4, ny = 2 * 3 * ho * wo;
    float *x = floats(nx), *y = floats(ny), *dy = floats(ny), *dx = floats(nx);
    test_fill_uniform(x, nx, -1.0f, 1.0f, 600);
    test_fill_uniform(dy, ny, -1.0f, 1.0f, 601);
    test_fill_uniform(y, ny, 5.0f, 6.0f, 602);  // every element must be overwritten
    test_fill_uniform(dx, nx, -1.0f, 1.0f, 603);
    float *dx0 = floats(nx);
    memcpy(dx0, dx, (size_t)nx * sizeof(float));
    Pad2dArgs a = shape;
    a.x = x, a.y = y, a.dy = dy, a.dx = dx;
    be->ops->pad2d_forward(be, &a);
    be->ops->pad2d_backward(be, &a);
    for (int64_t p = 0; p < 6; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                const int64_t ih = oh - shape.top, iw = ow - shape.left;
                const bool inside = ih >= 0 && ih < 5 && iw >= 0 && iw < 4;
                const float got = y[(p * ho + oh) * wo + ow];
                assert_true(got == (inside ? x[(p * 5 + ih) * 4 + iw] : 0.0f));
                if (inside)  // one addition each: exact
                    assert_true(dx[(p * 5 + ih) * 4 + iw] == dx0[(p * 5 + ih) * 4 + iw] + dy[(p * ho + oh) * wo + ow]);
            }
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(dx0);
}

typedef struct BiasProbe {
    float *b, *y, *y0, *r;
    int64_t n, c, hw;
} BiasProbe;

static double bias_loss(void *ctx) {
    BiasProbe *p = ctx;
    memcpy(p->y, p->y0, (size_t)(p->n * p->c * p->hw) * sizeof(float));
    be->ops->channel_bias_forward(be, p->n, p->c, p->hw, p->b, p->y);
    return test_dot(p->y, p->r, p->n * p->c * p->hw);
}

static void test_channel_bias(void **state) {
    (void)state;
    BiasProbe p = {.n = 3, .c = 5, .hw = 7 * 11};
    const int64_t e = p.n * p.c * p.hw;
    p.b = floats(p.c), p.y = floats(e), p.y0 = floats(e), p.r = floats(e);
    float *db = floats(p.c);
    test_fill_uniform(p.b, p.c, -1.0f, 1.0f, 700);
    test_fill_uniform(p.y0, e, -1.0f, 1.0f, 701);
    test_fill_uniform(p.r, e, -1.0f, 1.0f, 702);
    bias_loss(&p);
    for (int64_t i = 0; i < e; i++) assert_true(p.y[i] == p.y0[i] + p.b[(i / p.hw) % p.c]);  // one addition
    be->ops->channel_bias_backward(be, p.n, p.c, p.hw, p.r, db);
    double want[5] = {0};
    for (int64_t i = 0; i < e; i++) want[(i / p.hw) % p.c] += p.r[i];
    assert_true(close_elements("channel_bias db", db, want, p.c, 1e-6, 1e-6));  // a double sum rounded once
    assert_true(gradcheck(&(GradcheckSpec){.what = "channel_bias db", .x = p.b, .analytic = db, .n = p.c,
                                           .loss = bias_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-3, .rtol = 1e-3,
                                           .max_checks = 5}));
    free(p.b);
    free(p.y);
    free(p.y0);
    free(p.r);
    free(db);
}

static int group_setup(void **state) {
    (void)state;
    be = cpu_backend_create(DTYPE_F32);
    return be ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    backend_destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations),   cmocka_unit_test(test_activation_kinks),
        cmocka_unit_test(test_batchnorm_fused), cmocka_unit_test(test_pools),
        cmocka_unit_test(test_maxpool_ties),  cmocka_unit_test(test_pad2d),
        cmocka_unit_test(test_channel_bias),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
