// Batch norm over (N, H, W) for each channel, with the semantics of kernels/cpu/cpu_norm.c, an
// activation fused in or not (kAct, a template parameter of the kernels that touch activations, which
// then take the ActivationSpec and apply kernels/activation_math.h's float operations).
//
// Parallelisation: a channel's m = N * HW values are cut into `parts` contiguous chunks (bn_parts:
// enough blocks to fill the GPU even when channels are few); block (part, channel) of
// bn_sums_kernel sums its chunk in double, each thread sequentially and then a fixed shuffle tree,
// and writes its two partial sums to scratch. A finishing kernel (one warp per channel) adds a
// channel's partials in a fixed order and derives the per-channel coefficients, and a kernel with
// one grid row per (image, channel) plane (cuda_plane_grid) normalises, or computes dx, coalesced
// over positions.
// Forward reads x twice (sums, normalise), backward reads x and dy twice. No atomics: the results
// are the same bits on every run.
//
// Scratch: the context's reduce_scratch, only between the launches of one call on the backend's
// stream, so nothing else can see it. Where the CPU rounds a float product before adding, these
// kernels do too (__fmul_rn / __dmul_rn are never fused into a multiply-add).
//
// x, y, dy and dx are in the activation type (templates on it, cuda_act.h): loaded widened to
// float, the float and double arithmetic below, y and dx rounded once when stored. The statistics,
// gamma, beta and their gradients are float32. With an activation fused, the normalised value z and its
// gradient dz live in float registers only: forward stores act(z), backward recomputes z from x
// in both of its passes over x and dy.
#include <math.h>

#include <type_traits>

#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_loops.h"
#include "kernels/activation_math.h"

enum {
    BN_THREADS = 256,                // threads per block of bn_sums_kernel
    BN_MIN_VALUES_PER_THREAD = 16,   // below this a block's reduction costs more than its loads
    BN_MAX_PARTS = 128,              // 16 channels x 128 parts already fill an H100 several times
};

// Chunks per channel for m values each: as many as keep BN_MIN_VALUES_PER_THREAD values per thread,
// at most BN_MAX_PARTS, and few enough that 2 partial sums per (channel, part) plus 2 coefficients
// per channel fit in reduce_scratch.
static int64_t bn_parts(int64_t c, int64_t m) {
    const int64_t fit = CUDA_REDUCE_SCRATCH / (2 * c) - 1;
    YP_CHECK(fit >= 1);  // more than CUDA_REDUCE_SCRATCH / 4 channels
    int64_t parts = m / (BN_THREADS * BN_MIN_VALUES_PER_THREAD);
    if (parts > BN_MAX_PARTS) parts = BN_MAX_PARTS;
    if (parts > fit) parts = fit;
    return parts < 1 ? 1 : parts;
}

static dim3 bn_sums_grid(int64_t c, int64_t parts) {
    return dim3((unsigned)parts, cuda_grid_yz(c), 1);
}

// Calls launch with std::true_type when `act` fuses an activation, else std::false_type; the
// caller's generic lambda names the kernels' kAct with decltype(fused)::value.
template <typename F>
static inline void bn_act_dispatch(ActivationSpec act, F &&launch) {
    if (act.kind >= ACTIVATION_COUNT) yp_fatal("unknown batch-norm activation %d", (int)act.kind);
    if (act.kind == ACTIVATION_NONE) launch(std::false_type{});
    else launch(std::true_type{});
}

// The slot's output from the normalised value z.
template <bool kAct>
static __device__ __forceinline__ float bn_activate(ActivationSpec act, float z) {
    if constexpr (kAct) return activation_apply(act, z);
    else return z;
}

// The gradient at the normalised value from dy, the gradient at the slot's output: dy itself, or
// through the activation at z recomputed with the forward's float operations (scale = gamma * invstd).
template <bool kAct>
static __device__ __forceinline__ float bn_grad_in(ActivationSpec act, float x, float dy, float mean, float scale,
                                                   float shift) {
    if constexpr (kAct) return activation_grad(act, __fmul_rn(x - mean, scale) + shift, dy);
    else return dy;
}

