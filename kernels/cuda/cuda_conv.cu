// Convolutions on cuDNN (its legacy convolution API, kept in cuDNN 9), NCHW.
//
// Every distinct ConvDesc gets one cache entry: its tensor, filter and convolution descriptors and
// the algorithm (and math type) of each of the three passes. Layers ask conv_workspace_bytes for
// each convolution when they are created; that is where the algorithms are chosen. With
// device.deterministic they are cuDNN's heuristic choices among its deterministic algorithms: the
// same for every run and every process, so that runs and pipeline layouts give the same bits.
// Otherwise they are measured (cudnnFind...AlgorithmEx on scratch buffers of the real shape), the
// fastest whatever its determinism; timings vary, so runs may differ in the last bits. A shape first
// seen inside a step (a smaller last batch, a multi-scale size) takes cuDNN's heuristic choice that
// fits the reserved workspace: measuring would allocate and overwrite accumulating outputs.
//
// With float32 activations everything is float32 (TF32 only with allow_tf32). With bf16/fp16
// activations x, y, w and their gradients are 16-bit for cuDNN, which multiplies on tensor cores
// and accumulates in float (the convolution descriptor's compute type): the float32 master weights
// are rounded into workspace scratch before forward and backward-data, and backward-filter writes
// its dw in the activation type into scratch, which a kernel then adds to the float32 dw. The bias
// add and the bias gradient are this file's kernels there (cuDNN wants the bias in y's type): the
// bias is added to y after cuDNN rounded it, so y is rounded twice; dbias sums dy in double in a
// fixed order.
//
// Workspace layout of one convolution (the same for every pass, so that conv_workspace_bytes is
// their maximum): with bf16/fp16, [0, cast) the rounded weights and [cast, 2 cast) the dw scratch,
// cast being the weights' bytes rounded up to 256; then cuDNN's scratch. With float32 only cuDNN's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_loops.h"

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
    // Each algorithm's math type, as cuDNN reported it: Find and the heuristics try the descriptor's
    // math type and the default one, and an algorithm run under the other type may fail.
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
    size_t cast_bytes;       // each of the two weight-sized scratch areas (0 with float32 activations)
    size_t cudnn_bytes;      // the largest of the three algorithms' needs, after 2 cast_bytes
    size_t workspace_bytes;  // 2 cast_bytes + cudnn_bytes
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

static cudnnDataType_t conv_data_type(DType act) {
    return act == DTYPE_F32 ? CUDNN_DATA_FLOAT : act == DTYPE_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
}

// Builds the descriptors of a new entry and checks that cuDNN agrees on the output shape.
static void cuda_conv_entry_describe(Backend *be, CudaConvEntry *e, const ConvDesc *d) {
    YP_CHECK(d->c_in % d->groups == 0 && d->c_out % d->groups == 0);
    CudaContext *ctx = cuda_ctx(be);
    const cudnnDataType_t data = conv_data_type(be->act);
    e->desc = *d;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->bias));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, data, cuda_int(d->n), cuda_int(d->c_in),
                                           cuda_int(d->h_in), cuda_int(d->w_in)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, data, cuda_int(d->n), cuda_int(d->c_out),
                                           cuda_int(d->h_out), cuda_int(d->w_out)));
    // float32 biases: cuDNN uses this descriptor with float32 activations only.
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, cuda_int(d->c_out), 1, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, data, CUDNN_TENSOR_NCHW, cuda_int(d->c_out),
                                           cuda_int(d->c_in / d->groups), cuda_int(d->kh), cuda_int(d->kw)));
    // Float accumulation in every mode (with 16-bit data, cuDNN's "pseudo" bf16/half configurations).
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv, cuda_int(d->pad), cuda_int(d->pad), cuda_int(d->stride),
                                                cuda_int(d->stride), cuda_int(d->dilation), cuda_int(d->dilation),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(e->conv, cuda_int(d->groups)));
    // 16-bit data: tensor cores. float32 without TF32: FMA-only kernels (the default math type lets
    // cuDNN use TF32 on Ampere and later).
    cudnnMathType_t math = be->act != DTYPE_F32 ? CUDNN_TENSOR_OP_MATH
                           : ctx->allow_tf32    ? CUDNN_DEFAULT_MATH
                                                : CUDNN_FMA_MATH;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, math));
    const size_t cast = be->act == DTYPE_F32 ? 0 : conv_desc_w_elems(d) * dtype_size(be->act);
    e->cast_bytes = (cast + 255) / 256 * 256;
    int n, c, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &c, &h, &w));
    YP_CHECK(n == d->n && c == d->c_out && h == d->h_out && w == d->w_out);
}

