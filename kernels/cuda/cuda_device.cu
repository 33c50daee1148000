#include "kernels/cuda/cuda_device.h"

#include "kernels/cuda/cuda_check.h"

int cuda_device_count(void) {
    int count = 0;
    // No driver or no device is a normal situation on CPU machines, not an error.
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    return count;
}

void cuda_device_name(int device, char *buf, size_t len) {
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    snprintf(buf, len, "%s", prop.name);
}

void cuda_device_describe(FILE *out) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
        fprintf(out, "  no usable CUDA device (%s)\n", status != cudaSuccess ? cudaGetErrorString(status) : "none found");
        cudaGetLastError();
        return;
    }
    int runtime = 0;
    CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    size_t cudnn = cudnnGetVersion();
    for (int i = 0; i < count; i++) {
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
        fprintf(out, "  cuda:%d %s, sm_%d%d, %.1f GiB, CUDA runtime %d.%d, cuDNN %zu.%zu.%zu\n", i, prop.name,
                prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), runtime / 1000,
                (runtime % 1000) / 10, cudnn / 10000, (cudnn % 10000) / 100, cudnn % 100);
    }
}
