// Nearest upsampling, max- and average pooling, zero padding and global average pooling. Each parallel loop runs over whole
// (image, channel) planes, so backward kernels never have two threads adding to one element.
#include <math.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

void cpu_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                  int64_t factor, const void *x_mem, void *y_mem) {
    const float *x = x_mem;
    float *y = y_mem;
    (void)be;
    YP_CHECK(factor > 0);
    const int64_t f = factor, w_out = w * f, hw_out = h * f * w_out;
#pragma omp parallel for if (n * c * hw_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        const float *xp = x + p * h * w;
        float *yp = y + p * hw_out;
        for (int64_t oh = 0; oh < h * f; oh++) {
            const float *xr = xp + (oh / f) * w;
            float *yr = yp + oh * w_out;
            for (int64_t ow = 0; ow < w_out; ow++) yr[ow] = xr[ow / f];
        }
    }
}

// Each input pixel receives the sum of its f x f block of output gradients.
void cpu_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int64_t factor, const void *dy_mem, void *dx_mem) {
    const float *dy = dy_mem;
    float *dx = dx_mem;
    (void)be;
    YP_CHECK(factor > 0);
    const int64_t f = factor, w_out = w * f, hw_out = h * f * w_out;
#pragma omp parallel for if (n * c * hw_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        const float *dyp = dy + p * hw_out;
        float *dxp = dx + p * h * w;
        for (int64_t ih = 0; ih < h; ih++) {
            for (int64_t iw = 0; iw < w; iw++) {
                float sum = 0.0f;
                for (int64_t a = 0; a < f; a++) {
                    const float *dyr = dyp + (ih * f + a) * w_out + iw * f;
                    for (int64_t b = 0; b < f; b++) sum += dyr[b];
                }
                dxp[ih * w + iw] += sum;
            }
        }
    }
}

// The input rows or columns [lo, hi] that output position o's window covers, clipped to the
// plane (padding never wins, and pad <= k / 2 leaves every window at least one element).
static inline void cpu_pool_span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t size, int64_t *lo,
                                 int64_t *hi) {
    const int64_t start = o * stride - pad, end = start + k - 1;
    *lo = start > 0 ? start : 0;
    *hi = end < size - 1 ? end : size - 1;
}

// Index in plane (H, W) of the maximum of output (oh, ow)'s window. Like PyTorch: the first maximum
// in row-major order, and a NaN wins.
static int64_t cpu_maxpool_argmax(const Pool2dArgs *a, const float *plane, int64_t oh, int64_t ow) {
    int64_t h_lo, h_hi, w_lo, w_hi;
    cpu_pool_span(oh, a->stride, a->pad, a->k, a->h, &h_lo, &h_hi);
    cpu_pool_span(ow, a->stride, a->pad, a->k, a->w, &w_lo, &w_hi);
    int64_t best = h_lo * a->w + w_lo;
    for (int64_t ih = h_lo; ih <= h_hi; ih++) {
        for (int64_t iw = w_lo; iw <= w_hi; iw++) {
            const float v = plane[ih * a->w + iw];
            if (v > plane[best] || isnan(v)) best = ih * a->w + iw;
        }
    }
    return best;
}

// Work of a pooling call, for the threading threshold.
static int64_t cpu_pool_work(const Pool2dArgs *a) { return a->n * a->c * a->h_out * a->w_out * a->k * a->k; }

void cpu_maxpool2d_forward(Backend *be, const Pool2dArgs *a) {
    const float *x = a->x;
    float *y = a->y;
    (void)be;
    pool2d_args_check(a);
    const int64_t hw = a->h * a->w, hw_out = a->h_out * a->w_out;
#pragma omp parallel for if (cpu_pool_work(a) >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *xp = x + p * hw;
        float *yp = y + p * hw_out;
        for (int64_t oh = 0; oh < a->h_out; oh++) {
            for (int64_t ow = 0; ow < a->w_out; ow++) yp[oh * a->w_out + ow] = xp[cpu_maxpool_argmax(a, xp, oh, ow)];
        }
    }
}

// Windows in row-major order, each adding its gradient to its maximum: where windows overlap, an
// element's contributions arrive in that order (the CUDA kernel adds them in the same one).
void cpu_maxpool2d_backward(Backend *be, const Pool2dArgs *a) {
    const float *x = a->x, *dy = a->dy;
    float *dx = a->dx;
    (void)be;
    pool2d_args_check(a);
    const int64_t hw = a->h * a->w, hw_out = a->h_out * a->w_out;
#pragma omp parallel for if (cpu_pool_work(a) >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *xp = x + p * hw, *dyp = dy + p * hw_out;
        float *dxp = dx + p * hw;
        for (int64_t oh = 0; oh < a->h_out; oh++) {
            for (int64_t ow = 0; ow < a->w_out; ow++)
                dxp[cpu_maxpool_argmax(a, xp, oh, ow)] += dyp[oh * a->w_out + ow];
        }
    }
}

