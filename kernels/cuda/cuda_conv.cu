// Convolutions on cuDNN (its legacy convolution API, kept in cuDNN 9), NCHW float32.
//
// Every distinct ConvDesc gets one cache entry: its tensor, filter and convolution descriptors and
// the algorithm of each of the three passes. Layers ask conv_workspace_bytes for each convolution
// when they are created; that is where the algorithms are chosen by measurement
// (cudnnFind...AlgorithmEx on scratch buffers of the real shape), keeping only deterministic
// algorithms, so that two runs of a step give the same bits. A shape first seen inside a step (a
// smaller last batch, a multi-scale size) takes cuDNN's heuristic choice that fits the reserved
// workspace instead: measuring would allocate and overwrite accumulating outputs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_kernels.h"

// The most workspace a measured algorithm may use; cuDNN's fastest large-image algorithms stay
// under it, and the GPU has room for it on every rank that shares it.
static const size_t CUDA_CONV_WORKSPACE_LIMIT = (size_t)256 << 20;

typedef struct CudaConvEntry {
    ConvDesc desc;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t workspace_bytes;  // the largest of the three algorithms' needs
} CudaConvEntry;

struct CudaConvAlgos {
    CudaConvEntry *entries;  // owned; a model has a few hundred shapes at most, so a scan is cheap
    int count, capacity;
    bool noted_nondeterministic;  // the notice below is printed once per backend
};

CudaConvAlgos *cuda_conv_algos_create(void) { return (CudaConvAlgos *)yp_calloc(1, sizeof(CudaConvAlgos)); }

void cuda_conv_algos_destroy(CudaConvAlgos *algos) {
    if (!algos) return;
    for (int i = 0; i < algos->count; i++) {
        CudaConvEntry *e = &algos->entries[i];
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->x));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->y));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(e->bias));
        CUDNN_CHECK(cudnnDestroyFilterDescriptor(e->w));
        CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(e->conv));
    }
    free(algos->entries);
    free(algos);
}

static bool cuda_conv_desc_equal(const ConvDesc *a, const ConvDesc *b) {
    return a->n == b->n && a->c_in == b->c_in && a->h_in == b->h_in && a->w_in == b->w_in && a->c_out == b->c_out &&
           a->h_out == b->h_out && a->w_out == b->w_out && a->kh == b->kh && a->kw == b->kw &&
           a->stride == b->stride && a->pad == b->pad && a->dilation == b->dilation && a->groups == b->groups;
}

static int cuda_int(int64_t v) {
    YP_CHECK(v >= 0 && v <= INT32_MAX);
    return (int)v;
}

// Builds the descriptors of a new entry and checks that cuDNN agrees on the output shape.
static void cuda_conv_entry_describe(CudaContext *ctx, CudaConvEntry *e, const ConvDesc *d) {
    YP_CHECK(d->c_in % d->groups == 0 && d->c_out % d->groups == 0);
    e->desc = *d;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->bias));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, cuda_int(d->n), cuda_int(d->c_in),
                                           cuda_int(d->h_in), cuda_int(d->w_in)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, cuda_int(d->n),
                                           cuda_int(d->c_out), cuda_int(d->h_out), cuda_int(d->w_out)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, cuda_int(d->c_out), 1, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, cuda_int(d->c_out),
                                           cuda_int(d->c_in / d->groups), cuda_int(d->kh), cuda_int(d->kw)));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv, cuda_int(d->pad), cuda_int(d->pad), cuda_int(d->stride),
                                                cuda_int(d->stride), cuda_int(d->dilation), cuda_int(d->dilation),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(e->conv, cuda_int(d->groups)));
    // Without TF32, FMA-only kernels: the default math type lets cuDNN use TF32 on Ampere and later.
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, ctx->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int n, c, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &c, &h, &w));
    YP_CHECK(n == d->n && c == d->c_out && h == d->h_out && w == d->w_out);
}

