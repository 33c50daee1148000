// The CUDA backend's ops table, context and memory operations. Backend memory is device memory;
// every operation is enqueued on the context's stream, in order, so kernels need no events between
// them. download waits for the stream (the caller reads the result at once); upload copies
// synchronously too, because callers reuse their host buffers straight after; copy and zero only
// enqueue. With bf16/fp16 activations the converting transfers go through a float32 staging
// buffer of the largest activation (reserve_activations; grown when a caller needs more):
// upload_activation copies the host's floats there and a kernel rounds them into place;
// download_activation widens into it with a kernel and copies that to the host. upload_images
// copies the images' bytes there and a kernel makes them the network input.
#include "kernels/cuda/cuda_backend.h"

#include <stdlib.h>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_loss.h"

static void *cuda_alloc(Backend *be, size_t n_bytes) {
    (void)be;
    void *p = NULL;
    // cudaMalloc returns 256-byte aligned memory; zero bytes still get a distinct pointer.
    cudaError_t status = cudaMalloc(&p, n_bytes ? n_bytes : 1);
    if (status != cudaSuccess) {
        size_t free_bytes = 0, total_bytes = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_bytes, &total_bytes);
        yp_fatal("out of GPU memory allocating %zu bytes (%zu MiB free of %zu MiB): %s", n_bytes, free_bytes >> 20,
                 total_bytes >> 20, cudaGetErrorString(status));
    }
    return p;
}

static void cuda_free(Backend *be, void *ptr) {
    (void)be;
    if (ptr) CUDA_CHECK(cudaFree(ptr));
}

static void *cuda_host_alloc(Backend *be, size_t n_bytes) {
    (void)be;
    void *p = NULL;
    cudaError_t status = cudaMallocHost(&p, n_bytes ? n_bytes : 1);
    if (status != cudaSuccess) yp_fatal("out of page-locked host memory allocating %zu bytes: %s", n_bytes, cudaGetErrorString(status));
    return p;
}

static void cuda_host_free(Backend *be, void *ptr) {
    (void)be;
    if (ptr) CUDA_CHECK(cudaFreeHost(ptr));
}

static void cuda_upload(Backend *be, void *dst, const void *host_src, size_t n_bytes) {
    if (!n_bytes) return;
    CudaContext *ctx = cuda_ctx(be);
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n_bytes, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
}

static void cuda_download(Backend *be, void *host_dst, const void *src, size_t n_bytes) {
    if (!n_bytes) return;
    CudaContext *ctx = cuda_ctx(be);
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n_bytes, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
}

static void cuda_copy(Backend *be, void *dst, const void *src, size_t n_bytes) {
    if (!n_bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToDevice, cuda_ctx(be)->stream));
}

static void cuda_zero(Backend *be, void *dst, size_t n_bytes) {
    if (!n_bytes) return;
    CUDA_CHECK(cudaMemsetAsync(dst, 0, n_bytes, cuda_ctx(be)->stream));
}

void cuda_buffer_reserve(Backend *be, void **buffer, size_t *bytes, size_t n_bytes) {
    if (n_bytes <= *bytes) return;
    // Work queued on the stream may still use the old buffer.
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx(be)->stream));
    cuda_free(be, *buffer);
    *buffer = cuda_alloc(be, n_bytes);
    *bytes = n_bytes;
}

// The staging, grown to hold n_bytes when it is smaller: reserve_activations sizes it for the
// graph's largest tensor up front, so training never grows it; other callers (tests, tools) may.
static void *cuda_staging_get(Backend *be, size_t n_bytes) {
    CudaContext *ctx = cuda_ctx(be);
    cuda_buffer_reserve(be, &ctx->staging, &ctx->staging_bytes, n_bytes);
    return ctx->staging;
}

static void cuda_upload_activation(Backend *be, void *dst, const float *host_src, size_t n_elems) {
    if (be->act == DTYPE_F32) {
        cuda_upload(be, dst, host_src, n_elems * sizeof(float));
        return;
    }
    if (!n_elems) return;
    float *staging = (float *)cuda_staging_get(be, n_elems * sizeof(float));
    cuda_upload(be, staging, host_src, n_elems * sizeof(float));
    cuda_act_round(be, 1, (int64_t)n_elems, staging, (int64_t)n_elems, dst);
}

static void cuda_download_activation(Backend *be, float *host_dst, const void *src, size_t n_elems) {
    if (be->act == DTYPE_F32) {
        cuda_download(be, host_dst, src, n_elems * sizeof(float));
        return;
    }
    if (!n_elems) return;
    float *staging = (float *)cuda_staging_get(be, n_elems * sizeof(float));
    cuda_act_widen(be, src, staging, n_elems);
    cuda_download(be, host_dst, staging, n_elems * sizeof(float));
}

static void cuda_upload_images(Backend *be, void *dst, const uint8_t *host_src, int64_t n, int64_t h, int64_t w) {
    YP_CHECK(n >= 0 && h >= 0 && w >= 0);
    const size_t n_bytes = (size_t)(n * 3 * h * w);
    if (!n_bytes) return;
    uint8_t *staging = (uint8_t *)cuda_staging_get(be, n_bytes);
    cuda_upload(be, staging, host_src, n_bytes);
    cuda_images_convert(be, staging, dst, n, h, w);
}

static void cuda_reserve_workspace(Backend *be, size_t n_bytes) {
    CudaContext *ctx = cuda_ctx(be);
    cuda_buffer_reserve(be, &ctx->workspace, &ctx->workspace_bytes, n_bytes);
}

void *cuda_workspace_get(Backend *be, size_t n_bytes) {
    CudaContext *ctx = cuda_ctx(be);
    YP_CHECK(n_bytes <= ctx->workspace_bytes);
    return ctx->workspace;
}

