// The CPU backend's kernels against naive references written here (double accumulation), and every
// backward kernel against central finite differences of its forward. Tensors go through
// upload/download, as for any backend, even though CPU memory is host memory.
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
#include "framework/core/rng.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

static Backend *be;  // created once for the whole group

// ---- helpers ---------------------------------------------------------------------------------------

// One tensor in two places: `host` for the test to read and write, `dev` for the kernels.
typedef struct TestBuf {
    float *host;
    float *dev;
    int64_t n;
} TestBuf;

static TestBuf test_buf_create(int64_t n) {
    TestBuf b = {.host = calloc((size_t)n, sizeof(float)), .dev = be->ops->alloc(be, (size_t)n * sizeof(float)), .n = n};
    assert_non_null(b.host);
    be->ops->fill(be, b.dev, 0.0f, (size_t)n);
    return b;
}

static void test_buf_push(TestBuf *b) { be->ops->upload(be, b->dev, b->host, (size_t)b->n * sizeof(float)); }
static void test_buf_pull(TestBuf *b) { be->ops->download(be, b->host, b->dev, (size_t)b->n * sizeof(float)); }

static TestBuf test_buf_random(int64_t n, float lo, float hi, uint64_t seed) {
    TestBuf b = test_buf_create(n);
    test_fill_uniform(b.host, n, lo, hi, seed);
    test_buf_push(&b);
    return b;
}

// Zeroes both copies, as a caller does before the first gradient contribution.
static void test_buf_zero(TestBuf *b) {
    memset(b->host, 0, (size_t)b->n * sizeof(float));
    be->ops->fill(be, b->dev, 0.0f, (size_t)b->n);
}

static void test_buf_destroy(TestBuf *b) {
    free(b->host);
    be->ops->free(be, b->dev);
    *b = (TestBuf){0};
}

static float *test_copy_of(const float *x, int64_t n) {
    float *c = malloc((size_t)n * sizeof(float));
    assert_non_null(c);
    memcpy(c, x, (size_t)n * sizeof(float));
    return c;
}

// Checks that a gradient buffer holds twice `once`, after a second identical backward call added
// onto it. Tolerance 1e-6: the second call rounds its additions onto a non-zero buffer.
static void test_expect_doubled(const char *what, TestBuf *g, const float *once) {
    test_buf_pull(g);
    double *want = malloc((size_t)g->n * sizeof(double));
    assert_non_null(want);
    for (int64_t i = 0; i < g->n; i++) want[i] = 2.0 * once[i];
    char label[128];
    snprintf(label, sizeof label, "%s accumulates", what);
    assert_true(close_elements(label, g->host, want, g->n, 1e-6, 1e-6));
    free(want);
}

// x[i] = scale * (a random permutation of 0..n-1) + offset: distinct values spaced by `scale`, so
// max-pool has no ties and finite differences smaller than scale / 2 never change an argmax.
static void test_fill_permutation(float *x, int64_t n, float scale, float offset, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_uniform(seed, (uint64_t)i) * (float)(i + 1));
        if (j > i) j = i;
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * scale + offset;
}

// Small integers in [-8, 8]: their sums are exact in float, so reductions compare with no tolerance.
static void test_fill_integers(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = floorf(17.0f * rng_uniform(seed, (uint64_t)i)) - 8.0f;
}

// ---- memory ----------------------------------------------------------------------------------------

static void test_memory_ops(void **state) {
    (void)state;
    assert_string_equal(be->name, "cpu");
    const size_t sizes[] = {0, 1, 3, 64, 100, 4097};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = be->ops->alloc(be, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        be->ops->free(be, p);
    }
    be->ops->free(be, NULL);

    enum { N = 1000 };
    TestBuf a = test_buf_random(N, -1.0f, 1.0f, 1), b = test_buf_create(N);
    be->ops->copy(be, b.dev, a.dev, N * sizeof(float));
    test_buf_pull(&b);
    assert_memory_equal(a.host, b.host, N * sizeof(float));  // copies are exact
    be->ops->fill(be, b.dev, 2.5f, N);
    test_buf_pull(&b);
    for (int i = 0; i < N; i++) assert_true(b.host[i] == 2.5f);
    be->ops->synchronize(be);

    // Growing and re-reserving smaller must both be accepted.
    be->ops->reserve_workspace(be, 1 << 20);
    be->ops->reserve_workspace(be, 16);
    test_buf_destroy(&a);
    test_buf_destroy(&b);
}

static void test_fill_uniform_matches_rng(void **state) {
    (void)state;
    // Large enough for the parallel path, odd so threads split it unevenly.
    const int64_t n = 40001;
    const float lo = -0.3f, hi = 0.7f;
    const uint64_t seed = 0x5eedull;
    TestBuf b = test_buf_create(n);
    be->ops->fill_uniform(be, b.dev, (size_t)n, lo, hi, seed);
    test_buf_pull(&b);
    // Exact: every backend must fill a tensor identically (framework/core/rng.h).
    for (int64_t i = 0; i < n; i++) assert_true(b.host[i] == lo + (hi - lo) * rng_uniform(seed, (uint64_t)i));
    test_buf_destroy(&b);
}

// ---- convolution -----------------------------------------------------------------------------------

typedef struct ConvCase {
    const char *name;
    int64_t n, c_in, h, w, c_out, kh, kw, stride, pad, dilation, groups;
    bool bias;
} ConvCase;

static const ConvCase conv_cases[] = {
    {"3x3 s1 p1 odd 7x9", 2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, true},
    {"6x6 s2 p2 (YOLOv5 stem)", 2, 3, 12, 11, 4, 6, 6, 2, 2, 1, 1, true},
    {"1x1 pointwise", 2, 6, 5, 7, 4, 1, 1, 1, 0, 1, 1, false},
    {"1x1 pointwise groups 2", 1, 4, 4, 3, 6, 1, 1, 1, 0, 1, 2, true},
    {"1x1 s2", 2, 3, 7, 6, 5, 1, 1, 2, 0, 1, 1, true},
    {"3x3 s2 p0", 3, 2, 9, 7, 3, 3, 3, 2, 0, 1, 1, false},
    {"5x5 s1 p2 groups 2", 1, 4, 8, 9, 6, 5, 5, 1, 2, 1, 2, true},
    {"3x3 dilation 2 p2", 2, 3, 9, 8, 2, 3, 3, 1, 2, 2, 1, false},
    {"depthwise 3x3 s2 p1 x2", 2, 4, 7, 8, 8, 3, 3, 2, 1, 1, 4, true},
    {"1x3 p1", 1, 2, 5, 6, 3, 1, 3, 1, 1, 1, 1, true},
    // Large enough for oneDNN's convolutions and reorders to use several threads.
    {"3x3 s1 p1 24x20 threaded", 2, 8, 24, 20, 8, 3, 3, 1, 1, 1, 1, true},
};
enum { CONV_CASES = sizeof conv_cases / sizeof conv_cases[0] };

