// The CPU backend with bfloat16 / float16 activations: the reference for mixed precision. Each
// activation slot widens its activation operands to float32 in the context's conversion scratch,
// runs the float32 kernel on them and rounds its activation results back once, so every result is
// exactly round(float32 kernel(widened inputs)). "+=" outputs are widened first, so the float32
// kernel accumulates onto their current values. Biases, their gradients and batch statistics are
// float32 and pass straight through. Convolutions and dense layers multiply by their float32 weights
// rounded to the activation type, and a convolution's weight gradient is rounded to it before it is
// added to the float32 gradient: what the GPU's tensor-core kernels do (and PyTorch's autocast).
// Attention's P is an activation (rounded when stored; y and backward multiply the stored P), and
// backward rounds dS before its two products, for the same reason.
//
// Slots without arithmetic work on the stored elements: zero, copy and copy_box without
// accumulation move bytes. add, accumulate and copy_box's accumulation add per element (one
// float32 addition, rounded once), which is what the float32 kernels compute.
#include <string.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

// The widened operands of one slot, side by side in the scratch (CpuContext.act_scratch). Three at
// most: batch norm, activation and pooling backward widen x, dy and dx at once.
typedef enum CpuLowpOperand {
    CPU_LOWP_OPERAND_0,
    CPU_LOWP_OPERAND_1,
    CPU_LOWP_OPERAND_2,
    CPU_LOWP_OPERAND_COUNT
} CpuLowpOperand;

// ---- conversions -----------------------------------------------------------------------------------

// dst[i] = src[i] widened from type t: exact.
static void cpu_lowp_widen(DType t, const void *src, float *dst, size_t n_elems) {
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dst[i] = dtype_load(t, src, i);
}

// dst[i] = src[i] rounded to type t (to nearest, ties to even).
static void cpu_lowp_narrow(DType t, const float *src, void *dst, size_t n_elems) {
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dtype_store(t, dst, i, src[i]);
}

// Operand `k` of the scratch, with room for n_elems floats; its contents are undefined.
static float *cpu_lowp_operand(Backend *be, CpuLowpOperand k, size_t n_elems) {
    CpuContext *ctx = be->ctx;
    YP_CHECK(k < CPU_LOWP_OPERAND_COUNT && n_elems <= ctx->act_elems);
    return ctx->act_scratch + (size_t)k * ctx->act_stride;
}

// Operand `k` holding src (n_elems activations) widened to float32.
static float *cpu_lowp_load(Backend *be, CpuLowpOperand k, const void *src, size_t n_elems) {
    float *dst = cpu_lowp_operand(be, k, n_elems);
    cpu_lowp_widen(be->act, src, dst, n_elems);
    return dst;
}

// Rounds src (n_elems floats, an operand) into the activations dst.
static void cpu_lowp_store(Backend *be, const float *src, void *dst, size_t n_elems) {
    cpu_lowp_narrow(be->act, src, dst, n_elems);
}

// y[i] = round(a[i] + b[i]) for n activations; y may be a or b.
static void cpu_lowp_sum(DType t, const void *a, const void *b, void *y, size_t n_elems) {
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dtype_store(t, y, i, dtype_load(t, a, i) + dtype_load(t, b, i));
}

// The weight scratch with room for n_elems floats, grown on first use (its contents are undefined).
static float *cpu_lowp_weight_scratch(Backend *be, size_t n_elems) {
    CpuContext *ctx = be->ctx;
    if (n_elems > ctx->weight_elems) {
        cpu_free(be, ctx->weight_scratch);
        ctx->weight_scratch = cpu_alloc(be, n_elems * sizeof(float));
        ctx->weight_elems = n_elems;
    }
    return ctx->weight_scratch;
}

// The float32 weights w (n_elems) rounded to the activation type, as float32 in the weight scratch.
static const float *cpu_lowp_weights(Backend *be, const float *w, size_t n_elems) {
    float *rounded = cpu_lowp_weight_scratch(be, n_elems);
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) rounded[i] = dtype_round(be->act, w[i]);
    return rounded;
}

// ---- memory ----------------------------------------------------------------------------------------

