// Element-wise kernels, box copies, the conversions between float32 and the activation type and the
// network input from image bytes.
// Parallelisation: one thread per element in grid-stride loops (cuda_blocks() blocks of
// CUDA_THREADS); copy_box and the conversion of a matrix run one grid row per row and its threads
// along the row, so reads and writes are coalesced.
//
// The activation kernels are templates on the element type (cuda_act.h): operands widened to
// float, the float arithmetic below, one rounding when the result is stored. copy_box copies
// elements as they are (no conversion), and adds like accumulate.
//
// Values match kernels/cpu/cpu_elementwise.c: where the CPU rounds a product before adding, so do
// these (__fmul_rn is never fused into a multiply-add; the activations' operations are
// kernels/activation_math.h's, shared with the CPU), so only expf and tanhf may differ (by their
// 2 ulp). SiLU's backward formula turns a last-bit difference of the sigmoid into up to about 1e-6 * |dy|
// where 1 - s cancels (x around 5 to 10): compare it with an absolute tolerance of that size.
#include "framework/core/rng.h"
#include "kernels/activation_math.h"
#include "kernels/cuda/cuda_act.h"
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

template <typename T>
static __global__ void activation_forward_kernel(ActivationSpec act, const T *x, T *y, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) {
        cuda_act_store(&y[i], activation_apply(act, cuda_act_load(&x[i])));
    }
}

void cuda_activation_forward(Backend *be, ActivationSpec act, const void *x, void *y, size_t n_elems) {
    YP_CHECK(act.kind < ACTIVATION_COUNT);
    if (!n_elems) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        activation_forward_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            act, (const T *)x, (T *)y, (int64_t)n_elems);
    });
    CUDA_CHECK_LAUNCH();
}

// dx += dy · act'(x).
template <typename T>
static __global__ void activation_backward_kernel(ActivationSpec act, const T *x, const T *dy, T *dx, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride()) {
        cuda_act_store(&dx[i], cuda_act_load(&dx[i]) +
                                   activation_grad(act, cuda_act_load(&x[i]), cuda_act_load(&dy[i])));
    }
}

void cuda_activation_backward(Backend *be, ActivationSpec act, const void *x, const void *dy, void *dx,
                              size_t n_elems) {
    YP_CHECK(act.kind < ACTIVATION_COUNT);
    if (!n_elems) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        activation_backward_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            act, (const T *)x, (const T *)dy, (T *)dx, (int64_t)n_elems);
    });
    CUDA_CHECK_LAUNCH();
}

// Grid row (blockIdx.z, blockIdx.y) adds b[ch] to plane (img, ch).
template <typename T>
static __global__ void channel_bias_forward_kernel(int64_t n, int64_t c, int64_t hw, const float *b, T *y) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < c; ch += gridDim.y) {
            T *yp = y + (img * c + ch) * hw;
            for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride())
                cuda_act_store(&yp[i], cuda_act_load(&yp[i]) + b[ch]);
        }
    }
}

void cuda_channel_bias_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const float *b, void *y) {
    YP_CHECK(n >= 0 && c >= 0 && hw >= 0);
    if (n == 0 || c == 0 || hw == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        channel_bias_forward_kernel<<<cuda_plane_grid(n, c, hw), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            n, c, hw, b, (T *)y);
    });
    CUDA_CHECK_LAUNCH();
}

// Block ch sums channel ch of dy in double (each thread sequentially, then cuda_block_sum2's fixed
// tree): the same bits on every run, no atomics.
template <typename T>
static __global__ void channel_bias_backward_kernel(int64_t n, int64_t c, int64_t hw, const T *dy, float *db) {
    __shared__ double scratch[64];
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double sum = 0.0, unused = 0.0;
        for (int64_t img = 0; img < n; img++) {
            const T *dyp = dy + (img * c + ch) * hw;
            for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) sum += cuda_act_load(&dyp[i]);
        }
        cuda_block_sum2(&sum, &unused, scratch);
        if (threadIdx.x == 0) db[ch] += (float)sum;
    }
}

void cuda_channel_bias_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, float *db) {
    YP_CHECK(n >= 0 && c >= 0 && hw >= 0);
    if (c == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        channel_bias_backward_kernel<<<cuda_grid_yz(c), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(n, c, hw,
                                                                                                (const T *)dy, db);
    });
    CUDA_CHECK_LAUNCH();
}

template <typename T>
static __global__ void add_kernel(const T *a, const T *b, T *y, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride())
        cuda_act_store(&y[i], cuda_act_load(&a[i]) + cuda_act_load(&b[i]));
}

void cuda_add(Backend *be, const void *a, const void *b, void *y, size_t n_elems) {
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        add_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>((const T *)a, (const T *)b,
                                                                                    (T *)y, (int64_t)n_elems);
    });
    CUDA_CHECK_LAUNCH();
}

template <typename T>
static __global__ void accumulate_kernel(const T *src, T *dst, int64_t n) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride())
        cuda_act_store(&dst[i], cuda_act_load(&dst[i]) + cuda_act_load(&src[i]));
}