static ConvDesc conv_case_desc(const ConvCase *cc) {
    return conv_desc_make(&(ConvDesc){.n = cc->n, .c_in = cc->c_in, .h_in = cc->h, .w_in = cc->w, .c_out = cc->c_out,
                                      .kh = cc->kh, .kw = cc->kw, .stride = cc->stride, .pad = cc->pad,
                                      .dilation = cc->dilation, .groups = cc->groups});
}

// Direct convolution, seven loops deep, accumulated in double.
static void conv_reference(const ConvDesc *d, const float *x, const float *w, const float *bias, double *y) {
    const int64_t cig = d->c_in / d->groups, cog = d->c_out / d->groups;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t oh = 0; oh < d->h_out; oh++)
                for (int64_t ow = 0; ow < d->w_out; ow++) {
                    double sum = bias ? bias[co] : 0.0;
                    const int64_t g = co / cog;
                    for (int64_t k = 0; k < cig; k++)
                        for (int64_t i = 0; i < d->kh; i++)
                            for (int64_t j = 0; j < d->kw; j++) {
                                int64_t ih = oh * d->stride - d->pad + i * d->dilation;
                                int64_t iw = ow * d->stride - d->pad + j * d->dilation;
                                if (ih < 0 || ih >= d->h_in || iw < 0 || iw >= d->w_in) continue;
                                double xv = x[((n * d->c_in + g * cig + k) * d->h_in + ih) * d->w_in + iw];
                                sum += xv * w[((co * cig + k) * d->kh + i) * d->kw + j];
                            }
                    y[((n * d->c_out + co) * d->h_out + oh) * d->w_out + ow] = sum;
                }
}

typedef struct ConvProbe {
    ConvDesc d;
    TestBuf x, w, b, y, r;  // b.n == 0: no bias
} ConvProbe;

static ConvProbe conv_probe_create(const ConvCase *cc, uint64_t seed) {
    ConvProbe p = {.d = conv_case_desc(cc)};
    const ConvDesc *d = &p.d;
    p.x = test_buf_random(d->n * d->c_in * d->h_in * d->w_in, -1.0f, 1.0f, seed);
    p.w = test_buf_random(d->c_out * (d->c_in / d->groups) * d->kh * d->kw, -1.0f, 1.0f, seed + 1);
    if (cc->bias) p.b = test_buf_random(d->c_out, -1.0f, 1.0f, seed + 2);
    p.y = test_buf_create(d->n * d->c_out * d->h_out * d->w_out);
    p.r = test_buf_random(p.y.n, -1.0f, 1.0f, seed + 3);
    be->ops->reserve_workspace(be, be->ops->conv_workspace_bytes(be, d));
    return p;
}

static void conv_probe_destroy(ConvProbe *p) {
    test_buf_destroy(&p->x);
    test_buf_destroy(&p->w);
    if (p->b.n) test_buf_destroy(&p->b);
    test_buf_destroy(&p->y);
    test_buf_destroy(&p->r);
}

static void conv_probe_forward(ConvProbe *p) {
    be->ops->conv2d_forward(be, &p->d, p->x.dev, p->w.dev, p->b.n ? p->b.dev : NULL, p->y.dev);
    test_buf_pull(&p->y);
}

// dot(conv(x, w, b), r), re-uploading the host copies that gradcheck perturbs.
static double conv_loss(void *ctx) {
    ConvProbe *p = ctx;
    test_buf_push(&p->x);
    test_buf_push(&p->w);
    if (p->b.n) test_buf_push(&p->b);
    conv_probe_forward(p);
    return test_dot(p->y.host, p->r.host, p->y.n);
}

static void test_conv_forward(void **state) {
    (void)state;
    for (int c = 0; c < CONV_CASES; c++) {
        ConvProbe p = conv_probe_create(&conv_cases[c], 100 + 10 * (uint64_t)c);
        conv_probe_forward(&p);
        double *want = malloc((size_t)p.y.n * sizeof(double));
        assert_non_null(want);
        conv_reference(&p.d, p.x.host, p.w.host, p.b.n ? p.b.host : NULL, want);
        char what[128];
        snprintf(what, sizeof what, "conv forward [%s]", conv_cases[c].name);
        // Float32 sums of <= 108 products of values in [-1, 1], summed in another order than the
        // double reference: a few ulps of sums of magnitude ~10.
        assert_true(close_elements(what, p.y.host, want, p.y.n, 1e-5, 1e-5));
        free(want);
        conv_probe_destroy(&p);
    }
}

static void test_conv_backward(void **state) {
    (void)state;
    for (int c = 0; c < CONV_CASES; c++) {
        const ConvCase *cc = &conv_cases[c];
        ConvProbe p = conv_probe_create(cc, 200 + 10 * (uint64_t)c);
        TestBuf dx = test_buf_create(p.x.n), dw = test_buf_create(p.w.n);
        TestBuf db = test_buf_create(cc->bias ? p.b.n : 1);
        float *dbias = cc->bias ? db.dev : NULL;
        // dL/dy = r for L = dot(y, r).
        be->ops->conv2d_backward_data(be, &p.d, p.r.dev, p.w.dev, dx.dev);
        be->ops->conv2d_backward_filter(be, &p.d, p.x.dev, p.r.dev, dw.dev, dbias);
        test_buf_pull(&dx);
        test_buf_pull(&dw);
        test_buf_pull(&db);

        // L is linear in each of x, w and b, so central differences have no truncation error: only
        // float32 rounding of the outputs a probe moves (a whole output plane for a weight, ~1e-6
        // in all), divided by 2h = 2e-2.
        char what[128];
        snprintf(what, sizeof what, "conv dx [%s]", cc->name);
        assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = p.x.host, .analytic = dx.host, .n = p.x.n,
                                               .loss = conv_loss, .ctx = &p, .h = 1e-2f, .atol = 5e-4, .rtol = 1e-3,
                                               .max_checks = 200}));
        snprintf(what, sizeof what, "conv dw [%s]", cc->name);
        assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = p.w.host, .analytic = dw.host, .n = p.w.n,
                                               .loss = conv_loss, .ctx = &p, .h = 1e-2f, .atol = 5e-4, .rtol = 1e-3,
                                               .max_checks = 200}));
        if (cc->bias) {
            snprintf(what, sizeof what, "conv dbias [%s]", cc->name);
            assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = p.b.host, .analytic = db.host, .n = p.b.n,
                                                   .loss = conv_loss, .ctx = &p, .h = 1e-2f, .atol = 5e-4, .rtol = 1e-3,
                                                   .max_checks = 200}));
        }

        conv_loss(&p);  // gradcheck restores only the host copies
        float *dx1 = test_copy_of(dx.host, dx.n), *dw1 = test_copy_of(dw.host, dw.n);
        float *db1 = test_copy_of(db.host, db.n);
        be->ops->conv2d_backward_data(be, &p.d, p.r.dev, p.w.dev, dx.dev);
        be->ops->conv2d_backward_filter(be, &p.d, p.x.dev, p.r.dev, dw.dev, dbias);
        snprintf(what, sizeof what, "conv dx [%s]", cc->name);
        test_expect_doubled(what, &dx, dx1);
        snprintf(what, sizeof what, "conv dw [%s]", cc->name);
        test_expect_doubled(what, &dw, dw1);
        if (cc->bias) {
            snprintf(what, sizeof what, "conv dbias [%s]", cc->name);
            test_expect_doubled(what, &db, db1);
        }
        free(dx1);
        free(dw1);
        free(db1);
        test_buf_destroy(&dx);
        test_buf_destroy(&dw);
        test_buf_destroy(&db);
        conv_probe_destroy(&p);
    }
}

