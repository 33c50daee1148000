// Tolerance checks for the tests, one rule for all of them: got agrees with want when
//
//     |got - want| <= atol + rtol * scale
//
// where scale is |want| for a scalar and, element by element, for an array. A tensor judged against
// its peak takes instead the largest |want| over the tensor as the scale of every element (float32
// results against a float64 reference: per-element relative error means nothing where want is near
// 0); with atol 0 that is close_peak_error(got, want, n) <= rtol. NaN never agrees with anything.
// Each test states its atol and rtol beside the call, with the reason.
//
// The assertions fail the running cmocka test at the caller's file and line.
#pragma once

#include <stdbool.h>
#include <stdint.h>

// Whether the scalar got agrees with want.
bool close_enough(double got, double want, double atol, double rtol);

// Fails the running test unless got agrees with want, naming the expression `got` (assert_close) or
// `what` (assert_close_named), both values and the tolerance.
#define assert_close(got, want, atol, rtol) close_assert_at(__FILE__, __LINE__, #got, (got), (want), (atol), (rtol))
#define assert_close_named(what, got, want, atol, rtol) \
    close_assert_at(__FILE__, __LINE__, (what), (got), (want), (atol), (rtol))
void close_assert_at(const char *file, int line, const char *what, double got, double want, double atol, double rtol);

// Element by element: whether every got[i] agrees with want[i]. Prints the first five elements
// that do not, and their count, to stderr with `what`; the caller asserts on the result (after
// checking several arrays, if it likes).
bool close_elements(const char *what, const float *got, const double *want, int64_t n, double atol, double rtol);

// The peak error: max |got[i] - want[i]| / max |want[i]|, the latter at least 1e-30; infinite when
// any element of either is NaN, so that it fails every tolerance and survives fmax. What a test
// prints as the tensor's relative error.
double close_peak_error(const float *got, const float *want, int64_t n);
double close_peak_error_f64(const float *got, const double *want, int64_t n);

// Fails the running test unless close_peak_error(got, want, n) <= rtol, naming `what`, the error
// and, for a NaN, its first element.
#define assert_close_peak(what, got, want, n, rtol) \
    close_assert_peak_at(__FILE__, __LINE__, (what), (got), (want), (n), (rtol))
void close_assert_peak_at(const char *file, int line, const char *what, const float *got, const float *want, int64_t n,
                          double rtol);