// The first (fastest) result that succeeded and fits `limit`; with `deterministic`, preferring
// deterministic algorithms (two runs of a step then give the same bits). cuDNN sorts the results by
// time (Find) or by expected speed (heuristics). Some shapes have no deterministic algorithm in some
// math modes (seen with TF32 on the H100): those take the fastest one, with a notice.
template <typename Perf, typename Algo>
static void cuda_conv_pick(CudaConvAlgos *algos, bool deterministic, const Perf *perf, int count, size_t limit,
                           const char *pass, Algo *algo, cudnnMathType_t *math, size_t *bytes) {
    for (int pass_deterministic = deterministic ? 1 : 0; pass_deterministic >= 0; pass_deterministic--) {
        for (int i = 0; i < count; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit ||
                (pass_deterministic && perf[i].determinism != CUDNN_DETERMINISTIC))
                continue;
            if (deterministic && !pass_deterministic && !algos->noted_nondeterministic) {
                fprintf(stderr, "yolopipe: note: cuDNN has no deterministic %s algorithm for some convolutions; they use "
                                "its fastest one (results may differ in the last bits between runs)\n",
                        pass);
                algos->noted_nondeterministic = true;
            }
            *algo = perf[i].algo;
            *math = perf[i].mathType;
            *bytes = perf[i].memory;
            return;
        }
    }
    yp_fatal("cuDNN offers no %s algorithm for a convolution within %zu bytes of workspace", pass, limit);
}

enum { CUDA_CONV_MAX_ALGOS = 16 };

// The workspace of the chosen algorithms, after the weight scratch.
static void conv_entry_set_bytes(CudaConvEntry *e, size_t fwd_bytes, size_t data_bytes, size_t filter_bytes) {
    e->cudnn_bytes = fwd_bytes > data_bytes ? fwd_bytes : data_bytes;
    if (filter_bytes > e->cudnn_bytes) e->cudnn_bytes = filter_bytes;
    e->workspace_bytes = 2 * e->cast_bytes + e->cudnn_bytes;
}

// A measuring buffer of n elements of the activation type holding U(lo, hi): non-zero data, since
// some kernels run faster on zeros than real data would let them. With bf16/fp16 the values are
// drawn in float32 into `staging` (n floats at least) and rounded.
static void *conv_measure_buffer(Backend *be, size_t n, float lo, float hi, uint64_t seed, float *staging) {
    void *p;
    CUDA_CHECK(cudaMalloc(&p, n ? n * dtype_size(be->act) : 1));
    float *values = be->act == DTYPE_F32 ? (float *)p : staging;
    cuda_fill_uniform(be, values, n, lo, hi, seed);
    if (values != p) cuda_act_round(be, 1, (int64_t)n, values, (int64_t)n, p);
    return p;
}

// Measures every algorithm of the three passes on scratch buffers of the entry's shape.
static void cuda_conv_entry_measure(Backend *be, CudaConvEntry *e) {
    CudaContext *ctx = cuda_ctx(be);
    const ConvDesc *d = &e->desc;
    float *staging = NULL;
    if (be->act != DTYPE_F32) {
        const size_t x_elems = conv_desc_x_elems(d), y_elems = conv_desc_y_elems(d), w_elems = conv_desc_w_elems(d);
        size_t most = x_elems > y_elems ? x_elems : y_elems;
        if (w_elems > most) most = w_elems;
        CUDA_CHECK(cudaMalloc((void **)&staging, most * sizeof(float)));
    }
    void *x = conv_measure_buffer(be, conv_desc_x_elems(d), -1.0f, 1.0f, 1, staging);
    void *y = conv_measure_buffer(be, conv_desc_y_elems(d), -1.0f, 1.0f, 2, staging);
    void *w = conv_measure_buffer(be, conv_desc_w_elems(d), -0.1f, 0.1f, 3, staging);
    void *workspace;
    CUDA_CHECK(cudaMalloc(&workspace, CUDA_CONV_WORKSPACE_LIMIT));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    int count = 0;
    size_t fwd_bytes, data_bytes, filter_bytes;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(ctx->cudnn, e->x, x, e->w, w, e->conv, e->y, y,
                                                       CUDA_CONV_MAX_ALGOS, &count, fwd, workspace,
                                                       CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, fwd, count,
                   CUDA_CONV_WORKSPACE_LIMIT, "forward", &e->fwd, &e->fwd_math, &fwd_bytes);
    cudnnConvolutionBwdDataAlgoPerf_t data[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(ctx->cudnn, e->w, w, e->y, y, e->conv, e->x, x,
                                                            CUDA_CONV_MAX_ALGOS, &count, data, workspace,
                                                            CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, data, count,
                   CUDA_CONV_WORKSPACE_LIMIT, "backward-data", &e->bwd_data, &e->bwd_data_math, &data_bytes);
    cudnnConvolutionBwdFilterAlgoPerf_t filter[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(ctx->cudnn, e->x, x, e->y, y, e->conv, e->w, w,
                                                              CUDA_CONV_MAX_ALGOS, &count, filter, workspace,
                                                              CUDA_CONV_WORKSPACE_LIMIT));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, filter, count,
                   CUDA_CONV_WORKSPACE_LIMIT, "backward-filter", &e->bwd_filter, &e->bwd_filter_math,
                   &filter_bytes);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    CUDA_CHECK(cudaFree(x));
    CUDA_CHECK(cudaFree(y));
    CUDA_CHECK(cudaFree(w));
    CUDA_CHECK(cudaFree(workspace));
    CUDA_CHECK(cudaFree(staging));
    conv_entry_set_bytes(e, fwd_bytes, data_bytes, filter_bytes);
}