// ---- batch norm ------------------------------------------------------------------------------------

enum { BN_N = 2, BN_C = 3, BN_HW = 20 };
static const float bn_momentum = 0.03f, bn_eps = 1e-3f;

typedef struct BnProbe {
    int64_t n, c, hw;
    TestBuf x, gamma, beta, rmean, rvar, y, smean, sinvstd, r;
} BnProbe;

static BnProbe bn_probe_create(int64_t n, int64_t c, int64_t hw, uint64_t seed) {
    BnProbe p = {.n = n, .c = c, .hw = hw};
    p.x = test_buf_random(n * c * hw, -1.0f, 3.0f, seed);  // mean far from 0 tests the centring
    p.gamma = test_buf_random(c, 0.5f, 1.5f, seed + 1);
    p.beta = test_buf_random(c, -0.5f, 0.5f, seed + 2);
    p.rmean = test_buf_random(c, -0.2f, 0.2f, seed + 3);
    p.rvar = test_buf_random(c, 0.5f, 1.5f, seed + 4);
    p.y = test_buf_create(n * c * hw);
    p.smean = test_buf_create(c);
    p.sinvstd = test_buf_create(c);
    p.r = test_buf_random(n * c * hw, -1.0f, 1.0f, seed + 5);
    return p;
}

static void bn_probe_destroy(BnProbe *p) {
    TestBuf *bufs[] = {&p->x, &p->gamma, &p->beta, &p->rmean, &p->rvar, &p->y, &p->smean, &p->sinvstd, &p->r};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) test_buf_destroy(bufs[i]);
}

static void bn_probe_train(BnProbe *p, ActivationSpec act) {
    be->ops->batchnorm_forward_train(be, &(BatchNormTrainArgs){.n = p->n, .c = p->c, .hw = p->hw, .x = p->x.dev,
                                                               .gamma = p->gamma.dev, .beta = p->beta.dev,
                                                               .running_mean = p->rmean.dev, .running_var = p->rvar.dev,
                                                               .momentum = bn_momentum, .eps = bn_eps, .act = act,
                                                               .y = p->y.dev, .save_mean = p->smean.dev,
                                                               .save_invstd = p->sinvstd.dev});
}

// Train-mode forward; the running statistics drift with every call but do not affect y.
static double bn_loss(void *ctx) {
    BnProbe *p = ctx;
    test_buf_push(&p->x);
    test_buf_push(&p->gamma);
    test_buf_push(&p->beta);
    bn_probe_train(p, ACTIVATION_SPEC_NONE);
    test_buf_pull(&p->y);
    return test_dot(p->y.host, p->r.host, p->y.n);
}

static void bn_check_train(int64_t n, int64_t c, int64_t hw, uint64_t seed) {
    BnProbe p = bn_probe_create(n, c, hw, seed);
    const int64_t m = n * hw;
    double *y = malloc((size_t)p.y.n * sizeof(double)), *mean = malloc((size_t)c * sizeof(double));
    double *invstd = malloc((size_t)c * sizeof(double)), *rmean = malloc((size_t)c * sizeof(double));
    double *rvar = malloc((size_t)c * sizeof(double));
    assert_true(y && mean && invstd && rmean && rvar);
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0.0, sq = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) s += p.x.host[(i * c + ch) * hw + j];
        mean[ch] = s / (double)m;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) sq += pow(p.x.host[(i * c + ch) * hw + j] - mean[ch], 2);
        double var = sq / (double)m;
        invstd[ch] = 1.0 / sqrt(var + bn_eps);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                y[k] = (p.x.host[k] - mean[ch]) * invstd[ch] * p.gamma.host[ch] + p.beta.host[ch];
            }
        double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
        rmean[ch] = (1.0 - bn_momentum) * p.rmean.host[ch] + bn_momentum * mean[ch];
        rvar[ch] = (1.0 - bn_momentum) * p.rvar.host[ch] + bn_momentum * unbiased;
    }
    bn_probe_train(&p, ACTIVATION_SPEC_NONE);
    TestBuf *outs[] = {&p.y, &p.smean, &p.sinvstd, &p.rmean, &p.rvar};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) test_buf_pull(outs[i]);
    // y: float32 rounding of (x - mean) * scale + shift, |y| <= ~4.
    assert_true(close_elements("bn train y", p.y.host, y, p.y.n, 1e-5, 1e-5));
    // Statistics: double sums rounded once to float, then a few float operations.
    assert_true(close_elements("bn save_mean", p.smean.host, mean, c, 1e-7, 1e-6));
    assert_true(close_elements("bn save_invstd", p.sinvstd.host, invstd, c, 1e-7, 1e-6));
    assert_true(close_elements("bn running_mean", p.rmean.host, rmean, c, 1e-7, 1e-6));
    assert_true(close_elements("bn running_var", p.rvar.host, rvar, c, 1e-7, 1e-6));
    free(y);
    free(mean);
    free(invstd);
    free(rmean);
    free(rvar);
    bn_probe_destroy(&p);
}

static void test_batchnorm_train(void **state) {
    (void)state;
    bn_check_train(BN_N, BN_C, BN_HW, 300);
    // m = N * H * W = 1: the running variance takes the biased value (0) instead of dividing by 0.
    bn_check_train(1, 2, 1, 310);
    // Large enough for the threaded path.
    bn_check_train(2, 4, 4096, 315);
}

