// The CPU backend's attention slots (AttentionArgs, kernels/backend.h) in float32 against a plain
// triple-loop float64 reference written here from the formula (forward: P and y; backward: the
// gradients at q, k and v), and backward against finite differences of forward. Both layouts:
// Ultralytics' Attention (key_dim ≠ head_dim, q k v interleaved per head) and AAttn (areas). Also:
// backward accumulates and leaves qkv's other channels alone, and the results do not depend on the
// thread count.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

static Backend *be;  // float32, created once for the whole group

// One case's arguments (pointers unset) and a name for the messages.
typedef struct TestCase {
    const char *name;
    AttentionArgs shape;
} TestCase;

// Attention (C2PSA, PSA): head_stride 2·key_dim + head_dim, q k v at 0, key_dim, 2·key_dim.
static AttentionArgs test_psa_shape(int64_t n, int64_t tokens, int64_t areas, int64_t heads, int64_t key_dim,
                                    int64_t head_dim, int64_t extra_c) {
    const int64_t stride = 2 * key_dim + head_dim;
    return (AttentionArgs){.n = n, .tokens = tokens, .areas = areas, .heads = heads, .key_dim = key_dim,
                           .head_dim = head_dim, .qkv_c = heads * stride + extra_c, .head_stride = stride,
                           .q_c0 = 0, .k_c0 = key_dim, .v_c0 = 2 * key_dim, .scale = 1.0f / sqrtf((float)key_dim)};
}

// AAttn (A2C2f): key_dim = head_dim, head_stride 3·head_dim, q k v at 0, head_dim, 2·head_dim.
static AttentionArgs test_area_shape(int64_t n, int64_t tokens, int64_t areas, int64_t heads, int64_t head_dim) {
    return (AttentionArgs){.n = n, .tokens = tokens, .areas = areas, .heads = heads, .key_dim = head_dim,
                           .head_dim = head_dim, .qkv_c = 3 * heads * head_dim, .head_stride = 3 * head_dim,
                           .q_c0 = 0, .k_c0 = head_dim, .v_c0 = 2 * head_dim,
                           .scale = 1.0f / sqrtf((float)head_dim)};
}

static const TestCase *test_cases(int *count) {
    static TestCase cases[5];
    cases[0] = (TestCase){"psa odd tokens", test_psa_shape(2, 7, 1, 3, 4, 6, 0)};
    cases[1] = (TestCase){"psa 4 areas, extra channels", test_psa_shape(2, 12, 4, 2, 2, 5, 3)};
    cases[2] = (TestCase){"area-attention 1 area", test_area_shape(2, 9, 1, 2, 4)};
    cases[3] = (TestCase){"area-attention 4 areas", test_area_shape(2, 16, 4, 3, 4)};
    cases[4] = (TestCase){"one image one head", test_psa_shape(1, 5, 1, 1, 3, 2, 0)};
    *count = 5;
    return cases;
}

// ---- the float64 reference, straight from the formula ----------------------------------------------

// qkv element of channel c0 + c of head h, image img, token `tok`.
static size_t test_at(const AttentionArgs *a, int64_t img, int64_t h, int64_t c0, int64_t c, int64_t tok) {
    return (size_t)((img * a->qkv_c + h * a->head_stride + c0 + c) * a->tokens + tok);
}

