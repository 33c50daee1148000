// The study file's values that are more than a scalar: experiment settings (set:, sweep:, points:),
// where: constraints, the cluster's node counts and device, and the cost platforms. Each is parsed
// from its YAML node into the StudyConfig, every mistake reported at its position.
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/config.h"
#include "framework/core/json.h"
#include "framework/core/path.h"
#include "framework/study/study_internal.h"
#include "partition/cost.h"

const char *const study_derived_names[STUDY_DERIVED_COUNT] = {"world", "nodes", "gpus_per_node"};

char *study_printf(const char *fmt, ...) {
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    YP_CHECK(n >= 0);
    return text;
}

// ---- text helpers ------------------------------------------------------------------------------

// Characters that end a plain scalar inside a flow collection: such text is written quoted there.
static bool needs_quotes_in_flow(const char *text) { return strpbrk(text, ",[]{}#") || strstr(text, ": "); }

static void write_node(YamlDoc *yd, const yaml_node_t *node, bool in_flow, FILE *f) {
    if (node->type == YAML_SCALAR_NODE) {
        const char *text = yaml_node_text(node);
        if (yaml_node_is_plain(node) && !*text) fputs("null", f);
        else if (yaml_node_is_plain(node) && !(in_flow && needs_quotes_in_flow(text))) fputs(text, f);
        else json_write_string(f, text);  // a JSON string is a valid double-quoted YAML scalar
        return;
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        fputc('[', f);
        for (int i = 0; i < yaml_seq_len(node); i++) {
            if (i) fputs(", ", f);
            write_node(yd, yaml_seq_at(yd, node, i), true, f);
        }
        fputc(']', f);
        return;
    }
    fputc('{', f);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        if (p != node->data.mapping.pairs.start) fputs(", ", f);
        write_node(yd, yaml_doc_node(yd, p->key), true, f);
        fputs(": ", f);
        write_node(yd, yaml_doc_node(yd, p->value), true, f);
    }
    fputc('}', f);
}

char *study_node_text(YamlDoc *yd, const yaml_node_t *node) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    YP_CHECK(f);
    write_node(yd, node, false, f);
    YP_CHECK(fclose(f) == 0);
    return text;
}

const char *study_message_text(const char *message) {
    // The first ":<line>:<col>: " ends the position prefix.
    for (const char *p = strchr(message, ':'); p; p = strchr(p + 1, ':')) {
        const char *q = p + 1;
        if (*q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (*q++ != ':' || *q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (q[0] == ':' && q[1] == ' ') return q + 2;
    }
    return message;
}

char *study_setting_arg(const StudySetting *st) { return study_printf("%s=%s", st->key, st->value); }

// Levenshtein distance of a and b (each at most 63 characters; longer strings compare as far apart).
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return 1 << 20;
    int row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diagonal = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int above = row[j];
            int best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best) best = above + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[nb];
}

const char *study_suggest(const char *name, int n, const char *(*candidate)(int i, const void *ctx), const void *ctx) {
    int limit = (int)strlen(name) / 3;
    if (limit < 1) limit = 1;
    if (limit > 3) limit = 3;
    const char *best = NULL;
    int best_distance = limit + 1;
    for (int i = 0; i < n; i++) {
        const char *c = candidate(i, ctx);
        int d = edit_distance(name, c);
        if (d < best_distance) best = c, best_distance = d;
    }
    return best;
}

static const char *experiment_key_at(int i, const void *ctx) {
    (void)ctx;
    return config_key_name(i);
}

const char *study_suggest_experiment_key(const char *name) {
    return study_suggest(name, config_key_count(), experiment_key_at, NULL);
}

int study_experiment_key(const char *name) {
    for (int i = 0; i < config_key_count(); i++)
        if (!strcmp(config_key_name(i), name)) return i;
    return -1;
}

int study_axis_index(const StudyConfig *s, const char *name) {
    for (int i = 0; i < s->n_axes; i++)
        if (!strcmp(s->axes[i].key, name)) return i;
    return -1;
}

