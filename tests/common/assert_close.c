#include "tests/common/assert_close.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

bool close_enough(double got, double want, double atol, double rtol) {
    return fabs(got - want) <= atol + rtol * fabs(want);  // false for a NaN
}

void close_assert_at(const char *file, int line, const char *what, double got, double want, double atol, double rtol) {
    if (close_enough(got, want, atol, rtol)) return;
    print_error("ERROR: %s = %.17g, expected %.17g (atol %g, rtol %g)\n", what, got, want, atol, rtol);
    _fail(file, line);
}

bool close_elements(const char *what, const float *got, const double *want, int64_t n, double atol, double rtol) {
    int failures = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        if (!(err <= tol)) {
            if (failures < 5)
                fprintf(stderr, "%s: index %lld got %.9g want %.9g (tol %.3g)\n", what, (long long)i, (double)got[i],
                        want[i], tol);
            failures++;
        }
        if (err > worst) worst = err;
    }
    if (failures) fprintf(stderr, "%s: %d of %lld differ, worst %.3g\n", what, failures, (long long)n, worst);
    return failures == 0;
}

// want is want32 or want64, whichever is not NULL.
static double peak_error(const float *got, const float *want32, const double *want64, int64_t n) {
    double worst = 0.0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double w = want64 ? want64[i] : (double)want32[i];
        if (isnan(got[i]) || isnan(w)) return INFINITY;
        worst = fmax(worst, fabs((double)got[i] - w));
        scale = fmax(scale, fabs(w));
    }
    return worst / scale;
}

double close_peak_error(const float *got, const float *want, int64_t n) { return peak_error(got, want, NULL, n); }

double close_peak_error_f64(const float *got, const double *want, int64_t n) { return peak_error(got, NULL, want, n); }

void close_assert_peak_at(const char *file, int line, const char *what, const float *got, const float *want, int64_t n,
                          double rtol) {
    double e = close_peak_error(got, want, n);
    if (e <= rtol) return;
    for (int64_t i = 0; i < n; i++)
        if (isnan(got[i]) || isnan(want[i])) {
            print_error("ERROR: %s: element %lld is NaN (got %g, want %g)\n", what, (long long)i, got[i], want[i]);
            _fail(file, line);
        }
    print_error("ERROR: %s: relative error %.3g > %.3g\n", what, e, rtol);
    _fail(file, line);
}
