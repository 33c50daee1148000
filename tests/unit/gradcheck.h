// Shared helpers for the unit tests: seeded random host data, a projection loss, and central and
// five-point finite-difference gradient checks.
#pragma once

#include <stdbool.h>
#include <stdint.h>

// Writes `text` to `path`, creating missing folders; aborts the process on failure (tests only).
void test_write_text(const char *path, const char *text);

// Fills x[0..n) with uniform values in [lo, hi) from stream `seed` (framework/core/rng.h).
void test_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed);

// sum_i y[i] * r[i] in double: projecting an output on fixed random weights r turns any tensor
// function into a scalar loss whose gradient with respect to y is exactly r.
double test_dot(const float *y, const float *r, int64_t n);

// Evaluates the scalar loss at the current contents of the inputs.
typedef double (*GradcheckLoss)(void *ctx);

// What gradcheck and gradcheck_five_point check, passed by const pointer and filled with designated
// initializers: `gradcheck(&(GradcheckSpec){.what = "bn dx", .x = x, .analytic = dx, .n = n, ...})`.
typedef struct GradcheckSpec {
    const char *what;       // names the check in the messages about failing probes
    float *x;               // n elements of host memory that `loss` reads; restored after each probe
    const float *analytic;  // the gradient to check, n elements
    int64_t n;
    GradcheckLoss loss;
    void *ctx;           // passed to loss
    float h;             // the step
    double atol, rtol;   // a probe passes when |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|)
    int64_t max_checks;  // the most indices probed (at least 1)
} GradcheckSpec;

// Compares analytic[i] with the central difference (L(x + h e_i) - L(x - h e_i)) / 2h for up to
// `max_checks` indices i spread evenly over [0, n) (all of them when n <= max_checks). x is host
// memory that `loss` reads; it is restored after each probe. Passes when every probe satisfies
// |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|); prints each failing probe
// (with `what`) and returns false otherwise.
//
bool gradcheck(const GradcheckSpec *s);

// gradcheck with the fourth-order five-point difference (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h,
// at twice the loss evaluations. Its truncation error is ~h^4 f^(5) / 30 instead of ~h^2 f''' / 6, so
// it affords a larger h, which shrinks the float32 rounding noise of L (its error is ~noise / h) where
// that noise, not truncation, limits the central difference. L must be smooth over [x - 2h, x + 2h].
bool gradcheck_five_point(const GradcheckSpec *s);
