#include "framework/core/json.h"

#include <math.h>
#include <stdbool.h>

// The code point of the well-formed 2- or 3-byte UTF-8 sequence at p, or -1 (another length or not
// UTF-8: such bytes are written as they are).
static long utf8_code_point(const unsigned char *p, int *len) {
    if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) return *len = 2, (long)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    if ((p[0] & 0xF0) == 0xE0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80)
        return *len = 3, (long)(p[0] & 0x0F) << 12 | (long)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    return -1;
}

// What YAML does not take as it is inside a double-quoted scalar (see json.h).
static bool yaml_needs_escape(long cp) {
    return cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE ||
           cp == 0xFFFF;
}

void json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default: {
            int len = 1;
            long cp = *p < 0x80 ? *p : utf8_code_point(p, &len);
            if (cp >= 0 && (cp < 0x20 || yaml_needs_escape(cp))) {
                fprintf(f, "\\u%04lx", cp);
                p += len - 1;
            } else {
                fputc(*p, f);
            }
        }
        }
    }
    fputc('"', f);
}

void json_write_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fputs("null", f);
}

void json_write_int(FILE *f, int64_t v) { fprintf(f, "%lld", (long long)v); }
