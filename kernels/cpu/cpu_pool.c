// Nearest upsampling, SPPF's max-pool and global average pooling. Each parallel loop runs over whole
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

// Index in plane (H, W) of the maximum of the k x k window centred on (oh, ow), clipped to the
// plane (padding never wins). Like PyTorch: the first maximum in row-major order, and a NaN wins.
static int64_t cpu_maxpool_argmax(const float *plane, int64_t h, int64_t w, int64_t r, int64_t oh,
                                  int64_t ow) {
    const int64_t h_lo = oh - r > 0 ? oh - r : 0, h_hi = oh + r < h - 1 ? oh + r : h - 1;
    const int64_t w_lo = ow - r > 0 ? ow - r : 0, w_hi = ow + r < w - 1 ? ow + r : w - 1;
    int64_t best = h_lo * w + w_lo;
    for (int64_t ih = h_lo; ih <= h_hi; ih++) {
        for (int64_t iw = w_lo; iw <= w_hi; iw++) {
            const float v = plane[ih * w + iw];
            if (v > plane[best] || isnan(v)) best = ih * w + iw;
        }
    }
    return best;
}

static void cpu_maxpool_check(int64_t k) { YP_CHECK(k > 0 && k % 2 == 1); }

void cpu_maxpool_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                         const void *x_mem, void *y_mem) {
    const float *x = x_mem;
    float *y = y_mem;
    (void)be;
    cpu_maxpool_check(k);
    const int64_t hw = h * w;
#pragma omp parallel for if (n * c * hw * k >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        const float *xp = x + p * hw;
        float *yp = y + p * hw;
        for (int64_t oh = 0; oh < h; oh++) {
            for (int64_t ow = 0; ow < w; ow++) yp[oh * w + ow] = xp[cpu_maxpool_argmax(xp, h, w, k / 2, oh, ow)];
        }
    }
}

void cpu_maxpool_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                          const void *x_mem, const void *dy_mem, void *dx_mem) {
    const float *x = x_mem;
    const float *dy = dy_mem;
    float *dx = dx_mem;
    (void)be;
    cpu_maxpool_check(k);
    const int64_t hw = h * w;
#pragma omp parallel for if (n * c * hw * k >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t p = 0; p < n * c; p++) {
        const float *xp = x + p * hw, *dyp = dy + p * hw;
        float *dxp = dx + p * hw;
        for (int64_t oh = 0; oh < h; oh++) {
            for (int64_t ow = 0; ow < w; ow++) dxp[cpu_maxpool_argmax(xp, h, w, k / 2, oh, ow)] += dyp[oh * w + ow];
        }
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
