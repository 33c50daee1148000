// Element-wise kernels and channel-slice copies (concat and split).
#include <string.h>

#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "kernels/activation_math.h"
#include "kernels/cpu/cpu_kernels.h"

void cpu_fill(Backend *be, float *dst, float value, size_t n_elems) {
    (void)be;
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dst[i] = value;
}

void cpu_fill_uniform(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed) {
    (void)be;
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dst[i] = lo + (hi - lo) * rng_uniform(seed, i);
}

// Interleaved bytes to planes, in the activation type (one loop for every type: the store converts).
void cpu_upload_images(Backend *be, void *dst, const uint8_t *host_src, int64_t n, int64_t h, int64_t w) {
    const int64_t plane = h * w;
#pragma omp parallel for collapse(2) if (n * plane >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t img = 0; img < n; img++)
        for (int64_t p = 0; p < plane; p++) {
            const uint8_t *px = host_src + (img * plane + p) * 3;
            for (int64_t c = 0; c < 3; c++)
                dtype_store(be->act, dst, (size_t)((img * 3 + c) * plane + p), (float)px[c] * (1.0f / 255.0f));
        }
}

void cpu_activation_forward(Backend *be, ActivationSpec act, const void *x_mem, void *y_mem, size_t n_elems) {
    const float *x = x_mem;
    float *y = y_mem;
    (void)be;
    YP_CHECK(act.kind < ACTIVATION_COUNT);
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) y[i] = activation_apply(act, x[i]);
}

void cpu_activation_backward(Backend *be, ActivationSpec act, const void *x_mem, const void *dy_mem, void *dx_mem,
                             size_t n_elems) {
    const float *x = x_mem;
    const float *dy = dy_mem;
    float *dx = dx_mem;
    (void)be;
    YP_CHECK(act.kind < ACTIVATION_COUNT);
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dx[i] += activation_grad(act, x[i], dy[i]);
}

void cpu_channel_bias_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y_mem) {
    float *y = y_mem;
    (void)be;
#pragma omp parallel for collapse(2) if (n * c * hw >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t img = 0; img < n; img++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t i = 0; i < hw; i++) y[(img * c + ch) * hw + i] += b[ch];
}

// In double, as batch norm's sums: a channel can hold millions of values.
void cpu_channel_bias_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy_mem, float *db) {
    const float *dy = dy_mem;
    (void)be;
#pragma omp parallel for if (n * c * hw >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0.0;
        for (int64_t img = 0; img < n; img++)
            for (int64_t i = 0; i < hw; i++) sum += dy[(img * c + ch) * hw + i];
        db[ch] += (float)sum;
    }
}

void cpu_add(Backend *be, const void *a_mem, const void *b_mem, void *y_mem, size_t n_elems) {
    const float *a = a_mem;
    const float *b = b_mem;
    float *y = y_mem;
    (void)be;
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) y[i] = a[i] + b[i];
}

void cpu_accumulate(Backend *be, const void *src_mem, void *dst_mem, size_t n_elems) {
    const float *src = src_mem;
    float *dst = dst_mem;
    (void)be;
#pragma omp parallel for if (n_elems >= CPU_PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n_elems; i++) dst[i] += src[i];
}

void cpu_copy_box(Backend *be, const CopyBoxArgs *a) {
    const float *src = a->src;
    float *dst = a->dst;
    const int64_t n = a->n, src_c = a->src_c, src_c0 = a->src_c0, src_s = a->src_s, src_s0 = a->src_s0;
    const int64_t dst_c = a->dst_c, dst_c0 = a->dst_c0, dst_s = a->dst_s, dst_s0 = a->dst_s0;
    const int64_t count_c = a->count_c, count_s = a->count_s;
    const bool accumulate = a->accumulate;
    (void)be;
    copy_box_args_check(a);
#pragma omp parallel for collapse(2) if (n * count_c * count_s >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t img = 0; img < n; img++) {
        for (int64_t ch = 0; ch < count_c; ch++) {
            const float *s = src + (img * src_c + src_c0 + ch) * src_s + src_s0;
            float *t = dst + (img * dst_c + dst_c0 + ch) * dst_s + dst_s0;
            if (accumulate) {
                for (int64_t i = 0; i < count_s; i++) t[i] += s[i];
            } else {
                memcpy(t, s, (size_t)count_s * sizeof(float));
            }
        }
    }
}