void cuda_accumulate(Backend *be, const void *src, void *dst, size_t n_elems) {
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        accumulate_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>((const T *)src, (T *)dst,
                                                                                           (int64_t)n_elems);
    });
    CUDA_CHECK_LAUNCH();
}

// Grid row (blockIdx.z, blockIdx.y) copies row (img, ch) of the box.
template <typename T>
static __global__ void copy_box_kernel(int64_t n, const T *src, int64_t src_c, int64_t src_c0, int64_t src_s,
                                       int64_t src_s0, T *dst, int64_t dst_c, int64_t dst_c0, int64_t dst_s,
                                       int64_t dst_s0, int64_t count_c, int64_t count_s, bool accumulate) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < count_c; ch += gridDim.y) {
            const T *s = src + (img * src_c + src_c0 + ch) * src_s + src_s0;
            T *t = dst + (img * dst_c + dst_c0 + ch) * dst_s + dst_s0;
            if (accumulate) {
                for (int64_t i = cuda_loop_first(); i < count_s; i += cuda_loop_stride())
                    cuda_act_store(&t[i], cuda_act_load(&t[i]) + cuda_act_load(&s[i]));
            } else {
                for (int64_t i = cuda_loop_first(); i < count_s; i += cuda_loop_stride()) t[i] = s[i];
            }
        }
    }
}

void cuda_copy_box(Backend *be, const CopyBoxArgs *a) {
    copy_box_args_check(a);
    if (a->n == 0 || a->count_c == 0 || a->count_s == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        copy_box_kernel<<<cuda_plane_grid(a->n, a->count_c, a->count_s), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            a->n, (const T *)a->src, a->src_c, a->src_c0, a->src_s, a->src_s0, (T *)a->dst, a->dst_c, a->dst_c0,
            a->dst_s, a->dst_s0, a->count_c, a->count_s, a->accumulate);
    });
    CUDA_CHECK_LAUNCH();
}

// ---- conversions ---------------------------------------------------------------------------------

// Grid row blockIdx.y rounds row r of the matrix.
template <typename T>
static __global__ void act_round_kernel(int64_t rows, int64_t cols, const float *src, int64_t src_ld, T *dst) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        for (int64_t i = cuda_loop_first(); i < cols; i += cuda_loop_stride())
            cuda_act_store(&dst[r * cols + i], src[r * src_ld + i]);
    }
}

void cuda_act_round(Backend *be, int64_t rows, int64_t cols, const float *src, int64_t src_ld, void *dst) {
    YP_CHECK(rows >= 0 && cols >= 0 && src_ld >= cols);
    if (rows == 0 || cols == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        act_round_kernel<<<cuda_plane_grid(1, rows, cols), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(rows, cols, src,
                                                                                                   src_ld, (T *)dst);
    });
    CUDA_CHECK_LAUNCH();
}

template <typename T>
static __global__ void act_widen_kernel(const T *src, float *dst, int64_t n, bool accumulate) {
    for (int64_t i = cuda_loop_first(); i < n; i += cuda_loop_stride())
        dst[i] = accumulate ? dst[i] + cuda_act_load(&src[i]) : cuda_act_load(&src[i]);
}

static void act_widen(Backend *be, const void *src, float *dst, size_t n_elems, bool accumulate) {
    if (!n_elems) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        act_widen_kernel<<<cuda_blocks(n_elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            (const T *)src, dst, (int64_t)n_elems, accumulate);
    });
    CUDA_CHECK_LAUNCH();
}

void cuda_act_widen(Backend *be, const void *src, float *dst, size_t n_elems) {
    act_widen(be, src, dst, n_elems, false);
}

void cuda_act_widen_accumulate(Backend *be, const void *src, float *dst, size_t n_elems) {
    act_widen(be, src, dst, n_elems, true);
}

// Grid row (blockIdx.z, blockIdx.y) writes plane (image, channel): byte * (1 / 255), one float
// multiplication as the CPU's, rounded once.
template <typename T>
static __global__ void images_convert_kernel(const uint8_t *src, T *dst, int64_t n, int64_t plane) {
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        for (int64_t ch = blockIdx.y; ch < 3; ch += gridDim.y) {
            const uint8_t *s = src + img * plane * 3 + ch;
            T *t = dst + (img * 3 + ch) * plane;
            for (int64_t p = cuda_loop_first(); p < plane; p += cuda_loop_stride())
                cuda_act_store(&t[p], __fmul_rn((float)s[3 * p], 1.0f / 255.0f));
        }
    }
}

void cuda_images_convert(Backend *be, const uint8_t *src, void *dst, int64_t n, int64_t h, int64_t w) {
    if (n * h * w == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        images_convert_kernel<<<cuda_plane_grid(n, 3, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(src, (T *)dst,
                                                                                                      n, h * w);
    });
    CUDA_CHECK_LAUNCH();
}
