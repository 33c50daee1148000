// Private to kernels/cuda: the backend's context and the kernels that the other files of this
// folder define for the ops table in cuda_backend.cu. Signatures follow BackendOps
// (kernels/backend.h): every `void *` is an activation in the backend's type be->act, every
// `float *` float32; pointers are device memory from cuda_alloc. Every function only enqueues work
// on ctx->stream and returns (no synchronisation, no allocation).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_check.h"

typedef struct CudaConvAlgos CudaConvAlgos;  // cuda_conv.cu's per-shape algorithm cache

typedef struct CudaContext {
    int device;
    bool allow_tf32;          // convolutions and GEMMs may use TF32 tensor cores
    bool deterministic;       // convolutions use deterministic cuDNN algorithms only (cuda_conv.cu)
    cudaStream_t stream;      // every kernel, copy and library call of this backend
    cudnnHandle_t cudnn;      // bound to `stream`
    cublasHandle_t cublas;    // bound to `stream`, workspace set to `workspace`
    void *workspace;          // convolution scratch (cuda_conv.cu's layout), owned; only reserve_workspace grows it
    size_t workspace_bytes;
    // Staging on the device for the largest activation (reserve_activations grows it; owned):
    // with bf16/fp16 activations that many floats (the converting transfers' float32 values, the
    // linear layers' rounded weights, upload_images' bytes), with float32 that many bytes
    // (upload_images' bytes, the only user).
    void *staging;
    size_t staging_bytes;
    // render_images' recipes and decoded images on the device and their page-locked host staging,
    // render_bytes each (reserve_render grows them; owned); render_uploaded is recorded after each
    // upload from the staging, which the next one waits for before it rewrites the staging.
    void *render, *render_host;
    size_t render_bytes;
    cudaEvent_t render_uploaded;
    CudaConvAlgos *conv_algos;  // owned by cuda_conv.cu
    double *reduce_scratch;     // CUDA_REDUCE_SCRATCH doubles for reductions that return to the host
    double *reduce_host;        // pinned host mirror of reduce_scratch
} CudaContext;

enum {
    CUDA_THREADS = 256,              // threads per block of the element-wise kernels
    CUDA_REDUCE_SCRATCH = 1 << 16,   // doubles in reduce_scratch
};

static inline CudaContext *cuda_ctx(Backend *be) { return (CudaContext *)be->ctx; }

// Blocks for `n` independent elements at CUDA_THREADS per block, capped so that grid-stride loops
// cover the rest (the cap keeps the grid within limits for any n).
static inline unsigned cuda_blocks(size_t n) {
    size_t blocks = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    const size_t cap = 65535u * 8u;
    return (unsigned)(blocks == 0 ? 1 : (blocks < cap ? blocks : cap));
}

// ---- cuda_backend.cu -----------------------------------------------------------------------------
// Grows the device buffer *buffer of *bytes to n_bytes when it is smaller, after the work queued on
// the stream (which may still use it); its contents are not kept.
void cuda_buffer_reserve(Backend *be, void **buffer, size_t *bytes, size_t n_bytes);
// The context's workspace, after checking that reserve_workspace made it at least n_bytes long.
void *cuda_workspace_get(Backend *be, size_t n_bytes);
// The staging as scratch for n_elems elements of the activation type (grown when reserve_activations
// made it smaller); cuda_act_scratch_elems says how many fit without growing it.
void *cuda_act_scratch_get(Backend *be, size_t n_elems);
size_t cuda_act_scratch_elems(Backend *be);

// ---- cuda_conv.cu --------------------------------------------------------------------------------
CudaConvAlgos *cuda_conv_algos_create(void);
void cuda_conv_algos_destroy(CudaConvAlgos *algos);
size_t cuda_conv_workspace_bytes(Backend *be, const ConvDesc *d);
void cuda_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w, const float *bias,
                         void *y);
void cuda_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w, void *dx);
void cuda_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy, float *dw,
                                 float *dbias);

// ---- cuda_dense.cu -------------------------------------------------------------------------------
// Aborts unless a row-major GEMM's sizes and leading dimensions are valid and fit cuBLAS's ints.
void cuda_gemm_check(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                     int64_t ldc);
// cuBLAS's name for the activation type.
cudaDataType_t cuda_act_blas_type(DType act);
void cuda_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void cuda_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const void *x, const float *w,
                         const float *b, void *y);