// Sizing: CPU_LOWP_OPERAND_COUNT operands of the largest activation each, 12 bytes per element. The
// float32 convolution's reorder buffers and oneDNN scratchpads are in the separate workspace, which it
// uses at the same time.
static void cpu_lowp_reserve_activations(Backend *be, size_t largest_elems) {
    CpuContext *ctx = be->ctx;
    if (largest_elems <= ctx->act_elems) return;
    // Each operand starts on a cache line (16 floats), as cpu_alloc's buffers do.
    const size_t stride = (largest_elems + 15) / 16 * 16;
    YP_CHECK(stride >= largest_elems && stride <= SIZE_MAX / sizeof(float) / CPU_LOWP_OPERAND_COUNT);
    // The old contents are scratch, so free and allocate instead of copying with realloc.
    cpu_free(be, ctx->act_scratch);
    ctx->act_scratch = cpu_alloc(be, stride * CPU_LOWP_OPERAND_COUNT * sizeof(float));
    ctx->act_elems = largest_elems;
    ctx->act_stride = stride;
}

// Host memory is backend memory: the transfers convert in place of a copy. n_elems is bounded by
// the reservation as on every backend (CUDA converts through its scratch), so that the CPU catches
// a caller that would overflow it there.
static void cpu_lowp_upload_activation(Backend *be, void *dst, const float *host_src, size_t n_elems) {
    CpuContext *ctx = be->ctx;
    YP_CHECK(n_elems <= ctx->act_elems);
    cpu_lowp_narrow(be->act, host_src, dst, n_elems);
}

static void cpu_lowp_download_activation(Backend *be, float *host_dst, const void *src, size_t n_elems) {
    CpuContext *ctx = be->ctx;
    YP_CHECK(n_elems <= ctx->act_elems);
    cpu_lowp_widen(be->act, src, host_dst, n_elems);
}

// ---- convolution -----------------------------------------------------------------------------------

static void cpu_lowp_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w,
                                    const float *bias, void *y) {
    const size_t n_x = conv_desc_x_elems(d), n_y = conv_desc_y_elems(d);
    float *y32 = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    cpu_conv2d_forward(be, d, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_x),
                       cpu_lowp_weights(be, w, conv_desc_w_elems(d)), bias, y32);
    cpu_lowp_store(be, y32, y, n_y);
}

static void cpu_lowp_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w,
                                          void *dx) {
    const size_t n_x = conv_desc_x_elems(d), n_y = conv_desc_y_elems(d);
    float *dx32 = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, dx, n_x);
    cpu_conv2d_backward_data(be, d, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, dy, n_y),
                             cpu_lowp_weights(be, w, conv_desc_w_elems(d)), dx32);
    cpu_lowp_store(be, dx32, dx, n_x);
}

static void cpu_lowp_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy,
                                            float *dw, float *dbias) {
    const size_t n_x = conv_desc_x_elems(d), n_y = conv_desc_y_elems(d), n_w = conv_desc_w_elems(d);
    float *dw_step = cpu_lowp_weight_scratch(be, n_w);
    memset(dw_step, 0, n_w * sizeof(float));
    cpu_conv2d_backward_filter(be, d, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_x),
                               cpu_lowp_load(be, CPU_LOWP_OPERAND_1, dy, n_y), dw_step, dbias);
#pragma omp parallel for if (n_w >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_w; i++) dw[i] += dtype_round(be->act, dw_step[i]);
}

// ---- batch norm ------------------------------------------------------------------------------------

// The float32 kernels run on a copy of the arguments whose activations are the widened operands.
static void cpu_lowp_batchnorm_forward_train(Backend *be, const BatchNormTrainArgs *a) {
    const size_t n_elems = (size_t)(a->n * a->c * a->hw);
    BatchNormTrainArgs wide = *a;
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_elems);
    wide.y = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_elems);
    cpu_batchnorm_forward_train(be, &wide);
    cpu_lowp_store(be, wide.y, a->y, n_elems);
}

static void cpu_lowp_batchnorm_forward_infer(Backend *be, const BatchNormInferArgs *a) {
    const size_t n_elems = (size_t)(a->n * a->c * a->hw);
    BatchNormInferArgs wide = *a;
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_elems);
    wide.y = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_elems);
    cpu_batchnorm_forward_infer(be, &wide);
    cpu_lowp_store(be, wide.y, a->y, n_elems);
}

static void cpu_lowp_batchnorm_backward(Backend *be, const BatchNormBackwardArgs *a) {
    const size_t n_elems = (size_t)(a->n * a->c * a->hw);
    BatchNormBackwardArgs wide = *a;
    wide.dx = cpu_lowp_load(be, CPU_LOWP_OPERAND_2, a->dx, n_elems);
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_elems);
    wide.dy = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, a->dy, n_elems);
    cpu_batchnorm_backward(be, &wide);
    cpu_lowp_store(be, wide.dx, a->dx, n_elems);
}

// ---- element-wise ----------------------------------------------------------------------------------

