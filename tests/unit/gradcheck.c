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
               void *ctx, float h, double atol, double rtol, int64_t max_checks) {
    int64_t step = n <= max_checks ? 1 : (n + max_checks - 1) / max_checks;
    int failures = 0;
    for (int64_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + h;
        double plus = loss(ctx);
        x[i] = saved - h;
        double minus = loss(ctx);
        x[i] = saved;
        // Divide by the step actually taken: saved +/- h is rounded to float.
        double numeric = (plus - minus) / ((double)(saved + h) - (double)(saved - h));
        double ana = analytic[i];
        double tol = atol + rtol * fmax(fabs(numeric), fabs(ana));
        if (!(fabs(numeric - ana) <= tol)) {
            if (failures < 10)
                fprintf(stderr, "gradcheck %s: index %lld numeric %.6g analytic %.6g (tol %.3g)\n", what,
                        (long long)i, numeric, ana, tol);
            failures++;
        }
    }
    if (failures) fprintf(stderr, "gradcheck %s: %d of %lld probes failed\n", what, failures, (long long)n);
    return failures == 0;
}
