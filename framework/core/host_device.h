// YP_HOST_DEVICE marks inline functions that kernels/cuda also compiles into CUDA kernels, so that
// every backend computes the same values from one definition.
#pragma once

#ifdef __CUDACC__
#define YP_HOST_DEVICE __host__ __device__
#else
#define YP_HOST_DEVICE
#endif
