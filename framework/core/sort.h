// Stable ordering of float keys, largest first: the order torch's (stable) descending sort gives,
// ties kept in index order. Used where Ultralytics sorts scores (NMS candidates, detections by
// confidence) so that results do not depend on the sort's internals. And the median of measured
// times.
#pragma once

#include <stdint.h>

// Fills order[0..n) with the indices of keys sorted by descending value, equal keys in ascending
// index order. Keys must not be NaN. A least-significant-digit radix sort: O(n), no comparisons.
// The caller owns both arrays; order must hold n entries.
void sort_order_descending(const float *keys, int64_t n, int64_t *order);

// The median of values[0..n), n >= 1: the middle value, or the mean of the two middle ones when n
// is even. Sorts values in place (ascending).
double sort_median(double *values, int64_t n);
