// Nearest upsampling, SPPF's max-pool and global average pooling, with the results of
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

void cuda_maxpool_forward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, const void *x,
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
// the row-major order of the windows: the order in which cpu_maxpool_backward adds them to dx.
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

void cuda_maxpool_backward(Backend *be, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, const void *x,
                           const void *dy, void *dx) {
    maxpool_check(n, c, h, w, k);
    if (n * c == 0 || h * w == 0) return;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        maxpool_backward_kernel<<<maxpool_grid(n * c, h, w), CUDA_THREADS, maxpool_backward_shared_bytes(k / 2),
                                  cuda_ctx(be)->stream>>>(n * c, h, w, k / 2, (const T *)x, (const T *)dy, (T *)dx);
    });
    CUDA_CHECK_LAUNCH();
}

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