void cuda_linear_backward(Backend *be, const LinearBackwardArgs *a);

// ---- cuda_attention.cu ---------------------------------------------------------------------------
size_t cuda_attention_workspace_bytes(Backend *be, const AttentionArgs *a);
void cuda_attention_forward(Backend *be, const AttentionArgs *a);
void cuda_attention_backward(Backend *be, const AttentionArgs *a);

// ---- cuda_norm.cu --------------------------------------------------------------------------------
void cuda_batchnorm_forward_train(Backend *be, const BatchNormTrainArgs *a);
void cuda_batchnorm_forward_infer(Backend *be, const BatchNormInferArgs *a);
void cuda_batchnorm_backward(Backend *be, const BatchNormBackwardArgs *a);

// ---- cuda_elementwise.cu -------------------------------------------------------------------------
void cuda_fill(Backend *be, float *dst, float value, size_t n_elems);
void cuda_fill_uniform(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed);
void cuda_activation_forward(Backend *be, ActivationSpec act, const void *x, void *y, size_t n_elems);
void cuda_activation_backward(Backend *be, ActivationSpec act, const void *x, const void *dy, void *dx,
                              size_t n_elems);
void cuda_channel_bias_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y);
void cuda_channel_bias_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, float *db);
void cuda_add(Backend *be, const void *a, const void *b, void *y, size_t n_elems);
void cuda_accumulate(Backend *be, const void *src, void *dst, size_t n_elems);
void cuda_copy_box(Backend *be, const CopyBoxArgs *a);
// Conversions between float32 and the activation type (plain copies with float32 activations):
// dst (rows, cols), dense, = src (rows, cols) with leading dimension src_ld, rounded;
void cuda_act_round(Backend *be, int64_t rows, int64_t cols, const float *src, int64_t src_ld, void *dst);
// dst = src widened; dst += src widened.
void cuda_act_widen(Backend *be, const void *src, float *dst, size_t n_elems);
void cuda_act_widen_accumulate(Backend *be, const void *src, float *dst, size_t n_elems);
// dst (n, 3, h, w) activations = byte / 255 of src, n images of h x w interleaved RGB bytes (device).
void cuda_images_convert(Backend *be, const uint8_t *src, void *dst, int64_t n, int64_t h, int64_t w);

// ---- cuda_render.cu ------------------------------------------------------------------------------
void cuda_render_images(Backend *be, void *dst, const RenderRecipe *recipes, int64_t n, const uint8_t *host_arena,
                        int64_t side);
void cuda_reserve_render(Backend *be, int64_t n, int64_t arena_bytes);

// ---- cuda_optim.cu -------------------------------------------------------------------------------
MultiTensorTable *cuda_multi_tensor_prepare(Backend *be, const MultiTensorChunk *chunks, int n_chunks);
void cuda_multi_tensor_release(Backend *be, MultiTensorTable *table);
void cuda_optim_sgd_step(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s);
void cuda_optim_adamw_step(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                           AdamwStepScalars s);
// Per-chunk partial sums in ctx->reduce_scratch (at most CUDA_REDUCE_SCRATCH chunks), added on the host.
double cuda_grad_sumsq(Backend *be, MultiTensorTable *table);
void cuda_grads_scale(Backend *be, const MultiTensorTable *table, float factor);
void cuda_ema_update(Backend *be, const MultiTensorTable *table, float *ema, float weight);

// ---- cuda_pool.cu --------------------------------------------------------------------------------
void cuda_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                   const void *x, void *y);
void cuda_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                    const void *dy, void *dx);
void cuda_maxpool2d_forward(Backend *be, const Pool2dArgs *a);
void cuda_maxpool2d_backward(Backend *be, const Pool2dArgs *a);
void cuda_avgpool2d_forward(Backend *be, const Pool2dArgs *a);
void cuda_avgpool2d_backward(Backend *be, const Pool2dArgs *a);
void cuda_pad2d_forward(Backend *be, const Pad2dArgs *a);
void cuda_pad2d_backward(Backend *be, const Pad2dArgs *a);
void cuda_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x, void *y);
void cuda_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, void *dx);