// The first (fastest) result that succeeded and fits `limit`, preferring deterministic algorithms
// (two runs of a step then give the same bits); cuDNN sorts the results by time (Find) or by
// expected speed (heuristics). Some shapes have no deterministic algorithm in some math modes
// (seen with TF32 on the H100): those take the fastest one, with a notice.
template <typename Perf, typename Algo>
static void cuda_conv_pick(CudaConvAlgos *algos, const Perf *perf, int count, size_t limit, const char *pass, Algo *algo,
                           size_t *bytes) {
    for (int pass_deterministic = 1; pass_deterministic >= 0; pass_deterministic--) {
        for (int i = 0; i < count; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit ||
                (pass_deterministic && perf[i].determinism != CUDNN_DETERMINISTIC))
                continue;
            if (!pass_deterministic && !algos->noted_nondeterministic) {
                fprintf(stderr, "yolopipe: note: cuDNN has no deterministic %s algorithm for some convolutions; they use "
                                "its fastest one (results may differ in the last bits between runs)\n",
                        pass);
                algos->noted_nondeterministic = true;
            }
            *algo = perf[i].algo;
            *bytes = perf[i].memory;
            return;
        }
    }
    yp_fatal("cuDNN offers no %s algorithm for a convolution within %zu bytes of workspace", pass, limit);
}

enum { CUDA_CONV_MAX_ALGOS = 16 };

// Measures every algorithm of the three passes on scratch buffers of the entry's shape.
static void cuda_conv_entry_measure(Backend *be, CudaConvEntry *e) {
    CudaContext *ctx = cuda_ctx(be);
    const ConvDesc *d = &e->desc;
    size_t x_bytes = (size_t)(d->n * d->c_in * d->h_in * d->w_in) * sizeof(float);
    size_t y_bytes = (size_t)(d->n * d->c_out * d->h_out * d->w_out) * sizeof(float);
    size_t w_bytes = (size_t)(d->c_out * (d->c_in / d->groups) * d->kh * d->kw) * sizeof(float);
    void *x, *y, *w, *workspace;
    CUDA_CHECK(cudaMalloc(&x, x_bytes ? x_bytes : 1));
    CUDA_CHECK(cudaMalloc(&y, y_bytes ? y_bytes : 1));
    CUDA_CHECK(cudaMalloc(&w, w_bytes));
    CUDA_CHECK(cudaMalloc(&workspace, CUDA_CONV_WORKSPACE_LIMIT));
    // Non-zero data: some kernels run faster on zeros than real data would let them.
    cuda_fill_uniform(be, (float *)x, x_bytes / sizeof(float), -1.0f, 1.0f, 1);
    cuda_fill_uniform(be, (float *)y, y_bytes / sizeof(float), -1.0f, 1.0f, 2);
    cuda_fill_uniform(be, (float *)w, w_bytes / sizeof(float), -0.1f, 0.1f, 3);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    int count = 0;
    size_t fwd_bytes, data_bytes, filter_bytes;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(ctx->cudnn, e->x, x, e->w, w, e->conv, e->y, y,
                                                       CUDA_CONV_MAX_ALGOS, &count, fwd, workspace,
                                                       CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, fwd, count, CUDA_CONV_WORKSPACE_LIMIT, "forward", &e->fwd, &fwd_bytes);
    cudnnConvolutionBwdDataAlgoPerf_t data[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(ctx->cudnn, e->w, w, e->y, y, e->conv, e->x, x,
                                                            CUDA_CONV_MAX_ALGOS, &count, data, workspace,
                                                            CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, data, count, CUDA_CONV_WORKSPACE_LIMIT, "backward-data", &e->bwd_data, &data_bytes);
    cudnnConvolutionBwdFilterAlgoPerf_t filter[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(ctx->cudnn, e->x, x, e->y, y, e->conv, e->w, w,
                                                              CUDA_CONV_MAX_ALGOS, &count, filter, workspace,
                                                              CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, filter, count, CUDA_CONV_WORKSPACE_LIMIT, "backward-filter", &e->bwd_filter, &filter_bytes);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    CUDA_CHECK(cudaFree(x));
    CUDA_CHECK(cudaFree(y));
    CUDA_CHECK(cudaFree(w));
    CUDA_CHECK(cudaFree(workspace));
    e->workspace_bytes = fwd_bytes > data_bytes ? fwd_bytes : data_bytes;
    if (filter_bytes > e->workspace_bytes) e->workspace_bytes = filter_bytes;
}

// cuDNN's heuristic choices within the workspace that is already reserved.
static void cuda_conv_entry_guess(Backend *be, CudaConvEntry *e) {
    CudaContext *ctx = cuda_ctx(be);
    const size_t limit = ctx->workspace_bytes;
    int count = 0;
    size_t fwd_bytes, data_bytes, filter_bytes;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, e->x, e->w, e->conv, e->y, CUDA_CONV_MAX_ALGOS,
                                                       &count, fwd));
    cuda_conv_pick(ctx->conv_algos, fwd, count, limit, "forward", &e->fwd, &fwd_bytes);
    cudnnConvolutionBwdDataAlgoPerf_t data[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, e->w, e->y, e->conv, e->x,
                                                            CUDA_CONV_MAX_ALGOS, &count, data));
    cuda_conv_pick(ctx->conv_algos, data, count, limit, "backward-data", &e->bwd_data, &data_bytes);
    cudnnConvolutionBwdFilterAlgoPerf_t filter[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx->cudnn, e->x, e->y, e->conv, e->w,
                                                              CUDA_CONV_MAX_ALGOS, &count, filter));
    cuda_conv_pick(ctx->conv_algos, filter, count, limit, "backward-filter", &e->bwd_filter, &filter_bytes);
    e->workspace_bytes = fwd_bytes > data_bytes ? fwd_bytes : data_bytes;
    if (filter_bytes > e->workspace_bytes) e->workspace_bytes = filter_bytes;
}

