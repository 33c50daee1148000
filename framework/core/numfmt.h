// Numbers written for people to read back: the shortest decimal that is the same double.
#pragma once

#include <stddef.h>

// Writes into buf (cap bytes, at least 32) the shortest "%.*g" form of v that strtod reads back as v
// exactly (0.937, not 0.93700000000000006); non-finite values as "%g" writes them. Returns buf.
char *format_double_shortest(char *buf, size_t cap, double v);