static void cpu_lowp_activation_forward(Backend *be, ActivationSpec act, const void *x, void *y, size_t n_elems) {
    float *y32 = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_elems);
    cpu_activation_forward(be, act, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_elems), y32, n_elems);
    cpu_lowp_store(be, y32, y, n_elems);
}

static void cpu_lowp_activation_backward(Backend *be, ActivationSpec act, const void *x, const void *dy, void *dx,
                                         size_t n_elems) {
    float *dx32 = cpu_lowp_load(be, CPU_LOWP_OPERAND_2, dx, n_elems);
    cpu_activation_backward(be, act, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_elems),
                            cpu_lowp_load(be, CPU_LOWP_OPERAND_1, dy, n_elems), dx32, n_elems);
    cpu_lowp_store(be, dx32, dx, n_elems);
}

static void cpu_lowp_channel_bias_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y) {
    const size_t n_elems = (size_t)(n * c * hw);
    float *y32 = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, y, n_elems);
    cpu_channel_bias_forward(be, n, c, hw, b, y32);
    cpu_lowp_store(be, y32, y, n_elems);
}

static void cpu_lowp_channel_bias_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, float *db) {
    cpu_channel_bias_backward(be, n, c, hw, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, dy, (size_t)(n * c * hw)), db);
}

static void cpu_lowp_add(Backend *be, const void *a, const void *b, void *y, size_t n_elems) {
    cpu_lowp_sum(be->act, a, b, y, n_elems);
}

static void cpu_lowp_accumulate(Backend *be, const void *src, void *dst, size_t n_elems) {
    cpu_lowp_sum(be->act, dst, src, dst, n_elems);
}

static void cpu_lowp_copy_box(Backend *be, const CopyBoxArgs *a) {
    copy_box_args_check(a);
    const DType t = be->act;
    const int64_t n = a->n, count_c = a->count_c, count_s = a->count_s;
#pragma omp parallel for collapse(2) if (n * count_c * count_s >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t img = 0; img < n; img++) {
        for (int64_t ch = 0; ch < count_c; ch++) {
            const void *s =
                (const char *)a->src + backend_act_bytes(be, (img * a->src_c + a->src_c0 + ch) * a->src_s + a->src_s0);
            void *d = backend_act_at(be, a->dst, (img * a->dst_c + a->dst_c0 + ch) * a->dst_s + a->dst_s0);
            if (a->accumulate) cpu_lowp_sum(t, d, s, d, (size_t)count_s);
            else memcpy(d, s, backend_act_bytes(be, count_s));
        }
    }
}

// ---- resampling and pooling ------------------------------------------------------------------------

static void cpu_lowp_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                              int64_t factor, const void *x, void *y) {
    const size_t n_x = (size_t)(n * c * h * w), n_y = n_x * (size_t)(factor * factor);
    float *y32 = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    cpu_upsample_nearest_forward(be, n, c, h, w, factor, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_x), y32);
    cpu_lowp_store(be, y32, y, n_y);
}

static void cpu_lowp_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                               int64_t factor, const void *dy, void *dx) {
    const size_t n_x = (size_t)(n * c * h * w), n_y = n_x * (size_t)(factor * factor);
    float *dx32 = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, dx, n_x);
    cpu_upsample_nearest_backward(be, n, c, h, w, factor, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, dy, n_y), dx32);
    cpu_lowp_store(be, dx32, dx, n_x);
}

// The pooling and padding kernels on a copy of the arguments whose activations are the widened
// operands: x (or dy) in operand 0, dy in operand 1, the output (y, or dx widened) in operand 2.
static void cpu_lowp_pool2d_forward(Backend *be, const Pool2dArgs *a, void (*kernel)(Backend *, const Pool2dArgs *)) {
    pool2d_args_check(a);
    const size_t n_x = (size_t)(a->n * a->c * a->h * a->w), n_y = (size_t)(a->n * a->c * a->h_out * a->w_out);
    Pool2dArgs wide = *a;
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_x);
    wide.y = cpu_lowp_operand(be, CPU_LOWP_OPERAND_2, n_y);
    kernel(be, &wide);
    cpu_lowp_store(be, wide.y, a->y, n_y);
}

static void cpu_lowp_pool2d_backward(Backend *be, const Pool2dArgs *a, void (*kernel)(Backend *, const Pool2dArgs *)) {
    pool2d_args_check(a);
    const size_t n_x = (size_t)(a->n * a->c * a->h * a->w), n_y = (size_t)(a->n * a->c * a->h_out * a->w_out);
    Pool2dArgs wide = *a;
    wide.x = a->x ? cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_x) : NULL;  // average pool reads no x
    wide.dy = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, a->dy, n_y);
    wide.dx = cpu_lowp_load(be, CPU_LOWP_OPERAND_2, a->dx, n_x);
    kernel(be, &wide);
    cpu_lowp_store(be, wide.dx, a->dx, n_x);
}

