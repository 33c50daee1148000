// The backend interface: the only way layers touch tensor memory.
//
// A Backend is a table of kernels plus a private context. kernels/cpu fills one in with C, OpenBLAS
// and OpenMP; kernels/cuda fills another with cuDNN/cuBLAS and its own kernels. Layers call only
// this table, so the same layer code runs on either.
//
// Conventions, the same for every slot:
// - Pointers are backend memory obtained from `alloc`. Shapes are logical NCHW; a backend may lay
//   memory out as it likes as long as the kernels below agree with each other.
// - Element types: activations and their gradients (the `void *` pointers: x, y, dx, dy, a, b, src,
//   dst) hold elements of the backend's activation type `be->act` (framework/core/dtype.h); every
//   `float *` is float32 (parameters, their gradients, running and saved statistics, optimizer
//   state). Kernels compute in float32 and round each activation result once, when storing it, so
//   reduced-precision activations differ from float32 ones by their storage only. On top of that a
//   backend may round the weights to the activation type inside a kernel (cuDNN's bf16/fp16
//   convolutions need it: tensor cores multiply two 16-bit operands); the CPU backend does not.
// - Every backward kernel ACCUMULATES into its gradient outputs (`dx += ...`, `dw += ...`), so
//   gradients from several consumers add up and weight gradients add up over micro-batches. The
//   caller zeroes a gradient buffer once, before the first contribution.
// - Forward kernels overwrite their outputs.
// - Nothing here allocates except `alloc`, `reserve_workspace`, `reserve_activations`,
//   `multi_tensor_prepare` and `detect_loss_create`, which their callers use at creation, and
//   `reserve_render` and `detect_loss_reserve`, which grow what a batch needs before its work is
//   queued, and only when it needs more than every batch before.
// - A Backend is used by one thread at a time (its kernels share one workspace); a process that
//   drives several streams of work creates one Backend for each.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/augment_render.h"
#include "kernels/loss_detect_config.h"
#include "framework/core/dtype.h"
#include "framework/core/error.h"
#include "framework/core/targets.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Backend Backend;

// A 2-D convolution (cross-correlation, as PyTorch's Conv2d). Input (N, C_in, H_in, W_in), weight
// (C_out, C_in / groups, KH, KW), optional bias (C_out), output (N, C_out, H_out, W_out).
typedef struct ConvDesc {
    int64_t n, c_in, h_in, w_in;
    int64_t c_out, h_out, w_out;
    int64_t kh, kw, stride, pad, dilation, groups;
} ConvDesc;

// `shape` with h_out and w_out filled in from the other fields (PyTorch's formula), which the caller
// sets with designated initializers, every one of them (kh, kw, stride, dilation and groups at least
// 1; shape's h_out and w_out are not read):
//   conv_desc_make(&(ConvDesc){.n = n, .c_in = c, .h_in = h, .w_in = w, .c_out = c_out, .kh = 3, .kw = 3,
//                              .stride = 1, .pad = 1, .dilation = 1, .groups = 1})
ConvDesc conv_desc_make(const ConvDesc *shape);

// Multiply-accumulates of one forward pass of the convolution (bias adds not counted).
int64_t conv_desc_macs(const ConvDesc *d);

// Element counts of the input, output and weight tensors.
static inline size_t conv_desc_x_elems(const ConvDesc *d) { return (size_t)(d->n * d->c_in * d->h_in * d->w_in); }
static inline size_t conv_desc_y_elems(const ConvDesc *d) { return (size_t)(d->n * d->c_out * d->h_out * d->w_out); }
static inline size_t conv_desc_w_elems(const ConvDesc *d) {
    return (size_t)(d->c_out * (d->c_in / d->groups) * d->kh * d->kw);
}

