// The optimizer and EMA updates over a chunk table (BackendOps' multi-tensor slots): the table is
// copied to the device once, and each call is one kernel launch, with its scalars passed by value.
// Chunks are spread over the blocks and a chunk's elements over the block's threads. Every float
// operation is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, ...), which nvcc never fuses
// into a multiply-add, so each element gets exactly the CPU backend's operations in its order.
#include "kernels/cuda/cuda_kernels.h"

struct MultiTensorTable {
    int n_chunks;
    MultiTensorChunk *chunks;  // (n_chunks) device memory, owned; NULL when there are none
};

// Grid of one block per chunk, capped as cuda_blocks caps (the kernels loop over the rest).
static unsigned cuda_chunk_blocks(const MultiTensorTable *table) {
    const unsigned cap = 65535u * 8u;
    return (unsigned)table->n_chunks < cap ? (unsigned)table->n_chunks : cap;
}

MultiTensorTable *cuda_multi_tensor_prepare(Backend *be, const MultiTensorChunk *chunks, int n_chunks) {
    YP_CHECK(n_chunks >= 0);
    for (int c = 0; c < n_chunks; c++) {
        YP_CHECK(chunks[c].group >= 0 && chunks[c].group < BACKEND_PARAM_GROUPS);
        YP_CHECK(chunks[c].begin >= 0 && chunks[c].begin <= chunks[c].end);
    }
    MultiTensorTable *table = (MultiTensorTable *)yp_malloc(sizeof *table);
    table->n_chunks = n_chunks;
    table->chunks = NULL;
    if (n_chunks) {
        size_t n_bytes = (size_t)n_chunks * sizeof *chunks;
        CudaContext *ctx = cuda_ctx(be);
        table->chunks = (MultiTensorChunk *)be->ops->alloc(be, n_bytes);
        CUDA_CHECK(cudaMemcpyAsync(table->chunks, chunks, n_bytes, cudaMemcpyHostToDevice, ctx->stream));
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));  // the caller may free `chunks` on return
    }
    return table;
}

void cuda_multi_tensor_release(Backend *be, MultiTensorTable *table) {
    if (!table) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx(be)->stream));  // kernels still queued read the table
    be->ops->free(be, table->chunks);
    free(table);
}

// f(chunk, i) for every element i of every chunk.
template <typename F>
__device__ static void cuda_chunks_for_each(const MultiTensorChunk *chunks, int n_chunks, F f) {
    for (int c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const MultiTensorChunk ch = chunks[c];
        for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += blockDim.x) f(ch, i);
    }
}

// PyTorch's lerp(a, b, w), each operation rounded: a + w·(b − a) when |w| < 0.5, else b − (b − a)·(1 − w).
__device__ static float cuda_lerp(float a, float b, float w, bool small_w) {
    return small_w ? __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a))) : __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), __fsub_rn(1.0f, w)));
}

__global__ static void cuda_sgd_kernel(const MultiTensorChunk *chunks, int n_chunks, float *momentum_buffer,
                                       SgdStepScalars s) {
    cuda_chunks_for_each(chunks, n_chunks, [&](const MultiTensorChunk &ch, int64_t i) {
        float *p = ch.tensor, *b = momentum_buffer + ch.state_offset;
        const float wd = s.weight_decay[ch.group];
        float g = ch.grad[i];
        if (wd != 0.0f) g = __fadd_rn(g, __fmul_rn(wd, p[i]));
        b[i] = __fadd_rn(__fmul_rn(b[i], s.momentum), g);
        g = __fadd_rn(g, __fmul_rn(s.momentum, b[i]));  // Nesterov
        p[i] = __fadd_rn(p[i], __fmul_rn(-s.lr[ch.group], g));
    });
}

void cuda_optim_sgd_step(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s) {
    if (!table->n_chunks) return;
    cuda_sgd_kernel<<<cuda_chunk_blocks(table), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(table->chunks, table->n_chunks,
                                                                                       momentum_buffer, s);
    CUDA_CHECK_LAUNCH();
}