static void cpu_lowp_maxpool2d_forward(Backend *be, const Pool2dArgs *a) {
    cpu_lowp_pool2d_forward(be, a, cpu_maxpool2d_forward);
}
static void cpu_lowp_maxpool2d_backward(Backend *be, const Pool2dArgs *a) {
    cpu_lowp_pool2d_backward(be, a, cpu_maxpool2d_backward);
}
static void cpu_lowp_avgpool2d_forward(Backend *be, const Pool2dArgs *a) {
    cpu_lowp_pool2d_forward(be, a, cpu_avgpool2d_forward);
}
static void cpu_lowp_avgpool2d_backward(Backend *be, const Pool2dArgs *a) {
    cpu_lowp_pool2d_backward(be, a, cpu_avgpool2d_backward);
}

static void cpu_lowp_pad2d_forward(Backend *be, const Pad2dArgs *a) {
    pad2d_args_check(a);
    const size_t n_x = (size_t)(a->n * a->c * a->h * a->w);
    const size_t n_y = (size_t)(a->n * a->c * (a->top + a->h + a->bottom) * (a->left + a->w + a->right));
    Pad2dArgs wide = *a;
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_x);
    wide.y = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    cpu_pad2d_forward(be, &wide);
    cpu_lowp_store(be, wide.y, a->y, n_y);
}

static void cpu_lowp_pad2d_backward(Backend *be, const Pad2dArgs *a) {
    pad2d_args_check(a);
    const size_t n_x = (size_t)(a->n * a->c * a->h * a->w);
    const size_t n_y = (size_t)(a->n * a->c * (a->top + a->h + a->bottom) * (a->left + a->w + a->right));
    Pad2dArgs wide = *a;
    wide.dy = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->dy, n_y);
    wide.dx = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, a->dx, n_x);
    cpu_pad2d_backward(be, &wide);
    cpu_lowp_store(be, wide.dx, a->dx, n_x);
}

static void cpu_lowp_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x, void *y) {
    const size_t n_x = (size_t)(n * c * hw), n_y = (size_t)(n * c);
    float *y32 = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    cpu_avgpool_forward(be, n, c, hw, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_x), y32);
    cpu_lowp_store(be, y32, y, n_y);
}

static void cpu_lowp_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, void *dx) {
    const size_t n_x = (size_t)(n * c * hw), n_y = (size_t)(n * c);
    float *dx32 = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, dx, n_x);
    cpu_avgpool_backward(be, n, c, hw, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, dy, n_y), dx32);
    cpu_lowp_store(be, dx32, dx, n_x);
}

// ---- dense -----------------------------------------------------------------------------------------

static void cpu_lowp_linear_forward(Backend *be, int64_t n, int64_t in, int64_t out, const void *x,
                                    const float *w, const float *b, void *y) {
    const size_t n_x = (size_t)(n * in), n_y = (size_t)(n * out);
    float *y32 = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    cpu_linear_forward(be, n, in, out, cpu_lowp_load(be, CPU_LOWP_OPERAND_0, x, n_x),
                       cpu_lowp_weights(be, w, (size_t)(in * out)), b, y32);
    cpu_lowp_store(be, y32, y, n_y);
}

// The float32 kernel runs on a copy of the arguments whose activations and weights are the widened
// operands.
static void cpu_lowp_linear_backward(Backend *be, const LinearBackwardArgs *a) {
    const size_t n_x = (size_t)(a->n * a->in), n_y = (size_t)(a->n * a->out);
    LinearBackwardArgs wide = *a;
    wide.dx = a->dx ? cpu_lowp_load(be, CPU_LOWP_OPERAND_2, a->dx, n_x) : NULL;
    // dw stays float32, as cuBLAS accumulates it on the GPU.
    wide.x = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->x, n_x);
    wide.w = cpu_lowp_weights(be, a->w, (size_t)(a->in * a->out));
    wide.dy = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, a->dy, n_y);
    cpu_linear_backward(be, &wide);
    if (a->dx) cpu_lowp_store(be, wide.dx, a->dx, n_x);
}

// ---- attention -------------------------------------------------------------------------------------
// qkv, y or dy, and dqkv take the three operands; P's float32 copy lies at the workspace's start
// (rounded up to a cache line), followed by the float32 kernel's blocks for backward.

