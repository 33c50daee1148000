#include <stdlib.h>

#include "framework/core/error.h"
#include "framework/core/stats.h"

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double stats_median_in_place(double *v, int n) {
    YP_CHECK(n >= 1);
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