// cuDNN's heuristic choices within `limit` bytes of cuDNN workspace.
static void cuda_conv_entry_guess(Backend *be, CudaConvEntry *e, size_t limit) {
    CudaContext *ctx = cuda_ctx(be);
    int count = 0;
    size_t fwd_bytes, data_bytes, filter_bytes;
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, e->x, e->w, e->conv, e->y, CUDA_CONV_MAX_ALGOS,
                                                       &count, fwd));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, fwd, count, limit, "forward", &e->fwd, &e->fwd_math,
                   &fwd_bytes);
    cudnnConvolutionBwdDataAlgoPerf_t data[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, e->w, e->y, e->conv, e->x,
                                                            CUDA_CONV_MAX_ALGOS, &count, data));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, data, count, limit, "backward-data", &e->bwd_data,
                   &e->bwd_data_math, &data_bytes);
    cudnnConvolutionBwdFilterAlgoPerf_t filter[CUDA_CONV_MAX_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx->cudnn, e->x, e->y, e->conv, e->w,
                                                              CUDA_CONV_MAX_ALGOS, &count, filter));
    cuda_conv_pick(ctx->conv_algos, ctx->deterministic, filter, count, limit, "backward-filter", &e->bwd_filter,
                   &e->bwd_filter_math, &filter_bytes);
    conv_entry_set_bytes(e, fwd_bytes, data_bytes, filter_bytes);
}

// The cache entry of `d`, created on first use; `at_layer_creation` when conv_workspace_bytes asks,
// before the workspace is reserved.
static CudaConvEntry *cuda_conv_entry(Backend *be, const ConvDesc *d, bool at_layer_creation) {
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
    cuda_conv_entry_describe(be, e, d);
    if (!at_layer_creation) {
        // After the weight scratch, which a shape of the same layer made room for at its creation.
        YP_CHECK(2 * e->cast_bytes <= ctx->workspace_bytes);
        cuda_conv_entry_guess(be, e, ctx->workspace_bytes - 2 * e->cast_bytes);
    } else if (ctx->deterministic) {
        cuda_conv_entry_guess(be, e, CUDA_CONV_WORKSPACE_LIMIT);
    } else {
        cuda_conv_entry_measure(be, e);
    }
    return e;
}

size_t cuda_conv_workspace_bytes(Backend *be, const ConvDesc *d) {
    return d->n ? cuda_conv_entry(be, d, true)->workspace_bytes : 0;
}

// Sets the convolution descriptor to the math type an algorithm was chosen with. float32 without
// TF32 stays FMA-only: cuDNN reports its non-tensor-core algorithms as the default math type, which
// would allow TF32 on this GPU.
static void conv_use_math(Backend *be, CudaConvEntry *e, cudnnMathType_t math) {
    CudaContext *ctx = cuda_ctx(be);
    if (be->act == DTYPE_F32 && !ctx->allow_tf32) math = CUDNN_FMA_MATH;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, math));
}

// The entry's workspace: the rounded weights, the dw scratch and cuDNN's part (see the layout above).
typedef struct ConvWorkspace {
    void *w_cast, *dw_cast, *cudnn;
} ConvWorkspace;