static void test_batchnorm_infer(void **state) {
    (void)state;
    BnProbe p = bn_probe_create(2, 4, 4096, 320);  // large enough for the threaded path
    be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = p.n, .c = p.c, .hw = p.hw, .x = p.x.dev,
                                                               .gamma = p.gamma.dev, .beta = p.beta.dev,
                                                               .running_mean = p.rmean.dev, .running_var = p.rvar.dev,
                                                               .eps = bn_eps, .act = ACTIVATION_SPEC_NONE, .y = p.y.dev});
    test_buf_pull(&p.y);
    double *want = malloc((size_t)p.y.n * sizeof(double));
    assert_non_null(want);
    for (int64_t i = 0; i < p.n; i++)
        for (int64_t ch = 0; ch < p.c; ch++)
            for (int64_t j = 0; j < p.hw; j++) {
                int64_t k = (i * p.c + ch) * p.hw + j;
                want[k] = (p.x.host[k] - p.rmean.host[ch]) / sqrt((double)p.rvar.host[ch] + bn_eps) *
                              p.gamma.host[ch] + p.beta.host[ch];
            }
    // Float32 rounding of a few operations on values of magnitude <= ~5.
    assert_true(close_elements("bn infer y", p.y.host, want, p.y.n, 1e-5, 1e-5));
    free(want);
    bn_probe_destroy(&p);
}

static void test_batchnorm_backward(void **state) {
    (void)state;
    BnProbe p = bn_probe_create(BN_N, BN_C, BN_HW, 330);
    bn_probe_train(&p, ACTIVATION_SPEC_NONE);
    TestBuf dx = test_buf_create(p.x.n), dg = test_buf_create(p.c), db = test_buf_create(p.c);
    be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){.n = p.n, .c = p.c, .hw = p.hw, .x = p.x.dev,
                                                             .dy = p.r.dev, .gamma = p.gamma.dev, .beta = p.beta.dev,
                                                             .save_mean = p.smean.dev, .save_invstd = p.sinvstd.dev,
                                                             .act = ACTIVATION_SPEC_NONE, .dx = dx.dev, .dgamma = dg.dev,
                                                             .dbeta = db.dev});
    test_buf_pull(&dx);
    test_buf_pull(&dg);
    test_buf_pull(&db);
    // x enters through the batch statistics, so L is curved in x: h = 5e-3 keeps the O(h^2)
    // truncation and the float32 rounding of a whole channel's outputs (/ 2h) both below 1e-3.
    assert_true(gradcheck(&(GradcheckSpec){.what = "bn dx", .x = p.x.host, .analytic = dx.host, .n = p.x.n,
                                           .loss = bn_loss, .ctx = &p, .h = 5e-3f, .atol = 1e-3, .rtol = 1e-2,
                                           .max_checks = 200}));
    // L is linear in gamma and beta: only rounding of the channel's 40 outputs, / 2h.
    assert_true(gradcheck(&(GradcheckSpec){.what = "bn dgamma", .x = p.gamma.host, .analytic = dg.host, .n = p.c,
                                           .loss = bn_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-4, .rtol = 1e-4,
                                           .max_checks = 200}));
    assert_true(gradcheck(&(GradcheckSpec){.what = "bn dbeta", .x = p.beta.host, .analytic = db.host, .n = p.c,
                                           .loss = bn_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-4, .rtol = 1e-4,
                                           .max_checks = 200}));

    float *dx1 = test_copy_of(dx.host, dx.n), *dg1 = test_copy_of(dg.host, dg.n), *db1 = test_copy_of(db.host, db.n);
    bn_loss(&p);  // gradcheck restores only the host copies; this re-uploads them and the statistics
    be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){.n = p.n, .c = p.c, .hw = p.hw, .x = p.x.dev,
                                                             .dy = p.r.dev, .gamma = p.gamma.dev, .beta = p.beta.dev,
                                                             .save_mean = p.smean.dev, .save_invstd = p.sinvstd.dev,
                                                             .act = ACTIVATION_SPEC_NONE, .dx = dx.dev, .dgamma = dg.dev,
                                                             .dbeta = db.dev});
    test_expect_doubled("bn dx", &dx, dx1);
    test_expect_doubled("bn dgamma", &dg, dg1);
    test_expect_doubled("bn dbeta", &db, db1);
    free(dx1);
    free(dg1);
    free(db1);
    test_buf_destroy(&dx);
    test_buf_destroy(&dg);
    test_buf_destroy(&db);
    bn_probe_destroy(&p);
}

// Fails unless got and want hold the same bits; prints the first difference.
static void test_expect_bits(const char *what, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)))
            fail_msg("%s: index %lld got %a want %a", what, (long long)i, (double)got[i], (double)want[i]);
}

