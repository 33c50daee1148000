#include "tests/unit/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "framework/core/fsutil.h"
#include "framework/core/rng.h"

void test_write_text(const char *path, const char *text) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    Error err = {0};
    if (slash) *slash = '\0';
    if (slash && !fs_mkdir_p(dir, &err)) yp_fatal("%s", err.message);
    if (!fs_write_file_atomic(path, text, strlen(text), &err)) yp_fatal("%s", err.message);
}

void test_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(seed, (uint64_t)i);
}

double test_dot(const float *y, const float *r, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)y[i] * (double)r[i];
    return sum;
}

// Central difference of the loss along element i with step h, dividing by the step actually taken
// (x[i] +/- h is rounded to float). Restores x[i].
static double central_difference(float *x, int64_t i, float h, GradcheckLoss loss, void *ctx) {
    float saved = x[i];
    x[i] = saved + h;
    double plus = loss(ctx);
    float up = x[i];
    x[i] = saved - h;
    double minus = loss(ctx);
    float down = x[i];
    x[i] = saved;
    return (plus - minus) / ((double)up - (double)down);
}

// The fourth-order five-point difference as Richardson's combination of the central differences at
// h and 2h, each over the steps actually taken: (4 D(h) - D(2h)) / 3 cancels their common h^2 f'''/6
// term, and equals (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h for exact steps.
static double five_point_difference(float *x, int64_t i, float h, GradcheckLoss loss, void *ctx) {
    return (4.0 * central_difference(x, i, h, loss, ctx) - central_difference(x, i, 2 * h, loss, ctx)) / 3.0;
}

typedef double (*Difference)(float *x, int64_t i, float h, GradcheckLoss loss, void *ctx);

static bool check(Difference difference, const GradcheckSpec *s) {
    const char *what = s->what;
    float *x = s->x;
    const float *analytic = s->analytic;
    const int64_t n = s->n, max_checks = s->max_checks;
    GradcheckLoss loss = s->loss;
    void *ctx = s->ctx;
    const float h = s->h;
    const double atol = s->atol, rtol = s->rtol;
    int64_t step = n <= max_checks ? 1 : (n + max_checks - 1) / max_checks;
    int64_t probes = 0, failures = 0;
    for (int64_t i = 0; i < n; i += step) {
        probes++;
        double numeric = difference(x, i, h, loss, ctx);
        double ana = analytic[i];
        double tol = atol + rtol * fmax(fabs(numeric), fabs(ana));
        if (fabs(numeric - ana) <= tol) continue;
        // The quotient at h/2 tells a reader whether the difference had converged (a wrong gradient)
        // or moves towards the analytic value (a kink or truncation at this step).
        if (failures < 10)
            fprintf(stderr, "gradcheck %s: index %lld numeric %.6g (at h/2: %.6g) analytic %.6g (tol %.3g)\n", what,
                    (long long)i, numeric, difference(x, i, h / 2, loss, ctx), ana, tol);
        failures++;
    }
    if (failures)
        fprintf(stderr, "gradcheck %s: %lld of %lld probes failed\n", what, (long long)failures, (long long)probes);
    return failures == 0;
}

bool gradcheck(const GradcheckSpec *s) { return check(central_difference, s); }

bool gradcheck_five_point(const GradcheckSpec *s) { return check(five_point_difference, s); }