// Partial sums over chunk blockIdx.x of each channel, into partials[(ch * parts + part) * 2 + 0/1]:
// - forward (kGrad false): d = x - first and d^2, `first` being the channel's first value; shifting
//   by a value of the channel keeps E[d^2] - E[d]^2 from cancelling when |mean| >> std, in one pass;
// - backward (kGrad true): g and g * xhat, xhat = (x - mean) * invstd rounded to float as the CPU,
//   g = bn_grad_in (dy, or dz through the fused activation).
template <bool kGrad, bool kAct, typename T>
static __global__ void __launch_bounds__(BN_THREADS)
    bn_sums_kernel(int64_t n, int64_t c, int64_t hw, int64_t parts, ActivationSpec act, const T *x, const T *dy,
                   const float *gamma,
                   const float *beta, const float *save_mean, const float *save_invstd, double *partials) {
    __shared__ double scratch[64];
    const int64_t m = n * hw, chunk = (m + parts - 1) / parts;
    const int64_t begin = blockIdx.x * chunk, end = begin + chunk < m ? begin + chunk : m;
    // A step of blockDim.x values is step_img whole images and step_pos positions: no division per value.
    const int64_t step_img = blockDim.x / hw, step_pos = blockDim.x % hw;
    for (int64_t ch = blockIdx.y; ch < c; ch += gridDim.y) {
        const double first = cuda_act_load(&x[ch * hw]);
        const float mean = kGrad ? save_mean[ch] : 0.0f, invstd = kGrad ? save_invstd[ch] : 0.0f;
        const float scale = kAct ? gamma[ch] * invstd : 0.0f, shift = kAct ? beta[ch] : 0.0f;
        double s1 = 0.0, s2 = 0.0;
        int64_t img = (begin + threadIdx.x) / hw, pos = (begin + threadIdx.x) % hw;
        for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
            const int64_t at = (img * c + ch) * hw + pos;
            if constexpr (kGrad) {
                const float xv = cuda_act_load(&x[at]), xhat = (xv - mean) * invstd;
                const float g = bn_grad_in<kAct>(act, xv, cuda_act_load(&dy[at]), mean, scale, shift);
                s1 += g;
                s2 += (double)g * xhat;
            } else {
                const double d = (double)cuda_act_load(&x[at]) - first;
                s1 += d;
                s2 += d * d;
            }
            img += step_img;
            pos += step_pos;
            if (pos >= hw) {
                pos -= hw;
                img++;
            }
        }
        cuda_block_sum2(&s1, &s2, scratch);
        if (threadIdx.x == 0) {
            partials[(ch * parts + blockIdx.x) * 2] = s1;
            partials[(ch * parts + blockIdx.x) * 2 + 1] = s2;
        }
    }
}

// Totals of channel ch's partial sums, summed by the lanes of one warp in a fixed order; lane 0
// gets them. Every lane of the warp must call it.
static __device__ void bn_channel_totals(const double *partials, int64_t parts, int64_t ch, double *s1,
                                         double *s2) {
    double a = 0.0, b = 0.0;
    for (int64_t part = threadIdx.x % 32; part < parts; part += 32) {
        a += partials[(ch * parts + part) * 2];
        b += partials[(ch * parts + part) * 2 + 1];
    }
    *s1 = cuda_warp_sum(a);
    *s2 = cuda_warp_sum(b);
}

// The batch statistics from the partial sums: save_mean, save_invstd, the running statistics and
// scale[ch] = gamma * save_invstd (a float product), each rounded as cpu_batchnorm_forward_train does.
template <typename T>
static __global__ void bn_train_finish_kernel(int64_t c, int64_t hw, int64_t m, int64_t parts, const T *x,
                                              const float *gamma, float *running_mean, float *running_var,
                                              float momentum, float eps, const double *partials, double *scale,
                                              float *save_mean, float *save_invstd) {
    for (int64_t ch = cuda_warp_first(); ch < c; ch += cuda_warp_stride()) {
        double s1, s2;
        bn_channel_totals(partials, parts, ch, &s1, &s2);
        if (threadIdx.x % 32 == 0) {
            const double shift_mean = s1 / (double)m, mean = cuda_act_load(&x[ch * hw]) + shift_mean;
            const double var = fmax(s2 / (double)m - shift_mean * shift_mean, 0.0);  // biased, for normalising
            const double invstd = 1.0 / sqrt(var + (double)eps);
            scale[ch] = __fmul_rn(gamma[ch], (float)invstd);
            const double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
            running_mean[ch] = (float)__dadd_rn(__dmul_rn(1.0 - momentum, running_mean[ch]), __dmul_rn(momentum, mean));
            running_var[ch] =
                (float)__dadd_rn(__dmul_rn(1.0 - momentum, running_var[ch]), __dmul_rn(momentum, unbiased));
            save_mean[ch] = (float)mean;
            save_invstd[ch] = (float)invstd;
        }
    }
}