// Forward (p, y) and, with dy, backward (dqkv overwritten with the gradient, zero elsewhere).
static void test_reference(const AttentionArgs *a, const float *qkv, const float *dy, double *p, double *y,
                           double *dqkv) {
    const int64_t na = attention_area_tokens(a);
    double *dp = malloc((size_t)(na * na) * sizeof(double));
    assert_non_null(dp);
    if (dqkv) memset(dqkv, 0, attention_qkv_elems(a) * sizeof(double));
    for (int64_t img = 0; img < a->n; img++) {
        for (int64_t ar = 0; ar < a->areas; ar++) {
            for (int64_t h = 0; h < a->heads; h++) {
                double *pp = p + ((img * a->areas + ar) * a->heads + h) * na * na;
                const int64_t t0 = ar * na;
                for (int64_t i = 0; i < na; i++) {
                    double max = -INFINITY, sum = 0.0;
                    for (int64_t j = 0; j < na; j++) {
                        double s = 0.0;
                        for (int64_t c = 0; c < a->key_dim; c++)
                            s += (double)qkv[test_at(a, img, h, a->q_c0, c, t0 + i)] *
                                 qkv[test_at(a, img, h, a->k_c0, c, t0 + j)];
                        pp[i * na + j] = (double)a->scale * s;
                        max = fmax(max, pp[i * na + j]);
                    }
                    for (int64_t j = 0; j < na; j++) sum += pp[i * na + j] = exp(pp[i * na + j] - max);
                    for (int64_t j = 0; j < na; j++) pp[i * na + j] /= sum;
                }
                for (int64_t d = 0; d < a->head_dim; d++) {
                    for (int64_t i = 0; i < na; i++) {
                        double s = 0.0;
                        for (int64_t j = 0; j < na; j++) s += pp[i * na + j] * qkv[test_at(a, img, h, a->v_c0, d, t0 + j)];
                        y[((img * a->heads + h) * a->head_dim + d) * a->tokens + t0 + i] = s;
                    }
                }
                if (!dy) continue;
                const float *dyh = dy + (img * a->heads + h) * a->head_dim * a->tokens + t0;
                // dP[i, j] = Σ_d dY[d, i] v_j[d];  dV[d, j] = Σ_i dY[d, i] P[i, j]
                for (int64_t i = 0; i < na; i++) {
                    for (int64_t j = 0; j < na; j++) {
                        double s = 0.0;
                        for (int64_t d = 0; d < a->head_dim; d++)
                            s += (double)dyh[d * a->tokens + i] * qkv[test_at(a, img, h, a->v_c0, d, t0 + j)];
                        dp[i * na + j] = s;
                    }
                }
                for (int64_t d = 0; d < a->head_dim; d++) {
                    for (int64_t j = 0; j < na; j++) {
                        double s = 0.0;
                        for (int64_t i = 0; i < na; i++) s += dyh[d * a->tokens + i] * pp[i * na + j];
                        dqkv[test_at(a, img, h, a->v_c0, d, t0 + j)] = s;
                    }
                }
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), then through S = scale · q_i · k_j.
                for (int64_t i = 0; i < na; i++) {
                    double dot = 0.0;
                    for (int64_t j = 0; j < na; j++) dot += dp[i * na + j] * pp[i * na + j];
                    for (int64_t j = 0; j < na; j++) dp[i * na + j] = pp[i * na + j] * (dp[i * na + j] - dot);
                }
                for (int64_t c = 0; c < a->key_dim; c++) {
                    for (int64_t i = 0; i < na; i++) {
                        double dq = 0.0, dk = 0.0;
                        for (int64_t j = 0; j < na; j++) {
                            dq += dp[i * na + j] * qkv[test_at(a, img, h, a->k_c0, c, t0 + j)];
                            dk += dp[j * na + i] * qkv[test_at(a, img, h, a->q_c0, c, t0 + j)];
                        }
                        dqkv[test_at(a, img, h, a->q_c0, c, t0 + i)] = a->scale * dq;
                        dqkv[test_at(a, img, h, a->k_c0, c, t0 + i)] = a->scale * dk;
                    }
                }
            }
        }
    }
    free(dp);
}

// ---- one case's tensors on the backend (host memory on the CPU) -----------------------------------

typedef struct TestTensors {
    AttentionArgs a;  // pointers set to the buffers below
    float *qkv, *probs, *y, *dy, *dqkv;
} TestTensors;

static TestTensors test_tensors_create(const AttentionArgs *shape, uint64_t seed) {
    TestTensors t = {.a = *shape};
    const size_t n_qkv = attention_qkv_elems(shape), n_y = attention_y_elems(shape), n_p = attention_probs_elems(shape);
    t.qkv = be->ops->alloc(be, n_qkv * sizeof(float));
    t.probs = be->ops->alloc(be, n_p * sizeof(float));
    t.y = be->ops->alloc(be, n_y * sizeof(float));
    t.dy = be->ops->alloc(be, n_y * sizeof(float));
    t.dqkv = be->ops->alloc(be, n_qkv * sizeof(float));
    // Scores of a few units: softmax rows far from uniform, yet not saturated.
    test_fill_uniform(t.qkv, (int64_t)n_qkv, -1.5f, 1.5f, seed);
    test_fill_uniform(t.dy, (int64_t)n_y, -1.0f, 1.0f, seed + 1);
    memset(t.dqkv, 0, n_qkv * sizeof(float));
    t.a.qkv = t.qkv;
    t.a.probs = t.probs;
    t.a.y = t.y;
    t.a.dy = t.dy;
    t.a.dqkv = t.dqkv;
    be->ops->reserve_workspace(be, be->ops->attention_workspace_bytes(be, &t.a));
    return t;
}

static void test_tensors_destroy(TestTensors *t) {
    be->ops->free(be, t->qkv);
    be->ops->free(be, t->probs);
    be->ops->free(be, t->y);
    be->ops->free(be, t->dy);
    be->ops->free(be, t->dqkv);
}

// ---- tests -----------------------------------------------------------------------------------------

