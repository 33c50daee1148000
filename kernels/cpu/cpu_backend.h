// The CPU backend: C kernels with OpenBLAS GEMMs and OpenMP loops (NCHW float32).
#pragma once

#include "framework/backend.h"

// Returns a new CPU backend; free it with backend_destroy.
Backend *cpu_backend_create(void);
