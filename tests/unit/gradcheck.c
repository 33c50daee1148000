#include "tests/unit/gradcheck.h"

#include <math.h>
#include <stdio.h>

#include "framework/rng.h"

void test_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(seed, (uint64_t)i);
}

double test_dot(const float *y, const float *r, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)y[i] * (double)r[i];
    return sum;
}

bool gradcheck(const char *what, float *x, const float *analytic, int64_t n, GradcheckLoss loss,
               void *ctx, float h, double atol, double rtol, int64_t max_checks, double max_skipped_fraction) {
    int64_t step = n <= max_checks ? 1 : (n + max_checks - 1) / max_checks;
    // A kink moves a one-sided slope by about the gradient that switches paths; float32 rounding
    // moves it by about the tolerance. Eight tolerances separate the two.
    const double kink_factor = 8.0;
    double center = loss(ctx);
    int64_t probes = 0, skipped = 0, failures = 0;
    for (int64_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + h;
        double plus = loss(ctx);
        float up = x[i];
        x[i] = saved - h;
        double minus = loss(ctx);
        float down = x[i];
        x[i] = saved;
        probes++;
        // Divide by the steps actually taken: saved +/- h is rounded to float.
        double slope_up = (plus - center) / ((double)up - saved), slope_down = (center - minus) / ((double)saved - down);
        double numeric = (plus - minus) / ((double)up - (double)down);
        double ana = analytic[i];
        double tol = atol + rtol * fmax(fabs(numeric), fabs(ana));
        if (fabs(slope_up - slope_down) > kink_factor * tol) {
            skipped++;
            continue;
        }
        if (!(fabs(numeric - ana) <= tol)) {
            if (failures < 10)
                fprintf(stderr, "gradcheck %s: index %lld numeric %.6g analytic %.6g (tol %.3g)\n", what,
                        (long long)i, numeric, ana, tol);
            failures++;
        }
    }
    bool too_many_skipped = (double)skipped > max_skipped_fraction * (double)probes;
    if (failures || too_many_skipped)
        fprintf(stderr, "gradcheck %s: %lld of %lld probes failed, %lld skipped as not smooth at h = %g\n", what,
                (long long)failures, (long long)probes, (long long)skipped, (double)h);
    return failures == 0 && !too_many_skipped;
}
