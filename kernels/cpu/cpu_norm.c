// Batch norm over (N, H, W) for each channel, as PyTorch's BatchNorm2d, optionally followed by a
// fused activation (kernels/backend.h). Per-channel sums are taken in double: a channel can hold
// millions of values, too many for a float accumulator.
#include <math.h>

#include "framework/core/error.h"
#include "kernels/activation_math.h"
#include "kernels/cpu/cpu_kernels.h"

// The slot's output from the normalised value z.
static inline float bn_activate(ActivationSpec act, float z) { return activation_apply(act, z); }

// The gradient at the normalised value from dy, the gradient at the slot's output: dy itself, or
// through the activation at z recomputed with forward_train's float operations (scale = gamma * invstd).
static inline float bn_grad_in(ActivationSpec act, float x, float dy, float mean, float scale, float shift) {
    return act.kind == ACTIVATION_NONE ? dy : activation_grad(act, (x - mean) * scale + shift, dy);
}

void cpu_batchnorm_forward_train(Backend *be, const BatchNormTrainArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw;
    const float *x = a->x, *gamma = a->gamma, *beta = a->beta;
    float *y = a->y, *running_mean = a->running_mean, *running_var = a->running_var;
    float *save_mean = a->save_mean, *save_invstd = a->save_invstd;
    const float momentum = a->momentum, eps = a->eps;
    const ActivationSpec act = a->act;
    (void)be;
    const int64_t m = n * hw;
    YP_CHECK(m > 0 && act.kind < ACTIVATION_COUNT);
#pragma omp parallel for if (m * c >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) sum += xp[i];
        }
        const double mean = sum / (double)m;
        // Two passes: E[x^2] - mean^2 cancels badly when |mean| >> std.
        double sq = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) {
                const double dev = xp[i] - mean;
                sq += dev * dev;
            }
        }
        const double var = sq / (double)m;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        // The scale from the saved float invstd, as backward forms it: a fused backward recomputes z
        // to the bit.
        const float mean_f = (float)mean, invstd_f = (float)invstd, scale = gamma[ch] * invstd_f, shift = beta[ch];
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw;
            float *yp = y + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) yp[i] = bn_activate(act, (xp[i] - mean_f) * scale + shift);
        }
        // PyTorch keeps the biased variance for normalising but the unbiased one as running stat.
        const double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
        running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
        running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
        save_mean[ch] = mean_f;
        save_invstd[ch] = invstd_f;
    }
}

void cpu_batchnorm_forward_infer(Backend *be, const BatchNormInferArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw;
    const float *x = a->x, *gamma = a->gamma, *beta = a->beta;
    const float *running_mean = a->running_mean, *running_var = a->running_var;
    float *y = a->y;
    const float eps = a->eps;
    const ActivationSpec act = a->act;
    (void)be;
    YP_CHECK(act.kind < ACTIVATION_COUNT);
#pragma omp parallel for collapse(2) if (n * c * hw >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t img = 0; img < n; img++) {
        for (int64_t ch = 0; ch < c; ch++) {
            const float scale = (float)(gamma[ch] / sqrt((double)running_var[ch] + (double)eps));
            const float mean = running_mean[ch], shift = beta[ch];
            const float *xp = x + (img * c + ch) * hw;
            float *yp = y + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) yp[i] = bn_activate(act, (xp[i] - mean) * scale + shift);
        }
    }
}

// With xhat = (x - mean) * invstd, m = N * H * W and g the gradient at the normalised value (dy, or
// dz through the fused SiLU, recomputed in each of the two passes rather than stored):
//   dbeta = sum(g), dgamma = sum(g * xhat),
//   dx = gamma * invstd * (g - sum(g) / m - xhat * sum(g * xhat) / m).
void cpu_batchnorm_backward(Backend *be, const BatchNormBackwardArgs *a) {
    const int64_t n = a->n, c = a->c, hw = a->hw;
    const float *x = a->x, *dy = a->dy, *gamma = a->gamma, *beta = a->beta;
    const float *save_mean = a->save_mean, *save_invstd = a->save_invstd;
    float *dx = a->dx, *dgamma = a->dgamma, *dbeta = a->dbeta;
    const ActivationSpec act = a->act;
    (void)be;
    const int64_t m = n * hw;
    YP_CHECK(m > 0 && act.kind < ACTIVATION_COUNT);
#pragma omp parallel for if (m * c >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < c; ch++) {
        const float mean = save_mean[ch], invstd = save_invstd[ch], scale = gamma[ch] * invstd, shift = beta[ch];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw, *dyp = dy + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) {
                const float g = bn_grad_in(act, xp[i], dyp[i], mean, scale, shift);
                sum_dy += g;
                sum_dy_xhat += (double)g * ((xp[i] - mean) * invstd);
            }
        }
        dbeta[ch] += (float)sum_dy;
        dgamma[ch] += (float)sum_dy_xhat;
        const float mean_dy = (float)(sum_dy / (double)m), mean_dy_xhat = (float)(sum_dy_xhat / (double)m);
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw, *dyp = dy + (img * c + ch) * hw;
            float *dxp = dx + (img * c + ch) * hw;
            for (int64_t i = 0; i < hw; i++) {
                const float g = bn_grad_in(act, xp[i], dyp[i], mean, scale, shift);
                const float xhat = (xp[i] - mean) * invstd;
                dxp[i] += scale * (g - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}
