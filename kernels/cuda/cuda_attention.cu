// Attention (AttentionArgs, kernels/backend.h) on cuBLAS. For each (image, area), every product is one
// strided-batched GEMM over the heads: head h's q, k and v start head_stride·T elements after head
// h−1's, its y head_dim·T and its P Na·Na (row-major views with leading dimension T, as in
// kernels/cpu/cpu_attention.c; cuda_dense.cu says how row-major maps onto cuBLAS's column-major).
// Operands are activations (16-bit ones on tensor cores), compute is float32 (CUBLAS_COMPUTE_32F):
//   forward   S = scale · Qᵀ K, float32 in the workspace; P = softmax(S) stored as activations;
//             Y = V · Pᵀ from the stored P
//   backward  dV += dY · P;  dP = dYᵀ · V, float32 in the workspace;
//             dS = P ⊙ (dP − rowsum(dP ⊙ P)), activations in the workspace (tensor cores multiply
//             16-bit operands); dQ += scale · K · dSᵀ;  dK += scale · Q · dS
// Softmax and its backward give each row to one warp, which sums in a fixed shuffle order.
#include <math.h>

#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_loops.h"

// Elements of one (image, area)'s scores, dP or dS: heads · Na · Na.
static size_t cuda_attention_block_elems(const AttentionArgs *a) {
    const int64_t na = attention_area_tokens(a);
    return (size_t)(a->heads * na * na);
}

// The workspace: float32 scores or dP, then (from a 256-byte boundary, cudaMalloc's alignment) dS.
static size_t cuda_attention_ds_offset(const AttentionArgs *a) {
    return (cuda_attention_block_elems(a) * sizeof(float) + 255) / 256 * 256;
}

size_t cuda_attention_workspace_bytes(Backend *be, const AttentionArgs *a) {
    attention_args_check(a);
    return cuda_attention_ds_offset(a) + cuda_attention_block_elems(a) * dtype_size(be->act);
}

// Row-major C = alpha · op(A) op(B) + beta · C for `batch` matrices, each operand's next matrix
// `stride` elements after the last, in the given element types; float32 compute.
typedef struct CudaBatchedOperand {
    const void *p;
    cudaDataType_t type;
    int64_t ld, stride;
} CudaBatchedOperand;

static void cuda_attention_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                CudaBatchedOperand a, CudaBatchedOperand b, float beta, void *c, cudaDataType_t c_type,
                                int64_t ldc, int64_t c_stride, int64_t batch) {
    cuda_gemm_check(trans_a, trans_b, m, n, k, a.ld, b.ld, ldc);
    YP_CHECK(batch >= 1 && batch <= INT32_MAX);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, b.p,
                                            b.type, (int)b.ld, (long long)b.stride, a.p, a.type, (int)a.ld,
                                            (long long)a.stride, &beta, c, c_type, (int)ldc, (long long)c_stride,
                                            (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Maximum and sum over the 32 lanes of a warp, every lane getting the result (butterfly order, fixed).
static __device__ __forceinline__ float cuda_attention_warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}
static __device__ __forceinline__ float cuda_attention_warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// p = softmax of each row of s (rows, cols): max-subtracted, each value divided by its row's sum.
template <typename T>
__global__ static void cuda_attention_softmax_kernel(const float *s, T *p, int64_t rows, int64_t cols) {
    const int64_t lane = threadIdx.x % 32;
    for (int64_t r = cuda_warp_first(); r < rows; r += cuda_warp_stride()) {
        const float *srow = s + r * cols;
        float max = -INFINITY, sum = 0.0f;
        for (int64_t j = lane; j < cols; j += 32) max = fmaxf(max, srow[j]);
        max = cuda_attention_warp_max(max);
        for (int64_t j = lane; j < cols; j += 32) sum += expf(srow[j] - max);
        sum = cuda_attention_warp_sum(sum);
        for (int64_t j = lane; j < cols; j += 32) cuda_act_store(&p[r * cols + j], expf(srow[j] - max) / sum);
    }
}

// ds = p ⊙ (dp − rowsum(dp ⊙ p)) for each row (rows, cols).
template <typename T>
__global__ static void cuda_attention_softmax_backward_kernel(const T *p, const float *dp, T *ds, int64_t rows,
                                                              int64_t cols) {
    const int64_t lane = threadIdx.x % 32;
    for (int64_t r = cuda_warp_first(); r < rows; r += cuda_warp_stride()) {
        const int64_t row = r * cols;
        float dot = 0.0f;
        for (int64_t j = lane; j < cols; j += 32) dot += dp[row + j] * cuda_act_load(&p[row + j]);
        dot = cuda_attention_warp_sum(dot);
        for (int64_t j = lane; j < cols; j += 32)
            cuda_act_store(&ds[row + j], cuda_act_load(&p[row + j]) * (dp[row + j] - dot));
    }
}

// One (image, area)'s views, each starting at its first head (head h adds h strides): q, k and v of
// qkv, and as element offsets the same of dqkv, y's (and dy's) and P's.
typedef struct CudaAttentionBlock {
    CudaBatchedOperand q, k, v;
    int64_t q0, k0, v0, y0, p0;
} CudaAttentionBlock;

static CudaAttentionBlock cuda_attention_block(Backend *be, const AttentionArgs *a, int64_t img, int64_t area) {
    const int64_t na = attention_area_tokens(a), t = a->tokens, token0 = area * na, stride = a->head_stride * t;
    const cudaDataType_t at = cuda_act_blas_type(be->act);
    const int64_t q0 = (img * a->qkv_c + a->q_c0) * t + token0, k0 = (img * a->qkv_c + a->k_c0) * t + token0;
    const int64_t v0 = (img * a->qkv_c + a->v_c0) * t + token0;
    return (CudaAttentionBlock){
        .q = {backend_act_at(be, (void *)a->qkv, q0), at, t, stride},
        .k = {backend_act_at(be, (void *)a->qkv, k0), at, t, stride},
        .v = {backend_act_at(be, (void *)a->qkv, v0), at, t, stride},
        .q0 = q0,
        .k0 = k0,
        .v0 = v0,
        .y0 = img * a->heads * a->head_dim * t + token0,
        .p0 = (img * a->areas + area) * (int64_t)cuda_attention_block_elems(a),
    };
}

void cuda_attention_forward(Backend *be, const AttentionArgs *a) {
    const int64_t na = attention_area_tokens(a), t = a->tokens, rows = a->heads * na;
    float *scores = (float *)cuda_workspace_get(be, cuda_attention_workspace_bytes(be, a));
    const cudaDataType_t at = cuda_act_blas_type(be->act);
    for (int64_t img = 0; img < a->n; img++) {
        for (int64_t area = 0; area < a->areas; area++) {
            const CudaAttentionBlock blk = cuda_attention_block(be, a, img, area);
            void *p = backend_act_at(be, a->probs, blk.p0);
            cuda_attention_gemm(be, true, false, na, na, a->key_dim, a->scale, blk.q, blk.k, 0.0f, scores, CUDA_R_32F,
                                na, na * na, a->heads);
            cuda_act_dispatch(be->act, [&](auto tag) {
                using T = CudaAct<decltype(tag)>;
                cuda_attention_softmax_kernel<<<cuda_blocks((size_t)rows * 32), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
                    scores, (T *)p, rows, na);
            });
            CUDA_CHECK_LAUNCH();
            cuda_attention_gemm(be, false, true, a->head_dim, na, na, 1.0f, blk.v,
                                (CudaBatchedOperand){p, at, na, na * na}, 0.0f, backend_act_at(be, a->y, blk.y0), at, t,
                                a->head_dim * t, a->heads);
        }
    }
}

