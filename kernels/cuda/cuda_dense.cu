// Dense layers and the GEMM wrapper on cuBLAS. cuBLAS is column-major: a row-major (m, n) matrix is
// its (n, m) transpose, so row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T,
// i.e. the same call with the operands swapped.
//
// With float32 activations the layers run cublasSgemm. With bf16/fp16 they run cublasGemmEx on
// 16-bit operands with float accumulation (CUBLAS_COMPUTE_32F): x, y, dy and dx in the activation
// type, the float32 weights rounded to it into the activation staging (cuda_act_scratch_get), in
// slices of whole output rows (forward) or input columns (backward-data) when the weights outnumber
// the staging, so that every result is still written once; dw accumulates straight into float32
// (16-bit A and B with a float32 C is one of cuBLAS's combinations). gemm is float32 only.
#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_kernels.h"

static int64_t cuda_max1(int64_t v) { return v > 1 ? v : 1; }

void cuda_gemm_check(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                            int64_t ldc) {
    YP_CHECK(m >= 0 && n >= 0 && k >= 0);
    YP_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
    YP_CHECK(lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX);
    YP_CHECK(lda >= cuda_max1(trans_a ? m : k));
    YP_CHECK(ldb >= cuda_max1(trans_b ? k : n));
    YP_CHECK(ldc >= cuda_max1(n));
}

void cuda_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    cuda_gemm_check(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0) return;
    CUBLAS_CHECK(cublasSgemm(cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc));
}

cudaDataType_t cuda_act_blas_type(DType act) {
    return act == DTYPE_F32 ? CUDA_R_32F : act == DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// Row-major C (m, n) = op(A) op(B) + beta C with A and B in the activation type and C in it, or in
// float32 with `c_float`; float accumulation.
static void cuda_gemm_act(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void *a,
                          int64_t lda, const void *b, int64_t ldb, float beta, void *c, int64_t ldc, bool c_float) {
    cuda_gemm_check(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0) return;
    const cudaDataType_t t = cuda_act_blas_type(be->act);
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, b, t, (int)ldb, a,
                              t, (int)lda, &beta, c, c_float ? CUDA_R_32F : t, (int)ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

// y[i, o] = b[o] for every row i.
template <typename T>
__global__ static void cuda_rows_set_kernel(T *y, const float *b, int64_t rows, int64_t cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols; i += (int64_t)gridDim.x * blockDim.x)
        cuda_act_store(&y[i], b[i % cols]);
}

// db[o] += sum over rows of dy[i, o], one thread per column, summed in double in row order.
template <typename T>
__global__ static void cuda_column_sums_kernel(const T *dy, float *db, int64_t rows, int64_t cols) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < cols; o += (int64_t)gridDim.x * blockDim.x) {
        double sum = 0.0;
        for (int64_t i = 0; i < rows; i++) sum += cuda_act_load(&dy[i * cols + o]);
        db[o] += (float)sum;
    }
}

// Slices of `count` rows or columns of the weights, each `length` long, that fit the staging at once.
static int64_t cuda_weight_slice(Backend *be, int64_t length, int64_t count) {
    const int64_t fit = (int64_t)cuda_act_scratch_elems(be) / cuda_max1(length);
    YP_CHECK(fit >= 1);  // one row or column is as long as an activation's dimension: reserve_activations ran
    return fit < count ? fit : count;
}

// y (N, out) = x (N, in) · w^T + b, the bias preset in y so that the GEMM adds onto it.
void cuda_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const void *x, const float *w,
                         const float *b, void *y) {
    if (b && n * out > 0) {
        cuda_act_dispatch(be->act, [&](auto tag) {
            using T = CudaAct<decltype(tag)>;
            cuda_rows_set_kernel<<<cuda_blocks((size_t)(n * out)), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>((T *)y, b,
                                                                                                          n, out);
        });
        CUDA_CHECK_LAUNCH();
    }
    const float beta = b ? 1.0f : 0.0f;
    if (be->act == DTYPE_F32) {
        cuda_gemm(be, false, true, n, out, in, 1.0f, (const float *)x, in, w, in, beta, (float *)y, out);
        return;
    }
    if (n == 0 || out == 0) return;
    // Output rows [o0, o0 + rows) of w give columns [o0, o0 + rows) of y.
    const int64_t slice = cuda_weight_slice(be, in, out);
    for (int64_t o0 = 0; o0 < out; o0 += slice) {
        const int64_t rows = out - o0 < slice ? out - o0 : slice;
        void *w_cast = cuda_act_scratch_get(be, (size_t)(rows * in));
        cuda_act_round(be, rows, in, w + o0 * in, in, w_cast);
        cuda_gemm_act(be, false, true, n, rows, in, x, in, w_cast, in, beta, backend_act_at(be, y, o0), out, false);
    }
}

// dx (N, in) += dy · w; dw (out, in) += dy^T · x; db (out) += column sums of dy.
void cuda_linear_backward(Backend *be, const LinearBackwardArgs *a) {
    const int64_t n = a->n, in = a->in, out = a->out;
    const void *x = a->x, *dy = a->dy;
    const float *w = a->w;
    void *dx = a->dx;
    float *dw = a->dw, *db = a->db;
    if (be->act == DTYPE_F32) {
        const float *xf = (const float *)x, *dyf = (const float *)dy;
        if (dx) cuda_gemm(be, false, false, n, in, out, 1.0f, dyf, out, w, in, 1.0f, (float *)dx, in);
        cuda_gemm(be, true, false, out, in, n, 1.0f, dyf, out, xf, in, 1.0f, dw, in);
    } else {
        if (dx && n > 0 && in > 0) {
            // Input columns [i0, i0 + cols) of w give columns [i0, i0 + cols) of dx.
            const int64_t slice = cuda_weight_slice(be, out, in);
            for (int64_t i0 = 0; i0 < in; i0 += slice) {
                const int64_t cols = in - i0 < slice ? in - i0 : slice;
                void *w_cast = cuda_act_scratch_get(be, (size_t)(out * cols));
                cuda_act_round(be, out, cols, w + i0, in, w_cast);
                void *dx_cols = backend_act_at(be, dx, i0);
                cuda_gemm_act(be, false, false, n, cols, out, dy, out, w_cast, cols, 1.0f, dx_cols, in, false);
            }
        }
        cuda_gemm_act(be, true, false, out, in, n, dy, out, x, in, 1.0f, dw, in, true);
    }
    if (!db || out == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        cuda_column_sums_kernel<<<cuda_blocks((size_t)out), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>((const T *)dy, db,
                                                                                                    n, out);
    });
    CUDA_CHECK_LAUNCH();
}
