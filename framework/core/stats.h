// Summary statistics of measured times.
#pragma once

// The median of v[0..n) (the mean of the two middle values when n is even), sorting v in place.
// n must be at least 1.
double stats_median_in_place(double *v, int n);
