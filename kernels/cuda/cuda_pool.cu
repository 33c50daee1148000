// Nearest upsampling, max- and average pools, zero padding and global average pooling, with the results of
// kernels/cpu/cpu_pool.c bit for bit (avgpool_forward: up to the order of a double sum).
//
// Parallelisation: one grid row per (image, channel) plane, its threads along the plane's elements
// (cuda_plane_grid, with the tensor viewed as one image of N * C planes: no kernel here needs the
// channel). Every backward kernel is a gather: one thread per input element adds up the
// output gradients that reach it, in the CPU's order, and writes it once, so no two threads touch one
// element and no atomics are needed. Upsampling runs one thread per input pixel (its f x f block of
// outputs); max-pool one block per 16 x 16 tile of a plane, the values its windows read staged in
// shared memory, one thread per output (forward) or input (backward) element; average pooling one
// warp per plane (forward) or one thread per element (backward).
//
// The kernels are templates on the activation type (cuda_act.h): upsampling copies elements as they
// are, max-pool compares and stages the widened values (so NaN and first-maximum rules are the
// float ones), and every sum is formed in float (double for the average) and rounded once, when
// stored.
#include <math.h>

#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_loops.h"

// Each input pixel writes its f x f block of outputs.
template <typename T>
static __global__ void upsample_forward_kernel(int64_t planes, int64_t h, int64_t w, int64_t f, const T *x, T *y) {
    const int64_t w_out = w * f, hw_out = h * f * w_out;
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            const int64_t ih = i / w, iw = i % w;
            const T v = x[p * h * w + i];
            T *yb = y + p * hw_out + ih * f * w_out + iw * f;
            for (int64_t a = 0; a < f; a++) {
                for (int64_t b = 0; b < f; b++) yb[a * w_out + b] = v;
            }
        }
    }
}

void cuda_upsample_nearest_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                   const void *x, void *y) {
    YP_CHECK(factor > 0 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
    if (n * c == 0 || h * w == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        upsample_forward_kernel<<<cuda_plane_grid(1, n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            n * c, h, w, factor, (const T *)x, (T *)y);
    });
    CUDA_CHECK_LAUNCH();
}

// Each input pixel receives the sum of its f x f block of output gradients, summed as the CPU does.
template <typename T>
static __global__ void upsample_backward_kernel(int64_t planes, int64_t h, int64_t w, int64_t f, const T *dy,
                                                T *dx) {
    const int64_t w_out = w * f, hw_out = h * f * w_out;
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t i = cuda_loop_first(); i < h * w; i += cuda_loop_stride()) {
            const int64_t ih = i / w, iw = i % w;
            const T *dyb = dy + p * hw_out + ih * f * w_out + iw * f;
            float sum = 0.0f;
            for (int64_t a = 0; a < f; a++) {
                for (int64_t b = 0; b < f; b++) sum += cuda_act_load(&dyb[a * w_out + b]);
            }
            T *at = &dx[p * h * w + i];
            cuda_act_store(at, cuda_act_load(at) + sum);
        }
    }
}

void cuda_upsample_nearest_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t factor,
                                    const void *dy, void *dx) {
    YP_CHECK(factor > 0 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
    if (n * c == 0 || h * w == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        upsample_backward_kernel<<<cuda_plane_grid(1, n * c, h * w), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            n * c, h, w, factor, (const T *)dy, (T *)dx);
    });
    CUDA_CHECK_LAUNCH();
}

// Max-pool works on tiles of POOL_TILE x POOL_TILE elements of a plane, one thread per element,
// with the values the tile's windows read staged in shared memory.
enum { POOL_TILE = 16, POOL_MAX_SHARED_BYTES = 48 * 1024 };
static_assert(POOL_TILE * POOL_TILE == CUDA_THREADS, "one thread per element of a tile");

// A square of a plane staged in shared memory, widened to float: value (ih, iw) of rows [y0, y0 + side)
// and columns [x0, x0 + side) at v[(ih - y0) * side + (iw - x0)]; positions outside the plane are
// never read.
struct PoolTile {
    float *v;
    int64_t y0, x0;
    int side;
};

// Every thread of the block must call it; the caller synchronises before reading.
template <typename T>
static __device__ void pool_tile_load(PoolTile t, const T *plane, int64_t h, int64_t w) {
    for (int k = threadIdx.x; k < t.side * t.side; k += blockDim.x) {
        const int64_t ih = t.y0 + k / t.side, iw = t.x0 + k % t.side;
        if (ih >= 0 && ih < h && iw >= 0 && iw < w) t.v[k] = cuda_act_load(&plane[ih * w + iw]);
    }
}

