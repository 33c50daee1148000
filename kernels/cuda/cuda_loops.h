// Private to kernels/cuda's own kernels (cuda_elementwise.cu, cuda_norm.cu, cuda_pool.cu): the
// grid-stride loop shapes they share and deterministic reductions in double. Include from .cu only.
#pragma once

#include "kernels/cuda/cuda_kernels.h"

// gridDim.y or gridDim.z for `count` rows walked with a stride of that dimension: count capped at
// the hardware's limit for those two dimensions.
static inline unsigned cuda_grid_yz(int64_t count) {
    const int64_t max_grid_yz = 65535;
    return (unsigned)(count < max_grid_yz ? count : max_grid_yz);
}

// First index and stride of a grid-stride loop over blockIdx.x and threadIdx.x.
static __device__ __forceinline__ int64_t cuda_loop_first(void) {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ int64_t cuda_loop_stride(void) { return (int64_t)gridDim.x * blockDim.x; }

// The same for loops that give each warp one item (one warp per channel or plane): CUDA_THREADS is a
// multiple of 32, so the global thread index / 32 numbers the warps.
static __device__ __forceinline__ int64_t cuda_warp_first(void) { return cuda_loop_first() / 32; }
static __device__ __forceinline__ int64_t cuda_warp_stride(void) { return cuda_loop_stride() / 32; }

// Launch shape (with CUDA_THREADS per block) for kernels over the (image, channel) planes of an
// (N, C, plane_elems) tensor: blockIdx.z walks the images and blockIdx.y the channels, each with the
// stride of its grid dimension, and a grid-stride loop over blockIdx.x / threadIdx.x walks one
// plane's elements, up to CUDA_PLANE_ELEMS_PER_THREAD per thread. Consecutive threads touch
// consecutive addresses, and no thread divides to find its plane (a 64-bit division costs about as
// much as a thread's share of the memory time). All three counts must be positive: a grid
// dimension of 0 is a launch error.
enum { CUDA_PLANE_ELEMS_PER_THREAD = 4 };  // fewer blocks to schedule: batch norm's normalise ran 25% faster on an H100
static inline dim3 cuda_plane_grid(int64_t n, int64_t c, int64_t plane_elems) {
    const size_t per_thread = CUDA_PLANE_ELEMS_PER_THREAD;
    return dim3(cuda_blocks(((size_t)plane_elems + per_thread - 1) / per_thread), cuda_grid_yz(c), cuda_grid_yz(n));
}

// Sum over the 32 lanes of a warp; lane 0 holds the total. The shuffle tree is fixed, so the same
// inputs always give the same bits.
static __device__ __forceinline__ double cuda_warp_sum(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sums *a and *b over the block in a fixed order and gives both totals to every thread. blockDim.x
// must be a multiple of 32, at most 1024; `scratch` is 64 doubles of shared memory. Every thread
// must call it; it starts and ends with a barrier, so it can be called again on the same scratch.
static __device__ __forceinline__ void cuda_block_sum2(double *a, double *b, double *scratch) {
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    double va = cuda_warp_sum(*a), vb = cuda_warp_sum(*b);
    __syncthreads();  // an earlier call's readers are done with scratch
    if (lane == 0) {
        scratch[warp] = va;
        scratch[32 + warp] = vb;
    }
    __syncthreads();
    if (warp == 0) {
        va = cuda_warp_sum(lane < warps ? scratch[lane] : 0.0);
        vb = cuda_warp_sum(lane < warps ? scratch[32 + lane] : 0.0);
        if (lane == 0) {
            scratch[0] = va;
            scratch[32] = vb;
        }
    }
    __syncthreads();
    *a = scratch[0];
    *b = scratch[32];
}
