#include "framework/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool cli_parse_positive(const char *option, const char *text, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || end == text || v < 1) {
        fprintf(stderr, "yolopipe: %s expects a positive integer, found '%s'\n", option, text);
        return false;
    }
    *out = v;
    return true;
}