// SiLU fused into the batch-norm slots against the composition it replaces, with no tolerance:
// batch norm then silu_forward, and silu_backward into a zeroed buffer then the plain batch-norm
// backward, compute the same float values z and dz (backend.h). Two probes with the same seed hold
// the same inputs, running statistics and gradient priors.
static void bn_check_silu_fused(int64_t n, int64_t c, int64_t hw, uint64_t seed) {
    BnProbe fused = bn_probe_create(n, c, hw, seed), split = bn_probe_create(n, c, hw, seed);
    const int64_t elems = n * c * hw;
    TestBuf y = test_buf_create(elems), dz = test_buf_create(elems);
    TestBuf *outs[] = {&fused.y, &fused.rmean, &fused.rvar, &fused.smean, &fused.sinvstd,
                       &split.rmean, &split.rvar, &split.smean, &split.sinvstd, &y};

    bn_probe_train(&fused, ACTIVATION_SPEC_SILU);
    bn_probe_train(&split, ACTIVATION_SPEC_NONE);  // split.y = z
    be->ops->activation_forward(be, ACTIVATION_SPEC_SILU, split.y.dev, y.dev, (size_t)elems);
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) test_buf_pull(outs[i]);
    test_expect_bits("fused train y", fused.y.host, y.host, elems);
    test_expect_bits("fused running_mean", fused.rmean.host, split.rmean.host, c);
    test_expect_bits("fused running_var", fused.rvar.host, split.rvar.host, c);
    test_expect_bits("fused save_mean", fused.smean.host, split.smean.host, c);
    test_expect_bits("fused save_invstd", fused.sinvstd.host, split.sinvstd.host, c);

    // Accumulating onto non-zero priors, the same on both sides.
    TestBuf dx[2], dg[2], db[2];
    for (int k = 0; k < 2; k++) {
        dx[k] = test_buf_random(elems, -1.0f, 1.0f, seed + 10);
        dg[k] = test_buf_random(c, -1.0f, 1.0f, seed + 11);
        db[k] = test_buf_random(c, -1.0f, 1.0f, seed + 12);
    }
    be->ops->activation_backward(be, ACTIVATION_SPEC_SILU, split.y.dev, split.r.dev, dz.dev, (size_t)elems);
    be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){.n = n, .c = c, .hw = hw, .x = split.x.dev, .dy = dz.dev,
                                                             .gamma = split.gamma.dev, .beta = split.beta.dev,
                                                             .save_mean = split.smean.dev,
                                                             .save_invstd = split.sinvstd.dev,
                                                             .act = ACTIVATION_SPEC_NONE, .dx = dx[1].dev,
                                                             .dgamma = dg[1].dev, .dbeta = db[1].dev});
    be->ops->batchnorm_backward(be, &(BatchNormBackwardArgs){.n = n, .c = c, .hw = hw, .x = fused.x.dev,
                                                             .dy = fused.r.dev, .gamma = fused.gamma.dev,
                                                             .beta = fused.beta.dev, .save_mean = fused.smean.dev,
                                                             .save_invstd = fused.sinvstd.dev,
                                                             .act = ACTIVATION_SPEC_SILU, .dx = dx[0].dev,
                                                             .dgamma = dg[0].dev, .dbeta = db[0].dev});
    for (int k = 0; k < 2; k++) {
        test_buf_pull(&dx[k]);
        test_buf_pull(&dg[k]);
        test_buf_pull(&db[k]);
    }
    test_expect_bits("fused dx", dx[0].host, dx[1].host, elems);
    test_expect_bits("fused dgamma", dg[0].host, dg[1].host, c);
    test_expect_bits("fused dbeta", db[0].host, db[1].host, c);

    be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = n, .c = c, .hw = hw, .x = fused.x.dev,
                                                               .gamma = fused.gamma.dev, .beta = fused.beta.dev,
                                                               .running_mean = fused.rmean.dev,
                                                               .running_var = fused.rvar.dev, .eps = bn_eps,
                                                               .act = ACTIVATION_SPEC_SILU, .y = fused.y.dev});
    be->ops->batchnorm_forward_infer(be, &(BatchNormInferArgs){.n = n, .c = c, .hw = hw, .x = split.x.dev,
                                                               .gamma = split.gamma.dev, .beta = split.beta.dev,
                                                               .running_mean = split.rmean.dev,
                                                               .running_var = split.rvar.dev, .eps = bn_eps,
                                                               .act = ACTIVATION_SPEC_NONE, .y = split.y.dev});
    be->ops->activation_forward(be, ACTIVATION_SPEC_SILU, split.y.dev, y.dev, (size_t)elems);
    test_buf_pull(&fused.y);
    test_buf_pull(&y);
    test_expect_bits("fused infer y", fused.y.host, y.host, elems);

    for (int k = 0; k < 2; k++) {
        test_buf_destroy(&dx[k]);
        test_buf_destroy(&dg[k]);
        test_buf_destroy(&db[k]);
    }
    test_buf_destroy(&y);
    test_buf_destroy(&dz);
    bn_probe_destroy(&fused);
    bn_probe_destroy(&split);
}

static void test_batchnorm_silu_fused(void **state) {
    (void)state;
    bn_check_silu_fused(BN_N, BN_C, BN_HW, 340);
    bn_check_silu_fused(1, 2, 1, 350);   // one value per channel: z = beta
    bn_check_silu_fused(4, 3, 1, 360);   // hw = 1
    bn_check_silu_fused(1, 3, 37, 370);  // n = 1
    bn_check_silu_fused(2, 4, 4096, 380);  // the threaded path
}

// ---- element-wise ----------------------------------------------------------------------------------

typedef struct UnaryProbe {
    TestBuf x, y, r;
} UnaryProbe;

static double silu_loss(void *ctx) {
    UnaryProbe *p = ctx;
    test_buf_push(&p->x);
    be->ops->activation_forward(be, ACTIVATION_SPEC_SILU, p->x.dev, p->y.dev, (size_t)p->x.n);
    test_buf_pull(&p->y);
    return test_dot(p->y.host, p->r.host, p->y.n);
}

static void test_silu(void **state) {
    (void)state;
    enum { N = 20000 };  // large enough for the threaded path
    UnaryProbe p = {.x = test_buf_random(N, -8.0f, 8.0f, 400), .y = test_buf_create(N),
                    .r = test_buf_random(N, -1.0f, 1.0f, 401)};
    TestBuf dx = test_buf_create(N);
    double *want = malloc(N * sizeof(double)), *dwant = malloc(N * sizeof(double));
    assert_true(want && dwant);
    for (int i = 0; i < N; i++) {
        double x = p.x.host[i], s = 1.0 / (1.0 + exp(-x));
        want[i] = x * s;
        dwant[i] = p.r.host[i] * s * (1.0 + x * (1.0 - s));
    }
    be->ops->activation_forward(be, ACTIVATION_SPEC_SILU, p.x.dev, p.y.dev, N);
    test_buf_pull(&p.y);
    // expf and the division are each within a few ulps.
    assert_true(close_elements("silu forward", p.y.host, want, N, 1e-6, 1e-5));
    be->ops->activation_backward(be, ACTIVATION_SPEC_SILU, p.x.dev, p.r.dev, dx.dev, N);
    test_buf_pull(&dx);
    assert_true(close_elements("silu backward", dx.host, dwant, N, 1e-6, 1e-5));
    // One output per probe; h = 1e-2 balances O(h^2) truncation against rounding / 2h.
    assert_true(gradcheck(&(GradcheckSpec){.what = "silu dx", .x = p.x.host, .analytic = dx.host, .n = N,
                                           .loss = silu_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-4, .rtol = 1e-3,
                                           .max_checks = 300}));
    silu_loss(&p);  // gradcheck restores only the host copy
    float *dx1 = test_copy_of(dx.host, N);
    be->ops->activation_backward(be, ACTIVATION_SPEC_SILU, p.x.dev, p.r.dev, dx.dev, N);
    test_expect_doubled("silu dx", &dx, dx1);
    free(dx1);
    free(want);
    free(dwant);
    test_buf_destroy(&dx);
    test_buf_destroy(&p.x);
    test_buf_destroy(&p.y);
    test_buf_destroy(&p.r);
}

