#include "framework/cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

// A whole decimal integer: false for empty text, trailing characters or overflow.
static bool parse_int64(const char *text, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || end == text) return false;
    *out = v;
    return true;
}

bool cli_parse_int(const char *option, const char *text, int64_t *out) {
    if (parse_int64(text, out)) return true;
    fprintf(stderr, "yolopipe: %s expects an integer, found '%s'\n", option, text);
    return false;
}

bool cli_parse_positive(const char *option, const char *text, int64_t *out) {
    int64_t v;
    if (!parse_int64(text, &v) || v < 1) {
        fprintf(stderr, "yolopipe: %s expects a positive integer, found '%s'\n", option, text);
        return false;
    }
    *out = v;
    return true;
}
