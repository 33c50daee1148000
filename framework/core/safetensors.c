#include "framework/core/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "framework/core/fsutil.h"
#include "framework/core/json.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_U8] = {"U8", 1},     [SAFETENSORS_I8] = {"I8", 1},
    [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1}, [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_I16] = {"I16", 2},         [SAFETENSORS_U16] = {"U16", 2},   [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_I32] = {"I32", 4},   [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_F32] = {"F32", 4},         [SAFETENSORS_F64] = {"F64", 8},   [SAFETENSORS_I64] = {"I64", 8},
    [SAFETENSORS_U64] = {"U64", 8},
};
_Static_assert(sizeof dtype_table / sizeof dtype_table[0] == SAFETENSORS_DTYPE_COUNT, "one entry per dtype");

static const char METADATA_KEY[] = "__metadata__";

const char *safetensors_dtype_name(SafetensorsDtype dtype) {
    YP_CHECK(dtype >= 0 && dtype < SAFETENSORS_DTYPE_COUNT);
    return dtype_table[dtype].name;
}

size_t safetensors_dtype_size(SafetensorsDtype dtype) {
    YP_CHECK(dtype >= 0 && dtype < SAFETENSORS_DTYPE_COUNT);
    return dtype_table[dtype].size;
}

int64_t safetensors_tensor_elems(const SafetensorsTensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// The first name that occurs twice among names[0..n), or NULL.
static const char *find_duplicate(const char **names, int n) {
    if (n < 2) return NULL;
    const char **sorted = yp_malloc((size_t)n * sizeof *sorted);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_strings);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) dup = sorted[i];
    free(sorted);
    return dup;
}

// ---- writing -----------------------------------------------------------------------------------

// The JSON header, unpadded, in a malloc'd buffer (*n_bytes long).
static char *header_build(const SafetensorsTensor *tensors, int n_tensors, const SafetensorsMetadata *metadata,
                          int n_metadata, size_t *n_bytes) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, n_bytes);
    YP_CHECK(f);
    fputc('{', f);
    if (n_metadata > 0) {
        fprintf(f, "\"%s\":{", METADATA_KEY);
        for (int i = 0; i < n_metadata; i++) {
            if (i) fputc(',', f);
            json_write_string(f, metadata[i].key);
            fputc(':', f);
            json_write_string(f, metadata[i].value);
        }
        fputc('}', f);
    }
    size_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const SafetensorsTensor *t = &tensors[i];
        if (i || n_metadata > 0) fputc(',', f);
        json_write_string(f, t->name);
        fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", safetensors_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) fprintf(f, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        fprintf(f, "],\"data_offsets\":[%zu,%zu]}", offset, offset + t->n_bytes);
        offset += t->n_bytes;
    }
    fputc('}', f);
    YP_CHECK(fclose(f) == 0);
    return buf;
}

bool safetensors_write(const char *path, const SafetensorsTensor *tensors, int n_tensors,
                       const SafetensorsMetadata *metadata, int n_metadata, Error *err) {
    const char **names = yp_malloc((size_t)(n_tensors + n_metadata + 1) * sizeof *names);
    for (int i = 0; i < n_tensors; i++) {
        const SafetensorsTensor *t = &tensors[i];
        YP_CHECK(t->name && strcmp(t->name, METADATA_KEY) != 0);
        YP_CHECK(t->ndim >= 0 && t->ndim <= SAFETENSORS_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) YP_CHECK(t->shape[d] >= 0);
        YP_CHECK((size_t)safetensors_tensor_elems(t) * safetensors_dtype_size(t->dtype) == t->n_bytes);
        YP_CHECK(t->data || t->n_bytes == 0);
        names[i] = t->name;
    }
    YP_CHECK(!find_duplicate(names, n_tensors));
    for (int i = 0; i < n_metadata; i++) {
        YP_CHECK(metadata[i].key && metadata[i].value);
        names[i] = metadata[i].key;
    }
    YP_CHECK(!find_duplicate(names, n_metadata));
    free(names);

    size_t header_bytes;
    char *header = header_build(tensors, n_tensors, metadata, n_metadata, &header_bytes);
    // Spaces up to a multiple of 8, as the reference implementation pads, so data is aligned.
    size_t padding = (8 - header_bytes % 8) % 8;
    uint64_t n = header_bytes + padding;
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)(n >> (8 * i));

    FsAtomicFile *af;
    bool ok = fs_atomic_file_open(path, &af, err);
    if (ok) {
        FILE *f = fs_atomic_file_stream(af);
        fwrite(length, 1, sizeof length, f);
        fwrite(header, 1, header_bytes, f);
        for (size_t i = 0; i < padding; i++) fputc(' ', f);
        for (int i = 0; i < n_tensors; i++)
            if (tensors[i].n_bytes) fwrite(tensors[i].data, 1, tensors[i].n_bytes, f);
        ok = fs_atomic_file_commit(af, err);  // reports a failed write (ferror)
    }
    free(header);
    return ok;
}