static size_t cpu_lowp_attention_probs_bytes(const AttentionArgs *a) {
    return (attention_probs_elems(a) + 15) / 16 * 16 * sizeof(float);
}

static size_t cpu_lowp_attention_workspace_bytes(Backend *be, const AttentionArgs *a) {
    (void)be;
    return cpu_lowp_attention_probs_bytes(a) + cpu_attention_rows_bytes(a);
}

// The float32 kernel rounds P to the activation type as it stores it, so y multiplies the stored P.
static void cpu_lowp_attention_forward(Backend *be, const AttentionArgs *a) {
    attention_args_check(a);
    const size_t n_qkv = attention_qkv_elems(a), n_y = attention_y_elems(a);
    AttentionArgs wide = *a;
    wide.qkv = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->qkv, n_qkv);
    wide.y = cpu_lowp_operand(be, CPU_LOWP_OPERAND_1, n_y);
    wide.probs = cpu_workspace_get(be, cpu_lowp_attention_probs_bytes(a));
    cpu_attention_forward_rounded(be, &wide, be->act);
    cpu_lowp_store(be, wide.probs, a->probs, attention_probs_elems(a));
    cpu_lowp_store(be, wide.y, a->y, n_y);
}

static void cpu_lowp_attention_backward(Backend *be, const AttentionArgs *a) {
    attention_args_check(a);
    const CpuContext *ctx = be->ctx;
    const size_t n_qkv = attention_qkv_elems(a), n_y = attention_y_elems(a);
    const size_t probs_bytes = cpu_lowp_attention_probs_bytes(a);
    AttentionArgs wide = *a;
    wide.dqkv = cpu_lowp_load(be, CPU_LOWP_OPERAND_2, a->dqkv, n_qkv);
    wide.qkv = cpu_lowp_load(be, CPU_LOWP_OPERAND_0, a->qkv, n_qkv);
    wide.dy = cpu_lowp_load(be, CPU_LOWP_OPERAND_1, a->dy, n_y);
    float *probs = cpu_workspace_get(be, probs_bytes);
    cpu_lowp_widen(be->act, a->probs, probs, attention_probs_elems(a));
    wide.probs = probs;
    cpu_attention_backward_rounded(be, &wide, be->act, probs + probs_bytes / sizeof(float),
                                   ctx->workspace_bytes - probs_bytes);
    cpu_lowp_store(be, wide.dqkv, a->dqkv, n_qkv);
}

const BackendOps cpu_lowp_ops = {
    CPU_OPS_SHARED_SLOTS,
    .upload_activation = cpu_lowp_upload_activation,
    .download_activation = cpu_lowp_download_activation,
    .reserve_activations = cpu_lowp_reserve_activations,
    .conv2d_forward = cpu_lowp_conv2d_forward,
    .conv2d_backward_data = cpu_lowp_conv2d_backward_data,
    .conv2d_backward_filter = cpu_lowp_conv2d_backward_filter,
    .batchnorm_forward_train = cpu_lowp_batchnorm_forward_train,
    .batchnorm_forward_infer = cpu_lowp_batchnorm_forward_infer,
    .batchnorm_backward = cpu_lowp_batchnorm_backward,
    .activation_forward = cpu_lowp_activation_forward,
    .activation_backward = cpu_lowp_activation_backward,
    .add = cpu_lowp_add,
    .accumulate = cpu_lowp_accumulate,
    .channel_bias_forward = cpu_lowp_channel_bias_forward,
    .channel_bias_backward = cpu_lowp_channel_bias_backward,
    .copy_box = cpu_lowp_copy_box,
    .upsample_nearest_forward = cpu_lowp_upsample_nearest_forward,
    .upsample_nearest_backward = cpu_lowp_upsample_nearest_backward,
    .maxpool2d_forward = cpu_lowp_maxpool2d_forward,
    .maxpool2d_backward = cpu_lowp_maxpool2d_backward,
    .avgpool2d_forward = cpu_lowp_avgpool2d_forward,
    .avgpool2d_backward = cpu_lowp_avgpool2d_backward,
    .pad2d_forward = cpu_lowp_pad2d_forward,
    .pad2d_backward = cpu_lowp_pad2d_backward,
    .avgpool_forward = cpu_lowp_avgpool_forward,
    .avgpool_backward = cpu_lowp_avgpool_backward,
    .linear_forward = cpu_lowp_linear_forward,
    .linear_backward = cpu_lowp_linear_backward,
    .attention_workspace_bytes = cpu_lowp_attention_workspace_bytes,
    .attention_forward = cpu_lowp_attention_forward,
    .attention_backward = cpu_lowp_attention_backward,
};
