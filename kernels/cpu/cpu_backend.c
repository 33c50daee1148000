// The CPU backend: its float32 ops table, the context and the memory operations (shared with
// cpu_lowp.c's table). Backend memory is plain host memory, so upload, download and copy are memcpy.
#include "kernels/cpu/cpu_backend.h"

#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

// Cache-line alignment keeps vector loads aligned and stops two buffers sharing a line.
enum { CPU_ALIGNMENT = 64 };

void *cpu_alloc(Backend *be, size_t n_bytes) {
    (void)be;
    // aligned_alloc wants a size that is a non-zero multiple of the alignment.
    size_t rounded = n_bytes ? (n_bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT : CPU_ALIGNMENT;
    YP_CHECK(rounded >= n_bytes);
    void *p = aligned_alloc(CPU_ALIGNMENT, rounded);
    if (!p) yp_fatal("out of memory allocating %zu bytes", n_bytes);
    return p;
}

void cpu_free(Backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

// memcpy's arguments must be valid pointers even for zero bytes, and empty tensors may be NULL.
void cpu_copy(Backend *be, void *dst, const void *src, size_t n_bytes) {
    (void)be;
    if (n_bytes) memcpy(dst, src, n_bytes);
}

void cpu_zero(Backend *be, void *dst, size_t n_bytes) {
    (void)be;
    if (n_bytes) memset(dst, 0, n_bytes);
}

// Float32 activations: the transfers copy.
static void cpu_upload_activation(Backend *be, void *dst, const float *host_src, size_t n_elems) {
    cpu_copy(be, dst, host_src, n_elems * sizeof(float));
}

static void cpu_download_activation(Backend *be, float *host_dst, const void *src, size_t n_elems) {
    cpu_copy(be, host_dst, src, n_elems * sizeof(float));
}

static void cpu_reserve_activations(Backend *be, size_t largest_elems) {
    (void)be;
    (void)largest_elems;
}

void cpu_reserve_workspace(Backend *be, size_t n_bytes) {
    CpuContext *ctx = be->ctx;
    if (n_bytes <= ctx->workspace_bytes) return;
    // The old contents are scratch, so free and allocate instead of copying with realloc.
    free(ctx->workspace);
    ctx->workspace = cpu_alloc(be, n_bytes);
    ctx->workspace_bytes = n_bytes;
}

float *cpu_workspace_get(Backend *be, size_t n_bytes) {
    CpuContext *ctx = be->ctx;
    YP_CHECK(n_bytes <= ctx->workspace_bytes);
    return ctx->workspace;
}

// Every kernel has finished when it returns.
void cpu_synchronize(Backend *be) { (void)be; }

void cpu_destroy(Backend *be) {
    CpuContext *ctx = be->ctx;
    cpu_conv_cache_destroy(ctx->conv);
    free(ctx->workspace);
    free(ctx->act_scratch);
    free(ctx->weight_scratch);
    free(ctx->loss_scratch);
    free(ctx);
    free(be);
}

static const BackendOps cpu_ops = {
    CPU_OPS_SHARED_SLOTS,
    .upload_activation = cpu_upload_activation,
    .download_activation = cpu_download_activation,
    .reserve_activations = cpu_reserve_activations,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_filter = cpu_conv2d_backward_filter,
    .batchnorm_forward_train = cpu_batchnorm_forward_train,
    .batchnorm_forward_infer = cpu_batchnorm_forward_infer,
    .batchnorm_backward = cpu_batchnorm_backward,
    .activation_forward = cpu_activation_forward,
    .activation_backward = cpu_activation_backward,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .channel_bias_forward = cpu_channel_bias_forward,
    .channel_bias_backward = cpu_channel_bias_backward,
    .copy_box = cpu_copy_box,
    .upsample_nearest_forward = cpu_upsample_nearest_forward,
    .upsample_nearest_backward = cpu_upsample_nearest_backward,
    .maxpool2d_forward = cpu_maxpool2d_forward,
    .maxpool2d_backward = cpu_maxpool2d_backward,
    .avgpool2d_forward = cpu_avgpool2d_forward,
    .avgpool2d_backward = cpu_avgpool2d_backward,
    .pad2d_forward = cpu_pad2d_forward,
    .pad2d_backward = cpu_pad2d_backward,
    .avgpool_forward = cpu_avgpool_forward,
    .avgpool_backward = cpu_avgpool_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .attention_workspace_bytes = cpu_attention_workspace_bytes,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
};

Backend *cpu_backend_create(DType act) {
    Backend *be = yp_malloc(sizeof *be);
    be->ops = act == DTYPE_F32 ? &cpu_ops : &cpu_lowp_ops;
    be->name = "cpu";
    be->act = act;
    be->host_memory = true;
    CpuContext *ctx = yp_calloc(1, sizeof(CpuContext));
    ctx->conv = cpu_conv_cache_create();
    be->ctx = ctx;
    return be;
}
