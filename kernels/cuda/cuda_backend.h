// The CUDA backend: the same BackendOps table as kernels/cpu, on one GPU, with cuDNN for
// convolutions, cuBLAS for matrix products and this folder's kernels for the rest.
#pragma once

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudaBackendOptions {
    int device;          // 0-based; the caller checked cuda_device_count()
    bool allow_tf32;
    DType act;
    bool deterministic;  // deterministic cuDNN algorithms only (else the fastest measured)
} CudaBackendOptions;

// Creates a backend on CUDA device opt->device. Every kernel runs in order on the backend's own
// stream; download and synchronize wait for it.
// Activations are stored as `act` (framework/core/dtype.h); with bf16/fp16 the convolutions and GEMMs run
// on tensor cores with 16-bit operands (weights rounded to `act` inside the kernel) and float32
// accumulation. With float32 activations they compute in full float32 (TF32 off) unless `allow_tf32`.
Backend *cuda_backend_create(const CudaBackendOptions *opt);

// The backend's stream (a cudaStream_t), for a transport whose transfers must follow its kernels.
void *cuda_backend_stream(Backend *be);

#ifdef __cplusplus
}
#endif
