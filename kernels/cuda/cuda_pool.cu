// Nearest upsampling, SPPF's max-pool and global average pooling, with the results of
// kernels/cpu/cpu_pool.c bit for bit (avgpool_forward: up to the order of a double sum).
//
// Parallelisation: one grid row per (image, channel) plane, its threads along the plane's elements
// (cuda_plane_grid). Every backward kernel is a gather: one thread per input element adds up the
// output gradients that reach it, in the CPU's order, and writes it once, so no two threads touch one
// element and no atomics are needed. Upsampling runs one thread per input pixel (its f x f block of
// outputs), max-pool one per output (forward) or input (backward) element, and average pooling one
// warp per plane (forward) or one thread per element (backward).
#include <math.h>

#include "kernels/cuda/cuda_loops.h"

// Each input pixel writes its f x f block of outputs.
static __global__ void upsample_forward_kernel(int64_t planes, int64_t h, int64_t w, int64_t f, const float *x,
                                               float *y) {
    const int64_t w_out = w * f, hw_out = h * f * w_out;
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            const int64_t ih = i / w, iw = i % w;
            const float v = x[p * h * w + i];
            float *yb = y + p * hw_out + ih * f * w_out + iw * f;
            for (int64_t a = 0; a < f; a++) {
                for (int64_t b = 0; b < f; b++) yb[a * w_out + b] = v;
            }
        }
    }
}

void cuda_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                   const float *x, float *y) {
    YP_CHECK(factor > 0 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
    if (n * c == 0 || h * w == 0) return;
    upsample_forward_kernel<<<cuda_plane_grid(n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(n * c, h, w,
                                                                                                     factor, x, y);
    CUDA_CHECK_LAUNCH();
}

// Each input pixel receives the sum of its f x f block of output gradients, summed as the CPU does.
static __global__ void upsample_backward_kernel(int64_t planes, int64_t h, int64_t w, int64_t f, const float *dy,
                                                float *dx) {
    const int64_t w_out = w * f, hw_out = h * f * w_out;
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            const int64_t ih = i / w, iw = i % w;
            const float *dyb = dy + p * hw_out + ih * f * w_out + iw * f;
            float sum = 0.0f;
            for (int64_t a = 0; a < f; a++) {
                for (int64_t b = 0; b < f; b++) sum += dyb[a * w_out + b];
            }
            dx[p * h * w + i] += sum;
        }
    }
}

void cuda_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                    const float *dy, float *dx) {
    YP_CHECK(factor > 0 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
    if (n * c == 0 || h * w == 0) return;
    upsample_backward_kernel<<<cuda_plane_grid(n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
        n * c, h, w, factor, dy, dx);
    CUDA_CHECK_LAUNCH();
}

// Index in plane (H, W) of the maximum of the window of radius r centred on (oh, ow), clipped to the
// plane (padding never wins): the scan of cpu_maxpool_argmax, so the first maximum in row-major
// order wins, and a NaN wins.
static __device__ int64_t maxpool_argmax(const float *plane, int64_t h, int64_t w, int64_t r, int64_t oh,
                                         int64_t ow) {
    const int64_t h_lo = oh - r > 0 ? oh - r : 0, h_hi = oh + r < h - 1 ? oh + r : h - 1;
    const int64_t w_lo = ow - r > 0 ? ow - r : 0, w_hi = ow + r < w - 1 ? ow + r : w - 1;
    int64_t best = h_lo * w + w_lo;
    float best_v = plane[best];
    for (int64_t ih = h_lo; ih <= h_hi; ih++) {
        for (int64_t iw = w_lo; iw <= w_hi; iw++) {
            const float v = plane[ih * w + iw];
            if (v > best_v || isnan(v)) {
                best = ih * w + iw;
                best_v = v;
            }
        }
    }
    return best;
}

static void maxpool_check(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k) {
    YP_CHECK(k > 0 && k % 2 == 1 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
}

static __global__ void maxpool_forward_kernel(int64_t planes, int64_t h, int64_t w, int64_t r, const float *x,
                                              float *y) {
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const float *xp = x + p * h * w;
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            y[p * h * w + i] = xp[maxpool_argmax(xp, h, w, r, i / w, i % w)];
        }
    }
}

void cuda_maxpool_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, const float *x,
                          float *y) {
    maxpool_check(n, c, h, w, k);
    if (n * c == 0 || h * w == 0) return;
    maxpool_forward_kernel<<<cuda_plane_grid(n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(n * c, h, w,
                                                                                                    k / 2, x, y);
    CUDA_CHECK_LAUNCH();
}

// Input element i gathers dy of every window that holds it and whose maximum is i, in the
// row-major order of the windows: the order in which cpu_maxpool_backward adds them to dx[i].
static __global__ void maxpool_backward_kernel(int64_t planes, int64_t h, int64_t w, int64_t r, const float *x,
                                               const float *dy, float *dx) {
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const float *xp = x + p * h * w, *dyp = dy + p * h * w;
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            const int64_t ih = i / w, iw = i % w;
            const int64_t oh_lo = ih - r > 0 ? ih - r : 0, oh_hi = ih + r < h - 1 ? ih + r : h - 1;
            const int64_t ow_lo = iw - r > 0 ? iw - r : 0, ow_hi = iw + r < w - 1 ? iw + r : w - 1;
            float acc = dx[p * h * w + i];
            for (int64_t oh = oh_lo; oh <= oh_hi; oh++) {
                for (int64_t ow = ow_lo; ow <= ow_hi; ow++) {
                    if (maxpool_argmax(xp, h, w, r, oh, ow) == i) acc += dyp[oh * w + ow];
                }
            }
            dx[p * h * w + i] = acc;
        }
    }
}

void cuda_maxpool_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, const float *x,
                           const float *dy, float *dx) {
    maxpool_check(n, c, h, w, k);
    if (n * c == 0 || h * w == 0) return;
    maxpool_backward_kernel<<<cuda_plane_grid(n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
        n * c, h, w, k / 2, x, dy, dx);
    CUDA_CHECK_LAUNCH();
}

// One warp per plane: its lanes sum in double, then a fixed shuffle tree.
static __global__ void avgpool_forward_kernel(int64_t planes, int64_t hw, const float *x, float *y) {
    for (int64_t p = cuda_warp_first(); p < planes; p += cuda_warp_stride()) {
        double sum = 0.0;
        for (int64_t i = threadIdx.x % 32; i < hw; i += 32) sum += x[p * hw + i];
        sum = cuda_warp_sum(sum);
        if (threadIdx.x % 32 == 0) y[p] = (float)(sum / (double)hw);
    }
}

void cuda_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *x, float *y) {
    YP_CHECK(hw > 0 && n >= 0 && c >= 0);
    if (n * c == 0) return;
    avgpool_forward_kernel<<<cuda_blocks((size_t)(n * c) * 32), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(n * c, hw,
                                                                                                         x, y);
    CUDA_CHECK_LAUNCH();
}

static __global__ void avgpool_backward_kernel(int64_t planes, int64_t hw, const float *dy, float *dx) {
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const float g = dy[p] / (float)hw;
        for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride()) dx[p * hw + i] += g;
    }
}

void cuda_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *dy, float *dx) {
    YP_CHECK(hw > 0 && n >= 0 && c >= 0);
    if (n * c == 0) return;
    avgpool_backward_kernel<<<cuda_plane_grid(n * c, hw), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(n * c, hw, dy, dx);
    CUDA_CHECK_LAUNCH();
}