// The window's sum in float, row-major, divided by k·k (count_include_pad: padding adds 0 but counts).
void cpu_avgpool2d_forward(Backend *be, const Pool2dArgs *a) {
    const float *x = a->x;
    float *y = a->y;
    (void)be;
    pool2d_args_check(a);
    const int64_t hw = a->h * a->w, hw_out = a->h_out * a->w_out;
    const float divisor = (float)(a->k * a->k);
#pragma omp parallel for if (cpu_pool_work(a) >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *xp = x + p * hw;
        float *yp = y + p * hw_out;
        for (int64_t oh = 0; oh < a->h_out; oh++) {
            int64_t h_lo, h_hi;
            cpu_pool_span(oh, a->stride, a->pad, a->k, a->h, &h_lo, &h_hi);
            for (int64_t ow = 0; ow < a->w_out; ow++) {
                int64_t w_lo, w_hi;
                cpu_pool_span(ow, a->stride, a->pad, a->k, a->w, &w_lo, &w_hi);
                float sum = 0.0f;
                for (int64_t ih = h_lo; ih <= h_hi; ih++)
                    for (int64_t iw = w_lo; iw <= w_hi; iw++) sum += xp[ih * a->w + iw];
                yp[oh * a->w_out + ow] = sum / divisor;
            }
        }
    }
}

// Each window adds dy / (k·k) to its input elements, windows in row-major order (as max-pool's).
void cpu_avgpool2d_backward(Backend *be, const Pool2dArgs *a) {
    const float *dy = a->dy;
    float *dx = a->dx;
    (void)be;
    pool2d_args_check(a);
    const int64_t hw = a->h * a->w, hw_out = a->h_out * a->w_out;
    const float divisor = (float)(a->k * a->k);
#pragma omp parallel for if (cpu_pool_work(a) >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *dyp = dy + p * hw_out;
        float *dxp = dx + p * hw;
        for (int64_t oh = 0; oh < a->h_out; oh++) {
            int64_t h_lo, h_hi;
            cpu_pool_span(oh, a->stride, a->pad, a->k, a->h, &h_lo, &h_hi);
            for (int64_t ow = 0; ow < a->w_out; ow++) {
                int64_t w_lo, w_hi;
                cpu_pool_span(ow, a->stride, a->pad, a->k, a->w, &w_lo, &w_hi);
                const float g = dyp[oh * a->w_out + ow] / divisor;
                for (int64_t ih = h_lo; ih <= h_hi; ih++)
                    for (int64_t iw = w_lo; iw <= w_hi; iw++) dxp[ih * a->w + iw] += g;
            }
        }
    }
}

void cpu_pad2d_forward(Backend *be, const Pad2dArgs *a) {
    const float *x = a->x;
    float *y = a->y;
    (void)be;
    pad2d_args_check(a);
    const int64_t h_out = a->top + a->h + a->bottom, w_out = a->left + a->w + a->right;
#pragma omp parallel for if (a->n * a->c * h_out * w_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *xp = x + p * a->h * a->w;
        float *yp = y + p * h_out * w_out;
        for (int64_t oh = 0; oh < h_out; oh++) {
            const int64_t ih = oh - a->top;
            for (int64_t ow = 0; ow < w_out; ow++) {
                const int64_t iw = ow - a->left;
                yp[oh * w_out + ow] = ih >= 0 && ih < a->h && iw >= 0 && iw < a->w ? xp[ih * a->w + iw] : 0.0f;
            }
        }
    }
}

void cpu_pad2d_backward(Backend *be, const Pad2dArgs *a) {
    const float *dy = a->dy;
    float *dx = a->dx;
    (void)be;
    pad2d_args_check(a);
    const int64_t h_out = a->top + a->h + a->bottom, w_out = a->left + a->w + a->right;
#pragma omp parallel for if (a->n * a->c * a->h * a->w >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < a->n * a->c; p++) {
        const float *dyp = dy + p * h_out * w_out;
        float *dxp = dx + p * a->h * a->w;
        for (int64_t ih = 0; ih < a->h; ih++)
            for (int64_t iw = 0; iw < a->w; iw++) dxp[ih * a->w + iw] += dyp[(ih + a->top) * w_out + iw + a->left];
    }
}

void cpu_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x_mem, void *y_mem) {
    const float *x = x_mem;
    float *y = y_mem;
    (void)be;
    YP_CHECK(hw > 0);
#pragma omp parallel for if (n * c * hw >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        double sum = 0.0;
        for (int64_t i = 0; i < hw; i++) sum += x[p * hw + i];
        y[p] = (float)(sum / (double)hw);
    }
}

void cpu_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy_mem, void *dx_mem) {
    const float *dy = dy_mem;
    float *dx = dx_mem;
    (void)be;
    YP_CHECK(hw > 0);
#pragma omp parallel for if (n * c * hw >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        const float g = dy[p] / (float)hw;
        for (int64_t i = 0; i < hw; i++) dx[p * hw + i] += g;
    }
}
