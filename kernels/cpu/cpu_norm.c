// Batch norm over (N, H, W) for each channel, as PyTorch's BatchNorm2d, optionally followed by a
// fused activation (kernels/backend.h).
//
// A channel can hold millions of values, too many for one float accumulator, and a double chain is
// serial. So the per-channel sums run over chunks of BN_CHUNK values, in BN_LANES float partial sums
// the compiler vectorizes, and each chunk's total is added in double. The order is fixed by the
// shape alone, so results do not depend on the thread count.
#include <math.h>

#include "framework/core/error.h"
#include "kernels/activation_math.h"
#include "kernels/cpu/cpu_kernels.h"

enum { BN_LANES = 16, BN_CHUNK = 1024 };

// y = act((x - mean) * scale + shift) over len values. A switch on the kind inside the loop keeps the
// compiler from vectorizing it, so SiLU (every YOLO Conv's) and no activation get loops of their own.
CPU_VECTOR_CLONES static void bn_apply(ActivationSpec act, const float *x, int64_t len, float mean, float scale,
                                       float shift, float *y) {
    static const ActivationSpec silu = {.kind = ACTIVATION_SILU}, none = {.kind = ACTIVATION_NONE};
    if (act.kind == ACTIVATION_SILU)
        for (int64_t i = 0; i < len; i++) y[i] = activation_apply(silu, (x[i] - mean) * scale + shift);
    else if (act.kind == ACTIVATION_NONE)
        for (int64_t i = 0; i < len; i++) y[i] = activation_apply(none, (x[i] - mean) * scale + shift);
    else
        for (int64_t i = 0; i < len; i++) y[i] = activation_apply(act, (x[i] - mean) * scale + shift);
}

// The gradient at the normalised value from dy, the gradient at the slot's output, for the len
// values of one chunk: dy itself without an activation, else through the activation at z
// recomputed with forward_train's float operations (scale = gamma * invstd), written to buf.
CPU_VECTOR_CLONES static const float *bn_grad_chunk(ActivationSpec act, const float *x, const float *dy, int64_t len,
                                                     float mean, float scale, float shift, float *buf) {
    static const ActivationSpec silu = {.kind = ACTIVATION_SILU};
    if (act.kind == ACTIVATION_NONE) return dy;
    if (act.kind == ACTIVATION_SILU)
        for (int64_t i = 0; i < len; i++) buf[i] = activation_grad(silu, (x[i] - mean) * scale + shift, dy[i]);
    else
        for (int64_t i = 0; i < len; i++) buf[i] = activation_grad(act, (x[i] - mean) * scale + shift, dy[i]);
    return buf;
}

// Σ (a[i] - a_shift) * (b[i] - b_shift) over one chunk of len values, b == NULL standing for 1:
// Σ (a - shift) and Σ (a - shift)² (b == a) in one vectorized loop.
CPU_VECTOR_CLONES static double bn_chunk_dot(const float *a, float a_shift, const float *b, float b_shift,
                                             int64_t len) {
    float lane[BN_LANES] = {0};
    int64_t i = 0;
    if (b) {
        for (; i + BN_LANES <= len; i += BN_LANES)
            for (int j = 0; j < BN_LANES; j++) lane[j] += (a[i + j] - a_shift) * (b[i + j] - b_shift);
    } else {
        for (; i + BN_LANES <= len; i += BN_LANES)
            for (int j = 0; j < BN_LANES; j++) lane[j] += a[i + j] - a_shift;
    }
    double sum = 0.0;
    for (; i < len; i++) sum += b ? (double)((a[i] - a_shift) * (b[i] - b_shift)) : (double)(a[i] - a_shift);
    for (int j = 0; j < BN_LANES; j++) sum += lane[j];
    return sum;
}

// dx += scale * (g - mean_g - xhat * mean_g_xhat) over one chunk, xhat = (x - mean) * invstd.
CPU_VECTOR_CLONES static void bn_dx_chunk(const float *g, const float *x, int64_t len, float mean, float invstd,
                                          float scale, float mean_g, float mean_g_xhat, float *dx) {
    for (int64_t i = 0; i < len; i++) dx[i] += scale * (g[i] - mean_g - (x[i] - mean) * invstd * mean_g_xhat);
}

// The length of the chunk that starts at start in a plane of hw values.
static inline int64_t bn_chunk_len(int64_t start, int64_t hw) { return start + BN_CHUNK < hw ? BN_CHUNK : hw - start; }

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
            for (int64_t s = 0; s < hw; s += BN_CHUNK)
                sum += bn_chunk_dot(xp + s, 0.0f, NULL, 0.0f, bn_chunk_len(s, hw));
        }
        const double mean = sum / (double)m;
        const float mean_f = (float)mean;
        // Two passes: E[x^2] - mean^2 cancels badly when |mean| >> std.
        double sq = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw;
            for (int64_t s = 0; s < hw; s += BN_CHUNK)
                sq += bn_chunk_dot(xp + s, mean_f, xp + s, mean_f, bn_chunk_len(s, hw));
        }
        const double var = sq / (double)m;
        const double invstd = 1.0 / sqrt(var + (double)eps);
        // The scale from the saved float invstd, as backward forms it: a fused backward recomputes z
        // to the bit.
        const float invstd_f = (float)invstd, scale = gamma[ch] * invstd_f, shift = beta[ch];
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw;
            float *yp = y + (img * c + ch) * hw;
            bn_apply(act, xp, hw, mean_f, scale, shift, yp);
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
            bn_apply(act, xp, hw, mean, scale, shift, yp);
        }
    }
}

// With xhat = (x - mean) * invstd, m = N * H * W and g the gradient at the normalised value (dy, or
// dz through the fused activation, recomputed in each of the two passes rather than stored):
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
        float g_chunk[BN_CHUNK];
        double sum_g = 0.0, sum_g_dev = 0.0;  // Σ g, Σ g (x - mean)
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw, *dyp = dy + (img * c + ch) * hw;
            for (int64_t s = 0; s < hw; s += BN_CHUNK) {
                const int64_t len = bn_chunk_len(s, hw);
                const float *g = bn_grad_chunk(act, xp + s, dyp + s, len, mean, scale, shift, g_chunk);
                sum_g += bn_chunk_dot(g, 0.0f, NULL, 0.0f, len);
                sum_g_dev += bn_chunk_dot(g, 0.0f, xp + s, mean, len);
            }
        }
        const double sum_g_xhat = sum_g_dev * (double)invstd;
        dbeta[ch] += (float)sum_g;
        dgamma[ch] += (float)sum_g_xhat;
        const float mean_g = (float)(sum_g / (double)m), mean_g_xhat = (float)(sum_g_xhat / (double)m);
        for (int64_t img = 0; img < n; img++) {
            const float *xp = x + (img * c + ch) * hw, *dyp = dy + (img * c + ch) * hw;
            float *dxp = dx + (img * c + ch) * hw;
            for (int64_t s = 0; s < hw; s += BN_CHUNK) {
                const int64_t len = bn_chunk_len(s, hw);
                const float *g = bn_grad_chunk(act, xp + s, dyp + s, len, mean, scale, shift, g_chunk);
                bn_dx_chunk(g, xp + s, len, mean, invstd, scale, mean_g, mean_g_xhat, dxp + s);
            }
        }
    }
}