// The maximum of the window of radius r centred on (oh, ow), clipped to the h x w plane (padding
// never wins), as its index in the tile, which must hold the whole window. The scan of
// cpu_maxpool_argmax: the first maximum in row-major order wins, and a NaN wins.
static __device__ int pool_tile_argmax(PoolTile t, int64_t h, int64_t w, int64_t r, int64_t oh, int64_t ow) {
    const int h_lo = (int)((oh - r > 0 ? oh - r : 0) - t.y0), h_hi = (int)((oh + r < h - 1 ? oh + r : h - 1) - t.y0);
    const int w_lo = (int)((ow - r > 0 ? ow - r : 0) - t.x0), w_hi = (int)((ow + r < w - 1 ? ow + r : w - 1) - t.x0);
    int best = h_lo * t.side + w_lo;
    float best_v = t.v[best];
    for (int ih = h_lo; ih <= h_hi; ih++) {
        for (int iw = w_lo; iw <= w_hi; iw++) {
            const float v = t.v[ih * t.side + iw];
            if (v > best_v || isnan(v)) {
                best = ih * t.side + iw;
                best_v = v;
            }
        }
    }
    return best;
}

// Shared memory of the backward kernel, the larger of the two: the inputs that its tile's windows
// read (side POOL_TILE + 4r) and those windows' maxima (side POOL_TILE + 2r).
static size_t maxpool_backward_shared_bytes(int64_t r) {
    const size_t inputs = (size_t)(POOL_TILE + 4 * r), windows = (size_t)(POOL_TILE + 2 * r);
    return (inputs * inputs + windows * windows) * sizeof(float);
}

static void maxpool_check(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k) {
    YP_CHECK(k > 0 && k % 2 == 1 && n >= 0 && c >= 0 && h >= 0 && w >= 0);
    YP_CHECK(maxpool_backward_shared_bytes(k / 2) <= POOL_MAX_SHARED_BYTES);  // k <= 39
}

static __host__ __device__ int64_t maxpool_tiles(int64_t h, int64_t w) {
    return ((h + POOL_TILE - 1) / POOL_TILE) * ((w + POOL_TILE - 1) / POOL_TILE);
}

// blockIdx.x walks a plane's tiles, blockIdx.y the planes.
static dim3 maxpool_grid(int64_t planes, int64_t h, int64_t w) {
    const int64_t tiles = maxpool_tiles(h, w), max_x = 1 << 20;
    return dim3((unsigned)(tiles < max_x ? tiles : max_x), cuda_grid_yz(planes), 1);
}

// Origin of tile t of a plane w wide.
static __device__ void pool_tile_origin(int64_t t, int64_t w, int64_t *y0, int64_t *x0) {
    const int64_t tiles_w = (w + POOL_TILE - 1) / POOL_TILE;
    *y0 = t / tiles_w * POOL_TILE;
    *x0 = t % tiles_w * POOL_TILE;
}

template <typename T>
static __global__ void maxpool_forward_kernel(int64_t planes, int64_t h, int64_t w, int64_t r, const T *x, T *y) {
    extern __shared__ float pool_shared[];
    const int64_t tiles = maxpool_tiles(h, w);
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
            int64_t y0, x0;
            pool_tile_origin(t, w, &y0, &x0);
            const PoolTile in = {pool_shared, y0 - r, x0 - r, POOL_TILE + 2 * (int)r};
            __syncthreads();  // the previous tile's readers are done
            pool_tile_load(in, x + p * h * w, h, w);
            __syncthreads();
            const int64_t oh = y0 + threadIdx.x / POOL_TILE, ow = x0 + threadIdx.x % POOL_TILE;
            if (oh < h && ow < w)
                cuda_act_store(&y[(p * h + oh) * w + ow], in.v[pool_tile_argmax(in, h, w, r, oh, ow)]);
        }
    }
}

static void maxpool_same_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, const void *x,
                                 void *y) {
    maxpool_check(n, c, h, w, k);
    if (n * c == 0 || h * w == 0) return;
    const size_t side = (size_t)(POOL_TILE + 2 * (k / 2));
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        maxpool_forward_kernel<<<maxpool_grid(n * c, h, w), CUDA_THREADS, side * side * sizeof(float),
                                 cuda_ctx(be)->stream>>>(n * c, h, w, k / 2, (const T *)x, (T *)y);
    });
    CUDA_CHECK_LAUNCH();
}