// The element-wise activations (activation_forward, and fused into the batch-norm slots), as
// PyTorch's nn modules compute them; kernels/activation_math.h holds their float operations.
typedef enum Activation {
    ACTIVATION_NONE,        // identity (nn.Identity; a plain batch norm)
    ACTIVATION_SILU,        // x * sigmoid(x), Ultralytics' Conv default
    ACTIVATION_RELU,        // max(x, 0); gradient 0 at 0
    ACTIVATION_LEAKY_RELU,  // x > 0 ? x : negative_slope * x; gradient negative_slope at 0
    ACTIVATION_RELU6,       // min(max(x, 0), 6); gradient 0 at 0 and at 6
    ACTIVATION_HARDSWISH,   // x * relu6(x + 3) / 6; gradient 0 for x < -3, 1 for x > 3 (at ±3: the middle formula)
    ACTIVATION_SIGMOID,     // 1 / (1 + exp(-x))
    ACTIVATION_TANH,        // tanh(x)
    ACTIVATION_COUNT
} Activation;

typedef struct ActivationSpec {
    Activation kind;
    float negative_slope;  // LeakyReLU only
} ActivationSpec;

// Ultralytics' Conv default, SiLU, and no activation (what a zero-initialised ActivationSpec is).
#define ACTIVATION_SPEC_SILU ((ActivationSpec){.kind = ACTIVATION_SILU})
#define ACTIVATION_SPEC_NONE ((ActivationSpec){.kind = ACTIVATION_NONE})

// A pooling window over (N, C, H, W) planes: k x k windows every `stride` positions over the input
// padded by `pad` on each side (PyTorch's ceil_mode=False): h_out = (h + 2 pad - k) / stride + 1,
// which pool2d_args_out fills in. x and y are (N, C, H, W) and (N, C, H_out, W_out); dy has y's
// shape and dx x's.
typedef struct Pool2dArgs {
    int64_t n, c, h, w;
    int64_t k, stride, pad;
    int64_t h_out, w_out;
    const void *x;   // forward's input (max-pool backward reads it too)
    void *y;         // forward: overwritten
    const void *dy;  // backward: the gradient at y
    void *dx;        // backward: +=
} Pool2dArgs;

// `a` with h_out and w_out filled in from the other fields, which the caller sets (k and stride at
// least 1, pad at least 0 and at most k / 2 as PyTorch requires, h + 2 pad and w + 2 pad at least k).
Pool2dArgs pool2d_args_out(const Pool2dArgs *a);

// Aborts unless the fields agree with each other (pool2d_args_out's rules, h_out and w_out its
// answer): the check that every backend's pooling kernels make first.
void pool2d_args_check(const Pool2dArgs *a);

// Zero padding of (N, C, H, W) planes (nn.ZeroPad2d): y is (N, C, top + H + bottom, left + W + right),
// the input in the middle and zeros around it. Pads are not negative.
typedef struct Pad2dArgs {
    int64_t n, c, h, w;
    int64_t left, right, top, bottom;
    const void *x;   // forward's input
    void *y;         // forward: overwritten, all of it
    const void *dy;  // backward: the gradient at y
    void *dx;        // backward: += the inner H x W part of dy
} Pad2dArgs;

// Aborts unless the sizes and pads are not negative: the check that every backend's pad kernels make first.
void pad2d_args_check(const Pad2dArgs *a);

// ---- fused optimizer and EMA updates ("multi-tensor apply") -------------------------------------
// An optimizer (or EMA) packs its tensors' state one after another in one buffer per state kind and
// cuts the tensors into chunks (framework/train/pack_layout.h). The table of those chunks, resolved to
// pointers, goes to the backend once, at creation (multi_tensor_prepare), so that each step is one
// call with the table and a few scalars passed by value: one kernel launch on a GPU.

// Elements [begin, end) of one tensor; state element i of the tensor is state[state_offset + i].
typedef struct MultiTensorChunk {
    float *tensor;         // backend memory: a parameter, or in an EMA table the model's tensor (read only)
    float *grad;           // backend memory: the parameter's gradient; NULL in an EMA table
    int64_t state_offset;  // where the tensor starts in the packed state buffers
    int64_t begin, end;
    int32_t group;         // parameter group, index into the step scalars' per-group arrays
} MultiTensorChunk;