// scale[ch] = gamma / sqrt(running_var + eps) rounded to float, as cpu_batchnorm_forward_infer.
static __global__ void bn_infer_scale_kernel(int64_t c, const float *gamma, const float *running_var, float eps,
                                             double *scale) {
    for (int64_t ch = cuda_loop_first(); ch < c; ch += cuda_loop_stride()) {
        scale[ch] = (float)(gamma[ch] / sqrt((double)running_var[ch] + (double)eps));
    }
}

// y = act((x - mean) * scale + beta) per (image, channel) plane; the product rounded on its own.
template <bool kAct, typename T>
static __global__ void bn_normalise_kernel(int64_t n, int64_t c, int64_t hw, ActivationSpec act, const T *x,
                                           const float *mean,
                                           const double *scale, const float *beta, T *y) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < c; ch += gridDim.y) {
            const float mu = mean[ch], sc = (float)scale[ch], shift = beta[ch];
            const T *xp = x + (img * c + ch) * hw;
            T *yp = y + (img * c + ch) * hw;
            for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride()) {
                cuda_act_store(&yp[i], bn_activate<kAct>(act, __fmul_rn(cuda_act_load(&xp[i]) - mu, sc) + shift));
            }
        }
    }
}

void cuda_batchnorm_forward_train(Backend *be, const BatchNormTrainArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw, m = n * hw;
    YP_CHECK(m > 0 && c >= 0);
    if (c == 0) return;
    CudaContext *ctx = cuda_ctx(be);
    const int64_t parts = bn_parts(c, m);
    double *partials = ctx->reduce_scratch, *scale = partials + 2 * c * parts;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        const T *xt = (const T *)a->x;
        bn_sums_kernel<false, false><<<bn_sums_grid(c, parts), BN_THREADS, 0, ctx->stream>>>(
            n, c, hw, parts, a->act, xt, (const T *)NULL, NULL, NULL, NULL, NULL, partials);
        CUDA_CHECK_LAUNCH();
        bn_train_finish_kernel<<<cuda_blocks((size_t)c * 32), CUDA_THREADS, 0, ctx->stream>>>(
            c, hw, m, parts, xt, a->gamma, a->running_mean, a->running_var, a->momentum, a->eps, partials, scale,
            a->save_mean, a->save_invstd);
        CUDA_CHECK_LAUNCH();
        bn_act_dispatch(a->act, [&](auto fused) {
            bn_normalise_kernel<decltype(fused)::value><<<cuda_plane_grid(n, c, hw), CUDA_THREADS, 0, ctx->stream>>>(
                n, c, hw, a->act, xt, a->save_mean, scale, a->beta, (T *)a->y);
        });
    });
    CUDA_CHECK_LAUNCH();
}

void cuda_batchnorm_forward_infer(Backend *be, const BatchNormInferArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw;
    YP_CHECK(n >= 0 && c >= 0 && hw >= 0 && c <= CUDA_REDUCE_SCRATCH);
    if (n == 0 || c == 0 || hw == 0) return;
    CudaContext *ctx = cuda_ctx(be);
    double *scale = ctx->reduce_scratch;
    bn_infer_scale_kernel<<<cuda_blocks((size_t)c), CUDA_THREADS, 0, ctx->stream>>>(c, a->gamma, a->running_var,
                                                                                    a->eps, scale);
    CUDA_CHECK_LAUNCH();
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        bn_act_dispatch(a->act, [&](auto fused) {
            bn_normalise_kernel<decltype(fused)::value><<<cuda_plane_grid(n, c, hw), CUDA_THREADS, 0, ctx->stream>>>(
                n, c, hw, a->act, (const T *)a->x, a->running_mean, scale, a->beta, (T *)a->y);
        });
    });
    CUDA_CHECK_LAUNCH();
}