static void test_add_accumulate(void **state) {
    (void)state;
    // Above the parallel threshold so both code paths of the loop run.
    const int64_t n = 20000;
    TestBuf a = test_buf_random(n, -1.0f, 1.0f, 500), b = test_buf_random(n, -1.0f, 1.0f, 501);
    TestBuf y = test_buf_create(n);
    be->ops->add(be, a.dev, b.dev, y.dev, (size_t)n);
    test_buf_pull(&y);
    // One float addition per element, the same one the test does: exact.
    for (int64_t i = 0; i < n; i++) assert_true(y.host[i] == a.host[i] + b.host[i]);
    be->ops->accumulate(be, a.dev, b.dev, (size_t)n);
    test_buf_pull(&b);
    assert_memory_equal(b.host, y.host, (size_t)n * sizeof(float));
    test_buf_destroy(&a);
    test_buf_destroy(&b);
    test_buf_destroy(&y);
}

static void test_copy_box(void **state) {
    (void)state;
    // A box of 3 channels x 1500 positions, offset in both tensors; large enough to run threaded.
    enum { N = 2, SRC_C = 5, SRC_C0 = 1, SRC_S = 4000, SRC_S0 = 700, DST_C = 7, DST_C0 = 2, DST_S = 3000,
           DST_S0 = 1100, COUNT_C = 3, COUNT_S = 1500 };
    TestBuf src = test_buf_random(N * SRC_C * SRC_S, -1.0f, 1.0f, 600);
    TestBuf dst = test_buf_random(N * DST_C * DST_S, -1.0f, 1.0f, 601);
    float *before = test_copy_of(dst.host, dst.n);
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        test_buf_push(&dst);  // host still holds `before`
        be->ops->copy_box(be, &(CopyBoxArgs){.n = N, .src = src.dev, .src_c = SRC_C, .src_c0 = SRC_C0, .src_s = SRC_S,
                                             .src_s0 = SRC_S0, .dst = dst.dev, .dst_c = DST_C, .dst_c0 = DST_C0,
                                             .dst_s = DST_S, .dst_s0 = DST_S0, .count_c = COUNT_C, .count_s = COUNT_S,
                                             .accumulate = accumulate});
        float *got = malloc((size_t)dst.n * sizeof(float));
        assert_non_null(got);
        be->ops->download(be, got, dst.dev, (size_t)dst.n * sizeof(float));
        // Copies and single additions: exact, and everything outside the box untouched.
        for (int64_t i = 0; i < N; i++)
            for (int64_t ch = 0; ch < DST_C; ch++)
                for (int64_t j = 0; j < DST_S; j++) {
                    int64_t k = (i * DST_C + ch) * DST_S + j;
                    float want = before[k];
                    if (ch >= DST_C0 && ch < DST_C0 + COUNT_C && j >= DST_S0 && j < DST_S0 + COUNT_S) {
                        float s = src.host[(i * SRC_C + SRC_C0 + ch - DST_C0) * SRC_S + SRC_S0 + j - DST_S0];
                        want = accumulate ? before[k] + s : s;
                    }
                    assert_true(got[k] == want);
                }
        free(got);
    }
    free(before);
    test_buf_destroy(&src);
    test_buf_destroy(&dst);
}

// ---- resampling and pooling ------------------------------------------------------------------------

static void test_upsample(void **state) {
    (void)state;
    enum { N = 2, C = 8, H = 16, W = 19, F = 2 };  // threaded
    const int64_t n_in = N * C * H * W, n_out = n_in * F * F;
    TestBuf x = test_buf_random(n_in, -1.0f, 1.0f, 700), y = test_buf_create(n_out);
    TestBuf dy = test_buf_create(n_out), dx = test_buf_create(n_in);
    be->ops->upsample_nearest_forward(be, N, C, H, W, F, x.dev, y.dev);
    test_buf_pull(&y);
    test_fill_integers(dy.host, n_out, 701);
    test_buf_push(&dy);
    be->ops->upsample_nearest_backward(be, N, C, H, W, F, dy.dev, dx.dev);
    test_buf_pull(&dx);
    double *want_dx = calloc((size_t)n_in, sizeof(double));
    assert_non_null(want_dx);
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t oh = 0; oh < H * F; oh++)
            for (int64_t ow = 0; ow < W * F; ow++) {
                int64_t src = (p * H + oh / F) * W + ow / F, dst = (p * H * F + oh) * W * F + ow;
                assert_true(y.host[dst] == x.host[src]);  // a copy: exact
                want_dx[src] += dy.host[dst];
            }
    // Sums of small integers: exact.
    assert_true(close_elements("upsample backward", dx.host, want_dx, n_in, 0.0, 0.0));
    float *dx1 = test_copy_of(dx.host, n_in);
    be->ops->upsample_nearest_backward(be, N, C, H, W, F, dy.dev, dx.dev);
    test_expect_doubled("upsample dx", &dx, dx1);
    free(dx1);
    free(want_dx);
    test_buf_destroy(&x);
    test_buf_destroy(&y);
    test_buf_destroy(&dy);
    test_buf_destroy(&dx);
}

enum { POOL_N = 2, POOL_C = 3, POOL_H = 25, POOL_W = 23, POOL_K = 5 };  // threaded
// SPPF's shape-keeping pool (stride 1, padding k / 2) over the POOL_ planes, as Pool2dArgs fields.
#define POOL_SPPF_ARGS                                                                                   \
    .n = POOL_N, .c = POOL_C, .h = POOL_H, .w = POOL_W, .k = POOL_K, .stride = 1, .pad = POOL_K / 2, \
    .h_out = POOL_H, .w_out = POOL_W

// Naive SPPF max-pool: window clipped to the plane, first maximum in row-major order. Writes y and,
// when dy is given, adds dy onto the argmax in dx.
static void maxpool_reference(const float *x, const float *dy, float *y, double *dx) {
    const int64_t r = POOL_K / 2;
    for (int64_t p = 0; p < POOL_N * POOL_C; p++)
        for (int64_t oh = 0; oh < POOL_H; oh++)
            for (int64_t ow = 0; ow < POOL_W; ow++) {
                int64_t best = -1;
                for (int64_t ih = oh - r; ih <= oh + r; ih++)
                    for (int64_t iw = ow - r; iw <= ow + r; iw++) {
                        if (ih < 0 || ih >= POOL_H || iw < 0 || iw >= POOL_W) continue;
                        int64_t k = (p * POOL_H + ih) * POOL_W + iw;
                        if (best < 0 || x[k] > x[best]) best = k;
                    }
                int64_t o = (p * POOL_H + oh) * POOL_W + ow;
                y[o] = x[best];
                if (dy) dx[best] += dy[o];
            }
}

typedef struct PoolProbe {
    TestBuf x, y, r;
} PoolProbe;

