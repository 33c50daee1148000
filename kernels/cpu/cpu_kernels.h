// Private to kernels/cpu: the backend's context and the kernels that the other files of this folder
// define for the ops tables in cpu_backend.c (float32 activations) and cpu_lowp.c (bfloat16 and
// float16 activations, which wraps the float32 kernels). Signatures follow BackendOps (kernels/backend.h);
// pointers are host memory from cpu_alloc, owned by the caller. These are the float32 kernels: their
// activation operands (the `void *`) are float arrays.
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

// Loops over fewer elements than this run on one thread: starting the team costs more than the work.
enum { CPU_PARALLEL_MIN_ELEMS = 16384 };

// Marks a hot loop's function to be compiled for AVX-512, AVX2 and baseline x86-64, the best picked
// when the program loads (GCC's function multiversioning), so that a build runs on any x86-64 and
// still uses the wide vectors where they exist. The pick never changes results: every version runs
// the same operations in the same order, and ISO C mode contracts nothing into FMAs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_VECTOR_CLONES
#endif

// The convolutions' oneDNN engine, stream and primitives (cpu_conv.c).
typedef struct CpuConvCache CpuConvCache;

typedef struct CpuContext {
    CpuConvCache *conv;      // owned
    float *workspace;        // convolution scratch, owned; only reserve_workspace grows it
    size_t workspace_bytes;  // its size
    // Reduced-precision activations only: the conversion scratch, owned, that reserve_activations
    // grows. It holds the float32 copies of the (at most three) activation operands of one kernel
    // call, operand k at act_scratch + k * act_stride, each up to act_elems floats.
    float *act_scratch;
    size_t act_elems, act_stride;
    // Reduced-precision activations only: one layer's weights rounded to the activation type (as
    // the GPU multiplies them), or its weight gradient before rounding; owned, grown on first use
    // to the largest layer's weights.
    float *weight_scratch;
    size_t weight_elems;
    // The detection loss's float32 copies of a batch's prediction and of its gradient (cpu_loss.c),
    // the gradient at loss_scratch + loss_elems; owned, grown by detect_loss_create to the largest
    // batch of the backend's losses, which share it (one thread at a time).
    float *loss_scratch;
    size_t loss_elems;
} CpuContext;

// ---- cpu_backend.c ---------------------------------------------------------------------------------
// The memory operations, which do not depend on the activation type (byte counts).
void *cpu_alloc(Backend *be, size_t n_bytes);
void cpu_free(Backend *be, void *ptr);
void cpu_copy(Backend *be, void *dst, const void *src, size_t n_bytes);
void cpu_zero(Backend *be, void *dst, size_t n_bytes);
void cpu_reserve_workspace(Backend *be, size_t n_bytes);
void cpu_synchronize(Backend *be);
void cpu_destroy(Backend *be);
// The context's workspace, after checking that reserve_workspace made it at least n_bytes long.
float *cpu_workspace_get(Backend *be, size_t n_bytes);

// ---- cpu_conv.c ------------------------------------------------------------------------------------
CpuConvCache *cpu_conv_cache_create(void);
void cpu_conv_cache_destroy(CpuConvCache *cache);  // accepts NULL
size_t cpu_conv_workspace_bytes(Backend *be, const ConvDesc *d);
void cpu_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w,
                        const float *bias, void *y);
void cpu_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w,
                              void *dx);
void cpu_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy,
                                float *dw, float *dbias);

// ---- cpu_norm.c ------------------------------------------------------------------------------------
void cpu_batchnorm_forward_train(Backend *be, const BatchNormTrainArgs *a);
void cpu_batchnorm_forward_infer(Backend *be, const BatchNormInferArgs *a);
void cpu_batchnorm_backward(Backend *be, const BatchNormBackwardArgs *a);

// ---- cpu_elementwise.c -----------------------------------------------------------------------------
void cpu_fill(Backend *be, float *dst, float value, size_t n_elems);
void cpu_fill_uniform(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed);
void cpu_upload_images(Backend *be, void *dst, const uint8_t *host_src, int64_t n, int64_t h, int64_t w);

// ---- cpu_render.c ----------------------------------------------------------------------------------
void cpu_render_images(Backend *be, void *dst, const RenderRecipe *recipes, int64_t n, const uint8_t *host_arena,
                       int64_t side);
void cpu_reserve_render(Backend *be, int64_t n, int64_t arena_bytes);
void cpu_activation_forward(Backend *be, ActivationSpec act, const void *x, void *y, size_t n_elems);
void cpu_activation_backward(Backend *be, ActivationSpec act, const void *x, const void *dy, void *dx, size_t n_elems);
void cpu_channel_bias_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y);
void cpu_channel_bias_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, float *db);
void cpu_add(Backend *be, const void *a, const void *b, void *y, size_t n_elems);
void cpu_accumulate(Backend *be, const void *src, void *dst, size_t n_elems);
void cpu_copy_box(Backend *be, const CopyBoxArgs *a);

