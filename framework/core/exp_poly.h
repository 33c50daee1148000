// e^x in arithmetic the compiler vectorizes, for the host loops where glibc's expf, a call per value,
// would dominate: the batch-norm fusion's activations (kernels/activation_math.h) and the DFL softmax
// of decoding (framework/eval/nms.c).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

// Cephes' expf: round x / ln 2 to n, a degree-6 polynomial in the remainder, times 2^n from the
// exponent bits. Within 1 ulp of the correctly rounded value; +inf above 88.376, 0 below -87.337, NaN
// for NaN. No branches: the clamps and the ends are selects, which GCC vectorizes under
// -fno-trapping-math (meson.build).
static inline float exp_poly(float x) {
    const float lo = -87.33654f, hi = 88.37626f, magic = 12582912.0f;  // magic: 1.5 * 2^23
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    // Adding the magic number rounds x / ln 2 to an integer n held in the sum's low mantissa bits.
    const float shifted = xc * 1.44269504088896341f + magic, n = shifted - magic;
    uint32_t n_bits;
    memcpy(&n_bits, &shifted, sizeof n_bits);
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts: r exact
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t scale_bits = (n_bits - 0x4B400000u + 127u) << 23;  // 2^n, n in [-126, 127]
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    float e = x > hi ? INFINITY : p * scale;
    e = x < lo ? 0.0f : e;
    return e;
}
