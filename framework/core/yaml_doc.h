// A loaded YAML file with source positions, on top of libyaml's document API.
//
// Every user-facing error about a YAML value is reported at that value's position with
// yaml_doc_error_at, so the message always reads "file:line:col: ...".
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "framework/core/error.h"

typedef struct YamlDoc {
    yaml_document_t doc;
    char *path;  // as given by the caller; owned
} YamlDoc;

// Loads and parses `path`. Fails (with a positioned error) on unreadable, empty or binary files,
// syntax errors, several documents, and duplicate keys in a mapping. The caller destroys *out.
bool yaml_doc_load(const char *path, YamlDoc **out, Error *err);
// Parses `text` (e.g. a command-line value); errors are reported as "label:line:col: ...".
bool yaml_doc_parse_text(const char *label, const char *text, YamlDoc **out, Error *err);
void yaml_doc_destroy(YamlDoc *yd);  // accepts NULL

yaml_node_t *yaml_doc_root(YamlDoc *yd);
yaml_node_t *yaml_doc_node(YamlDoc *yd, int id);

// 1-based position of a node.
int yaml_node_line(const yaml_node_t *node);
int yaml_node_col(const yaml_node_t *node);

// Sets "path:line:col: <fmt...>" at `node` and returns false.
bool yaml_doc_error_at(YamlDoc *yd, const yaml_node_t *node, Error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// "a mapping", "a list", "a number", ... for messages that say what was found.
const char *yaml_node_describe(const yaml_node_t *node);

// The scalar text of a node, or NULL when it is not a scalar.
const char *yaml_node_text(const yaml_node_t *node);
bool yaml_node_is_plain(const yaml_node_t *node);  // an unquoted scalar

// Mapping access: the value for `key`, or NULL. Keys are compared as scalar text.
yaml_node_t *yaml_map_get(YamlDoc *yd, const yaml_node_t *map, const char *key);

// Sequence access.
int yaml_seq_len(const yaml_node_t *seq);
yaml_node_t *yaml_seq_at(YamlDoc *yd, const yaml_node_t *seq, int index);

// What a node holds, for messages: "a string 'three'", "a list of 3 items", "a mapping". Writes buf.
const char *yaml_node_describe_found(const yaml_node_t *node, char *buf, size_t cap);

// Typed scalars. Each fails with a positioned message "<what> must be an integer, found a string
// 'three'".
bool yaml_node_int(YamlDoc *yd, const yaml_node_t *node, const char *what, int64_t *out, Error *err);
bool yaml_node_number(YamlDoc *yd, const yaml_node_t *node, const char *what, double *out, Error *err);
bool yaml_node_string(YamlDoc *yd, const yaml_node_t *node, const char *what, const char **out, Error *err);

// Plain-scalar recognisers following YAML 1.1 as PyYAML resolves it (what Ultralytics reads with).
bool yaml_text_is_null(const char *text);               // null, Null, NULL, ~, empty
bool yaml_text_bool(const char *text, bool *out);       // true/false/yes/no/on/off in 3 cases
bool yaml_text_int(const char *text, int64_t *out);     // decimal, with optional sign and '_'
bool yaml_text_number(const char *text, double *out);   // ints and floats, .inf, .nan