// ---- cpu_pool.c ------------------------------------------------------------------------------------
void cpu_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                  int64_t factor, const void *x, void *y);
void cpu_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t factor, const void *dy, void *dx);
void cpu_maxpool2d_forward(Backend *be, const Pool2dArgs *a);
void cpu_maxpool2d_backward(Backend *be, const Pool2dArgs *a);
void cpu_avgpool2d_forward(Backend *be, const Pool2dArgs *a);
void cpu_avgpool2d_backward(Backend *be, const Pool2dArgs *a);
void cpu_pad2d_forward(Backend *be, const Pad2dArgs *a);
void cpu_pad2d_backward(Backend *be, const Pad2dArgs *a);
void cpu_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x, void *y);
void cpu_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, void *dx);

// ---- cpu_dense.c -----------------------------------------------------------------------------------
// Row-major cblas_sgemm with the sizes and leading dimensions checked (BLAS only prints bad ones).
void cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc);
void cpu_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);
void cpu_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const void *x,
                        const float *w, const float *b, void *y);
void cpu_linear_backward(Backend *be, const LinearBackwardArgs *a);

// ---- cpu_attention.c -------------------------------------------------------------------------------
size_t cpu_attention_workspace_bytes(Backend *be, const AttentionArgs *a);
void cpu_attention_forward(Backend *be, const AttentionArgs *a);
void cpu_attention_backward(Backend *be, const AttentionArgs *a);
// The float32 kernels with the rounding of their 16-bit operands made explicit, for cpu_lowp.c: P
// (forward) and dS (backward) rounded to `operand` (DTYPE_F32: kept), backward's dS blocks in `work`
// (work_bytes, at least one block of Na x Na floats; cpu_attention_rows_bytes' size holds one per
// thread).
void cpu_attention_forward_rounded(Backend *be, const AttentionArgs *a, DType operand);
void cpu_attention_backward_rounded(Backend *be, const AttentionArgs *a, DType operand, float *work,
                                    size_t work_bytes);
size_t cpu_attention_rows_bytes(const AttentionArgs *a);

// ---- cpu_optim.c -----------------------------------------------------------------------------------
MultiTensorTable *cpu_multi_tensor_prepare(Backend *be, const MultiTensorChunk *chunks, int n_chunks);
void cpu_multi_tensor_release(Backend *be, MultiTensorTable *table);
void cpu_optim_sgd_step(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s);
void cpu_optim_adamw_step(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                          AdamwStepScalars s);
double cpu_grad_sumsq(Backend *be, MultiTensorTable *table);
void cpu_grads_scale(Backend *be, const MultiTensorTable *table, float factor);
void cpu_ema_update(Backend *be, const MultiTensorTable *table, float *ema, float weight);

// ---- cpu_loss.c: the detection loss slots -----------------------------------------------------------
bool cpu_detect_loss_create(Backend *be, const DetectLossConfig *cfg, int64_t max_batch, int64_t max_targets,
                            BackendDetectLoss **out, Error *err);
void cpu_detect_loss_destroy(Backend *be, BackendDetectLoss *loss);
void cpu_detect_loss_reserve(Backend *be, BackendDetectLoss *loss, int64_t max_targets);
double cpu_detect_loss_compute(Backend *be, BackendDetectLoss *loss, int64_t batch_n, const void *pred,
                               const TargetBox *targets, int64_t n_targets, float grad_scale, void *dpred,
                               DetectLossParts *parts);

// ---- cpu_lowp.c ------------------------------------------------------------------------------------
// The ops table for bfloat16 and float16 activations.
extern const BackendOps cpu_lowp_ops;

// The slots that do not depend on the activation type (byte copies, float32 parameters, gradients
// and optimizer state; the detection loss, which converts through the table's own activation
// transfers), shared by both ops tables.
#define CPU_OPS_SHARED_SLOTS                          \
    .alloc = cpu_alloc,                               \
    .free = cpu_free,                                 \
    .upload = cpu_copy,                               \
    .download = cpu_copy,                             \
    .copy = cpu_copy,                                 \
    .host_alloc = cpu_alloc,                          \
    .host_free = cpu_free,                            \
    .zero = cpu_zero,                                 \
    .fill = cpu_fill,                                 \
    .fill_uniform = cpu_fill_uniform,                 \
    .upload_images = cpu_upload_images,               \
    .render_images = cpu_render_images,               \
    .reserve_render = cpu_reserve_render,             \
    .reserve_workspace = cpu_reserve_workspace,       \
    .conv_workspace_bytes = cpu_conv_workspace_bytes, \
    .synchronize = cpu_synchronize,                   \
    .gemm = cpu_gemm,                                 \
    .multi_tensor_prepare = cpu_multi_tensor_prepare, \
    .multi_tensor_release = cpu_multi_tensor_release, \
    .optim_sgd_step = cpu_optim_sgd_step,             \
    .optim_adamw_step = cpu_optim_adamw_step,         \
    .grad_sumsq = cpu_grad_sumsq,                     \
    .grads_scale = cpu_grads_scale,                   \
    .ema_update = cpu_ema_update,                     \
    .detect_loss_create = cpu_detect_loss_create,     \
    .detect_loss_destroy = cpu_detect_loss_destroy,   \
    .detect_loss_reserve = cpu_detect_loss_reserve,   \
    .detect_loss_compute = cpu_detect_loss_compute,   \
    .destroy = cpu_destroy
