#include "framework/core/numfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "framework/core/error.h"

char *format_double_shortest(char *buf, size_t cap, double v) {
    YP_CHECK(cap >= 32);
    if (!isfinite(v)) {
        snprintf(buf, cap, "%g", v);
        return buf;
    }
    // 17 significant digits always round-trip a double; most values need far fewer.
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}
