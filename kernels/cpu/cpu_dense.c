// Dense layers and the GEMM wrapper, all on OpenBLAS (which threads the GEMMs itself).
#include <cblas.h>
#include <limits.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

static int64_t cpu_max1(int64_t v) { return v > 1 ? v : 1; }

void cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc) {
    YP_CHECK(m >= 0 && n >= 0 && k >= 0);
    YP_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX);
    YP_CHECK(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
    // Row-major leading dimensions are the stored widths: A is (m, k) or (k, m) when transposed.
    YP_CHECK(lda >= cpu_max1(trans_a ? m : k));
    YP_CHECK(ldb >= cpu_max1(trans_b ? k : n));
    YP_CHECK(ldc >= cpu_max1(n));
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
}

void cpu_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc) {
    (void)be;
    cpu_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// y (N, out) = x (N, in) · w^T (in, out) + b, the bias preset in y so the GEMM adds onto it.
void cpu_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const void *x_mem,
                        const float *w, const float *b, void *y_mem) {
    const float *x = x_mem;
    float *y = y_mem;
    (void)be;
    if (b) {
#pragma omp parallel for if (n * out >= CPU_PARALLEL_MIN_ELEMS)
        for (int64_t i = 0; i < n; i++) {
            for (int64_t o = 0; o < out; o++) y[i * out + o] = b[o];
        }
    }
    cpu_sgemm(false, true, n, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

// dx (N, in) += dy · w; dw (out, in) += dy^T · x; db (out) += column sums of dy.
void cpu_linear_backward(Backend *be, const LinearBackwardArgs *a) {
    const int64_t n = a->n, in = a->in, out = a->out;
    const float *x = a->x;
    const float *w = a->w;
    const float *dy = a->dy;
    float *dx = a->dx;
    float *dw = a->dw;
    float *db = a->db;
    (void)be;
    if (dx) cpu_sgemm(false, false, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    cpu_sgemm(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (!db) return;
#pragma omp parallel for if (n * out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t o = 0; o < out; o++) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += dy[i * out + o];
        db[o] += (float)sum;
    }
}