void cuda_attention_backward(Backend *be, const AttentionArgs *a) {
    const int64_t na = attention_area_tokens(a), t = a->tokens, rows = a->heads * na;
    char *work = (char *)cuda_workspace_get(be, cuda_attention_workspace_bytes(be, a));
    float *dp = (float *)work;
    void *ds = work + cuda_attention_ds_offset(a);
    const cudaDataType_t at = cuda_act_blas_type(be->act);
    const int64_t qkv_stride = a->head_stride * t, p_stride = na * na;
    const CudaBatchedOperand ds_op = {ds, at, na, p_stride};
    for (int64_t img = 0; img < a->n; img++) {
        for (int64_t area = 0; area < a->areas; area++) {
            const CudaAttentionBlock blk = cuda_attention_block(be, a, img, area);
            const CudaBatchedOperand dy = {backend_act_at(be, (void *)a->dy, blk.y0), at, t, a->head_dim * t};
            const CudaBatchedOperand p = {backend_act_at(be, a->probs, blk.p0), at, na, p_stride};
            cuda_attention_gemm(be, false, false, a->head_dim, na, na, 1.0f, dy, p, 1.0f,
                                backend_act_at(be, a->dqkv, blk.v0), at, t, qkv_stride, a->heads);
            cuda_attention_gemm(be, true, false, na, na, a->head_dim, 1.0f, dy, blk.v, 0.0f, dp, CUDA_R_32F, na,
                                p_stride, a->heads);
            cuda_act_dispatch(be->act, [&](auto tag) {
                using T = CudaAct<decltype(tag)>;
                cuda_attention_softmax_backward_kernel<<<cuda_blocks((size_t)rows * 32), CUDA_THREADS, 0,
                                                         cuda_ctx(be)->stream>>>((const T *)p.p, dp, (T *)ds, rows, na);
            });
            CUDA_CHECK_LAUNCH();
            cuda_attention_gemm(be, false, true, a->key_dim, na, na, a->scale, blk.k, ds_op, 1.0f,
                                backend_act_at(be, a->dqkv, blk.q0), at, t, qkv_stride, a->heads);
            cuda_attention_gemm(be, false, false, a->key_dim, na, na, a->scale, blk.q, ds_op, 1.0f,
                                backend_act_at(be, a->dqkv, blk.k0), at, t, qkv_stride, a->heads);
        }
    }
}