// ---- experiment settings: set:, sweep:, points: ------------------------------------------------

// Whether `name` is a section of the experiment file ("train"); *example gets one of its keys.
static bool experiment_section(const char *name, const char **example) {
    size_t n = strlen(name);
    for (int i = 0; i < config_key_count(); i++)
        if (!strncmp(config_key_name(i), name, n) && config_key_name(i)[n] == '.') return *example = config_key_name(i), true;
    return false;
}

// `key` must name an experiment key; `what` says where it was written ("set", "sweep", "a point").
static bool experiment_key_check(const StudySource *src, const yaml_node_t *key_node, const char *key,
                                 const char *what, Error *err) {
    if (study_experiment_key(key) >= 0) return true;
    const char *hint = study_suggest_experiment_key(key), *example;
    char text[400];
    if (experiment_section(key, &example))
        snprintf(text, sizeof text, "%s: '%s' is a section of the experiment file; name each key dotted, such as %s",
                 what, key, example);
    else if (hint) snprintf(text, sizeof text, "%s: no experiment has a key '%s' (did you mean '%s'?)", what, key, hint);
    else snprintf(text, sizeof text, "%s: no experiment has a key '%s'; see experiments/SCHEMA.md for the keys", what, key);
    if (!key_node) return error_set(err, "%s: %s", src->file, text);
    return yaml_doc_error_at(src->yd, key_node, err, "%s", text);
}

bool study_parse_setting(const StudySource *src, const yaml_node_t *key_node, const char *key, yaml_node_t *value,
                         const char *what, StudySetting *out, Error *err) {
    if (!experiment_key_check(src, key_node, key, what, err)) return false;
    const char *scalar = yaml_node_text(value);
    char *text;
    // A path is relative to the study file's folder (to the working directory for an override), as
    // the study's own paths are; the experiment gets it absolute.
    if (config_key_is_path(study_experiment_key(key)) && scalar && !(yaml_node_is_plain(value) && yaml_text_is_null(scalar))) {
        char *resolved = path_join(src->base_dir, scalar, PATH_CLEAN_DOTDOT);
        size_t n = 0;
        FILE *f = open_memstream(&text, &n);
        YP_CHECK(f);
        json_write_string(f, resolved);
        YP_CHECK(fclose(f) == 0);
        free(resolved);
    } else {
        text = study_node_text(src->yd, value);
    }
    *out = (StudySetting){yp_strdup(key), text, study_pos(src, value)};
    return true;
}

bool study_parse_settings(const StudySource *src, yaml_node_t *map, const char *what, int *n, StudySetting **out,
                          Error *err) {
    char found[160];
    if (map->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(src->yd, map, err, "%s must be a mapping of dotted experiment keys to values, such as "
                                 "{train.epochs: 3}, found %s", what, yaml_node_describe_found(map, found, sizeof found));
    int count = (int)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    StudySetting *settings = yp_calloc((size_t)count + 1, sizeof *settings);
    for (int i = 0; i < count; i++) {
        yaml_node_pair_t *p = &map->data.mapping.pairs.start[i];
        yaml_node_t *key_node = yaml_doc_node(src->yd, p->key);
        const char *key = yaml_node_text(key_node);
        bool ok = key ? study_parse_setting(src, key_node, key, yaml_doc_node(src->yd, p->value), what, &settings[i], err)
                      : yaml_doc_error_at(src->yd, key_node, err, "keys must be plain names");
        if (!ok) {
            study_settings_free(i, settings);
            return false;
        }
    }
    study_settings_free(*n, *out);
    *n = count;
    *out = settings;
    return true;
}

bool study_parse_axis(const StudySource *src, const yaml_node_t *key_node, const char *key, yaml_node_t *values,
                      StudyAxis *out, Error *err) {
    char found[160];
    if (!experiment_key_check(src, key_node, key, "sweep", err)) return false;
    if (values->type != YAML_SEQUENCE_NODE)
        return yaml_doc_error_at(src->yd, values, err, "sweep %s must be a list of values, such as [1, 2, 4], found %s",
                                 key, yaml_node_describe_found(values, found, sizeof found));
    int n = yaml_seq_len(values);
    if (!n) return yaml_doc_error_at(src->yd, values, err, "sweep %s: the list of values is empty; give at least one", key);
    StudyAxis axis = {yp_strdup(key), study_pos(src, key_node ? key_node : values), 0,
                      yp_calloc((size_t)n, sizeof *axis.values)};
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = yaml_seq_at(src->yd, values, i);
        StudySetting *v = &axis.values[i];
        if (!study_parse_setting(src, key_node, key, item, "sweep", v, err)) {
            study_axis_clear(&axis);
            return false;
        }
        axis.n_values++;
        for (int k = 0; k < i; k++) {
            if (strcmp(axis.values[k].value, v->value)) continue;
            int first_line = axis.values[k].pos.line;
            study_axis_clear(&axis);
            return yaml_doc_error_at(src->yd, item, err, "sweep %s lists this value twice (first on line %d)", key,
                                     first_line);
        }
    }
    *out = axis;
    return true;
}