static double maxpool_loss(void *ctx) {
    PoolProbe *p = ctx;
    test_buf_push(&p->x);
    be->ops->maxpool2d_forward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p->x.dev, .y = p->y.dev});
    test_buf_pull(&p->y);
    return test_dot(p->y.host, p->r.host, p->y.n);
}

static void test_maxpool(void **state) {
    (void)state;
    const int64_t n = POOL_N * POOL_C * POOL_H * POOL_W;
    PoolProbe p = {.x = test_buf_create(n), .y = test_buf_create(n), .r = test_buf_random(n, -1.0f, 1.0f, 800)};
    TestBuf dx = test_buf_create(n);
    float *want = malloc((size_t)n * sizeof(float));
    assert_non_null(want);

    // Distinct values 0.01 apart, all negative, so zero padding would win if it took part.
    test_fill_permutation(p.x.host, n, 0.01f, -0.01f * (float)n - 1.0f, 801);
    test_buf_push(&p.x);
    be->ops->maxpool2d_forward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p.x.dev, .y = p.y.dev});
    test_buf_pull(&p.y);
    maxpool_reference(p.x.host, NULL, want, NULL);
    assert_memory_equal(p.y.host, want, (size_t)n * sizeof(float));  // a selection: exact
    be->ops->maxpool2d_backward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p.x.dev, .dy = p.r.dev, .dx = dx.dev});
    test_buf_pull(&dx);
    // L is piecewise linear and h = 1e-3 < half the spacing never crosses a kink: only rounding.
    assert_true(gradcheck(&(GradcheckSpec){.what = "maxpool dx", .x = p.x.host, .analytic = dx.host, .n = n,
                                           .loss = maxpool_loss, .ctx = &p, .h = 1e-3f, .atol = 1e-4, .rtol = 1e-4,
                                           .max_checks = 400}));
    maxpool_loss(&p);  // gradcheck restores only the host copy
    float *dx1 = test_copy_of(dx.host, n);
    be->ops->maxpool2d_backward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p.x.dev, .dy = p.r.dev, .dx = dx.dev});
    test_expect_doubled("maxpool dx", &dx, dx1);
    free(dx1);

    // Ties: three negative integer levels; each gradient must reach the first maximum.
    for (int64_t i = 0; i < n; i++) p.x.host[i] = -1.0f - floorf(3.0f * rng_uniform(802, (uint64_t)i));
    test_fill_integers(p.r.host, n, 803);
    test_buf_push(&p.x);
    test_buf_push(&p.r);
    test_buf_zero(&dx);
    be->ops->maxpool2d_forward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p.x.dev, .y = p.y.dev});
    be->ops->maxpool2d_backward(be, &(Pool2dArgs){POOL_SPPF_ARGS, .x = p.x.dev, .dy = p.r.dev, .dx = dx.dev});
    test_buf_pull(&p.y);
    test_buf_pull(&dx);
    double *want_dx = calloc((size_t)n, sizeof(double));
    assert_non_null(want_dx);
    maxpool_reference(p.x.host, p.r.host, want, want_dx);
    assert_memory_equal(p.y.host, want, (size_t)n * sizeof(float));
    // Sums of small integers: exact.
    assert_true(close_elements("maxpool backward ties", dx.host, want_dx, n, 0.0, 0.0));
    free(want_dx);
    free(want);
    test_buf_destroy(&dx);
    test_buf_destroy(&p.x);
    test_buf_destroy(&p.y);
    test_buf_destroy(&p.r);
}

static void test_avgpool(void **state) {
    (void)state;
    enum { N = 2, C = 3, HW = 4000 };  // threaded
    TestBuf x = test_buf_random(N * C * HW, -1.0f, 1.0f, 900), y = test_buf_create(N * C);
    TestBuf dy = test_buf_random(N * C, -1.0f, 1.0f, 901), dx = test_buf_create(N * C * HW);
    be->ops->avgpool_forward(be, N, C, HW, x.dev, y.dev);
    be->ops->avgpool_backward(be, N, C, HW, dy.dev, dx.dev);
    test_buf_pull(&y);
    test_buf_pull(&dx);
    double want[N * C], *want_dx = malloc(N * C * HW * sizeof(double));
    assert_non_null(want_dx);
    for (int p = 0; p < N * C; p++) {
        double s = 0.0;
        for (int i = 0; i < HW; i++) {
            s += x.host[p * HW + i];
            want_dx[p * HW + i] = dy.host[p] / (double)HW;
        }
        want[p] = s / HW;
    }
    // A double sum rounded once to float, and one float division.
    assert_true(close_elements("avgpool forward", y.host, want, N * C, 1e-7, 1e-6));
    assert_true(close_elements("avgpool backward", dx.host, want_dx, N * C * HW, 1e-7, 1e-6));
    float *dx1 = test_copy_of(dx.host, dx.n);
    be->ops->avgpool_backward(be, N, C, HW, dy.dev, dx.dev);
    test_expect_doubled("avgpool dx", &dx, dx1);
    free(dx1);
    free(want_dx);
    test_buf_destroy(&x);
    test_buf_destroy(&y);
    test_buf_destroy(&dy);
    test_buf_destroy(&dx);
}

// ---- dense -----------------------------------------------------------------------------------------

enum { LIN_N = 3, LIN_IN = 5, LIN_OUT = 4 };

typedef struct LinearProbe {
    TestBuf x, w, b, y, r;
} LinearProbe;

static double linear_loss(void *ctx) {
    LinearProbe *p = ctx;
    test_buf_push(&p->x);
    test_buf_push(&p->w);
    test_buf_push(&p->b);
    be->ops->linear_forward(be, LIN_N, LIN_IN, LIN_OUT, p->x.dev, p->w.dev, p->b.dev, p->y.dev);
    test_buf_pull(&p->y);
    return test_dot(p->y.host, p->r.host, p->y.n);
}

