// framework/core/dtype.h's conversions against independent expectations: the bfloat16 and float16
// formats' definitions (every bit pattern), hand-picked rounding boundaries, and PyTorch's own
// rounding of a few thousand floats (tests/reference/dtype.bin, make_dtype_reference.py).
// Every comparison is exact: a conversion either rounds as IEEE 754 says or it is wrong.
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "framework/core/dtype.h"
#include "tests/common/assert_close.h"
#include "tests/common/reference_file.h"

// float16's value by its definition: sign, 5 exponent bits (bias 15), 10 mantissa bits, with
// subnormals at exponent 0 and infinities / NaNs at 31.
static float test_f16_definition(uint16_t h) {
    const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double v;
    if (exponent == 0x1f) v = mantissa ? NAN : INFINITY;
    else if (exponent == 0) v = ldexp(mantissa, -24);
    else v = ldexp(1024 + mantissa, exponent - 25);
    return (float)((h & 0x8000) ? -v : v);
}

static bool test_same_bits(float a, float b) { return dtype_float_bits(a) == dtype_float_bits(b); }

// bfloat16 is float32's upper half by definition; widening it and rounding back must give the same
// bits for every non-NaN pattern, and a NaN must stay a NaN.
static void test_bf16_every_pattern(void **state) {
    (void)state;
    for (uint32_t b = 0; b <= 0xffff; b++) {
        const float f = bf16_to_float((uint16_t)b);
        assert_int_equal(dtype_float_bits(f), b << 16);
        const uint16_t back = float_to_bf16(f);
        if (isnan(f)) assert_true(isnan(bf16_to_float(back)));
        else assert_int_equal(back, b);
    }
}

static void test_f16_every_pattern(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        const float f = f16_to_float((uint16_t)h), want = test_f16_definition((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(f));
            assert_true(isnan(f16_to_float(float_to_f16(f))));
            continue;
        }
        if (!test_same_bits(f, want)) fail_msg("f16 0x%04x widens to %a, want %a", h, (double)f, (double)want);
        assert_int_equal(float_to_f16(f), h);
    }
}

// The value halfway between two neighbours rounds to the even one; a float32 ulp either side of it
// rounds to the nearer neighbour.
static void test_expect_tie(uint16_t (*convert)(float), float tie, uint16_t below, uint16_t even, uint16_t above) {
    assert_int_equal(convert(tie), even);
    assert_int_equal(convert(nextafterf(tie, -INFINITY)), below);
    assert_int_equal(convert(nextafterf(tie, INFINITY)), above);
    assert_int_equal(convert(-tie), even | 0x8000);
}

static void test_bf16_ties_to_even(void **state) {
    (void)state;
    // bfloat16 has 7 mantissa bits: neighbours of 1 are 2^-7 apart.
    test_expect_tie(float_to_bf16, 1.0f + 0x1p-8f, 0x3f80, 0x3f80, 0x3f81);      // 1 (even) | 1 + 2^-7
    test_expect_tie(float_to_bf16, 1.0f + 3 * 0x1p-8f, 0x3f81, 0x3f82, 0x3f82);  // 1 + 2^-7 | 1 + 2^-6 (even)
}

static void test_f16_ties_to_even(void **state) {
    (void)state;
    // float16 has 10 mantissa bits: neighbours of 1 are 2^-10 apart.
    test_expect_tie(float_to_f16, 1.0f + 0x1p-11f, 0x3c00, 0x3c00, 0x3c01);
    test_expect_tie(float_to_f16, 1.0f + 3 * 0x1p-11f, 0x3c01, 0x3c02, 0x3c02);
    // Between the largest subnormal (1023 * 2^-24) and the smallest normal (2^-14, even mantissa).
    test_expect_tie(float_to_f16, 1023.5f * 0x1p-24f, 0x03ff, 0x0400, 0x0400);
}

