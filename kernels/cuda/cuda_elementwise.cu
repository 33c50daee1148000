// Element-wise kernels and box copies. Parallelisation: one thread per element in grid-stride loops
// (cuda_blocks() blocks of CUDA_THREADS); copy_box runs one grid row per (image, channel) row of the
// box and its threads along the positions, so reads and writes are coalesced over s.
//
// Values match kernels/cpu/cpu_elementwise.c: where the CPU rounds a product before adding, so do
// these (__fmul_rn is never fused into a multiply-add), so only expf may differ (by its 2 ulp).
// silu_backward's formula turns a last-bit difference of the sigmoid into up to about 1e-6 * |dy|
// where 1 - s cancels (x around 5 to 10): compare it with an absolute tolerance of that size.
#include "framework/rng.h"
#include "kernels/cuda/cuda_loops.h"

static __global__ void fill_kernel(float *dst, float value, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) dst[i] = value;
}

void cuda_fill(Backend *be, float *dst, float value, size_t n_elems) {
    fill_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(dst, value, (int64_t)n_elems);
    CUDA_CHECK_LAUNCH();
}

// backend.h's contract: lo + (hi - lo) * u with the product rounded on its own, as on the CPU.
static __global__ void fill_uniform_kernel(float *dst, int64_t n, float lo, float hi, uint64_t seed) {
    const float range = hi - lo;
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) {
        dst[i] = lo + __fmul_rn(range, rng_uniform(seed, (uint64_t)i));
    }
}

void cuda_fill_uniform(Backend *be, float *dst, size_t n_elems, float lo, float hi, uint64_t seed) {
    fill_uniform_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(dst, (int64_t)n_elems,
                                                                                        lo, hi, seed);
    CUDA_CHECK_LAUNCH();
}

// Full-precision expf and an IEEE division (no fast-math intrinsics), as cpu_sigmoid.
static __device__ __forceinline__ float silu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static __global__ void silu_forward_kernel(const float *x, float *y, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) y[i] = x[i] * silu_sigmoid(x[i]);
}

void cuda_silu_forward(Backend *be, const float *x, float *y, size_t n_elems) {
    silu_forward_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(x, y, (int64_t)n_elems);
    CUDA_CHECK_LAUNCH();
}

// dx += dy s (1 + x (1 - s)), rounded step by step as cpu_silu_backward.
static __global__ void silu_backward_kernel(const float *x, const float *dy, float *dx, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) {
        const float s = silu_sigmoid(x[i]);
        dx[i] += __fmul_rn(__fmul_rn(dy[i], s), 1.0f + __fmul_rn(x[i], 1.0f - s));
    }
}

void cuda_silu_backward(Backend *be, const float *x, const float *dy, float *dx, size_t n_elems) {
    silu_backward_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(x, dy, dx,
                                                                                         (int64_t)n_elems);
    CUDA_CHECK_LAUNCH();
}

static __global__ void add_kernel(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) y[i] = a[i] + b[i];
}

void cuda_add(Backend *be, const float *a, const float *b, float *y, size_t n_elems) {
    add_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(a, b, y, (int64_t)n_elems);
    CUDA_CHECK_LAUNCH();
}

static __global__ void accumulate_kernel(const float *src, float *dst, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) dst[i] += src[i];
}

void cuda_accumulate(Backend *be, const float *src, float *dst, size_t n_elems) {
    accumulate_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(src, dst, (int64_t)n_elems);
    CUDA_CHECK_LAUNCH();
}

// Grid row (blockIdx.z, blockIdx.y) copies row (img, ch) of the box.
static __global__ void copy_box_kernel(int64_t n, const float *src, int64_t src_c, int64_t src_c0, int64_t src_s,
                                       int64_t src_s0, float *dst, int64_t dst_c, int64_t dst_c0, int64_t dst_s,
                                       int64_t dst_s0, int64_t count_c, int64_t count_s, bool accumulate) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < count_c; ch += gridDim.y) {
            const float *s = src + (img * src_c + src_c0 + ch) * src_s + src_s0;
            float *t = dst + (img * dst_c + dst_c0 + ch) * dst_s + dst_s0;
            if (accumulate) {
                for (int64_t i = cuda_loop_first(); i < count_s; i += cuda_loop_stride()) t[i] += s[i];
            } else {
                for (int64_t i = cuda_loop_first(); i < count_s; i += cuda_loop_stride()) t[i] = s[i];
            }
        }
    }
}

void cuda_copy_box(Backend *be, int64_t n, const float *src, int64_t src_c, int64_t src_c0, int64_t src_s,
                   int64_t src_s0, float *dst, int64_t dst_c, int64_t dst_c0, int64_t dst_s, int64_t dst_s0,
                   int64_t count_c, int64_t count_s, bool accumulate) {
    YP_CHECK(n >= 0 && count_c >= 0 && count_s >= 0);
    YP_CHECK(src_c0 >= 0 && src_c0 + count_c <= src_c && dst_c0 >= 0 && dst_c0 + count_c <= dst_c);
    YP_CHECK(src_s0 >= 0 && src_s0 + count_s <= src_s && dst_s0 >= 0 && dst_s0 + count_s <= dst_s);
    if (n == 0 || count_c == 0 || count_s == 0) return;
    copy_box_kernel<<<cuda_plane_grid(n, count_c, count_s), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
        n, src, src_c, src_c0, src_s, src_s0, dst, dst_c, dst_c0, dst_s, dst_s0, count_c, count_s, accumulate);
    CUDA_CHECK_LAUNCH();
}
