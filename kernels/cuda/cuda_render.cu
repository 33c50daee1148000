// render_images on the GPU (kernels/augment_render.h): the decoded images of a micro-batch go up
// once, as bytes, with their recipes, and one kernel composes every input pixel with render_pixel,
// the arithmetic the host loader uses (resize, mosaic canvas, warp, HSV, flip), then stores byte / 255
// in the activation type. Each block works on one image and first builds that image's HSV tables
// in shared memory.
#include <string.h>

#include "kernels/augment_render.h"
#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_loops.h"

// Grid: x walks an image's pixels (grid-stride), z the images.
template <typename T>
static __global__ void render_kernel(const RenderRecipe *recipes, const uint8_t *arena, int64_t n, int side, T *dst) {
    __shared__ int sdiv[256], hdiv[256];
    __shared__ uint8_t lut[3][256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        sdiv[i] = i ? aug_hsv_sdiv(i) : 0;
        hdiv[i] = i ? aug_hsv_hdiv(i) : 0;
    }
    const int64_t plane = (int64_t)side * side;
    for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
        const RenderRecipe *r = &recipes[img];
        __syncthreads();  // the previous image's readers are done with lut
        for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x)
            lut[i / 256][i % 256] = aug_hsv_lut(i / 256, i % 256, r->hsv_gain[i / 256]);
        __syncthreads();
        const uint8_t *const luts[3] = {lut[0], lut[1], lut[2]};
        for (int64_t p = cuda_loop_first(); p < plane; p += cuda_loop_stride()) {
            uint8_t px[3];
            render_pixel(r, arena, side, (int)(p % side), (int)(p / side), sdiv, hdiv, luts, px);
            for (int c = 0; c < 3; c++)
                cuda_act_store(&dst[(img * 3 + c) * plane + p], __fmul_rn((float)px[c], 1.0f / 255.0f));
        }
    }
}

void cuda_reserve_render(Backend *be, int64_t n, int64_t arena_bytes) {
    CudaContext *ctx = cuda_ctx(be);
    YP_CHECK(n >= 0 && arena_bytes >= 0);
    const size_t old_bytes = ctx->render_bytes;
    cuda_buffer_reserve(be, &ctx->render, &ctx->render_bytes, (size_t)n * sizeof(RenderRecipe) + (size_t)arena_bytes);
    if (ctx->render_bytes == old_bytes) return;
    // Growing waited for the stream, so no upload still reads the old staging.
    CUDA_CHECK(cudaFreeHost(ctx->render_host));
    ctx->render_host = nullptr;
    CUDA_CHECK(cudaMallocHost(&ctx->render_host, ctx->render_bytes));
}

// The recipes, rebased onto their own images, then the images go up in one copy from the
// page-locked staging, queued behind the work already on the stream: the host does not wait for
// the previous step to finish, only for the previous upload to have read the staging.
void cuda_render_images(Backend *be, void *dst, const RenderRecipe *recipes, int64_t n, const uint8_t *host_arena,
                        int64_t side) {
    if (n == 0) return;
    CudaContext *ctx = cuda_ctx(be);
    const int64_t first = recipes[0].tiles[0].offset;
    int64_t arena_bytes = 0;
    for (int64_t j = 0; j < n; j++) arena_bytes += render_recipe_bytes(&recipes[j]);
    const size_t recipe_bytes = (size_t)n * sizeof(RenderRecipe);
    YP_CHECK(recipe_bytes + (size_t)arena_bytes <= ctx->render_bytes);
    CUDA_CHECK(cudaEventSynchronize(ctx->render_uploaded));
    uint8_t *host = (uint8_t *)ctx->render_host;
    RenderRecipe *rebased = (RenderRecipe *)host;
    for (int64_t j = 0; j < n; j++) {
        rebased[j] = recipes[j];
        for (int k = 0; k < rebased[j].n_tiles; k++) rebased[j].tiles[k].offset -= first;
    }
    memcpy(host + recipe_bytes, host_arena + first, (size_t)arena_bytes);
    uint8_t *device = (uint8_t *)ctx->render;
    CUDA_CHECK(cudaMemcpyAsync(device, host, recipe_bytes + (size_t)arena_bytes, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_CHECK(cudaEventRecord(ctx->render_uploaded, ctx->stream));
    const int64_t plane = side * side;
    cuda_act_dispatch(be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        render_kernel<<<dim3(cuda_blocks((size_t)plane), 1, cuda_grid_yz(n)), CUDA_THREADS, 0, ctx->stream>>>(
            (const RenderRecipe *)device, device + recipe_bytes, n, (int)side, (T *)dst);
    });
    CUDA_CHECK_LAUNCH();
}