static void test_f16_overflow(void **state) {
    (void)state;
    assert_int_equal(float_to_f16(65504.0f), 0x7bff);  // the largest float16
    // 65520 is halfway from 65504 to the next step, 65536, whose exponent float16 lacks: RNE sends
    // it (and anything above) to infinity, anything below to 65504.
    assert_int_equal(float_to_f16(65519.99f), 0x7bff);
    assert_int_equal(float_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(float_to_f16(65520.0f), 0x7c00);
    assert_int_equal(float_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(float_to_f16(1e38f), 0x7c00);
    assert_int_equal(float_to_f16(INFINITY), 0x7c00);
    assert_int_equal(float_to_f16(-INFINITY), 0xfc00);
    assert_true(isnan(f16_to_float(float_to_f16(NAN))));
}

static void test_f16_subnormals(void **state) {
    (void)state;
    assert_int_equal(float_to_f16(0x1p-24f), 0x0001);          // the smallest subnormal
    assert_int_equal(float_to_f16(0x1p-25f), 0x0000);          // half of it: tie, 0 is even
    assert_int_equal(float_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    assert_int_equal(float_to_f16(3 * 0x1p-26f), 0x0001);      // 0.75 of it rounds up
    assert_int_equal(float_to_f16(3 * 0x1p-25f), 0x0002);      // 1.5 of it: tie, 2 is even
    assert_int_equal(float_to_f16(0x1p-30f), 0x0000);          // far below: zero
    assert_int_equal(float_to_f16(-0x1p-30f), 0x8000);         // ... keeping its sign
    assert_int_equal(float_to_f16(1023 * 0x1p-24f), 0x03ff);  // the largest subnormal
    assert_int_equal(float_to_f16(0x1p-14f), 0x0400);         // the smallest normal
    assert_true(f16_to_float(0x0001) == 0x1p-24f);
    assert_true(f16_to_float(0x8001) == -0x1p-24f);
}

static void test_bf16_range(void **state) {
    (void)state;
    // bfloat16 keeps float32's exponent: 1e38 stays finite, within half a bfloat16 ulp (2^-8).
    const float big = bf16_to_float(float_to_bf16(1e38f));
    assert_true(isfinite(big));
    assert_close(big, 1e38, 0.0, 0x1p-8);
    // FLT_MAX lies above the largest bfloat16, (2 - 2^-7) 2^127, by more than half an ulp.
    assert_int_equal(float_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(float_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(float_to_bf16(FLT_MIN), 0x0080);
    assert_true(isnan(bf16_to_float(float_to_bf16(NAN))));
}

static void test_negative_zero(void **state) {
    (void)state;
    assert_int_equal(float_to_bf16(-0.0f), 0x8000);
    assert_int_equal(float_to_f16(-0.0f), 0x8000);
    assert_true(signbit(bf16_to_float(0x8000)) && bf16_to_float(0x8000) == 0.0f);
    assert_true(signbit(f16_to_float(0x8000)) && f16_to_float(0x8000) == 0.0f);
}

// dtype_load / dtype_store index arrays of each type and round as the scalar conversions do.
static void test_load_store(void **state) {
    (void)state;
    const DType types[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16};
    const float values[] = {1.0f + 0x1p-8f, -3.0e-6f, 70000.0f, 0.1f};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        uint32_t storage[4] = {0};  // room for four elements of any type
        for (size_t i = 0; i < 4; i++) dtype_store(types[t], storage, i, values[i]);
        for (size_t i = 0; i < 4; i++) {
            const float v = values[i];
            const float want = types[t] == DTYPE_F32    ? v
                               : types[t] == DTYPE_BF16 ? bf16_to_float(float_to_bf16(v))
                                                        : f16_to_float(float_to_f16(v));
            assert_true(test_same_bits(dtype_load(types[t], storage, i), want));
        }
        // Two-byte types pack: four elements fill the first two words only.
        if (types[t] != DTYPE_F32) assert_int_equal(storage[2], 0);
    }
    assert_int_equal(dtype_size(DTYPE_F32), 4);
    assert_int_equal(dtype_size(DTYPE_BF16), 2);
    assert_int_equal(dtype_size(DTYPE_F16), 2);
}

// PyTorch's .to(bfloat16) / .to(float16) on the same floats, bit for bit (NaNs: only NaN-ness, as
// payloads differ between implementations and the float64 fixture records do not keep them).
static void test_against_torch(void **state) {
    (void)state;
    const char *root = getenv("YP_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/dtype.bin", root ? root : ".");
    Reference ref = reference_load(path);
    const Record *x = reference_require(&ref, "x");
    const Record *want[4] = {reference_require(&ref, "bf16_bits"), reference_require(&ref, "bf16_value"),
                             reference_require(&ref, "f16_bits"), reference_require(&ref, "f16_value")};
    for (int k = 0; k < 4; k++) assert_int_equal(want[k]->count, x->count);
    assert_true(x->count >= 4096);
    int64_t failures = 0;
    for (int64_t i = 0; i < x->count; i++) {
        const float v = (float)x->values[i];
        const uint16_t bf = float_to_bf16(v), h = float_to_f16(v);
        bool ok;
        if (isnan(v)) {
            ok = isnan(bf16_to_float(bf)) && isnan(f16_to_float(h));
        } else {
            ok = bf == (uint16_t)want[0]->values[i] && test_same_bits(bf16_to_float(bf), (float)want[1]->values[i]) &&
                 h == (uint16_t)want[2]->values[i] && test_same_bits(f16_to_float(h), (float)want[3]->values[i]);
        }
        if (!ok && failures++ < 5)
            fprintf(stderr, "x = %a: bf16 0x%04x want 0x%04x, f16 0x%04x want 0x%04x\n", (double)v, bf,
                    (unsigned)want[0]->values[i], h, (unsigned)want[2]->values[i]);
    }
    reference_free(&ref);
    assert_int_equal(failures, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_every_pattern), cmocka_unit_test(test_f16_every_pattern),
        cmocka_unit_test(test_bf16_ties_to_even),  cmocka_unit_test(test_f16_ties_to_even),
        cmocka_unit_test(test_f16_overflow),       cmocka_unit_test(test_f16_subnormals),
        cmocka_unit_test(test_bf16_range),         cmocka_unit_test(test_negative_zero),
        cmocka_unit_test(test_load_store),         cmocka_unit_test(test_against_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
