// Dense layers and the GEMM wrapper on cuBLAS. cuBLAS is column-major: a row-major (m, n) matrix is
// its (n, m) transpose, so row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T,
// i.e. the same call with the operands swapped.
#include "kernels/cuda/cuda_kernels.h"

static int64_t cuda_max1(int64_t v) { return v > 1 ? v : 1; }

void cuda_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    YP_CHECK(m >= 0 && n >= 0 && k >= 0);
    YP_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
    YP_CHECK(lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX);
    YP_CHECK(lda >= cuda_max1(trans_a ? m : k));
    YP_CHECK(ldb >= cuda_max1(trans_b ? k : n));
    YP_CHECK(ldc >= cuda_max1(n));
    if (m == 0 || n == 0) return;
    CUBLAS_CHECK(cublasSgemm(cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc));
}

// y[i, o] = b[o] for every row i.
__global__ static void cuda_rows_set_kernel(float *y, const float *b, int64_t rows, int64_t cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = b[i % cols];
}

// db[o] += sum over rows of dy[i, o], one thread per column, summed in double in row order.
__global__ static void cuda_column_sums_kernel(const float *dy, float *db, int64_t rows, int64_t cols) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < cols; o += (int64_t)gridDim.x * blockDim.x) {
        double sum = 0.0;
        for (int64_t i = 0; i < rows; i++) sum += dy[i * cols + o];
        db[o] += (float)sum;
    }
}

// y (N, out) = x (N, in) · w^T + b, the bias preset in y so that the GEMM adds onto it.
void cuda_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const float *x, const float *w,
                         const float *b, float *y) {
    if (b && n * out > 0) {
        cuda_rows_set_kernel<<<cuda_blocks((size_t)(n * out)), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(y, b, n, out);
        CUDA_CHECK_LAUNCH();
    }
    cuda_gemm(be, false, true, n, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

// dx (N, in) += dy · w; dw (out, in) += dy^T · x; db (out) += column sums of dy.
void cuda_linear_backward(Backend *be, int64_t n, int64_t in, int64_t out, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db) {
    if (dx) cuda_gemm(be, false, false, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    cuda_gemm(be, true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (!db || out == 0) return;
    cuda_column_sums_kernel<<<cuda_blocks((size_t)out), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(dy, db, n, out);
    CUDA_CHECK_LAUNCH();
}
