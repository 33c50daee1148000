// Check macros for the CUDA libraries, all built on YP_LIBRARY_CHECK (framework/core/error.h): each
// evaluates its call once and, on failure, names the library, the call, its message, the file and
// line, then aborts. Configure with -Dgpu_sync_debug=true (build_config.h's YP_CUDA_SYNC_DEBUG) to
// synchronise after every kernel launch so that asynchronous faults are reported at the launch that
// caused them.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "build_config.h"
#include "framework/core/error.h"

#define CUDA_CHECK(call) YP_LIBRARY_CHECK("CUDA", call, cudaError_t, cudaSuccess, cudaGetErrorString)
#define CUBLAS_CHECK(call) \
    YP_LIBRARY_CHECK("cuBLAS", call, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#define CUDNN_CHECK(call) YP_LIBRARY_CHECK("cuDNN", call, cudnnStatus_t, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)

// After a kernel launch: reports launch errors, and with YP_CUDA_SYNC_DEBUG execution errors too.
#if YP_CUDA_SYNC_DEBUG
#define CUDA_CHECK_LAUNCH()                   \
    do {                                      \
        CUDA_CHECK(cudaGetLastError());       \
        CUDA_CHECK(cudaDeviceSynchronize());  \
    } while (0)
#else
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
#endif