// Float32 activations need bytes for the images only: their transfers copy, and the linear layers
// use the float weights.
static void cuda_reserve_activations(Backend *be, size_t largest_elems) {
    cuda_staging_get(be, largest_elems * (be->act == DTYPE_F32 ? 1 : sizeof(float)));
}

size_t cuda_act_scratch_elems(Backend *be) { return cuda_ctx(be)->staging_bytes / dtype_size(be->act); }

void *cuda_act_scratch_get(Backend *be, size_t n_elems) {
    return cuda_staging_get(be, n_elems * dtype_size(be->act));
}

static void cuda_synchronize(Backend *be) { CUDA_CHECK(cudaStreamSynchronize(cuda_ctx(be)->stream)); }

static void cuda_destroy(Backend *be) {
    CudaContext *ctx = cuda_ctx(be);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    cuda_conv_algos_destroy(ctx->conv_algos);
    cuda_free(be, ctx->workspace);
    cuda_free(be, ctx->staging);
    cuda_free(be, ctx->render);
    CUDA_CHECK(cudaFreeHost(ctx->render_host));
    CUDA_CHECK(cudaEventDestroy(ctx->render_uploaded));
    cuda_free(be, ctx->reduce_scratch);
    CUDA_CHECK(cudaFreeHost(ctx->reduce_host));
    CUBLAS_CHECK(cublasDestroy(ctx->cublas));
    CUDNN_CHECK(cudnnDestroy(ctx->cudnn));
    CUDA_CHECK(cudaStreamDestroy(ctx->stream));
    free(ctx);
    free(be);
}

static const BackendOps cuda_ops = {
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .upload_activation = cuda_upload_activation,
    .download_activation = cuda_download_activation,
    .upload_images = cuda_upload_images,
    .render_images = cuda_render_images,
    .reserve_render = cuda_reserve_render,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .zero = cuda_zero,
    .fill = cuda_fill,
    .fill_uniform = cuda_fill_uniform,
    .reserve_workspace = cuda_reserve_workspace,
    .reserve_activations = cuda_reserve_activations,
    .conv_workspace_bytes = cuda_conv_workspace_bytes,
    .synchronize = cuda_synchronize,
    .conv2d_forward = cuda_conv2d_forward,
    .conv2d_backward_data = cuda_conv2d_backward_data,
    .conv2d_backward_filter = cuda_conv2d_backward_filter,
    .batchnorm_forward_train = cuda_batchnorm_forward_train,
    .batchnorm_forward_infer = cuda_batchnorm_forward_infer,
    .batchnorm_backward = cuda_batchnorm_backward,
    .activation_forward = cuda_activation_forward,
    .activation_backward = cuda_activation_backward,
    .add = cuda_add,
    .accumulate = cuda_accumulate,
    .channel_bias_forward = cuda_channel_bias_forward,
    .channel_bias_backward = cuda_channel_bias_backward,
    .copy_box = cuda_copy_box,
    .upsample_nearest_forward = cuda_upsample_nearest_forward,
    .upsample_nearest_backward = cuda_upsample_nearest_backward,
    .maxpool2d_forward = cuda_maxpool2d_forward,
    .maxpool2d_backward = cuda_maxpool2d_backward,
    .avgpool2d_forward = cuda_avgpool2d_forward,
    .avgpool2d_backward = cuda_avgpool2d_backward,
    .pad2d_forward = cuda_pad2d_forward,
    .pad2d_backward = cuda_pad2d_backward,
    .avgpool_forward = cuda_avgpool_forward,
    .avgpool_backward = cuda_avgpool_backward,
    .linear_forward = cuda_linear_forward,
    .linear_backward = cuda_linear_backward,
    .gemm = cuda_gemm,
    .attention_workspace_bytes = cuda_attention_workspace_bytes,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .multi_tensor_prepare = cuda_multi_tensor_prepare,
    .multi_tensor_release = cuda_multi_tensor_release,
    .optim_sgd_step = cuda_optim_sgd_step,
    .optim_adamw_step = cuda_optim_adamw_step,
    .grad_sumsq = cuda_grad_sumsq,
    .grads_scale = cuda_grads_scale,
    .ema_update = cuda_ema_update,
    .detect_loss_create = cuda_detect_loss_create,
    .detect_loss_destroy = cuda_detect_loss_destroy,
    .detect_loss_reserve = cuda_detect_loss_reserve,
    .detect_loss_compute = cuda_detect_loss_compute,
    .destroy = cuda_destroy,
};

Backend *cuda_backend_create(const CudaBackendOptions *opt) {
    CUDA_CHECK(cudaSetDevice(opt->device));
    CudaContext *ctx = (CudaContext *)yp_calloc(1, sizeof *ctx);
    ctx->device = opt->device;
    ctx->allow_tf32 = opt->allow_tf32;
    ctx->deterministic = opt->deterministic;
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));
    CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, opt->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    CUDA_CHECK(cudaEventCreateWithFlags(&ctx->render_uploaded, cudaEventDisableTiming));
    ctx->conv_algos = cuda_conv_algos_create();
    Backend *be = (Backend *)yp_malloc(sizeof *be);
    be->ops = &cuda_ops;
    be->name = "cuda";
    be->act = opt->act;
    be->host_memory = false;
    be->ctx = ctx;
    ctx->reduce_scratch = (double *)cuda_alloc(be, CUDA_REDUCE_SCRATCH * sizeof(double));
    CUDA_CHECK(cudaMallocHost((void **)&ctx->reduce_host, CUDA_REDUCE_SCRATCH * sizeof(double)));
    return be;
}

void *cuda_backend_stream(Backend *be) { return cuda_ctx(be)->stream; }