// dbeta += sum(g), dgamma += sum(g * xhat), and coef[2 ch] = sum(g) / m, coef[2 ch + 1] =
// sum(g * xhat) / m rounded to float, as cpu_batchnorm_backward (g: see bn_sums_kernel).
static __global__ void bn_backward_finish_kernel(int64_t c, int64_t m, int64_t parts, const double *partials,
                                                 float *dgamma, float *dbeta, double *coef) {
    for (int64_t ch = cuda_warp_first(); ch < c; ch += cuda_warp_stride()) {
        double sum_dy, sum_dy_xhat;
        bn_channel_totals(partials, parts, ch, &sum_dy, &sum_dy_xhat);
        if (threadIdx.x % 32 == 0) {
            dbeta[ch] += (float)sum_dy;
            dgamma[ch] += (float)sum_dy_xhat;
            coef[2 * ch] = (float)(sum_dy / (double)m);
            coef[2 * ch + 1] = (float)(sum_dy_xhat / (double)m);
        }
    }
}

// dx += gamma * invstd * (g - mean(g) - xhat * mean(g * xhat)) per (image, channel) plane.
template <bool kAct, typename T>
static __global__ void bn_backward_dx_kernel(int64_t n, int64_t c, int64_t hw, ActivationSpec act, const T *x,
                                             const T *dy,
                                             const float *gamma, const float *beta, const float *save_mean,
                                             const float *save_invstd, const double *coef, T *dx) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < c; ch += gridDim.y) {
            const float mean = save_mean[ch], invstd = save_invstd[ch], scale = gamma[ch] * invstd, shift = beta[ch];
            const float mean_dy = (float)coef[2 * ch], mean_dy_xhat = (float)coef[2 * ch + 1];
            const T *xp = x + (img * c + ch) * hw, *dyp = dy + (img * c + ch) * hw;
            T *dxp = dx + (img * c + ch) * hw;
            for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride()) {
                const float xv = cuda_act_load(&xp[i]), xhat = (xv - mean) * invstd;
                const float g = bn_grad_in<kAct>(act, xv, cuda_act_load(&dyp[i]), mean, scale, shift);
                cuda_act_store(&dxp[i],
                               cuda_act_load(&dxp[i]) + __fmul_rn(scale, g - mean_dy - __fmul_rn(xhat, mean_dy_xhat)));
            }
        }
    }
}

void cuda_batchnorm_backward(Backend *be, const BatchNormBackwardArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw, m = n * hw;
    YP_CHECK(m > 0 && c >= 0);
    if (c == 0) return;
    CudaContext *ctx = cuda_ctx(be);
    const int64_t parts = bn_parts(c, m);
    double *partials = ctx->reduce_scratch, *coef = partials + 2 * c * parts;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        const T *xt = (const T *)a->x, *dyt = (const T *)a->dy;
        bn_act_dispatch(a->act, [&](auto fused) {
            constexpr bool kAct = decltype(fused)::value;
            bn_sums_kernel<true, kAct><<<bn_sums_grid(c, parts), BN_THREADS, 0, ctx->stream>>>(
                n, c, hw, parts, a->act, xt, dyt, a->gamma, a->beta, a->save_mean, a->save_invstd, partials);
            CUDA_CHECK_LAUNCH();
            bn_backward_finish_kernel<<<cuda_blocks((size_t)c * 32), CUDA_THREADS, 0, ctx->stream>>>(
                c, m, parts, partials, a->dgamma, a->dbeta, coef);
            CUDA_CHECK_LAUNCH();
            bn_backward_dx_kernel<kAct><<<cuda_plane_grid(n, c, hw), CUDA_THREADS, 0, ctx->stream>>>(
                n, c, hw, a->act, xt, dyt, a->gamma, a->beta, a->save_mean, a->save_invstd, coef, (T *)a->dx);
        });
    });
    CUDA_CHECK_LAUNCH();
}