static ConvWorkspace conv_workspace(Backend *be, const CudaConvEntry *e) {
    char *base = (char *)cuda_workspace_get(be, e->workspace_bytes);
    return (ConvWorkspace){base, base + e->cast_bytes, base + 2 * e->cast_bytes};
}

// The weights for cuDNN: w itself with float32 activations, else w rounded into the scratch.
static const void *conv_weights(Backend *be, const ConvDesc *d, const float *w, const ConvWorkspace *ws) {
    if (be->act == DTYPE_F32) return w;
    const int64_t n = (int64_t)conv_desc_w_elems(d);
    cuda_act_round(be, 1, n, w, n, ws->w_cast);
    return ws->w_cast;
}

// y += bias[channel] per (image, channel) plane, rounded once (bf16/fp16 activations).
template <typename T>
static __global__ void conv_bias_add_kernel(int64_t n, int64_t c, int64_t hw, const float *bias, T *y) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < c; ch += gridDim.y) {
            const float b = bias[ch];
            T *yp = y + (img * c + ch) * hw;
            for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride())
                cuda_act_store(&yp[i], cuda_act_load(&yp[i]) + b);
        }
    }
}

// dbias[ch] += the sum of dy over (image, position), one block per channel: each thread sums its
// elements in order in double, then a fixed tree (bf16/fp16 activations).
template <typename T>
static __global__ void conv_bias_grad_kernel(int64_t n, int64_t c, int64_t hw, const T *dy, float *dbias) {
    __shared__ double scratch[64];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double sum = 0.0, none = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const T *dyp = dy + (img * c + ch) * hw;
            for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) sum += cuda_act_load(&dyp[i]);
        }
        cuda_block_sum2(&sum, &none, scratch);
        if (threadIdx.x == 0) dbias[ch] += (float)sum;
    }
}

void cuda_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w, const float *bias, void *y) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f, zero = 0.0f;
    const ConvWorkspace ws = conv_workspace(be, e);
    conv_use_math(be, e, e->fwd_math);
    CUDNN_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, e->x, x, e->w, conv_weights(be, d, w, &ws), e->conv, e->fwd,
                                        ws.cudnn, e->cudnn_bytes, &zero, e->y, y));
    if (!bias) return;
    if (be->act == DTYPE_F32) {
        CUDNN_CHECK(cudnnAddTensor(ctx->cudnn, &one, e->bias, bias, &one, e->y, y));
        return;
    }
    const int64_t hw = d->h_out * d->w_out;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        conv_bias_add_kernel<<<cuda_plane_grid(d->n, d->c_out, hw), CUDA_THREADS, 0, ctx->stream>>>(
            d->n, d->c_out, hw, bias, (T *)y);
    });
    CUDA_CHECK_LAUNCH();
}

void cuda_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w, void *dx) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f;
    const ConvWorkspace ws = conv_workspace(be, e);
    conv_use_math(be, e, e->bwd_data_math);
    CUDNN_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &one, e->w, conv_weights(be, d, w, &ws), e->y, dy, e->conv,
                                             e->bwd_data, ws.cudnn, e->cudnn_bytes, &one, e->x, dx));
}

void cuda_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy, float *dw,
                                 float *dbias) {
    if (!d->n) return;  // cuDNN rejects empty tensors
    CudaContext *ctx = cuda_ctx(be);
    CudaConvEntry *e = cuda_conv_entry(be, d, false);
    const float one = 1.0f, zero = 0.0f;
    const ConvWorkspace ws = conv_workspace(be, e);
    conv_use_math(be, e, e->bwd_filter_math);
    if (be->act == DTYPE_F32) {
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx->cudnn, &one, e->x, x, e->y, dy, e->conv, e->bwd_filter,
                                                   ws.cudnn, e->cudnn_bytes, &one, e->w, dw));
        if (dbias) CUDNN_CHECK(cudnnConvolutionBackwardBias(ctx->cudnn, &one, e->y, dy, &one, e->bias, dbias));
        return;
    }
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx->cudnn, &one, e->x, x, e->y, dy, e->conv, e->bwd_filter, ws.cudnn,
                                               e->cudnn_bytes, &zero, e->w, ws.dw_cast));
    cuda_act_widen_accumulate(be, ws.dw_cast, dw, conv_desc_w_elems(d));
    if (!dbias) return;
    const int64_t hw = d->h_out * d->w_out;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        conv_bias_grad_kernel<<<cuda_grid_yz(d->c_out), CUDA_THREADS, 0, ctx->stream>>>(d->n, d->c_out, hw,
                                                                                         (const T *)dy, dbias);
    });
    CUDA_CHECK_LAUNCH();
}