// A block first finds the maximum of every window that reaches its tile (once each, from shared
// memory), then each input element of the tile gathers dy of the windows whose maximum it is, in
// the row-major order of the windows: the order in which cpu_maxpool2d_backward adds them to dx.
template <typename T>
static __global__ void maxpool_backward_kernel(int64_t planes, int64_t h, int64_t w, int64_t r, const T *x,
                                               const T *dy, T *dx) {
    extern __shared__ float pool_shared[];
    const int in_side = POOL_TILE + 4 * (int)r, win_side = POOL_TILE + 2 * (int)r;
    int *win_max = (int *)(pool_shared + in_side * in_side);  // (win_side, win_side): tile index of each maximum
    const int64_t tiles = maxpool_tiles(h, w);
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
            int64_t y0, x0;
            pool_tile_origin(t, w, &y0, &x0);
            const PoolTile in = {pool_shared, y0 - 2 * r, x0 - 2 * r, in_side};
            __syncthreads();  // the previous tile's readers are done
            pool_tile_load(in, x + p * h * w, h, w);
            __syncthreads();
            // Windows centred on rows [y0 - r, y0 + POOL_TILE + r), the only ones that reach the tile.
            for (int k = threadIdx.x; k < win_side * win_side; k += blockDim.x) {
                const int64_t oh = y0 - r + k / win_side, ow = x0 - r + k % win_side;
                if (oh >= 0 && oh < h && ow >= 0 && ow < w) win_max[k] = pool_tile_argmax(in, h, w, r, oh, ow);
            }
            __syncthreads();
            const int64_t ih = y0 + threadIdx.x / POOL_TILE, iw = x0 + threadIdx.x % POOL_TILE;
            if (ih >= h || iw >= w) continue;
            const int self = (int)((ih - in.y0) * in_side + (iw - in.x0));
            const int64_t oh_lo = ih - r > 0 ? ih - r : 0, oh_hi = ih + r < h - 1 ? ih + r : h - 1;
            const int64_t ow_lo = iw - r > 0 ? iw - r : 0, ow_hi = iw + r < w - 1 ? iw + r : w - 1;
            float acc = cuda_act_load(&dx[(p * h + ih) * w + iw]);
            for (int64_t oh = oh_lo; oh <= oh_hi; oh++) {
                for (int64_t ow = ow_lo; ow <= ow_hi; ow++) {
                    if (win_max[(oh - (y0 - r)) * win_side + (ow - (x0 - r))] == self)
                        acc += cuda_act_load(&dy[(p * h + oh) * w + ow]);
                }
            }
            cuda_act_store(&dx[(p * h + ih) * w + iw], acc);
        }
    }
}

static void maxpool_same_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                                  const void *x, const void *dy, void *dx) {
    maxpool_check(n, c, h, w, k);
    if (n * c == 0 || h * w == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        maxpool_backward_kernel<<<maxpool_grid(n * c, h, w), CUDA_THREADS, maxpool_backward_shared_bytes(k / 2),
                                  cuda_ctx(be)->stream>>>(n * c, h, w, k / 2, (const T *)x, (const T *)dy, (T *)dx);
    });
    CUDA_CHECK_LAUNCH();
}

// ---- general pools (Pool2dArgs) and zero padding: one thread per output element (forward) or per
// input element (backward, a gather over the windows that cover it in row-major order, the order in
// which cpu_pool.c's scatter adds them), over cuda_plane_grid(1, planes, elements).

// SPPF's shape-keeping pool (odd k, stride 1, padding k / 2) takes the tiled kernels above.
static bool pool2d_is_same(const Pool2dArgs *a) {
    return a->k % 2 == 1 && a->stride == 1 && a->pad == a->k / 2 &&
           maxpool_backward_shared_bytes(a->k / 2) <= POOL_MAX_SHARED_BYTES;
}

// Rows (or columns) [lo, hi] of the input that output position o's window covers, clipped to size.
static __device__ __forceinline__ void pool2d_span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t size,
                                                   int64_t *lo, int64_t *hi) {
    const int64_t start = o * stride - pad, end = start + k - 1;
    *lo = start > 0 ? start : 0;
    *hi = end < size - 1 ? end : size - 1;
}

// Outputs [lo, hi] whose windows cover input position i (empty when lo > hi).
static __device__ __forceinline__ void pool2d_covering(int64_t i, int64_t stride, int64_t pad, int64_t k,
                                                       int64_t size_out, int64_t *lo, int64_t *hi) {
    const int64_t first = i + pad - k + 1;  // the lowest window start that still reaches i
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    const int64_t last = (i + pad) / stride;
    *hi = last < size_out - 1 ? last : size_out - 1;
}