// A backend's own copy of a chunk table (device memory on a GPU); opaque, each backend defines it.
typedef struct MultiTensorTable MultiTensorTable;

enum { BACKEND_PARAM_GROUPS = 3 };  // Ultralytics' weight, batch-norm and bias groups (framework/train/optim.h)

// One SGD step's scalars, already rounded to float.
typedef struct SgdStepScalars {
    float lr[BACKEND_PARAM_GROUPS];
    float weight_decay[BACKEND_PARAM_GROUPS];  // 0: the gradient is used as it is
    float momentum;
} SgdStepScalars;

// One AdamW step's scalars, already rounded to float.
typedef struct AdamwStepScalars {
    float decay[BACKEND_PARAM_GROUPS];          // 1 − lr·wd (1 without decay: p·1 is p)
    float neg_step_size[BACKEND_PARAM_GROUPS];  // −lr / (1 − β1^t)
    float lerp_w;                               // 1 − β1
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt;                // sqrt(1 − β2^t)
    float eps;
} AdamwStepScalars;

// A backend's detection loss (see the detect_loss_* slots); opaque, each backend defines it.
typedef struct BackendDetectLoss BackendDetectLoss;

// ---- the arguments of the slots with many operands -----------------------------------------------
// Passed by const pointer and filled with designated initializers, so that every operand is named
// at the call: `be->ops->copy_box(be, &(CopyBoxArgs){.n = n, .src = x, .src_c = c, ...})`. A field
// left out is 0 (or NULL, or false).

// A box of channels x positions (concat, split, Detect's level flattening): views src as
// (N, src_c, src_s) and dst as (N, dst_c, dst_s), s being the flattened spatial positions, and
// copies the box of count_c channels x count_s positions starting at (src_c0, src_s0) to
// (dst_c0, dst_s0).
typedef struct CopyBoxArgs {
    int64_t n;
    const void *src;
    int64_t src_c, src_c0, src_s, src_s0;
    void *dst;  // the box overwritten, or += with `accumulate`; the rest of dst untouched
    int64_t dst_c, dst_c0, dst_s, dst_s0;
    int64_t count_c, count_s;
    bool accumulate;  // add the box onto dst instead of copying it
} CopyBoxArgs;

// Aborts unless the box lies inside both views (counts and n not negative): the check that every
// backend's copy_box makes first.
void copy_box_args_check(const CopyBoxArgs *a);

// The batch-norm slots (batchnorm_forward_train and the two after it say what they compute):
// x, y, dy and dx are (N, C, HW) activations, every float pointer is (C).
typedef struct BatchNormTrainArgs {
    int64_t n, c, hw;
    const void *x;
    const float *gamma, *beta;
    float *running_mean, *running_var;  // updated with PyTorch's rule
    float momentum, eps;
    ActivationSpec act;
    void *y;                            // overwritten
    float *save_mean, *save_invstd;     // overwritten: the batch mean and 1 / sqrt(var + eps), for backward
} BatchNormTrainArgs;

typedef struct BatchNormInferArgs {
    int64_t n, c, hw;
    const void *x;
    const float *gamma, *beta;
    const float *running_mean, *running_var;  // normalise with these
    float eps;
    ActivationSpec act;
    void *y;  // overwritten
} BatchNormInferArgs;

typedef struct BatchNormBackwardArgs {
    int64_t n, c, hw;
    const void *x;   // forward's input
    const void *dy;  // the gradient at forward's output y
    const float *gamma, *beta;
    const float *save_mean, *save_invstd;  // forward_train's
    ActivationSpec act;                    // forward_train's
    void *dx;                              // +=
    float *dgamma, *dbeta;                 // +=
} BatchNormBackwardArgs;

