// The optimizer and EMA updates over a chunk table (BackendOps' multi-tensor slots). Each loop runs
// the chunks in parallel and each chunk's elements in order, so the results (and grad_sumsq's
// chunk-ordered sum) are the same for any number of threads.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

struct MultiTensorTable {
    int n_chunks;
    MultiTensorChunk *chunks;  // (n_chunks) owned copy
    double *chunk_sumsq;       // (n_chunks) grad_sumsq's partial sums, owned
};

MultiTensorTable *cpu_multi_tensor_prepare(Backend *be, const MultiTensorChunk *chunks, int n_chunks) {
    (void)be;
    YP_CHECK(n_chunks >= 0);
    MultiTensorTable *t = yp_malloc(sizeof *t);
    t->n_chunks = n_chunks;
    t->chunks = yp_malloc((size_t)(n_chunks ? n_chunks : 1) * sizeof *t->chunks);
    t->chunk_sumsq = yp_malloc((size_t)(n_chunks ? n_chunks : 1) * sizeof *t->chunk_sumsq);
    for (int c = 0; c < n_chunks; c++) {
        YP_CHECK(chunks[c].group >= 0 && chunks[c].group < BACKEND_PARAM_GROUPS);
        YP_CHECK(chunks[c].begin >= 0 && chunks[c].begin <= chunks[c].end);
    }
    if (n_chunks) memcpy(t->chunks, chunks, (size_t)n_chunks * sizeof *chunks);
    return t;
}

void cpu_multi_tensor_release(Backend *be, MultiTensorTable *table) {
    (void)be;
    if (!table) return;
    free(table->chunks);
    free(table->chunk_sumsq);
    free(table);
}

void cpu_optim_sgd_step(Backend *be, const MultiTensorTable *table, float *momentum_buffer, SgdStepScalars s) {
    (void)be;
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < table->n_chunks; c++) {
        const MultiTensorChunk *ch = &table->chunks[c];
        float *p = ch->tensor, *buf = momentum_buffer + ch->state_offset;
        const float *g_in = ch->grad;
        const float lr = s.lr[ch->group], wd = s.weight_decay[ch->group], momentum = s.momentum;
        for (int64_t i = ch->begin; i < ch->end; i++) {
            float g = g_in[i];
            if (wd != 0.0f) g = g + wd * p[i];
            buf[i] = buf[i] * momentum + g;
            g = g + momentum * buf[i];  // Nesterov
            p[i] = p[i] + -lr * g;
        }
    }
}

void cpu_optim_adamw_step(Backend *be, const MultiTensorTable *table, float *exp_avg, float *exp_avg_sq,
                          AdamwStepScalars s) {
    (void)be;
    const bool small_w = fabsf(s.lerp_w) < 0.5f;  // PyTorch's lerp picks its formula by the weight
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < table->n_chunks; c++) {
        const MultiTensorChunk *ch = &table->chunks[c];
        float *p = ch->tensor, *m = exp_avg + ch->state_offset, *v = exp_avg_sq + ch->state_offset;
        const float *g = ch->grad;
        const float decay = s.decay[ch->group], neg_step_size = s.neg_step_size[ch->group];
        for (int64_t i = ch->begin; i < ch->end; i++) {
            p[i] = p[i] * decay;
            m[i] = small_w ? m[i] + s.lerp_w * (g[i] - m[i]) : g[i] - (g[i] - m[i]) * (1.0f - s.lerp_w);
            v[i] = v[i] * s.beta2;
            v[i] = v[i] + s.one_minus_beta2 * g[i] * g[i];
            float denom = sqrtf(v[i]) / s.bias_correction2_sqrt + s.eps;
            p[i] = p[i] + neg_step_size * m[i] / denom;
        }
    }
}

double cpu_grad_sumsq(Backend *be, MultiTensorTable *table) {
    (void)be;
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < table->n_chunks; c++) {
        const MultiTensorChunk *ch = &table->chunks[c];
        const float *g = ch->grad;
        double s = 0.0;
        for (int64_t i = ch->begin; i < ch->end; i++) s += (double)g[i] * (double)g[i];
        table->chunk_sumsq[c] = s;
    }
    double total = 0.0;
    for (int c = 0; c < table->n_chunks; c++) total += table->chunk_sumsq[c];
    return total;
}

void cpu_grads_scale(Backend *be, const MultiTensorTable *table, float factor) {
    (void)be;
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < table->n_chunks; c++) {
        const MultiTensorChunk *ch = &table->chunks[c];
        float *g = ch->grad;
        for (int64_t i = ch->begin; i < ch->end; i++) g[i] *= factor;
    }
}

void cpu_ema_update(Backend *be, const MultiTensorTable *table, float *ema, float weight) {
    (void)be;
    const bool small_w = fabsf(weight) < 0.5f;
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < table->n_chunks; c++) {
        const MultiTensorChunk *ch = &table->chunks[c];
        const float *m = ch->tensor;
        float *e = ema + ch->state_offset;
        for (int64_t i = ch->begin; i < ch->end; i++)
            e[i] = small_w ? e[i] + weight * (m[i] - e[i]) : m[i] - (m[i] - e[i]) * (1.0f - weight);
    }
}