// The plane index of the maximum of output (oh, ow)'s window, as cpu_maxpool_argmax.
template <typename T>
static __device__ int64_t pool2d_argmax(const Pool2dArgs &a, const T *plane, int64_t oh, int64_t ow) {
    int64_t h_lo, h_hi, w_lo, w_hi;
    pool2d_span(oh, a.stride, a.pad, a.k, a.h, &h_lo, &h_hi);
    pool2d_span(ow, a.stride, a.pad, a.k, a.w, &w_lo, &w_hi);
    int64_t best = h_lo * a.w + w_lo;
    float best_v = cuda_act_load(&plane[best]);
    for (int64_t ih = h_lo; ih <= h_hi; ih++) {
        for (int64_t iw = w_lo; iw <= w_hi; iw++) {
            const float v = cuda_act_load(&plane[ih * a.w + iw]);
            if (v > best_v || isnan(v)) {
                best = ih * a.w + iw;
                best_v = v;
            }
        }
    }
    return best;
}

template <bool kMax, typename T>
static __global__ void pool2d_forward_kernel(Pool2dArgs a) {
    const T *x = (const T *)a.x;
    T *y = (T *)a.y;
    const int64_t planes = a.n * a.c, hw = a.h * a.w, hw_out = a.h_out * a.w_out;
    const float divisor = (float)(a.k * a.k);
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const T *xp = x + p * hw;
        for (int64_t o = cuda_loop_first(); o < hw_out; o += cuda_loop_stride()) {
            const int64_t oh = o / a.w_out, ow = o % a.w_out;
            if constexpr (kMax) {
                cuda_act_store(&y[p * hw_out + o], cuda_act_load(&xp[pool2d_argmax(a, xp, oh, ow)]));
            } else {
                int64_t h_lo, h_hi, w_lo, w_hi;
                pool2d_span(oh, a.stride, a.pad, a.k, a.h, &h_lo, &h_hi);
                pool2d_span(ow, a.stride, a.pad, a.k, a.w, &w_lo, &w_hi);
                float sum = 0.0f;
                for (int64_t ih = h_lo; ih <= h_hi; ih++)
                    for (int64_t iw = w_lo; iw <= w_hi; iw++) sum += cuda_act_load(&xp[ih * a.w + iw]);
                cuda_act_store(&y[p * hw_out + o], sum / divisor);
            }
        }
    }
}

template <bool kMax, typename T>
static __global__ void pool2d_backward_kernel(Pool2dArgs a) {
    const T *x = (const T *)a.x, *dy = (const T *)a.dy;
    T *dx = (T *)a.dx;
    const int64_t planes = a.n * a.c, hw = a.h * a.w, hw_out = a.h_out * a.w_out;
    const float divisor = (float)(a.k * a.k);
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const T *xp = kMax ? x + p * hw : NULL, *dyp = dy + p * hw_out;
        for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride()) {
            const int64_t ih = i / a.w, iw = i % a.w;
            int64_t oh_lo, oh_hi, ow_lo, ow_hi;
            pool2d_covering(ih, a.stride, a.pad, a.k, a.h_out, &oh_lo, &oh_hi);
            pool2d_covering(iw, a.stride, a.pad, a.k, a.w_out, &ow_lo, &ow_hi);
            float acc = cuda_act_load(&dx[p * hw + i]);
            for (int64_t oh = oh_lo; oh <= oh_hi; oh++) {
                for (int64_t ow = ow_lo; ow <= ow_hi; ow++) {
                    const float g = cuda_act_load(&dyp[oh * a.w_out + ow]);
                    if constexpr (kMax) {
                        if (pool2d_argmax(a, xp, oh, ow) == i) acc += g;
                    } else {
                        acc += g / divisor;
                    }
                }
            }
            cuda_act_store(&dx[p * hw + i], acc);
        }
    }
}

template <bool kMax>
static void pool2d_launch(Backend *be, const Pool2dArgs *a, bool backward) {
    pool2d_args_check(a);
    const int64_t planes = a->n * a->c;
    if (planes == 0) return;
    const int64_t elems = backward ? a->h * a->w : a->h_out * a->w_out;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        const dim3 grid = cuda_plane_grid(1, planes, elems);
        if (backward) pool2d_backward_kernel<kMax, T><<<grid, CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(*a);
        else pool2d_forward_kernel<kMax, T><<<grid, CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(*a);
    });
    CUDA_CHECK_LAUNCH();
}

void cuda_maxpool2d_forward(Backend *be, const Pool2dArgs *a) {
    pool2d_args_check(a);
    if (pool2d_is_same(a)) maxpool_same_forward(be, a->n, a->c, a->h, a->w, a->k, a->x, a->y);
    else pool2d_launch<true>(be, a, false);
}