static void test_linear(void **state) {
    (void)state;
    LinearProbe p = {.x = test_buf_random(LIN_N * LIN_IN, -1.0f, 1.0f, 1000),
                     .w = test_buf_random(LIN_OUT * LIN_IN, -1.0f, 1.0f, 1001),
                     .b = test_buf_random(LIN_OUT, -1.0f, 1.0f, 1002),
                     .y = test_buf_create(LIN_N * LIN_OUT),
                     .r = test_buf_random(LIN_N * LIN_OUT, -1.0f, 1.0f, 1003)};
    double want[LIN_N * LIN_OUT], want_nobias[LIN_N * LIN_OUT];
    for (int i = 0; i < LIN_N; i++)
        for (int o = 0; o < LIN_OUT; o++) {
            double s = 0.0;
            for (int k = 0; k < LIN_IN; k++) s += (double)p.x.host[i * LIN_IN + k] * p.w.host[o * LIN_IN + k];
            want_nobias[i * LIN_OUT + o] = s;
            want[i * LIN_OUT + o] = s + p.b.host[o];
        }
    // Float32 sums of 5 products: a few ulps.
    be->ops->linear_forward(be, LIN_N, LIN_IN, LIN_OUT, p.x.dev, p.w.dev, p.b.dev, p.y.dev);
    test_buf_pull(&p.y);
    assert_true(close_elements("linear forward", p.y.host, want, p.y.n, 1e-6, 1e-6));
    be->ops->linear_forward(be, LIN_N, LIN_IN, LIN_OUT, p.x.dev, p.w.dev, NULL, p.y.dev);
    test_buf_pull(&p.y);
    assert_true(close_elements("linear forward, no bias", p.y.host, want_nobias, p.y.n, 1e-6, 1e-6));

    TestBuf dx = test_buf_create(p.x.n), dw = test_buf_create(p.w.n), db = test_buf_create(p.b.n);
    be->ops->linear_backward(be, &(LinearBackwardArgs){.n = LIN_N, .in = LIN_IN, .out = LIN_OUT, .x = p.x.dev,
                                                       .w = p.w.dev, .dy = p.r.dev, .dx = dx.dev, .dw = dw.dev,
                                                       .db = db.dev});
    test_buf_pull(&dx);
    test_buf_pull(&dw);
    test_buf_pull(&db);
    // L is linear in x, w and b: no truncation error, only rounding / 2h.
    assert_true(gradcheck(&(GradcheckSpec){.what = "linear dx", .x = p.x.host, .analytic = dx.host, .n = p.x.n,
                                           .loss = linear_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-5, .rtol = 1e-4,
                                           .max_checks = 100}));
    assert_true(gradcheck(&(GradcheckSpec){.what = "linear dw", .x = p.w.host, .analytic = dw.host, .n = p.w.n,
                                           .loss = linear_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-5, .rtol = 1e-4,
                                           .max_checks = 100}));
    assert_true(gradcheck(&(GradcheckSpec){.what = "linear db", .x = p.b.host, .analytic = db.host, .n = p.b.n,
                                           .loss = linear_loss, .ctx = &p, .h = 1e-2f, .atol = 1e-5, .rtol = 1e-4,
                                           .max_checks = 100}));

    linear_loss(&p);  // gradcheck restores only the host copies
    float *dx1 = test_copy_of(dx.host, dx.n), *dw1 = test_copy_of(dw.host, dw.n), *db1 = test_copy_of(db.host, db.n);
    be->ops->linear_backward(be, &(LinearBackwardArgs){.n = LIN_N, .in = LIN_IN, .out = LIN_OUT, .x = p.x.dev,
                                                       .w = p.w.dev, .dy = p.r.dev, .dx = dx.dev, .dw = dw.dev,
                                                       .db = db.dev});
    test_expect_doubled("linear dx", &dx, dx1);
    test_expect_doubled("linear dw", &dw, dw1);
    test_expect_doubled("linear db", &db, db1);
    // NULL dx and db are skipped; dw still accumulates.
    be->ops->linear_backward(be, &(LinearBackwardArgs){.n = LIN_N, .in = LIN_IN, .out = LIN_OUT, .x = p.x.dev,
                                                       .w = p.w.dev, .dy = p.r.dev, .dx = NULL, .dw = dw.dev,
                                                       .db = NULL});
    test_buf_pull(&dw);
    double want_dw[LIN_OUT * LIN_IN];
    for (int i = 0; i < LIN_OUT * LIN_IN; i++) want_dw[i] = 3.0 * dw1[i];
    assert_true(close_elements("linear dw, thrice", dw.host, want_dw, dw.n, 1e-6, 1e-6));
    free(dx1);
    free(dw1);
    free(db1);
    TestBuf *bufs[] = {&dx, &dw, &db, &p.x, &p.w, &p.b, &p.y, &p.r};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) test_buf_destroy(bufs[i]);
}

static void test_gemm(void **state) {
    (void)state;
    enum { M = 3, N = 4, K = 5, PAD = 2 };
    const float alpha = 0.75f, beta = -0.5f;
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        // Stored shapes with padded leading dimensions, so lda/ldb/ldc are honoured.
        const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
        const int64_t lda = a_cols + PAD, ldb = b_cols + PAD, ldc = N + PAD;
        TestBuf a = test_buf_random(a_rows * lda, -1.0f, 1.0f, 1100 + (uint64_t)t);
        TestBuf b = test_buf_random(b_rows * ldb, -1.0f, 1.0f, 1110 + (uint64_t)t);
        TestBuf c = test_buf_random(M * ldc, -1.0f, 1.0f, 1120 + (uint64_t)t);
        double want[M * (N + PAD)];
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                if (j >= N) {
                    want[i * ldc + j] = c.host[i * ldc + j];  // padding untouched
                    continue;
                }
                double s = 0.0;
                for (int k = 0; k < K; k++) {
                    double av = ta ? a.host[k * lda + i] : a.host[i * lda + k];
                    double bv = tb ? b.host[j * ldb + k] : b.host[k * ldb + j];
                    s += av * bv;
                }
                want[i * ldc + j] = alpha * s + beta * c.host[i * ldc + j];
            }
        be->ops->gemm(be, ta, tb, M, N, K, alpha, a.dev, lda, b.dev, ldb, beta, c.dev, ldc);
        test_buf_pull(&c);
        char what[64];
        snprintf(what, sizeof what, "gemm trans_a=%d trans_b=%d", ta, tb);
        // Float32 sums of 5 products: a few ulps.
        assert_true(close_elements(what, c.host, want, c.n, 1e-6, 1e-6));
        test_buf_destroy(&a);
        test_buf_destroy(&b);
        test_buf_destroy(&c);
    }
}

// ---- driver ----------------------------------------------------------------------------------------

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
        cmocka_unit_test(test_memory_ops),
        cmocka_unit_test(test_fill_uniform_matches_rng),
        cmocka_unit_test(test_conv_forward),
        cmocka_unit_test(test_conv_backward),
        cmocka_unit_test(test_batchnorm_train),
        cmocka_unit_test(test_batchnorm_infer),
        cmocka_unit_test(test_batchnorm_backward),
        cmocka_unit_test(test_batchnorm_silu_fused),
        cmocka_unit_test(test_silu),
        cmocka_unit_test(test_add_accumulate),
        cmocka_unit_test(test_copy_box),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