// The cache entry of `d`, created (measured when `measure`, else guessed) on first use.
static CudaConvEntry *cuda_conv_entry(Backend *be, const ConvDesc *d, bool measure) {
    CudaContext *ctx = cuda_ctx(be);
    CudaConvAlgos *algos = ctx->conv_algos;
    for (int i = 0; i < algos->count; i++)
        if (cuda_conv_desc_equal(&algos->entries[i].desc, d)) return &algos->entries[i];
    if (algos->count == algos->capacity) {
        algos->capacity = algos->capacity ? 2 * algos->capacity : 64;
        algos->entries = (CudaConvEntry *)yp_realloc(algos->entries, (size_t)algos->capacity * sizeof(CudaConvEntry));
    }
    CudaConvEntry *e = &algos->entries[algos->count++];
    memset(e, 0, sizeof *e);
    cuda_conv_entry_describe(ctx, e, d);
    if (measure) cuda_conv_entry_measure(be, e);
    else cuda_conv_entry_guess(be, e);
    return e;
}

size_t cuda_conv_workspace_bytes(Backend *be, const ConvDesc *d) {
    return d->n ? cuda_conv_entry(be, d, true)->workspace_bytes : 0;
}

void cuda_conv2d_forward(Backend *be, const ConvDesc *d, const float *x, const float *w, const float *bias, float *y) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f, zero = 0.0f;
    void *workspace = cuda_workspace_get(be, e->workspace_bytes);
    CUDNN_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, e->x, x, e->w, w, e->conv, e->fwd, workspace,
                                        e->workspace_bytes, &zero, e->y, y));
    if (bias) CUDNN_CHECK(cudnnAddTensor(ctx->cudnn, &one, e->bias, bias, &one, e->y, y));
}

void cuda_conv2d_backward_data(Backend *be, const ConvDesc *d, const float *dy, const float *w, float *dx) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f;
    void *workspace = cuda_workspace_get(be, e->workspace_bytes);
    CUDNN_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &one, e->w, w, e->y, dy, e->conv, e->bwd_data, workspace,
                                             e->workspace_bytes, &one, e->x, dx));
}

void cuda_conv2d_backward_filter(Backend *be, const ConvDesc *d, const float *x, const float *dy, float *dw,
                                 float *dbias) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f;
    void *workspace = cuda_workspace_get(be, e->workspace_bytes);
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx->cudnn, &one, e->x, x, e->y, dy, e->conv, e->bwd_filter, workspace,
                                               e->workspace_bytes, &one, e->w, dw));
    if (dbias) CUDNN_CHECK(cudnnConvolutionBackwardBias(ctx->cudnn, &one, e->y, dy, &one, e->bias, dbias));
}
