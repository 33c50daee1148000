// Element types of backend memory, and the host's conversions between them.
//
// Parameters, their gradients, running statistics and optimizer state are always float32.
// Activations and their gradients are stored in the backend's activation type (Backend.act):
// float32, or bfloat16 / float16 for mixed precision, which halves their bytes in memory and
// between pipeline stages. Conversions round to nearest, ties to even, exactly as CUDA's
// __float2bfloat16_rn and __float2half_rn do, so that every backend rounds a value alike.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum DType {
    DTYPE_F32,
    DTYPE_BF16,  // 8 exponent bits, 7 mantissa bits: float32's range
    DTYPE_F16,   // 5 exponent bits, 10 mantissa bits: overflows above 65504, hence loss scaling
} DType;

static inline size_t dtype_size(DType t) { return t == DTYPE_F32 ? 4 : 2; }

// "fp32", "bf16" or "fp16", as the experiment's device.precision spells them.
static inline const char *dtype_name(DType t) {
    return t == DTYPE_F32 ? "fp32" : t == DTYPE_BF16 ? "bf16" : "fp16";
}

static inline uint32_t dtype_float_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static inline float dtype_bits_float(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t x = dtype_float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  // NaN stays a (quiet) NaN
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static inline float bf16_to_float(uint16_t b) { return dtype_bits_float((uint32_t)b << 16); }

static inline uint16_t float_to_f16(float f) {
    uint32_t x = dtype_float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;  // 65520 and above round to infinity
    if (abs >= 0x38800000u) {                       // normal: rebias the exponent, round 23 bits to 10
        uint32_t m = abs - 0x38000000u;
        m += 0xfffu + ((m >> 13) & 1u);
        return (uint16_t)(sign | (m >> 13));
    }
    // Subnormal (units of 2^-24) or zero: the mantissa with its implicit bit, shifted and rounded.
    uint32_t exponent = abs >> 23;
    if (exponent < 102) return sign;  // below 2^-25 rounds to zero
    uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exponent;  // 14 to 24
    uint32_t k = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    k += rest > half || (rest == half && (k & 1u));
    return (uint16_t)(sign | k);
}

static inline float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1f) return dtype_bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent) return dtype_bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
    float v = (float)mantissa * 0x1p-24f;  // subnormal or zero: exact in float
    return sign ? -v : v;
}

// Element i of n-element arrays in type t, widened to float / rounded from float.
static inline float dtype_load(DType t, const void *p, size_t i) {
    if (t == DTYPE_F32) return ((const float *)p)[i];
    uint16_t b = ((const uint16_t *)p)[i];
    return t == DTYPE_BF16 ? bf16_to_float(b) : f16_to_float(b);
}

static inline void dtype_store(DType t, void *p, size_t i, float v) {
    if (t == DTYPE_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = t == DTYPE_BF16 ? float_to_bf16(v) : float_to_f16(v);
}

// v rounded to type t and widened back: the float32 value that type t stores for v.
static inline float dtype_round(DType t, float v) {
    if (t == DTYPE_F32) return v;
    return t == DTYPE_BF16 ? bf16_to_float(float_to_bf16(v)) : f16_to_float(float_to_f16(v));
}
