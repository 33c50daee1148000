// What CUDA devices this process can use, for `yolopipe --version` and backend selection.
#pragma once

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices; 0 when there is no driver or no device (never aborts).
int cuda_device_count(void);

// Writes one line per device ("cuda:0 NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, cuDNN 9.x, cuBLAS 13.x"),
// or why there is none.
void cuda_device_describe(FILE *out);

// The name of device `device` ("NVIDIA H100 80GB HBM3") into buf.
void cuda_device_name(int device, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
