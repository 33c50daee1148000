#include "framework/core/yaml_doc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"

// 1-based line and column of byte `offset` in buf.
static void offset_position(const char *buf, size_t offset, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)buf[i] & 0xC0) != 0x80) {  // count characters, not UTF-8 bytes
            (*col)++;
        }
    }
}

// Byte offset where 0-based `line` of buf starts (n_bytes past the end).
static size_t line_start(const char *buf, size_t n_bytes, size_t line) {
    size_t i = 0;
    for (; i < n_bytes && line; i++) line -= buf[i] == '\n';
    return i;
}

// The byte at 0-based `line` and character `column` of buf, or '\0' past the end.
static char char_at(const char *buf, size_t n_bytes, size_t line, size_t column) {
    for (size_t i = line_start(buf, n_bytes, line); i < n_bytes && buf[i] != '\n'; i++) {
        if (((unsigned char)buf[i] & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte
        if (!column--) return buf[i];
    }
    return '\0';
}

// 0-based character column of a '"' that 0-based `line` opens and does not close, or -1.
static int unclosed_quote_column(const char *buf, size_t n_bytes, size_t line) {
    int column = -1, open = -1;
    for (size_t i = line_start(buf, n_bytes, line); i < n_bytes && buf[i] != '\n'; i++) {
        if (((unsigned char)buf[i] & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte
        column++;
        if (open >= 0 && buf[i] == '\\' && i + 1 < n_bytes && buf[i + 1] != '\n') i++, column++;  // an escape
        else if (buf[i] == '"') open = open < 0 ? column : -1;
        else if (open < 0 && buf[i] == '#' && (column == 0 || buf[i - 1] == ' ')) break;  // a comment
    }
    return open;
}

static bool parser_error(const yaml_parser_t *p, const char *path, const char *buf, size_t n_bytes, Error *err) {
    if (p->error == YAML_READER_ERROR) {
        // libyaml reports a bad continuation byte at its own offset: point at the character it belongs to.
        size_t at = p->problem_offset;
        if (p->problem && !strcmp(p->problem, "invalid trailing UTF-8 octet") && at > 0)
            do at--; while (at > 0 && ((unsigned char)buf[at] & 0xC0) == 0x80);
        int line, col;
        offset_position(buf, at, &line, &col);
        return error_at(err, path, line, col, "not a UTF-8 text file: %s (byte 0x%02X); save it as UTF-8",
                        p->problem ? p->problem : "unreadable bytes", at < n_bytes ? (unsigned char)buf[at] : 0);
    }
    const yaml_mark_t *mark = &p->problem_mark;
    int line = (int)mark->line + 1, col = (int)mark->column + 1;
    if (char_at(buf, n_bytes, mark->line, mark->column) == '\t')
        return error_at(err, path, line, col, "YAML syntax error: a tab character; YAML indents with spaces only");
    const char *problem = p->problem ? p->problem : "malformed YAML";
    // An unclosed bracket or quote, or a key without ':', is noticed only on a later line: point at
    // where it began. (A block collection's start is no such culprit: indentation errors are where noticed.)
    int begin_line = (int)p->context_mark.line + 1, begin_col = (int)p->context_mark.column + 1;
    int quote = unclosed_quote_column(buf, n_bytes, p->context_mark.line);
    if (p->context && strstr(p->context, "flow") && begin_line != line && quote >= 0)
        return error_at(err, path, begin_line, quote + 1,
                        "YAML syntax error: this '\"' has no closing quote on its line (the text runs on to line %d, "
                        "column %d)", line, col);
    if (p->context && strstr(p->context, "flow") && begin_line != line)
        return error_at(err, path, begin_line, begin_col, "YAML syntax error: this %s is not closed: %s before line %d, column %d",
                        strstr(p->context, "mapping") ? "'{'" : "'['", problem, line, col);
    if (p->context && !strstr(p->context, "block") && begin_line != line)
        return error_at(err, path, begin_line, begin_col, "YAML syntax error: %s %s that starts here (noticed at line %d, column %d)",
                        problem, p->context, line, col);
    if (p->context) return error_at(err, path, line, col, "YAML syntax error: %s %s", problem, p->context);
    return error_at(err, path, line, col, "YAML syntax error: %s", problem);
}

// Rejects a mapping that repeats a key, anywhere in the document: PyYAML silently keeps the last
// value, which hides typos in hand-edited files.
static bool check_duplicate_keys(YamlDoc *yd, Error *err) {
    for (yaml_node_t *node = yd->doc.nodes.start; node < yd->doc.nodes.top; node++) {
        if (node->type != YAML_MAPPING_NODE) continue;
        for (yaml_node_pair_t *a = node->data.mapping.pairs.start; a < node->data.mapping.pairs.top; a++) {
            const char *ka = yaml_node_text(yaml_doc_node(yd, a->key));
            if (!ka) continue;
            for (yaml_node_pair_t *b = a + 1; b < node->data.mapping.pairs.top; b++) {
                yaml_node_t *kb_node = yaml_doc_node(yd, b->key);
                const char *kb = yaml_node_text(kb_node);
                if (kb && strcmp(ka, kb) == 0)
                    return yaml_doc_error_at(yd, kb_node, err, "duplicate key '%s' (first given on line %d)", kb,
                                             yaml_node_line(yaml_doc_node(yd, a->key)));
            }
        }
    }
    return true;
}

// Rejects any explicit tag ("!!str 4", "!foo"): the document API resolves a tag into the same node
// as an untagged value, so "!!str 4" would silently read as the number 4. Only the event stream
// shows whether a tag was written. Runs on text that has already parsed.
static bool check_no_tags(const char *path, const char *buf, size_t n_bytes, Error *err) {
    yaml_parser_t parser;
    YP_CHECK(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, n_bytes);
    bool ok = true, done = false;
    while (ok && !done) {
        yaml_event_t e;
        if (!yaml_parser_parse(&parser, &e)) {
            ok = parser_error(&parser, path, buf, n_bytes, err);
            break;
        }
        const yaml_char_t *tag = e.type == YAML_SCALAR_EVENT           ? e.data.scalar.tag
                                 : e.type == YAML_SEQUENCE_START_EVENT ? e.data.sequence_start.tag
                                 : e.type == YAML_MAPPING_START_EVENT  ? e.data.mapping_start.tag
                                                                       : NULL;
        static const char core[] = "tag:yaml.org,2002:";  // what "!!" stands for
        if (tag && !strncmp((const char *)tag, core, sizeof core - 1))
            ok = error_at(err, path, (int)e.start_mark.line + 1, (int)e.start_mark.column + 1,
                          "YAML tags are not supported (found '!!%.60s'): write the plain value",
                          (const char *)tag + sizeof core - 1);
        else if (tag)
            ok = error_at(err, path, (int)e.start_mark.line + 1, (int)e.start_mark.column + 1,
                          "YAML tags are not supported (found '%.60s'): write the plain value", (const char *)tag);
        done = e.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&parser);
    return ok;
}

// Parses n_bytes of buf, reporting positions against `path`.
static bool doc_parse(const char *path, const char *buf, size_t n_bytes, YamlDoc **out, Error *err) {
    *out = NULL;
    const char *nul = memchr(buf, '\0', n_bytes);
    if (nul) {
        int line, col;
        offset_position(buf, (size_t)(nul - buf), &line, &col);
        return error_at(err, path, line, col, "not a text file: contains a NUL byte");
    }

    YamlDoc *yd = yp_calloc(1, sizeof *yd);
    yd->path = yp_strdup(path);
    yaml_parser_t parser;
    YP_CHECK(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, n_bytes);
    bool ok = yaml_parser_load(&parser, &yd->doc);
    if (!ok) {
        parser_error(&parser, path, buf, n_bytes, err);
        free(yd->path);
        free(yd);
        yd = NULL;
    } else if (!yaml_document_get_root_node(&yd->doc)) {
        ok = error_at(err, path, 1, 1, "no content (the file is empty or only comments): expected a YAML mapping");
    } else {
        yaml_document_t second;
        if (!yaml_parser_load(&parser, &second)) {
            ok = parser_error(&parser, path, buf, n_bytes, err);
        } else {
            yaml_node_t *root2 = yaml_document_get_root_node(&second);
            if (root2)
                ok = error_at(err, path, (int)root2->start_mark.line + 1, (int)root2->start_mark.column + 1,
                              "a second YAML document is not allowed here; remove everything after '---'");
            yaml_document_delete(&second);
        }
        if (ok) ok = check_no_tags(path, buf, n_bytes, err) && check_duplicate_keys(yd, err);
    }
    yaml_parser_delete(&parser);
    if (!ok) {
        yaml_doc_destroy(yd);
        return false;
    }
    *out = yd;
    return true;
}

bool yaml_doc_load(const char *path, YamlDoc **out, Error *err) {
    *out = NULL;
    size_t n_bytes = 0;
    char *buf;
    if (!fs_read_file(path, FS_READ_YAML, &buf, &n_bytes, err)) return false;
    bool ok = doc_parse(path, buf, n_bytes, out, err);
    free(buf);
    return ok;
}

bool yaml_doc_parse_text(const char *label, const char *text, YamlDoc **out, Error *err) {
    return doc_parse(label, text, strlen(text), out, err);
}

void yaml_doc_destroy(YamlDoc *yd) {
    if (!yd) return;
    yaml_document_delete(&yd->doc);
    free(yd->path);
    free(yd);
}

yaml_node_t *yaml_doc_root(YamlDoc *yd) { return yaml_document_get_root_node(&yd->doc); }
yaml_node_t *yaml_doc_node(YamlDoc *yd, int id) { return yaml_document_get_node(&yd->doc, id); }
int yaml_node_line(const yaml_node_t *node) { return (int)node->start_mark.line + 1; }
int yaml_node_col(const yaml_node_t *node) { return (int)node->start_mark.column + 1; }

bool yaml_doc_error_at(YamlDoc *yd, const yaml_node_t *node, Error *err, const char *fmt, ...) {
    char text[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return error_at(err, yd->path, node ? yaml_node_line(node) : 1, node ? yaml_node_col(node) : 1, "%s", text);
}

const char *yaml_node_text(const yaml_node_t *node) {
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

bool yaml_node_is_plain(const yaml_node_t *node) {
    return node && node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

const char *yaml_node_describe(const yaml_node_t *node) {
    if (!node) return "nothing";
    if (node->type == YAML_MAPPING_NODE) return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE) return "a list";
    const char *text = yaml_node_text(node);
    bool b;
    double d;
    if (!yaml_node_is_plain(node)) return "a quoted string";
    if (yaml_text_is_null(text)) return "null";
    if (yaml_text_bool(text, &b)) return "a boolean";
    if (yaml_text_number(text, &d)) return "a number";
    return "a string";
}

yaml_node_t *yaml_map_get(YamlDoc *yd, const yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = yaml_node_text(yaml_doc_node(yd, p->key));
        if (k && strcmp(k, key) == 0) return yaml_doc_node(yd, p->value);
    }
    return NULL;
}

int yaml_seq_len(const yaml_node_t *seq) {
    if (!seq || seq->type != YAML_SEQUENCE_NODE) return 0;
    return (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

yaml_node_t *yaml_seq_at(YamlDoc *yd, const yaml_node_t *seq, int index) {
    return yaml_doc_node(yd, seq->data.sequence.items.start[index]);
}

bool yaml_text_is_null(const char *text) {
    return !*text || !strcmp(text, "~") || !strcmp(text, "null") || !strcmp(text, "Null") || !strcmp(text, "NULL");
}

bool yaml_text_bool(const char *text, bool *out) {
    static const char *const truths[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const lies[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof truths / sizeof *truths; i++) {
        if (!strcmp(text, truths[i])) return *out = true, true;
        if (!strcmp(text, lies[i])) return *out = false, true;
    }
    return false;
}

// Copies text without '_' digit separators into buf; false when it does not fit.
static bool strip_underscores(const char *text, char *buf, size_t cap) {
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '_') continue;
        if (n + 1 >= cap) return false;
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return n > 0;
}

bool yaml_text_int(const char *text, int64_t *out) {
    char buf[64];
    if (!strip_underscores(text, buf, sizeof buf)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf) return false;
    *out = v;
    return true;
}

bool yaml_text_number(const char *text, double *out) {
    int64_t i;
    if (yaml_text_int(text, &i)) return *out = (double)i, true;
    const char *t = (*text == '+' || *text == '-') ? text + 1 : text;
    double sign = *text == '-' ? -1.0 : 1.0;
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF")) return *out = sign * INFINITY, true;
    if (!strcmp(text, ".nan") || !strcmp(text, ".NaN") || !strcmp(text, ".NAN")) return *out = NAN, true;
    char buf[64];
    if (!strip_underscores(text, buf, sizeof buf)) return false;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    // strtod also reads "inf", "nan" and hex floats, which YAML does not: require a digit first.
    const char *first = buf + (*buf == '+' || *buf == '-');
    if (errno || *end || end == buf || !(*first == '.' || (*first >= '0' && *first <= '9'))) return false;
    if (first[0] == '0' && (first[1] == 'x' || first[1] == 'X')) return false;
    *out = v;
    return true;
}

const char *yaml_node_describe_found(const yaml_node_t *node, char *buf, size_t cap) {
    const char *text = yaml_node_text(node);
    int n = yaml_seq_len(node);
    if (text) snprintf(buf, cap, "%s '%s'", yaml_node_describe(node), text);
    else if (node && node->type == YAML_SEQUENCE_NODE) snprintf(buf, cap, "a list of %d item%s", n, n == 1 ? "" : "s");
    else snprintf(buf, cap, "%s", yaml_node_describe(node));
    return buf;
}

bool yaml_node_int(YamlDoc *yd, const yaml_node_t *node, const char *what, int64_t *out, Error *err) {
    char found[160];
    if (!yaml_node_is_plain(node) || !yaml_text_int(yaml_node_text(node), out))
        return yaml_doc_error_at(yd, node, err, "%s must be an integer, found %s", what,
                                 yaml_node_describe_found(node, found, sizeof found));
    return true;
}

bool yaml_node_number(YamlDoc *yd, const yaml_node_t *node, const char *what, double *out, Error *err) {
    char found[160];
    if (!yaml_node_is_plain(node) || !yaml_text_number(yaml_node_text(node), out))
        return yaml_doc_error_at(yd, node, err, "%s must be a number, found %s", what,
                                 yaml_node_describe_found(node, found, sizeof found));
    return true;
}

bool yaml_node_string(YamlDoc *yd, const yaml_node_t *node, const char *what, const char **out, Error *err) {
    const char *text = yaml_node_text(node);
    char found[160];
    if (!text || (yaml_node_is_plain(node) && yaml_text_is_null(text)))
        return yaml_doc_error_at(yd, node, err, "%s must be a string, found %s", what,
                                 yaml_node_describe_found(node, found, sizeof found));
    *out = text;
    return true;
}