// ---- reading -----------------------------------------------------------------------------------

typedef struct HeaderParser {
    const char *path;
    const unsigned char *s;  // the header (not NUL-terminated)
    size_t n, pos;
    Error *err;
} HeaderParser;

static bool parse_fail(HeaderParser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool parse_fail(HeaderParser *p, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return error_set(p->err, "%s: safetensors header, byte %zu: %s", p->path, p->pos, what);
}

static void skip_space(HeaderParser *p) {
    while (p->pos < p->n && strchr(" \t\n\r", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

// Skips white space and consumes `c`.
static bool expect(HeaderParser *p, char c, const char *what) {
    skip_space(p);
    if (p->pos >= p->n) return parse_fail(p, "header ends where %s was expected", what);
    if (p->s[p->pos] != (unsigned char)c) return parse_fail(p, "expected %s", what);
    p->pos++;
    return true;
}

// Skips white space; true (consuming it) when the next character is `c`.
static bool accept(HeaderParser *p, char c) {
    skip_space(p);
    if (p->pos < p->n && p->s[p->pos] == (unsigned char)c) return p->pos++, true;
    return false;
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Four hex digits after "\u".
static bool parse_hex4(HeaderParser *p, unsigned *out) {
    if (p->n - p->pos < 4) return parse_fail(p, "truncated \\u escape");
    *out = 0;
    for (int i = 0; i < 4; i++) {
        int v = hex_value(p->s[p->pos + (size_t)i]);
        if (v < 0) return parse_fail(p, "bad hex digit in \\u escape");
        *out = *out * 16 + (unsigned)v;
    }
    p->pos += 4;
    return true;
}

static size_t utf8_encode(unsigned cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// A JSON string into a malloc'd, NUL-terminated buffer. The header was checked to be UTF-8, so
// bytes other than escapes are copied as they are.
static bool parse_string(HeaderParser *p, const char *what, char **out) {
    *out = NULL;
    if (!expect(p, '"', what)) return false;
    // The decoded text is never longer than the raw text up to the closing quote.
    size_t end = p->pos;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return parse_fail(p, "unterminated string");
    char *buf = yp_malloc(end - p->pos + 1);
    size_t len = 0;
    while (p->s[p->pos] != '"') {
        unsigned char c = p->s[p->pos];
        if (c < 0x20) {
            free(buf);
            return parse_fail(p, "control character 0x%02x in a string (JSON requires an escape)", c);
        }
        p->pos++;
        if (c != '\\') {
            buf[len++] = (char)c;
            continue;
        }
        c = p->s[p->pos++];
        const char *simple = strchr("\"\\/bfnrt", c);
        if (c && simple) {
            buf[len++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        unsigned cp;
        bool ok = c == 'u' ? parse_hex4(p, &cp) : parse_fail(p, "unknown escape: '\\' followed by byte 0x%02x", c);
        if (ok && cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            unsigned low = 0;
            ok = p->n - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u'
                     ? (p->pos += 2, parse_hex4(p, &low))
                     : parse_fail(p, "lone leading surrogate in a \\u escape");
            if (ok && (low < 0xDC00 || low > 0xDFFF)) ok = parse_fail(p, "invalid trailing surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (ok && cp >= 0xDC00 && cp <= 0xDFFF) {
            ok = parse_fail(p, "lone trailing surrogate in a \\u escape");
        }
        if (ok && cp == 0) ok = parse_fail(p, "a NUL character (\\u0000) in a string is not supported");
        if (!ok) {
            free(buf);
            return false;
        }
        len += utf8_encode(cp, buf + len);
    }
    p->pos++;  // closing quote
    buf[len] = '\0';
    *out = buf;
    return true;
}

// A JSON integer that must be non-negative (shapes and offsets).
static bool parse_uint(HeaderParser *p, const char *what, uint64_t *out) {
    skip_space(p);
    size_t start = p->pos;
    uint64_t v = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(p->s[p->pos] - '0'), &v))
            return p->pos = start, parse_fail(p, "%s is too large", what);
        p->pos++;
    }
    if (p->pos == start) return parse_fail(p, "expected %s (a non-negative integer)", what);
    if (p->pos - start > 1 && p->s[start] == '0') return p->pos = start, parse_fail(p, "leading zero in %s", what);
    if (p->pos < p->n && strchr(".eE", p->s[p->pos]) && p->s[p->pos])
        return parse_fail(p, "%s must be an integer", what);
    *out = v;
    return true;
}

// "[u, u, ...]" with at most `max` entries.
static bool parse_uint_list(HeaderParser *p, const char *what, int max, uint64_t *values, int *count) {
    if (!expect(p, '[', "'[' (a list)")) return false;
    *count = 0;
    if (accept(p, ']')) return true;
    do {
        if (*count == max) return parse_fail(p, "%s has more than %d entries", what, max);
        if (!parse_uint(p, what, &values[(*count)++])) return false;
    } while (accept(p, ','));
    return expect(p, ']', "',' or ']'");
}

// {"key": "value", ...}
static bool parse_metadata(HeaderParser *p, SafetensorsFile *file) {
    if (!expect(p, '{', "'{' (the metadata object)")) return false;
    if (accept(p, '}')) return true;
    int capacity = 0;
    do {
        if (file->n_metadata == capacity) {
            capacity = capacity ? 2 * capacity : 8;
            file->metadata = yp_realloc(file->metadata, (size_t)capacity * sizeof *file->metadata);
        }
        SafetensorsMetadata *m = &file->metadata[file->n_metadata];
        char *key, *value = NULL;
        if (!parse_string(p, "a metadata key (a string)", &key)) return false;
        bool ok = expect(p, ':', "':'") && parse_string(p, "a metadata value (a string)", &value);
        *m = (SafetensorsMetadata){key, value};
        file->n_metadata++;  // owned by the file from here on, so destroy frees it on failure
        if (!ok) return false;
    } while (accept(p, ','));
    return expect(p, '}', "',' or '}'");
}

// {"dtype": "F32", "shape": [...], "data_offsets": [b, e]} in any order, each key once.
static bool parse_tensor_info(HeaderParser *p, SafetensorsTensor *t, uint64_t offsets[2]) {
    if (!expect(p, '{', "'{' (a tensor's description)")) return false;
    enum { DTYPE = 1, SHAPE = 2, OFFSETS = 4 };
    unsigned seen = 0;
    do {
        size_t key_pos;
        char *key;
        skip_space(p);
        key_pos = p->pos;
        if (!parse_string(p, "\"dtype\", \"shape\" or \"data_offsets\"", &key)) return false;
        unsigned which = !strcmp(key, "dtype") ? DTYPE : !strcmp(key, "shape") ? SHAPE
                       : !strcmp(key, "data_offsets") ? OFFSETS : 0;
        free(key);
        if (!which || (seen & which)) {
            p->pos = key_pos;
            return parse_fail(p, which ? "key given twice" : "unknown key (expected dtype, shape or data_offsets)");
        }
        seen |= which;
        if (!expect(p, ':', "':'")) return false;
        if (which == DTYPE) {
            skip_space(p);
            size_t dtype_pos = p->pos;
            char *name;
            if (!parse_string(p, "a dtype (a string)", &name)) return false;
            int d = 0;
            while (d < SAFETENSORS_DTYPE_COUNT && strcmp(dtype_table[d].name, name)) d++;
            free(name);
            if (d == SAFETENSORS_DTYPE_COUNT) return p->pos = dtype_pos, parse_fail(p, "unknown dtype");
            t->dtype = (SafetensorsDtype)d;
        } else if (which == SHAPE) {
            uint64_t dims[SAFETENSORS_MAX_DIMS];
            if (!parse_uint_list(p, "shape", SAFETENSORS_MAX_DIMS, dims, &t->ndim)) return false;
            for (int d = 0; d < t->ndim; d++) {
                if (dims[d] > (uint64_t)INT64_MAX) return parse_fail(p, "shape entry too large");
                t->shape[d] = (int64_t)dims[d];
            }
        } else {
            int count;
            if (!parse_uint_list(p, "data_offsets", 2, offsets, &count)) return false;
            if (count != 2) return parse_fail(p, "data_offsets must hold two numbers [begin, end]");
        }
    } while (accept(p, ','));
    if (!expect(p, '}', "',' or '}'")) return false;
    if (seen != (DTYPE | SHAPE | OFFSETS)) return parse_fail(p, "a tensor needs dtype, shape and data_offsets");
    return true;
}

// Where a tensor's data lies, kept beside the table while validating.
typedef struct Extent {
    uint64_t begin, end;
    int index;
} Extent;

static int compare_extents(const void *a, const void *b) {
    const Extent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

// Only white space (the padding) may follow the header object.
static bool parse_end(HeaderParser *p) {
    skip_space(p);
    return p->pos == p->n || parse_fail(p, "unexpected text after the header object");
}

// The whole header: {"__metadata__": {...}, "<name>": {...}, ...} and trailing white space.
static bool parse_header(HeaderParser *p, SafetensorsFile *file, Extent **extents) {
    if (p->n == 0 || p->s[0] != '{') return parse_fail(p, "the header must start with '{'");
    p->pos = 1;
    int capacity = 0;
    bool have_metadata = false;
    if (accept(p, '}')) return parse_end(p);
    do {
        skip_space(p);
        size_t key_pos = p->pos;
        char *name;
        if (!parse_string(p, "a tensor name (a string)", &name)) return false;
        if (!expect(p, ':', "':'")) return free(name), false;
        if (!strcmp(name, METADATA_KEY)) {
            free(name);
            if (have_metadata) return p->pos = key_pos, parse_fail(p, "\"%s\" given twice", METADATA_KEY);
            have_metadata = true;
            if (!parse_metadata(p, file)) return false;
            continue;
        }
        if (file->n_tensors == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            file->tensors = yp_realloc(file->tensors, (size_t)capacity * sizeof *file->tensors);
            *extents = yp_realloc(*extents, (size_t)capacity * sizeof **extents);
        }
        SafetensorsTensor *t = &file->tensors[file->n_tensors];
        *t = (SafetensorsTensor){.name = name};
        Extent *e = &(*extents)[file->n_tensors];
        e->index = file->n_tensors++;  // the file owns the name from here on
        uint64_t offsets[2];
        if (!parse_tensor_info(p, t, offsets)) return false;
        e->begin = offsets[0], e->end = offsets[1];
    } while (accept(p, ','));
    return expect(p, '}', "',' or '}'") && parse_end(p);
}

// True when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF);
// *bad is the first offending byte otherwise.
static bool utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return *bad = i, false;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return *bad = i, false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return *bad = i, false;
        i += len;
    }
    return true;
}

// Offsets contiguous from 0 to the end of the data section, each size = elements x dtype size.
// Puts the tensors in data order.
static bool validate_extents(SafetensorsFile *file, Extent *extents, const unsigned char *data, uint64_t data_bytes,
                             Error *err) {
    int n = file->n_tensors;
    if (n > 1) qsort(extents, (size_t)n, sizeof *extents, compare_extents);
    SafetensorsTensor *ordered = yp_malloc((size_t)(n ? n : 1) * sizeof *ordered);
    for (int i = 0; i < n; i++) ordered[i] = file->tensors[extents[i].index];
    free(file->tensors);
    file->tensors = ordered;

    uint64_t expected_begin = 0;
    for (int i = 0; i < n; i++) {
        SafetensorsTensor *t = &file->tensors[i];
        const Extent *e = &extents[i];
        if (e->end < e->begin)
            return error_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", file->path, t->name,
                             (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin != expected_begin)
            return error_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] %s the previous tensor, which ends at %llu",
                             file->path, t->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                             e->begin < expected_begin ? "overlap" : "leave a gap after",
                             (unsigned long long)expected_begin);
        uint64_t n_bytes = safetensors_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++)
            if (__builtin_mul_overflow(n_bytes, (uint64_t)t->shape[d], &n_bytes))
                return error_set(err, "%s: tensor '%s': shape too large", file->path, t->name);
        if (e->end - e->begin != n_bytes)
            return error_set(err, "%s: tensor '%s': dtype %s and its shape need %llu bytes but data_offsets [%llu, %llu] hold %llu",
                             file->path, t->name, safetensors_dtype_name(t->dtype), (unsigned long long)n_bytes,
                             (unsigned long long)e->begin, (unsigned long long)e->end,
                             (unsigned long long)(e->end - e->begin));
        if (e->end > data_bytes)
            return error_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the file (data section of %llu bytes)",
                             file->path, t->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                             (unsigned long long)data_bytes);
        t->data = data + e->begin;
        t->n_bytes = (size_t)n_bytes;
        expected_begin = e->end;
    }
    if (expected_begin != data_bytes)
        return error_set(err, "%s: the tensors' data ends at byte %llu of the data section but the file holds %llu bytes there",
                         file->path, (unsigned long long)expected_begin, (unsigned long long)data_bytes);
    return true;
}

static bool file_parse(SafetensorsFile *file, Error *err) {
    if (file->n_bytes < 8)
        return error_set(err, "%s: %zu bytes is too short for a safetensors file (8-byte header length first)", file->path,
                         file->n_bytes);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | file->bytes[i];
    if (header_bytes > SAFETENSORS_MAX_HEADER_BYTES)
        return error_set(err, "%s: header length %llu is over the %d bytes safetensors allows (not a safetensors file?)",
                         file->path, (unsigned long long)header_bytes, SAFETENSORS_MAX_HEADER_BYTES);
    if (header_bytes > file->n_bytes - 8)
        return error_set(err, "%s: header length %llu runs past the end of the file (%zu bytes)", file->path,
                         (unsigned long long)header_bytes, file->n_bytes);
    const unsigned char *header = file->bytes + 8;
    size_t bad;
    if (!utf8_valid(header, header_bytes, &bad))
        return error_set(err, "%s: safetensors header, byte %zu: invalid UTF-8", file->path, bad);
    HeaderParser p = {.path = file->path, .s = header, .n = header_bytes, .err = err};
    Extent *extents = NULL;
    bool ok = parse_header(&p, file, &extents);
    if (ok) {
        const char **names = yp_malloc((size_t)(file->n_tensors + file->n_metadata + 1) * sizeof *names);
        for (int i = 0; i < file->n_tensors; i++) names[i] = file->tensors[i].name;
        const char *dup = find_duplicate(names, file->n_tensors);
        if (dup) ok = error_set(err, "%s: tensor '%s' is listed twice", file->path, dup);
        for (int i = 0; i < file->n_metadata; i++) names[i] = file->metadata[i].key;
        dup = ok ? find_duplicate(names, file->n_metadata) : NULL;
        if (dup) ok = error_set(err, "%s: metadata key '%s' is listed twice", file->path, dup);
        free(names);
    }
    ok = ok && validate_extents(file, extents, header + header_bytes, file->n_bytes - 8 - header_bytes, err);
    free(extents);
    return ok;
}

bool safetensors_read(const char *path, SafetensorsFile **out, Error *err) {
    *out = NULL;
    SafetensorsFile *file = yp_calloc(1, sizeof *file);
    file->path = yp_strdup(path);
    char *bytes = NULL;
    bool read = fs_read_file(path, FS_READ_SAFETENSORS, &bytes, &file->n_bytes, err);
    file->bytes = (unsigned char *)bytes;
    if (!read || !file_parse(file, err)) {
        safetensors_file_destroy(file);
        return false;
    }
    *out = file;
    return true;
}

void safetensors_file_destroy(SafetensorsFile *file) {
    if (!file) return;
    for (int i = 0; i < file->n_tensors; i++) free((char *)file->tensors[i].name);
    for (int i = 0; i < file->n_metadata; i++) {
        free((char *)file->metadata[i].key);
        free((char *)file->metadata[i].value);
    }
    free(file->tensors);
    free(file->metadata);
    free(file->bytes);
    free(file->path);
    free(file);
}

const SafetensorsTensor *safetensors_file_find(const SafetensorsFile *file, const char *name) {
    for (int i = 0; i < file->n_tensors; i++)
        if (!strcmp(file->tensors[i].name, name)) return &file->tensors[i];
    return NULL;
}

const char *safetensors_file_metadata(const SafetensorsFile *file, const char *key) {
    for (int i = 0; i < file->n_metadata; i++)
        if (!strcmp(file->metadata[i].key, key)) return file->metadata[i].value;
    return NULL;
}
