// The float operations of every Activation (kernels/backend.h), shared by the CPU kernels
// (kernels/cpu) and the CUDA ones (kernels/cuda), element-wise slots and the batch-norm fusion
// alike: one definition, so both backends run the same operations in the same order. Values agree
// to the bit except where e^x (activation_expf) and tanhf differ between the host and CUDA (a last bit).
//
// Device code must not fuse a multiply and an add where the host rounds twice: ACT_MUL is a plain
// operator on the host (GCC's ISO mode does not contract) and a round-to-nearest intrinsic on the
// device. Divisions are IEEE on both (no fast-math).
#pragma once

#include <math.h>

#include "framework/core/exp_poly.h"
#include "framework/core/host_device.h"
#include "kernels/backend.h"

#ifdef __CUDA_ARCH__
#define ACT_MUL(a, b) __fmul_rn((a), (b))
#else
#define ACT_MUL(a, b) ((a) * (b))
#endif

// e^x: CUDA's expf on the device, exp_poly on the host (within 1 ulp; unlike glibc's expf no call,
// so the CPU kernels' loops over it vectorize).
YP_HOST_DEVICE static inline float activation_expf(float x) {
#ifdef __CUDA_ARCH__
    return expf(x);
#else
    return exp_poly(x);
#endif
}

YP_HOST_DEVICE static inline float activation_sigmoid(float x) { return 1.0f / (1.0f + activation_expf(-x)); }

// act(x). A NaN input gives NaN for every kind (the comparisons below are false for it).
YP_HOST_DEVICE static inline float activation_apply(ActivationSpec act, float x) {
    switch (act.kind) {
    case ACTIVATION_SILU: return ACT_MUL(x, activation_sigmoid(x));
    case ACTIVATION_RELU: return x <= 0.0f ? 0.0f : x;
    case ACTIVATION_LEAKY_RELU: return x > 0.0f ? x : ACT_MUL(x, act.negative_slope);
    case ACTIVATION_RELU6: return x <= 0.0f ? 0.0f : x >= 6.0f ? 6.0f : x;
    case ACTIVATION_HARDSWISH: {
        // PyTorch: x * min(max(x + 3, 0), 6) / 6, a product then an IEEE division.
        const float r = x + 3.0f <= 0.0f ? 0.0f : x + 3.0f >= 6.0f ? 6.0f : x + 3.0f;
        return ACT_MUL(x, r) / 6.0f;
    }
    case ACTIVATION_SIGMOID: return activation_sigmoid(x);
    case ACTIVATION_TANH: return tanhf(x);
    case ACTIVATION_NONE:
    case ACTIVATION_COUNT: break;
    }
    return x;
}

// dy · act'(x) with PyTorch's backward formulas and their conventions at the kinks.
YP_HOST_DEVICE static inline float activation_grad(ActivationSpec act, float x, float dy) {
    switch (act.kind) {
    case ACTIVATION_SILU: {
        // dy s (1 + x (1 - s)), s = sigmoid(x): s + x s (1 - s) factored.
        const float s = activation_sigmoid(x);
        return ACT_MUL(ACT_MUL(dy, s), 1.0f + ACT_MUL(x, 1.0f - s));
    }
    case ACTIVATION_RELU: return x <= 0.0f ? 0.0f : dy;  // threshold_backward: 0 at 0
    case ACTIVATION_LEAKY_RELU: return x > 0.0f ? dy : ACT_MUL(dy, act.negative_slope);
    case ACTIVATION_RELU6: return x > 0.0f && x < 6.0f ? dy : 0.0f;  // hardtanh_backward: 0 at both ends
    case ACTIVATION_HARDSWISH:
        // hardswish_backward: 0 below -3, dy above 3, dy (x / 3 + 0.5) on [-3, 3].
        return x < -3.0f ? 0.0f : x <= 3.0f ? ACT_MUL(dy, x / 3.0f + 0.5f) : dy;
    case ACTIVATION_SIGMOID: {
        // sigmoid_backward from the output s: dy (1 - s) s.
        const float s = activation_sigmoid(x);
        return ACT_MUL(ACT_MUL(dy, 1.0f - s), s);
    }
    case ACTIVATION_TANH: {
        // tanh_backward from the output t: dy (1 - t t).
        const float t = tanhf(x);
        return ACT_MUL(dy, 1.0f - ACT_MUL(t, t));
    }
    case ACTIVATION_NONE:
    case ACTIVATION_COUNT: break;
    }
    return dy;
}
