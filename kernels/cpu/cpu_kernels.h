// Private to kernels/cpu: the backend's context and the kernels that the other files of this folder
// define for the ops table in cpu_backend.c. Signatures follow BackendOps (framework/backend.h);
// pointers are host memory from cpu_alloc, owned by the caller.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "framework/backend.h"

// Loops over fewer elements than this run on one thread: starting the team costs more than the work.
enum { CPU_PARALLEL_MIN_ELEMS = 16384 };

typedef struct CpuContext {
    float *workspace;        // convolution scratch, owned; only reserve_workspace grows it
    size_t workspace_bytes;  // its size
} CpuContext;

// ---- cpu_backend.c ---------------------------------------------------------------------------------
// The context's workspace, after checking that reserve_workspace made it at least n_bytes long.
float *cpu_workspace_get(Backend *be, size_t n_bytes);

// ---- cpu_conv.c ------------------------------------------------------------------------------------
size_t cpu_conv_workspace_bytes(Backend *be, const ConvDesc *d);
void cpu_conv2d_forward(Backend *be, const ConvDesc *d, const float *x, const float *w,
                        const float *bias, float *y);
void cpu_conv2d_backward_data(Backend *be, const ConvDesc *d, const float *dy, const float *w,
                              float *dx);
void cpu_conv2d_backward_filter(Backend *be, const ConvDesc *d, const float *x, const float *dy,
                                float *dw, float *dbias);

// ---- cpu_norm.c ------------------------------------------------------------------------------------
void cpu_batchnorm_forward_train(Backend *be, int64_t n, int64_t c, int64_t hw, const float *x,
                                 const float *gamma, const float *beta, float *running_mean,
                                 float *running_var, float momentum, float eps, float *y,
                                 float *save_mean, float *save_invstd);
void cpu_batchnorm_forward_infer(Backend *be, int64_t n, int64_t c, int64_t hw, const float *x,
                                 const float *gamma, const float *beta, const float *running_mean,
                                 const float *running_var, float eps, float *y);
void cpu_batchnorm_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *x,
                            const float *dy, const float *gamma, const float *save_mean,
                            const float *save_invstd, float *dx, float *dgamma, float *dbeta);

// ---- cpu_elementwise.c -----------------------------------------------------------------------------
void cpu_fill(Backend *be, float *dst, float value, size_t n_elems);
void cpu_fill_uniform(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed);
void cpu_silu_forward(Backend *be, const float *x, float *y, size_t n_elems);
void cpu_silu_backward(Backend *be, const float *x, const float *dy, float *dx, size_t n_elems);
void cpu_add(Backend *be, const float *a, const float *b, float *y, size_t n_elems);
void cpu_accumulate(Backend *be, const float *src, float *dst, size_t n_elems);
void cpu_copy_box(Backend *be, int64_t n, const float *src, int64_t src_c, int64_t src_c0, int64_t src_s,
                  int64_t src_s0, float *dst, int64_t dst_c, int64_t dst_c0, int64_t dst_s, int64_t dst_s0,
                  int64_t count_c, int64_t count_s, bool accumulate);

// ---- cpu_pool.c ------------------------------------------------------------------------------------
void cpu_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                  int64_t factor, const float *x, float *y);
void cpu_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t factor, const float *dy, float *dx);
void cpu_maxpool_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                         const float *x, float *y);
void cpu_maxpool_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                          const float *x, const float *dy, float *dx);
void cpu_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *x, float *y);
void cpu_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *dy, float *dx);

// ---- cpu_dense.c -----------------------------------------------------------------------------------
// Row-major cblas_sgemm with the sizes and leading dimensions checked (BLAS only prints bad ones).
void cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc);
void cpu_gemm(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);
void cpu_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const float *x,
                        const float *w, const float *b, float *y);
void cpu_linear_backward(Backend *be, int64_t n, int64_t in, int64_t out, const float *x,
                         const float *w, const float *dy, float *dx, float *dw, float *db);

// ---- cpu_optim.c -----------------------------------------------------------------------------------
MultiTensorTable *cpu_multi_tensor_prepare(Backend *be, const MultiTensorChunk *chunks, int n_chunks);
void cpu_multi_tensor_release(Backend *be, MultiTensorTable *table);
void cpu_optim_sgd_step(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s);
void cpu_optim_adamw_step(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                          AdamwStepScalars s);
double cpu_grad_sumsq(Backend *be, MultiTensorTable *table);
void cpu_grads_scale(Backend *be, const MultiTensorTable *table, float factor);
void cpu_ema_update(Backend *be, const MultiTensorTable *table, float *ema, float weight);