// linear_backward's operands: x (N, in), dy (N, out) and dx (N, in) activations, w and dw (out, in),
// db (out).
typedef struct LinearBackwardArgs {
    int64_t n, in, out;
    const void *x;   // forward's input
    const float *w;  // forward's weights
    const void *dy;  // the gradient at forward's output y
    void *dx;        // += ; NULL: skip
    float *dw;       // +=
    float *db;       // += ; NULL: no bias
} LinearBackwardArgs;

// Multi-head self-attention over the positions of a feature map: Ultralytics' Attention (C2PSA, PSA)
// and YOLO12's area attention (AAttn) are both this one operation. Per image, the T = tokens positions
// (H·W, row-major) split into `areas` consecutive runs of Na = T / areas positions that attend only
// within their run; for run a, head h and positions i, j of the run (token a·Na + i):
//   q_i = qkv[h·head_stride + q_c0 + (0..key_dim),  a·Na + i]   (k_j with k_c0, likewise)
//   v_j = qkv[h·head_stride + v_c0 + (0..head_dim), a·Na + j]
//   P[i, j] = softmax over j of (scale · q_i · k_j), max-subtracted, in float32
//   y[h·head_dim + d, a·Na + i] = Σ_j P[i, j] · v_j[d]
// Attention: head_stride = 2·key_dim + head_dim, q_c0 = 0, k_c0 = key_dim, v_c0 = 2·key_dim, areas 1;
// AAttn: key_dim = head_dim, head_stride = 3·head_dim, offsets 0, head_dim, 2·head_dim, areas = area.
// Each head's q, k and v channels are disjoint and lie in its own head_stride channels
// [h·head_stride, (h+1)·head_stride), which lie in qkv's qkv_c (attention_args_check).
typedef struct AttentionArgs {
    int64_t n, tokens, areas;              // images, positions per image (H·W), runs that attend within themselves
    int64_t heads, key_dim, head_dim;
    int64_t qkv_c, head_stride, q_c0, k_c0, v_c0;  // qkv's channels and where each head's q, k, v start
    float scale;
    const void *qkv;   // (n, qkv_c, tokens) activations
    void *probs;       // (n, areas, heads, Na, Na) activations: P, written by forward, read by backward
    void *y;           // forward: (n, heads·head_dim, tokens), overwritten
    const void *dy;    // backward: gradient at y
    void *dqkv;        // backward: += the gradient at qkv (q, k and v channels; other channels untouched)
} AttentionArgs;

// Aborts unless the sizes are positive (n at least 0), areas divides tokens and the channels lie as
// AttentionArgs says: the check that every backend's attention slots make first.
void attention_args_check(const AttentionArgs *a);
// Na, the positions of one area; the elements of qkv (and dqkv), of y (and dy), and of probs,
// n·areas·heads·Na·Na.
static inline int64_t attention_area_tokens(const AttentionArgs *a) { return a->tokens / a->areas; }
static inline size_t attention_qkv_elems(const AttentionArgs *a) { return (size_t)(a->n * a->qkv_c * a->tokens); }
static inline size_t attention_y_elems(const AttentionArgs *a) {
    return (size_t)(a->n * a->heads * a->head_dim * a->tokens);
}
static inline size_t attention_probs_elems(const AttentionArgs *a) {
    const int64_t na = attention_area_tokens(a);
    return (size_t)(a->n * a->areas * a->heads * na * na);
}

