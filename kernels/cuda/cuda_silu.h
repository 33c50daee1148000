// Private to kernels/cuda: SiLU's float operations, shared by the element-wise slots
// (cuda_elementwise.cu) and batch norm's fused activation (cuda_norm.cu), so that both give the same
// bits, and those of kernels/cpu (cpu_silu, cpu_silu_grad) up to expf's last bit. Include from .cu
// files only.
#pragma once

// Full-precision expf and an IEEE division (no fast-math intrinsics), as cpu_sigmoid.
static __device__ __forceinline__ float cuda_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static __device__ __forceinline__ float cuda_silu(float x) { return x * cuda_sigmoid(x); }

// dy s (1 + x (1 - s)), s = sigmoid(x), rounded step by step as cpu_silu_grad (__fmul_rn is never
// fused into a multiply-add).
static __device__ __forceinline__ float cuda_silu_grad(float x, float dy) {
    const float s = cuda_sigmoid(x);
    return __fmul_rn(__fmul_rn(dy, s), 1.0f + __fmul_rn(x, 1.0f - s));
}
