// The monotonic clock, for durations (step times, profiles, time-outs): not affected by changes to
// the system time, and never for dates.
#pragma once

// Seconds since an arbitrary fixed point (CLOCK_MONOTONIC): only differences mean anything.
double clock_monotonic_s(void);