__global__ static void cuda_adamw_kernel(const MultiTensorChunk *chunks, int n_chunks, float *exp_avg, float *exp_avg_sq,
                                         AdamwStepScalars s, bool small_w) {
    cuda_chunks_for_each(chunks, n_chunks, [&](const MultiTensorChunk &ch, int64_t i) {
        float *p = ch.tensor, *m = exp_avg + ch.state_offset, *v = exp_avg_sq + ch.state_offset;
        const float g = ch.grad[i];
        p[i] = __fmul_rn(p[i], s.decay[ch.group]);
        m[i] = cuda_lerp(m[i], g, s.lerp_w, small_w);
        v[i] = __fmul_rn(v[i], s.beta2);
        v[i] = __fadd_rn(v[i], __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v[i]), s.bias_correction2_sqrt), s.eps);
        p[i] = __fadd_rn(p[i], __fdiv_rn(__fmul_rn(s.neg_step_size[ch.group], m[i]), denom));
    });
}

void cuda_optim_adamw_step(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                           AdamwStepScalars s) {
    if (!table->n_chunks) return;
    const bool small_w = fabsf(s.lerp_w) < 0.5f;
    cuda_adamw_kernel<<<cuda_chunk_blocks(table), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
        table->chunks, table->n_chunks, exp_avg, exp_avg_sq, s, small_w);
    CUDA_CHECK_LAUNCH();
}

// partial[c] = Σ (double)g² over chunk c: per thread in element order, then a tree over the block
// (a fixed order, so the result is the same on every run).
__global__ static void cuda_sumsq_kernel(const MultiTensorChunk *chunks, int n_chunks, double *partial) {
    __shared__ double sums[CUDA_THREADS];
    for (int c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const MultiTensorChunk ch = chunks[c];
        double s = 0.0;
        for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += blockDim.x) {
            const double g = (double)ch.grad[i];
            s = __dadd_rn(s, __dmul_rn(g, g));
        }
        sums[threadIdx.x] = s;
        __syncthreads();
        for (unsigned half = CUDA_THREADS / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) sums[threadIdx.x] = __dadd_rn(sums[threadIdx.x], sums[threadIdx.x + half]);
            __syncthreads();
        }
        if (threadIdx.x == 0) partial[c] = sums[0];
        __syncthreads();  // the block's next chunk reuses sums
    }
}

double cuda_grad_sumsq(Backend *be, MultiTensorTable *table) {
    if (!table->n_chunks) return 0.0;
    CudaContext *ctx = cuda_ctx(be);
    YP_CHECK(table->n_chunks <= CUDA_REDUCE_SCRATCH);
    static_assert((CUDA_THREADS & (CUDA_THREADS - 1)) == 0, "the block's tree sum halves CUDA_THREADS");
    cuda_sumsq_kernel<<<cuda_chunk_blocks(table), CUDA_THREADS, 0, ctx->stream>>>(table->chunks, table->n_chunks,
                                                                                ctx->reduce_scratch);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(ctx->reduce_host, ctx->reduce_scratch, (size_t)table->n_chunks * sizeof(double),
                               cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    double total = 0.0;
    for (int c = 0; c < table->n_chunks; c++) total += ctx->reduce_host[c];  // chunk order, as on the CPU
    return total;
}

__global__ static void cuda_grads_scale_kernel(const MultiTensorChunk *chunks, int n_chunks, float factor) {
    cuda_chunks_for_each(chunks, n_chunks, [&](const MultiTensorChunk &ch, int64_t i) {
        ch.grad[i] = __fmul_rn(ch.grad[i], factor);
    });
}

void cuda_grads_scale(Backend *be, const MultiTensorTable *table, float factor) {
    if (!table->n_chunks) return;
    cuda_grads_scale_kernel<<<cuda_chunk_blocks(table), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
        table->chunks, table->n_chunks, factor);
    CUDA_CHECK_LAUNCH();
}

__global__ static void cuda_ema_kernel(const MultiTensorChunk *chunks, int n_chunks, float *ema, float weight,
                                       bool small_w) {
    cuda_chunks_for_each(chunks, n_chunks, [&](const MultiTensorChunk &ch, int64_t i) {
        float *e = ema + ch.state_offset;
        e[i] = cuda_lerp(e[i], ch.tensor[i], weight, small_w);
    });
}

void cuda_ema_update(Backend *be, const MultiTensorTable *table, float *ema, float weight) {
    if (!table->n_chunks) return;
    const bool small_w = fabsf(weight) < 0.5f;
    cuda_ema_kernel<<<cuda_chunk_blocks(table), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(table->chunks, table->n_chunks,
                                                                                       ema, weight, small_w);
    CUDA_CHECK_LAUNCH();
}