bool study_parse_sweep(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err) {
    char found[160];
    if (node->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(src->yd, node, err, "sweep must be a mapping of dotted experiment keys to lists of "
                                 "values, such as {parallel.stages: [1, 2, 4]}, found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    int n = (int)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (!n) return yaml_doc_error_at(src->yd, node, err, "sweep is empty; give at least one key and its values");
    StudyAxis *axes = yp_calloc((size_t)n, sizeof *axes);
    for (int i = 0; i < n; i++) {
        yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
        yaml_node_t *key_node = yaml_doc_node(src->yd, p->key);
        const char *key = yaml_node_text(key_node);
        bool ok = key ? study_parse_axis(src, key_node, key, yaml_doc_node(src->yd, p->value), &axes[i], err)
                      : yaml_doc_error_at(src->yd, key_node, err, "keys must be plain names");
        if (!ok) {
            study_axes_free(i, axes);
            return false;
        }
    }
    study_axes_free(s->n_axes, s->axes);
    s->n_axes = n;
    s->axes = axes;
    return true;
}

bool study_parse_points(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err) {
    char found[160];
    int n = yaml_seq_len(node);
    if (node->type != YAML_SEQUENCE_NODE || !n)
        return yaml_doc_error_at(src->yd, node, err, "points must be a non-empty list of mappings such as "
                                 "{parallel.stages: 2, parallel.schedule: gpipe}, found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    StudyExplicitPoint *points = yp_calloc((size_t)n, sizeof *points);
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = yaml_seq_at(src->yd, node, i);
        points[i].pos = study_pos(src, item);
        bool ok = study_parse_settings(src, item, "a point", &points[i].n_settings, &points[i].settings, err);
        if (ok && !points[i].n_settings)
            ok = yaml_doc_error_at(src->yd, item, err, "a point needs at least one experiment key and its value");
        if (!ok) {
            study_explicit_points_free(i + 1, points);
            return false;
        }
    }
    study_explicit_points_free(s->n_points, s->points);
    s->n_points = n;
    s->points = points;
    return true;
}

// ---- where: ------------------------------------------------------------------------------------

static const char *const compare_names[] = {[STUDY_LT] = "<", [STUDY_LE] = "<=", [STUDY_EQ] = "==",
                                            [STUDY_NE] = "!=", [STUDY_GE] = ">=", [STUDY_GT] = ">"};

static bool is_operator_char(char c) { return c && strchr("<>=!", c); }

static char *trimmed_copy(const char *begin, const char *end) {
    while (begin < end && (*begin == ' ' || *begin == '\t')) begin++;
    while (end > begin && (end[-1] == ' ' || end[-1] == '\t')) end--;
    return study_printf("%.*s", (int)(end - begin), begin);
}

static bool parse_constraint(const StudySource *src, const yaml_node_t *node, StudyConstraint *out, Error *err) {
    const char *text;
    if (!yaml_node_string(src->yd, node, "a where: entry", &text, err)) return false;
    const char *op = text;
    while (*op && !is_operator_char(*op)) op++;
    if (!*op)
        return yaml_doc_error_at(src->yd, node, err, "where entry '%s' has no comparison: write 'lhs op rhs' with op one "
                                 "of < <= == != >= >", text);
    size_t op_len = 0;
    while (is_operator_char(op[op_len])) op_len++;
    int kind = -1;
    for (int k = 0; k < (int)(sizeof compare_names / sizeof *compare_names); k++)
        if (strlen(compare_names[k]) == op_len && !strncmp(op, compare_names[k], op_len)) kind = k;
    if (kind < 0)
        return yaml_doc_error_at(src->yd, node, err, "where entry '%s': '%.*s' is not a comparison; use one of < <= == != "
                                 ">= >", text, (int)op_len, op);
    for (const char *p = op + op_len; *p; p++)
        if (is_operator_char(*p))
            return yaml_doc_error_at(src->yd, node, err, "where entry '%s' has more than one comparison; write one per "
                                     "entry (all must hold)", text);
    char *lhs = trimmed_copy(text, op), *rhs = trimmed_copy(op + op_len, op + strlen(op));
    if (!*lhs || !*rhs) {
        free(lhs);
        free(rhs);
        return yaml_doc_error_at(src->yd, node, err, "where entry '%s' needs a value on each side of '%s'", text,
                                 compare_names[kind]);
    }
    *out = (StudyConstraint){yp_strdup(text), lhs, rhs, (StudyCompare)kind, study_pos(src, node)};
    return true;
}

bool study_parse_where(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err) {
    char found[160];
    if (node->type != YAML_SEQUENCE_NODE)
        return yaml_doc_error_at(src->yd, node, err, "where must be a list of comparisons such as ['world <= 4'], found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    int n = yaml_seq_len(node);
    StudyConstraint *where = yp_calloc((size_t)n + 1, sizeof *where);
    for (int i = 0; i < n; i++) {
        if (!parse_constraint(src, yaml_seq_at(src->yd, node, i), &where[i], err)) {
            study_where_free(i, where);
            return false;
        }
    }
    study_where_free(s->n_where, s->where);
    s->n_where = n;
    s->where = where;
    return true;
}

// What one side of a comparison is.
typedef enum Operand { OPERAND_DERIVED, OPERAND_AXIS, OPERAND_NUMBER, OPERAND_WORD, OPERAND_UNKNOWN_KEY } Operand;

static Operand operand_kind(const StudyConfig *s, const char *text) {
    double number;
    for (int i = 0; i < STUDY_DERIVED_COUNT; i++)
        if (!strcmp(text, study_derived_names[i])) return OPERAND_DERIVED;
    if (study_axis_index(s, text) >= 0) return OPERAND_AXIS;
    if (yaml_text_number(text, &number)) return OPERAND_NUMBER;
    // A dotted name or an experiment key is meant as a reference: a word literal has neither.
    return strchr(text, '.') || study_experiment_key(text) >= 0 ? OPERAND_UNKNOWN_KEY : OPERAND_WORD;
}

// Candidates for a reference: the derived values, then the swept keys.
static const char *reference_at(int i, const void *ctx) {
    const StudyConfig *s = ctx;
    return i < STUDY_DERIVED_COUNT ? study_derived_names[i] : s->axes[i - STUDY_DERIVED_COUNT].key;
}

static bool check_operand(const StudyConfig *s, const StudyConstraint *c, const char *text, Error *err) {
    if (operand_kind(s, text) != OPERAND_UNKNOWN_KEY) return true;
    if (study_experiment_key(text) >= 0)
        return study_error_at(c->pos, s->path, err, "where entry '%s': %s is not swept; where: compares swept keys and "
                              "world, nodes, gpus_per_node", c->text, text);
    const char *hint = study_suggest(text, STUDY_DERIVED_COUNT + s->n_axes, reference_at, s);
    if (hint) return study_error_at(c->pos, s->path, err, "where entry '%s': unknown value '%s' (did you mean '%s'?)",
                                    c->text, text, hint);
    return study_error_at(c->pos, s->path, err, "where entry '%s': unknown value '%s'; name a swept key or world, nodes, "
                          "gpus_per_node", c->text, text);
}

// An ordering needs numbers on both sides: every value of a swept key among them.
static bool check_numeric(const StudyConfig *s, const StudyConstraint *c, const char *text, Error *err) {
    Operand kind = operand_kind(s, text);
    double number;
    if (kind == OPERAND_WORD)
        return study_error_at(c->pos, s->path, err, "where entry '%s': '%s' compares numbers but '%s' is not one",
                              c->text, compare_names[c->op], text);
    if (kind != OPERAND_AXIS) return true;
    const StudyAxis *a = &s->axes[study_axis_index(s, text)];
    for (int i = 0; i < a->n_values; i++)
        if (!yaml_text_number(a->values[i].value, &number))
            return study_error_at(c->pos, s->path, err, "where entry '%s': '%s' compares numbers but %s takes the value %s",
                                  c->text, compare_names[c->op], text, a->values[i].value);
    return true;
}

// A word compared with a swept key must be one of its values: anything else is a typo.
static bool check_word_is_value(const StudyConfig *s, const StudyConstraint *c, const char *axis_key,
                                const char *word, Error *err) {
    const StudyAxis *a = &s->axes[study_axis_index(s, axis_key)];
    char values[400] = "";
    for (int i = 0; i < a->n_values; i++) {
        if (!strcmp(a->values[i].value, word)) return true;
        snprintf(values + strlen(values), sizeof values - strlen(values), "%s%s", i ? ", " : "", a->values[i].value);
    }
    return study_error_at(c->pos, s->path, err, "where entry '%s': '%s' is none of the values of %s (%s)", c->text, word,
                          axis_key, values);
}

bool study_check_where(const StudyConfig *s, Error *err) {
    for (int i = 0; i < s->n_where; i++) {
        const StudyConstraint *c = &s->where[i];
        if (!check_operand(s, c, c->lhs, err) || !check_operand(s, c, c->rhs, err)) return false;
        Operand lhs = operand_kind(s, c->lhs), rhs = operand_kind(s, c->rhs);
        bool lhs_literal = lhs == OPERAND_NUMBER || lhs == OPERAND_WORD, rhs_literal = rhs == OPERAND_NUMBER || rhs == OPERAND_WORD;
        if (lhs_literal && rhs_literal) {
            const char *word = lhs == OPERAND_WORD ? c->lhs : c->rhs;
            const char *hint = study_suggest(word, STUDY_DERIVED_COUNT + s->n_axes, reference_at, s);
            if (hint) return study_error_at(c->pos, s->path, err, "where entry '%s': unknown value '%s' (did you mean '%s'?)",
                                            c->text, word, hint);
            return study_error_at(c->pos, s->path, err, "where entry '%s' names no swept key and none of world, nodes, "
                                  "gpus_per_node", c->text);
        }
        bool ordering = c->op != STUDY_EQ && c->op != STUDY_NE;
        if (ordering && (!check_numeric(s, c, c->lhs, err) || !check_numeric(s, c, c->rhs, err))) return false;
        if (!ordering && lhs == OPERAND_AXIS && rhs == OPERAND_WORD && !check_word_is_value(s, c, c->lhs, c->rhs, err))
            return false;
        if (!ordering && rhs == OPERAND_AXIS && lhs == OPERAND_WORD && !check_word_is_value(s, c, c->rhs, c->lhs, err))
            return false;
    }
    return true;
}

// ---- cluster: nodes and device -----------------------------------------------------------------

enum { STUDY_MAX_NODE_COUNTS = 256 };

#define RANGE_INT(n, field, lo) \
    {.name = n, .type = STUDY_KEY_INT, .offset = offsetof(StudyNodeRange, field), .min = lo, .max = 1 << 20}
static const StudyKey range_keys[] = {
    RANGE_INT("cluster.nodes.from", from, 1),
    RANGE_INT("cluster.nodes.to", to, 1),
    RANGE_INT("cluster.nodes.factor", factor, 2),
};
const StudyKeyTable study_range_keys = {range_keys, sizeof range_keys / sizeof *range_keys};

bool study_parse_nodes(const StudySource *src, yaml_node_t *node, StudyCluster *c, Error *err) {
    char found[160];
    int64_t *counts = yp_calloc(STUDY_MAX_NODE_COUNTS, sizeof *counts);
    int n = 0;
    if (node->type == YAML_SEQUENCE_NODE && yaml_seq_len(node) > 0) {
        if (yaml_seq_len(node) > STUDY_MAX_NODE_COUNTS) {
            free(counts);
            return yaml_doc_error_at(src->yd, node, err, "cluster.nodes lists %d node counts; at most %d", yaml_seq_len(node),
                                     STUDY_MAX_NODE_COUNTS);
        }
        for (; n < yaml_seq_len(node); n++) {
            yaml_node_t *item = yaml_seq_at(src->yd, node, n);
            bool ok = yaml_node_int(src->yd, item, "a node count", &counts[n], err);
            if (ok && (counts[n] < 1 || counts[n] > 1 << 20))
                ok = yaml_doc_error_at(src->yd, item, err, "a node count must be between 1 and %d, found %lld", 1 << 20,
                                       (long long)counts[n]);
            for (int k = 0; ok && k < n; k++)
                if (counts[k] == counts[n])
                    ok = yaml_doc_error_at(src->yd, item, err, "cluster.nodes lists %lld twice", (long long)counts[n]);
            if (!ok) {
                free(counts);
                return false;
            }
        }
    } else if (node->type == YAML_MAPPING_NODE) {
        StudyNodeRange r = {.factor = 2};
        StudyPos origins[sizeof range_keys / sizeof *range_keys] = {{0}};
        if (!study_apply_mapping(src, &study_range_keys, &r, origins, node, "cluster.nodes", err)) {
            free(counts);
            return false;
        }
        const char *problem = !origins[0].line || !origins[1].line ? "needs from and to, such as {from: 1, to: 128, factor: 2}"
                              : r.to < r.from                     ? "ends before it starts (to < from)"
                                                                  : NULL;
        if (problem) {
            free(counts);
            return yaml_doc_error_at(src->yd, node, err, "the range cluster.nodes %s", problem);
        }
        for (int64_t v = r.from; v <= r.to && n < STUDY_MAX_NODE_COUNTS; v *= r.factor) counts[n++] = v;
    } else {
        free(counts);
        return yaml_doc_error_at(src->yd, node, err, "cluster.nodes must be a non-empty list of node counts such as [1, 2, "
                                 "4] or a range {from: 1, to: 16, factor: 2}, found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    }
    free(c->nodes);
    c->nodes = counts;
    c->n_nodes = n;
    return true;
}

#define DEVICE_KEY(n, t, field, hi, unit) \
    {.name = n, .type = t, .offset = offsetof(StudyDevice, field), .max = hi, .min_open = true, .scale = unit}
static const StudyKey device_keys[] = {
    DEVICE_KEY("cluster.device.name", STUDY_KEY_STRING, name, 0, 0),
    DEVICE_KEY("cluster.device.peak_tflops", STUDY_KEY_NUMBER, peak_flops, 1e6, 1e12),
    DEVICE_KEY("cluster.device.efficiency", STUDY_KEY_NUMBER, efficiency, 1, 1),
    DEVICE_KEY("cluster.device.memory_gb", STUDY_KEY_GIB, memory_bytes, 1e6, 0),
    DEVICE_KEY("cluster.device.memory_tbps", STUDY_KEY_NUMBER, memory_bytes_per_s, 1e3, 1e12),
};
const StudyKeyTable study_device_keys = {device_keys, sizeof device_keys / sizeof *device_keys};

bool study_parse_device(const StudySource *src, yaml_node_t *node, StudyDevice *d, Error *err) {
    char found[160];
    StudyDevice spec = {0};
    if (yaml_node_is_plain(node) && *yaml_node_text(node)) {
        spec.name = yp_strdup(yaml_node_text(node));
        if (!cost_device_find(spec.name)) {
            free(spec.name);
            return yaml_doc_error_at(src->yd, node, err, "cluster.device '%s' is not a device the planner knows; describe "
                                     "it: {name: %s, peak_tflops: ..., efficiency: ..., memory_gb: ...}",
                                     yaml_node_text(node), yaml_node_text(node));
        }
    } else if (node->type == YAML_MAPPING_NODE) {
        StudyPos origins[sizeof device_keys / sizeof *device_keys] = {{0}};
        bool ok = study_apply_mapping(src, &study_device_keys, &spec, origins, node, "cluster.device", err);
        if (ok && !spec.name) ok = yaml_doc_error_at(src->yd, node, err, "cluster.device needs a name");
        if (ok && !spec.peak_flops && !cost_device_find(spec.name))
            ok = yaml_doc_error_at(src->yd, node, err, "cluster.device '%s' is not a device the planner knows: give its "
                                   "peak_tflops", spec.name);
        if (ok && origins[2].line && !spec.peak_flops)
            ok = study_error_at(origins[2], src->s->path, err, "cluster.device.efficiency scales peak_tflops; give "
                                "peak_tflops too");
        if (!ok) {
            free(spec.name);
            return false;
        }
        if (spec.peak_flops && !origins[2].line) spec.efficiency = 1;
    } else {
        return yaml_doc_error_at(src->yd, node, err, "cluster.device must be a device name (cpu, h100) or a mapping "
                                 "{name, peak_tflops, efficiency, memory_gb}, found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    }
    free(d->name);
    spec.profile = d->profile;  // cluster.profile is a key of its own
    *d = spec;
    return true;
}

// ---- cost: -------------------------------------------------------------------------------------

#define COST_RATE(n, field, hi) \
    {.name = n, .type = STUDY_KEY_NUMBER, .offset = offsetof(StudyPlatform, field), .max = hi, .min_open = true}
#define COST_AMOUNT(n, field, hi) \
    {.name = n, .type = STUDY_KEY_NUMBER, .offset = offsetof(StudyPlatform, field), .max = hi}
static const StudyKey cost_keys[] = {
    {.name = "cost.name", .type = STUDY_KEY_STRING, .offset = offsetof(StudyPlatform, name)},
    COST_RATE("cost.on_demand", on_demand_per_gpu_hour, 1e6),
    COST_RATE("cost.spot", spot_per_gpu_hour, 1e6),
    COST_RATE("cost.local.purchase_per_gpu", purchase_per_gpu, 1e9),
    COST_RATE("cost.local.years", years, 100),
    COST_RATE("cost.local.utilisation", utilisation, 1),
    COST_AMOUNT("cost.local.watts_per_gpu", watts_per_gpu, 1e5),
    COST_AMOUNT("cost.local.electricity_per_kwh", electricity_per_kwh, 1e3),
};
enum { COST_NAME, COST_ON_DEMAND, COST_SPOT, COST_PURCHASE, COST_YEARS, COST_UTILISATION, COST_N_KEYS };
_Static_assert(COST_N_KEYS <= sizeof cost_keys / sizeof *cost_keys, "cost key indices");
const StudyKeyTable study_cost_keys = {cost_keys, sizeof cost_keys / sizeof *cost_keys};

static bool parse_platform(const StudySource *src, yaml_node_t *node, StudyPlatform *p, Error *err) {
    StudyPos origins[sizeof cost_keys / sizeof *cost_keys] = {{0}};
    if (!study_apply_mapping(src, &study_cost_keys, p, origins, node, "cost", err)) return false;
    if (!p->name) return yaml_doc_error_at(src->yd, node, err, "a cost entry needs a name");
    if (!yaml_map_get(src->yd, node, "local")) {
        p->kind = STUDY_PLATFORM_CLOUD;
        if (!origins[COST_ON_DEMAND].line)
            return yaml_doc_error_at(src->yd, node, err, "cost entry '%s' needs on_demand (its price per GPU-hour) or "
                                     "local: {purchase_per_gpu, years, ...}", p->name);
        return true;
    }
    p->kind = STUDY_PLATFORM_LOCAL;
    int cloud_key = origins[COST_ON_DEMAND].line ? COST_ON_DEMAND : origins[COST_SPOT].line ? COST_SPOT : -1;
    if (cloud_key >= 0)
        return study_error_at(origins[cloud_key], src->s->path, err, "cost entry '%s' is priced per GPU-hour or as a local "
                              "cluster, not both: remove %s or local", p->name, cloud_key == COST_SPOT ? "spot" : "on_demand");
    if (!origins[COST_PURCHASE].line || !origins[COST_YEARS].line)
        return yaml_doc_error_at(src->yd, node, err, "cost entry '%s': a local cluster needs purchase_per_gpu and years",
                                 p->name);
    if (!origins[COST_UTILISATION].line) p->utilisation = 1;
    return true;
}

bool study_parse_cost(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err) {
    char found[160];
    int n = yaml_seq_len(node);
    if (node->type != YAML_SEQUENCE_NODE || !n)
        return yaml_doc_error_at(src->yd, node, err, "cost must be a non-empty list of platforms such as [{name: cloud, "
                                 "on_demand: 3.5}], found %s", yaml_node_describe_found(node, found, sizeof found));
    StudyPlatform *platforms = yp_calloc((size_t)n, sizeof *platforms);
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = yaml_seq_at(src->yd, node, i);
        bool ok = parse_platform(src, item, &platforms[i], err);
        for (int k = 0; ok && k < i; k++)
            if (!strcmp(platforms[k].name, platforms[i].name))
                ok = yaml_doc_error_at(src->yd, item, err, "two cost entries are named '%s'", platforms[i].name);
        if (!ok) {
            study_platforms_free(i + 1, platforms);
            return false;
        }
    }
    study_platforms_free(s->n_platforms, s->platforms);
    s->n_platforms = n;
    s->platforms = platforms;
    return true;
}

// ---- freeing -----------------------------------------------------------------------------------

void study_setting_clear(StudySetting *st) {
    free(st->key);
    free(st->value);
}

void study_axis_clear(StudyAxis *axis) {
    free(axis->key);
    study_settings_free(axis->n_values, axis->values);
}

void study_settings_free(int n, StudySetting *settings) {
    for (int i = 0; i < n; i++) study_setting_clear(&settings[i]);
    free(settings);
}

void study_axes_free(int n, StudyAxis *axes) {
    for (int i = 0; i < n; i++) study_axis_clear(&axes[i]);
    free(axes);
}

void study_explicit_points_free(int n, StudyExplicitPoint *points) {
    for (int i = 0; i < n; i++) study_settings_free(points[i].n_settings, points[i].settings);
    free(points);
}

void study_where_free(int n, StudyConstraint *where) {
    for (int i = 0; i < n; i++) {
        free(where[i].text);
        free(where[i].lhs);
        free(where[i].rhs);
    }
    free(where);
}

void study_platforms_free(int n, StudyPlatform *platforms) {
    for (int i = 0; i < n; i++) free(platforms[i].name);
    free(platforms);
}
