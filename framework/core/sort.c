#include "framework/core/sort.h"

#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"

enum { SORT_RADIX_BITS = 11, SORT_RADIX = 1 << SORT_RADIX_BITS, SORT_PASSES = 3 };
_Static_assert(SORT_PASSES * SORT_RADIX_BITS >= 32, "the passes must cover a 32-bit key");

// Maps a float to an unsigned key whose ascending order is the float's descending order.
static uint32_t descending_key(float value) {
    if (value == 0.0f) value = 0.0f;  // -0 equals +0, as in torch's comparisons
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint32_t ascending = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    return ~ascending;
}

void sort_order_descending(const float *keys, int64_t n, int64_t *order) {
    if (n <= 0) return;
    uint32_t *key = yp_malloc((size_t)n * 2 * sizeof *key), *key_tmp = key + n;
    int64_t *order_tmp = yp_malloc((size_t)n * sizeof *order_tmp);
    for (int64_t i = 0; i < n; i++) {
        key[i] = descending_key(keys[i]);
        order[i] = i;
    }
    for (int pass = 0; pass < SORT_PASSES; pass++) {
        int shift = pass * SORT_RADIX_BITS;
        int64_t start[SORT_RADIX] = {0};
        for (int64_t i = 0; i < n; i++) start[(key[i] >> shift) & (SORT_RADIX - 1)]++;
        int64_t sum = 0;
        for (int b = 0; b < SORT_RADIX; b++) {
            int64_t count = start[b];
            start[b] = sum;
            sum += count;
        }
        // Scattering in input order keeps equal digits in their previous order: the sort is stable.
        for (int64_t i = 0; i < n; i++) {
            int64_t dst = start[(key[i] >> shift) & (SORT_RADIX - 1)]++;
            key_tmp[dst] = key[i];
            order_tmp[dst] = order[i];
        }
        memcpy(key, key_tmp, (size_t)n * sizeof *key);
        memcpy(order, order_tmp, (size_t)n * sizeof *order);
    }
    free(key);
    free(order_tmp);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sort_median(double *values, int64_t n) {
    YP_CHECK(n >= 1);
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}
