// render_images on the CPU: every output pixel through render_pixel, the definition the host
// loader's pipeline and the CUDA kernel share (kernels/augment_render.h).
#include "kernels/augment_render.h"
#include "kernels/cpu/cpu_kernels.h"

void cpu_render_images(Backend *be, void *dst, const RenderRecipe *recipes, int64_t n, const uint8_t *host_arena,
                       int64_t side) {
    int sdiv[256], hdiv[256];
    aug_hsv_tables(sdiv, hdiv);
    const int64_t plane = side * side;
    for (int64_t img = 0; img < n; img++) {
        const RenderRecipe *r = &recipes[img];
        uint8_t lut[3][256];
        aug_hsv_luts(r->hsv_gain, lut);
        const uint8_t *const luts[3] = {lut[0], lut[1], lut[2]};
#pragma omp parallel for if (plane >= CPU_PARALLEL_MIN_ELEMS)
        for (int64_t p = 0; p < plane; p++) {
            uint8_t px[3];
            render_pixel(r, host_arena, (int)side, (int)(p % side), (int)(p / side), sdiv, hdiv, luts, px);
            for (int64_t c = 0; c < 3; c++)
                dtype_store(be->act, dst, (size_t)((img * 3 + c) * plane + p), (float)px[c] * (1.0f / 255.0f));
        }
    }
}

void cpu_reserve_render(Backend *be, int64_t n, int64_t arena_bytes) {
    (void)be;
    (void)n;
    (void)arena_bytes;  // the CPU reads the host's arena where it is
}