void cuda_maxpool2d_backward(Backend *be, const Pool2dArgs *a) {
    pool2d_args_check(a);
    if (pool2d_is_same(a)) maxpool_same_backward(be, a->n, a->c, a->h, a->w, a->k, a->x, a->dy, a->dx);
    else pool2d_launch<true>(be, a, true);
}

void cuda_avgpool2d_forward(Backend *be, const Pool2dArgs *a) { pool2d_launch<false>(be, a, false); }
void cuda_avgpool2d_backward(Backend *be, const Pool2dArgs *a) { pool2d_launch<false>(be, a, true); }

// Forward writes every output element (the input's or 0); backward gathers each input element's dy.
template <typename T>
static __global__ void pad2d_kernel(Pad2dArgs a, bool backward) {
    const int64_t planes = a.n * a.c, h_out = a.top + a.h + a.bottom, w_out = a.left + a.w + a.right;
    const int64_t hw = a.h * a.w, hw_out = h_out * w_out;
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        if (backward) {
            const T *dyp = (const T *)a.dy + p * hw_out;
            T *dxp = (T *)a.dx + p * hw;
            for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride()) {
                const int64_t o = (i / a.w + a.top) * w_out + i % a.w + a.left;
                cuda_act_store(&dxp[i], cuda_act_load(&dxp[i]) + cuda_act_load(&dyp[o]));
            }
        } else {
            const T *xp = (const T *)a.x + p * hw;
            T *yp = (T *)a.y + p * hw_out;
            for (int64_t o = cuda_loop_first(); o < hw_out; o += cuda_loop_stride()) {
                const int64_t ih = o / w_out - a.top, iw = o % w_out - a.left;
                if (ih >= 0 && ih < a.h && iw >= 0 && iw < a.w) yp[o] = xp[ih * a.w + iw];
                else cuda_act_store(&yp[o], 0.0f);
            }
        }
    }
}

static void pad2d_launch(Backend *be, const Pad2dArgs *a, bool backward) {
    pad2d_args_check(a);
    const int64_t planes = a->n * a->c;
    const int64_t elems = backward ? a->h * a->w : (a->top + a->h + a->bottom) * (a->left + a->w + a->right);
    if (planes == 0 || elems == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        pad2d_kernel<T><<<cuda_plane_grid(1, planes, elems), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(*a, backward);
    });
    CUDA_CHECK_LAUNCH();
}

void cuda_pad2d_forward(Backend *be, const Pad2dArgs *a) { pad2d_launch(be, a, false); }
void cuda_pad2d_backward(Backend *be, const Pad2dArgs *a) { pad2d_launch(be, a, true); }

// One warp per plane: its lanes sum in double, then a fixed shuffle tree.
template <typename T>
static __global__ void avgpool_forward_kernel(int64_t planes, int64_t hw, const T *x, T *y) {
    for (int64_t p = cuda_warp_first(); p < planes; p += cuda_warp_stride()) {
        double sum = 0.0;
        for (int64_t i = threadIdx.x % 32; i < hw; i += 32) sum += cuda_act_load(&x[p * hw + i]);
        sum = cuda_warp_sum(sum);
        if (threadIdx.x % 32 == 0) cuda_act_store(&y[p], (float)(sum / (double)hw));
    }
}

void cuda_avgpool_forward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *x, void *y) {
    YP_CHECK(hw > 0 && n >= 0 && c >= 0);
    if (n * c == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        avgpool_forward_kernel<<<cuda_blocks((size_t)(n * c) * 32), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            n * c, hw, (const T *)x, (T *)y);
    });
    CUDA_CHECK_LAUNCH();
}

template <typename T>
static __global__ void avgpool_backward_kernel(int64_t planes, int64_t hw, const T *dy, T *dx) {
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const float g = cuda_act_load(&dy[p]) / (float)hw;
        for (int64_t i = cuda_loop_first(); i < hw; i += cuda_loop_stride())
            cuda_act_store(&dx[p * hw + i], cuda_act_load(&dx[p * hw + i]) + g);
    }
}

void cuda_avgpool_backward(Backend *be, int64_t n, int64_t c, int64_t hw, const void *dy, void *dx) {
    YP_CHECK(hw > 0 && n >= 0 && c >= 0);
    if (n * c == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        avgpool_backward_kernel<<<cuda_plane_grid(1, n * c, hw), CUDA_THREADS, 0, cuda_ctx(be)->stream>>>(
            n * c, hw, (const T *)dy, (T *)dx);
    });
    CUDA_CHECK_LAUNCH();
}
