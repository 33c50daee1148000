// The CPU backend: C kernels with oneDNN convolutions, OpenBLAS GEMMs and OpenMP loops (NCHW,
// computing in float32).
#pragma once

#include "kernels/backend.h"

// Returns a new CPU backend whose activations are stored as `act`; free it with backend_destroy.
// With bf16/fp16 activations each kernel widens its activation operands to float32 in scratch
// (reserve_activations), runs the float32 kernel, and rounds its activation results back: the
// reference that the CUDA backend's mixed precision is compared with.
Backend *cpu_backend_create(DType act);
