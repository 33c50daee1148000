// Private to kernels/cuda: the activation element types (Backend.act) in kernels. Each kernel that
// touches activations is a template on T, one of float, __nv_bfloat16 and __half; it loads
// activations widened to float, computes in float exactly as the float32 kernel does, and rounds
// once, when it stores a result (round to nearest even, as framework/core/dtype.h rounds on the host).
// With T = float loads and stores are plain, so the float32 path compiles to what it always did.
// Host wrappers pick the instantiation with cuda_act_dispatch. Include from .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "framework/core/dtype.h"
#include "framework/core/error.h"

static __device__ __forceinline__ float cuda_act_load(const float *p) { return *p; }
static __device__ __forceinline__ float cuda_act_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ float cuda_act_load(const __half *p) { return __half2float(*p); }

static __device__ __forceinline__ void cuda_act_store(float *p, float v) { *p = v; }
static __device__ __forceinline__ void cuda_act_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
static __device__ __forceinline__ void cuda_act_store(__half *p, float v) { *p = __float2half_rn(v); }

// Calls launch with a null pointer of the element type of `act`: float *, __nv_bfloat16 * or
// __half *. The caller's generic lambda names the type with CudaAct<decltype(tag)>.
template <typename F>
static inline void cuda_act_dispatch(DType act, F &&launch) {
    switch (act) {
    case DTYPE_F32: launch((float *)nullptr); return;
    case DTYPE_BF16: launch((__nv_bfloat16 *)nullptr); return;
    case DTYPE_F16: launch((__half *)nullptr); return;
    }
    yp_fatal("unknown activation type %d", (int)act);
}

template <typename Tag>
using CudaAct = std::remove_pointer_t<Tag>;