typedef struct BackendOps {
    // ---- memory -------------------------------------------------------------------------------
    void *(*alloc)(Backend *be, size_t n_bytes);  // aborts on failure; contents undefined
    void (*free)(Backend *be, void *ptr);         // accepts NULL
    // Byte copies between host and backend memory, and within backend memory; copy's ranges must
    // not overlap.
    void (*upload)(Backend *be, void *dst, const void *host_src, size_t n_bytes);
    void (*download)(Backend *be, void *host_dst, const void *src, size_t n_bytes);
    void (*copy)(Backend *be, void *dst, const void *src, size_t n_bytes);
    // Activation transfers that convert: host float32 to the activation type (rounding), and back.
    // They use the scratch that reserve_activations sized, so n_elems is at most its largest.
    void (*upload_activation)(Backend *be, void *dst, const float *host_src, size_t n_elems);
    void (*download_activation)(Backend *be, float *host_dst, const void *src, size_t n_elems);
    // The network input from n decoded images of h x w interleaved RGB bytes (host memory): dst
    // (n, 3, h, w) activations get byte * (1.0f / 255.0f), one float multiplication rounded to the
    // activation type. n * 3 * h * w is at most what reserve_activations sized.
    void (*upload_images)(Backend *be, void *dst, const uint8_t *host_src, int64_t n, int64_t h, int64_t w);
    // The network input rendered from n recipes (kernels/augment_render.h): dst (n, 3, side, side)
    // activations get render_pixel's bytes * (1.0f / 255.0f), as upload_images would from the host
    // loader's pixels. The recipes' tiles lie in host_arena from recipes[0].tiles[0].offset on, the n
    // recipes' images one after another, at most what reserve_render sized.
    void (*render_images)(Backend *be, void *dst, const RenderRecipe *recipes, int64_t n, const uint8_t *host_arena,
                          int64_t side);
    // Before a batch's work is queued (growing waits for the device): room for render_images calls of
    // up to n recipes whose images take up to arena_bytes.
    void (*reserve_render)(Backend *be, int64_t n, int64_t arena_bytes);
    // Host memory for buffers that go to or come from the backend often (staging, loss buffers):
    // page-locked on CUDA, which roughly doubles transfer speed and lets copies run asynchronously;
    // plain memory on the CPU. Aborts on failure; host_free accepts NULL.
    void *(*host_alloc)(Backend *be, size_t n_bytes);
    void (*host_free)(Backend *be, void *ptr);
    void (*zero)(Backend *be, void *dst, size_t n_bytes);  // zero bits: 0.0 in every element type
    void (*fill)(Backend *be, float *dst, float value, size_t n_elems);
    // dst[i] = lo + (hi - lo) * rng_uniform(seed, i) (framework/core/rng.h), identical on every backend:
    // two separately rounded float operations, never a fused multiply-add.
    void (*fill_uniform)(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed);
    // Makes sure scratch memory of at least n_bytes exists for the kernels below; called at
    // creation with conv_workspace_bytes' answer so that no kernel allocates.
    void (*reserve_workspace)(Backend *be, size_t n_bytes);
    // Called at creation with the largest activation tensor (in elements) that the kernels and the
    // activation transfers will see: a backend with reduced-precision activations may keep scratch
    // that size (the CPU backend widens activations to float32 in it).
    void (*reserve_activations)(Backend *be, size_t largest_elems);
    size_t (*conv_workspace_bytes)(Backend *be, const ConvDesc *d);
    void (*synchronize)(Backend *be);

    // ---- convolution --------------------------------------------------------------------------
    void (*conv2d_forward)(Backend *be, const ConvDesc *d, const void *x, const float *w,
                           const float *bias /* NULL: none */, void *y);
    void (*conv2d_backward_data)(Backend *be, const ConvDesc *d, const void *dy, const float *w,
                                 void *dx /* += */);
    void (*conv2d_backward_filter)(Backend *be, const ConvDesc *d, const void *x, const void *dy,
                                   float *dw /* += */, float *dbias /* += ; NULL: no bias */);

    // ---- batch norm over (N, H, W) for each of C channels --------------------------------------
    // Training: normalises with the batch mean and biased variance, updates the running statistics
    // with PyTorch's rule (running = (1 - momentum) * running + momentum * batch, the variance
    // unbiased by n / (n - 1); with a single value per channel the biased one, where PyTorch
    // refuses), and keeps the batch mean and 1 / sqrt(var + eps) for backward. The normalised value
    // is z = (x - save_mean) * (gamma * save_invstd) + beta, each operation rounded to float, so
    // that backward can recompute it from the saved statistics to the bit.
    //
    // `act` fuses an activation into the slots (ActivationSpec). With any kind but
    // ACTIVATION_NONE, forward stores y = act(z) and never z itself: z stays float32 in every
    // activation type (with bf16/fp16 activations it is not rounded to 16 bits, unlike a batch norm
    // followed by activation_forward). Backward recomputes z from x, the saved statistics, gamma and
    // beta, turns dy into dz = dy·act'(z) with activation_backward's float operations, and runs the
    // batch-norm backward on dz (its sums included). In float32 the fused slots give the bits of
    // batch norm → activation_forward, and of activation_backward into a zeroed buffer → batch-norm
    // backward. Nothing is kept between forward and backward but the statistics: the fusion saves
    // the batch-norm output that the activation's backward would read.
    void (*batchnorm_forward_train)(Backend *be, const BatchNormTrainArgs *a);
    void (*batchnorm_forward_infer)(Backend *be, const BatchNormInferArgs *a);
    void (*batchnorm_backward)(Backend *be, const BatchNormBackwardArgs *a);

    // ---- element-wise -------------------------------------------------------------------------
    // y = act(x) (Activation says what each kind computes).
    void (*activation_forward)(Backend *be, ActivationSpec act, const void *x, void *y, size_t n_elems);
    // dx += dy · act'(x), from the forward INPUT x (PyTorch's gradients, their conventions at the
    // kinks included: see Activation).
    void (*activation_backward)(Backend *be, ActivationSpec act, const void *x, const void *dy, void *dx /* += */,
                                size_t n_elems);
    void (*add)(Backend *be, const void *a, const void *b, void *y, size_t n_elems);  // y = a + b
    void (*accumulate)(Backend *be, const void *src, void *dst, size_t n_elems);      // dst += src
    // Per-channel bias of (N, C, HW) activations: y[n, c, i] += b[c] (the stored value rounded once),
    // and its gradient db[c] += Σ over n, i of dy[n, c, i], summed in float32 or wider.
    void (*channel_bias_forward)(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y /* += */);
    void (*channel_bias_backward)(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, float *db /* += */);

    // ---- boxes of channels x positions (concat, split, Detect's level flattening) ---------------
    // Copies, or adds, the box that `a` describes (CopyBoxArgs).
    void (*copy_box)(Backend *be, const CopyBoxArgs *a);

    // ---- resampling and pooling ---------------------------------------------------------------
    // Nearest-neighbour upsampling by an integer factor: (N, C, H, W) -> (N, C, H*f, W*f).
    void (*upsample_nearest_forward)(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                     int64_t factor, const void *x, void *y);
    void (*upsample_nearest_backward)(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                      int64_t factor, const void *dy, void *dx /* += */);
    // Max-pool (nn.MaxPool2d(k, stride, pad), ceil_mode False) over Pool2dArgs' windows: padding
    // never wins (every window holds at least one input element, since pad <= k / 2). Backward
    // routes each gradient to the first maximum of its window in row-major order, as PyTorch does
    // (a NaN wins, as there), adding them up where windows overlap; it recomputes the maxima from x
    // instead of storing indices.
    void (*maxpool2d_forward)(Backend *be, const Pool2dArgs *a);
    void (*maxpool2d_backward)(Backend *be, const Pool2dArgs *a);
    // Average pool, F.avg_pool2d(x, k, stride, pad, ceil_mode=False, count_include_pad=True): the
    // sum of the window's inputs (padding counting 0) divided by k·k. Backward adds dy / (k·k) to
    // every input element of the window.
    void (*avgpool2d_forward)(Backend *be, const Pool2dArgs *a);
    void (*avgpool2d_backward)(Backend *be, const Pool2dArgs *a);
    // Zero padding (Pad2dArgs): forward writes all of y; backward adds dy's inner part to dx.
    void (*pad2d_forward)(Backend *be, const Pad2dArgs *a);
    void (*pad2d_backward)(Backend *be, const Pad2dArgs *a);
    // Adaptive average pool to 1x1: (N, C, H, W) -> (N, C).
    void (*avgpool_forward)(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x, void *y);
    void (*avgpool_backward)(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy,
                             void *dx /* += */);

    // ---- dense --------------------------------------------------------------------------------
    // y (N, out) = x (N, in) * w^T + b, w (out, in), b (out) or NULL.
    void (*linear_forward)(Backend *be, int64_t n, int64_t in, int64_t out, const void *x,
                           const float *w, const float *b, void *y);
    // dx (N, in) += dy · w; dw (out, in) += dy^T · x; db (out) += column sums of dy (LinearBackwardArgs).
    void (*linear_backward)(Backend *be, const LinearBackwardArgs *a);
    // Row-major C (m, n) = alpha * op(A) op(B) + beta * C, op(A) (m, k), op(B) (k, n); float32.
    // Its operands mirror cblas_sgemm's argument list on purpose, so it keeps them positional.
    void (*gemm)(Backend *be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

    // ---- attention (AttentionArgs says what it computes) --------------------------------------
    // Scratch that the two slots below need for `a`'s sizes (pointers not read): callers reserve it
    // with reserve_workspace at creation, as for convolutions.
    size_t (*attention_workspace_bytes)(Backend *be, const AttentionArgs *a);
    // Writes probs (P, rounded once to the activation type) and y, from P as stored: with bf16/fp16
    // activations y multiplies the rounded P, as tensor cores do.
    void (*attention_forward)(Backend *be, const AttentionArgs *a);
    // From qkv, forward's probs and dy, dqkv += the gradients at q, k and v:
    //   dV = dY · P;  dP = dYᵀ · V;  dS = P ⊙ (dP − rowsum(dP ⊙ P));  dQ = scale·dS·K;  dK = scale·dSᵀ·Q
    // (per area and head, dP and dS (Na, Na) in float32). With bf16/fp16 activations dS is rounded to
    // the activation type before its two products, as tensor cores multiply 16-bit operands.
    void (*attention_backward)(Backend *be, const AttentionArgs *a);

    // ---- optimizer and EMA over a chunk table (see MultiTensorChunk) ---------------------------
    // Every update below is element-wise and follows the float operations written beside it, in
    // that order and each rounded (never fused into a multiply-add), so that backends agree to a
    // few ulps and the CPU result does not depend on the number of threads. p is chunk.tensor, g
    // chunk.grad, and each state buffer is indexed with chunk.state_offset + i.
    //
    // Copies `chunks` into the backend (the caller keeps its array) and returns the table that the
    // calls below take; free it with multi_tensor_release before the tensors it points to.
    MultiTensorTable *(*multi_tensor_prepare)(Backend *be, const MultiTensorChunk *chunks, int n_chunks);
    void (*multi_tensor_release)(Backend *be, MultiTensorTable *table);  // accepts NULL
    // torch.optim.SGD (dampening 0, Nesterov), lr, wd of the chunk's group, b = momentum_buffer:
    //   if wd ≠ 0: g = g + wd·p;  b = b·momentum + g;  g = g + momentum·b;  p = p + (−lr)·g
    void (*optim_sgd_step)(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s);
    // torch.optim.AdamW, m = exp_avg, v = exp_avg_sq, decay and neg_step_size of the chunk's group:
    //   p = p·decay;  m = lerp(m, g, lerp_w);  v = v·beta2;  v = v + (one_minus_beta2·g)·g;
    //   p = p + (neg_step_size·m) / (sqrt(v) / bias_correction2_sqrt + eps)
    // with PyTorch's lerp(a, b, w): a + w·(b − a) when |w| < 0.5, else b − (b − a)·(1 − w).
    void (*optim_adamw_step)(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                             AdamwStepScalars s);
    // Σ g² over the table: each chunk's sum of (double)g·(double)g in double (in an order of the
    // backend's own within the chunk), then the chunk sums added in chunk order on the host. Waits
    // for the result. The table is not const because a backend may keep its partial sums there.
    double (*grad_sumsq)(Backend *be, MultiTensorTable *table);
    // g = g·factor over the table.
    void (*grads_scale)(Backend *be, const MultiTensorTable *table, float factor);
    // EMA table (chunk.tensor the model's tensor m, e = ema): e = lerp(e, m, weight), the lerp above.
    void (*ema_update)(Backend *be, const MultiTensorTable *table, float *ema, float weight);

    // ---- the detection loss (Ultralytics 8.4's v8DetectionLoss, kernels/cpu/cpu_loss.h) ----------
    // Computed where the network output lies: on the CPU by the host loss (kernels/cpu/cpu_loss.c),
    // on CUDA by its kernels (kernels/cuda/cuda_loss.h, which says how closely the two agree).
    //
    // Checks cfg (user errors in err, naming the field; a backend may refuse more, e.g. CUDA a topk
    // above CUDA_DETECT_LOSS_MAX_TOPK) and allocates all work memory for batches of up to max_batch
    // images and max_targets ground-truth boxes, waiting for the backend if it must. On failure *out
    // is NULL. The caller owns *out and frees it with detect_loss_destroy, before the backend.
    bool (*detect_loss_create)(Backend *be, const DetectLossConfig *cfg, int64_t max_batch, int64_t max_targets,
                               BackendDetectLoss **out, Error *err);
    void (*detect_loss_destroy)(Backend *be, BackendDetectLoss *loss);  // accepts NULL; waits for the backend
    // Makes room for batches of up to max_targets boxes. Growing may wait for the backend: call it
    // before a batch's work is queued (the executor does, at the start of each batch).
    void (*detect_loss_reserve)(Backend *be, BackendDetectLoss *loss, int64_t max_targets);
    // The loss of one batch (detect_loss_compute's contract, kernels/cpu/cpu_loss.h): pred
    // (batch_n, 4 * reg_max + nc, A) is Detect's training output in backend memory, in the
    // activation type; targets (n_targets, at most the reserved number; not retained) host memory.
    // dpred (same shape as pred, overwritten; NULL: no gradient, as in validation) gets the loss
    // gradient computed in float32, times grad_scale (fp16 loss scaling; 1 otherwise), rounded to
    // the activation type when stored. Queued after the work already on the backend; waits for its
    // own result and returns the total (box + cls + dfl) * batch_n, unscaled; *parts may be NULL.
    double (*detect_loss_compute)(Backend *be, BackendDetectLoss *loss, int64_t batch_n, const void *pred,
                                  const TargetBox *targets, int64_t n_targets, float grad_scale, void *dpred,
                                  DetectLossParts *parts);

    void (*destroy)(Backend *be);
} BackendOps;

struct Backend {
    const BackendOps *ops;
    const char *name;  // "cpu" or "cuda"
    DType act;         // the activations' element type (see the conventions above)
    bool host_memory;  // backend memory is plain host memory, which the host may read and write directly
    void *ctx;         // the implementation's private state
};

// Frees the backend (its ops->destroy); accepts NULL.
void backend_destroy(Backend *be);

// Channels [src_c0, src_c0 + count) of src (N, src_c, HW) and channels [dst_c0, dst_c0 + count) of
// dst (N, dst_c, HW), for backend_copy_channels.
typedef struct CopyChannelsArgs {
    int64_t n, hw;
    const void *src;
    int64_t src_c, src_c0;
    void *dst;  // those channels overwritten, or += with `accumulate`
    int64_t dst_c, dst_c0;
    int64_t count;
    bool accumulate;
} CopyChannelsArgs;

// Copies (or adds) the channels of `a` from src to dst: copy_box over all positions.
void backend_copy_channels(Backend *be, const CopyChannelsArgs *a);

// Bytes of n activation elements, and the address of activation element `index` of `base`.
static inline size_t backend_act_bytes(const Backend *be, int64_t n) { return (size_t)n * dtype_size(be->act); }
static inline void *backend_act_at(const Backend *be, void *base, int64_t index) {
    return (char *)base + backend_act_bytes(be, index);
}

#ifdef __cplusplus
}
#endif