// Forward's P and y, and backward's dqkv, against the float64 reference. Tolerance: atol 2e-6, rtol
// 1e-5; float32 products of at most 16 terms and a softmax of at most 9 (a few ulps of O(1) values).
static void test_against_reference(void **state) {
    (void)state;
    int count;
    const TestCase *cases = test_cases(&count);
    for (int c = 0; c < count; c++) {
        const AttentionArgs *shape = &cases[c].shape;
        TestTensors t = test_tensors_create(shape, 100 + (uint64_t)c);
        const size_t n_qkv = attention_qkv_elems(shape), n_y = attention_y_elems(shape), n_p = attention_probs_elems(shape);
        double *p = malloc(n_p * sizeof(double)), *y = malloc(n_y * sizeof(double)),
               *dqkv = malloc(n_qkv * sizeof(double));
        assert_true(p && y && dqkv);
        test_reference(shape, t.qkv, t.dy, p, y, dqkv);
        be->ops->attention_forward(be, &t.a);
        be->ops->attention_backward(be, &t.a);
        char what[96];
        snprintf(what, sizeof what, "%s probs", cases[c].name);
        assert_true(close_elements(what, t.probs, p, (int64_t)n_p, 2e-6, 1e-5));
        snprintf(what, sizeof what, "%s y", cases[c].name);
        assert_true(close_elements(what, t.y, y, (int64_t)n_y, 2e-6, 1e-5));
        snprintf(what, sizeof what, "%s dqkv", cases[c].name);
        assert_true(close_elements(what, t.dqkv, dqkv, (int64_t)n_qkv, 2e-6, 1e-5));
        free(p);
        free(y);
        free(dqkv);
        test_tensors_destroy(&t);
    }
}

// dot(y(qkv), r) with r = the case's dy: its gradient at qkv is what backward computes with dy = r.
static double attention_loss(void *ctx) {
    TestTensors *t = ctx;
    be->ops->attention_forward(be, &t->a);
    return test_dot(t->y, t->dy, (int64_t)attention_y_elems(&t->a));
}

// Backward against five-point differences of forward, for every case, every element of qkv (the
// extra channels' gradient is 0, which the differences confirm too). Tolerance: atol 1e-3, rtol
// 5e-3; h = 1e-2 on O(1) inputs keeps the truncation error near 1e-8, and the float32 loss's
// rounding (~1e-6 over at most 400 terms) divided by h leaves about 1e-4.
static void test_gradcheck(void **state) {
    (void)state;
    int count;
    const TestCase *cases = test_cases(&count);
    for (int c = 0; c < count; c++) {
        TestTensors t = test_tensors_create(&cases[c].shape, 200 + (uint64_t)c);
        attention_loss(&t);
        be->ops->attention_backward(be, &t.a);
        assert_true(gradcheck_five_point(&(GradcheckSpec){.what = cases[c].name, .x = t.qkv, .analytic = t.dqkv,
                                                          .n = (int64_t)attention_qkv_elems(&t.a), .loss = attention_loss,
                                                          .ctx = &t, .h = 1e-2f, .atol = 1e-3, .rtol = 5e-3,
                                                          .max_checks = 1000}));
        test_tensors_destroy(&t);
    }
}

// A second backward adds the same gradient again (exactly: each element adds one float32 value onto
// itself), and channels outside every head's q, k and v keep what they held.
static void test_accumulates(void **state) {
    (void)state;
    const AttentionArgs shape = test_psa_shape(2, 12, 4, 2, 2, 5, 3);
    TestTensors t = test_tensors_create(&shape, 300);
    const size_t n_qkv = attention_qkv_elems(&shape);
    const float marker = 0.625f;
    const int64_t first_extra = shape.heads * shape.head_stride;
    for (int64_t img = 0; img < shape.n; img++)
        for (int64_t ch = first_extra; ch < shape.qkv_c; ch++)
            for (int64_t tok = 0; tok < shape.tokens; tok++) t.dqkv[(img * shape.qkv_c + ch) * shape.tokens + tok] = marker;
    be->ops->attention_forward(be, &t.a);
    be->ops->attention_backward(be, &t.a);
    float *once = malloc(n_qkv * sizeof(float));
    assert_non_null(once);
    memcpy(once, t.dqkv, n_qkv * sizeof(float));
    be->ops->attention_backward(be, &t.a);
    for (size_t i = 0; i < n_qkv; i++) {
        const int64_t ch = (int64_t)(i / (size_t)shape.tokens) % shape.qkv_c;
        if (ch >= first_extra) {
            assert_true(t.dqkv[i] == marker);
        } else {
            assert_true(t.dqkv[i] == once[i] + once[i]);
        }
    }
    free(once);
    test_tensors_destroy(&t);
}

// One thread and two give the same bits: items are independent and none is split between threads.
static void test_thread_count(void **state) {
    (void)state;
    const AttentionArgs shape = test_area_shape(2, 16, 4, 3, 4);
    const size_t n_qkv = attention_qkv_elems(&shape), n_y = attention_y_elems(&shape), n_p = attention_probs_elems(&shape);
    const int saved = omp_get_max_threads();
    TestTensors runs[2];
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r + 1);
        runs[r] = test_tensors_create(&shape, 400);
        be->ops->attention_forward(be, &runs[r].a);
        be->ops->attention_backward(be, &runs[r].a);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(runs[0].probs, runs[1].probs, n_p * sizeof(float));
    assert_memory_equal(runs[0].y, runs[1].y, n_y * sizeof(float));
    assert_memory_equal(runs[0].dqkv, runs[1].dqkv, n_qkv * sizeof(float));
    for (int r = 0; r < 2; r++) test_tensors_destroy(&runs[r]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulates),
        cmocka_unit_test(test_thread_count),
    };
    be = cpu_backend_create(DTYPE_F32);
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    backend_destroy(be);
    return failed;
}
