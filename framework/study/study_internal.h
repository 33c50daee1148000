// What the study folder's files share and no one else needs: the key tables of the study file and
// the walk over a mapping with one (study_config.c), the parsers of the values that are more than a
// scalar (study_values.c), and the text helpers the point expansion uses too (study_points.c).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "framework/config/config.h"
#include "framework/core/error.h"
#include "framework/core/yaml_doc.h"
#include "framework/study/study.h"

typedef enum StudyKeyType {
    STUDY_KEY_INT,
    STUDY_KEY_BOOL,     // bool
    STUDY_KEY_NUMBER,   // double: the file's value x scale
    STUDY_KEY_GIB,      // int64_t bytes: the file's value in GB (2^30 bytes, as GPU memory is quoted)
    STUDY_KEY_STRING,   // char *
    STUDY_KEY_PATH,     // char *, resolved against the source's folder; the file must be readable
    STUDY_KEY_MODE,     // StudyMode
    STUDY_KEY_SET,      // StudyConfig.set: a mapping of dotted experiment keys to values
    STUDY_KEY_SWEEP,    // StudyConfig.axes: a mapping of dotted experiment keys to lists of values
    STUDY_KEY_POINTS,   // StudyConfig.points: a list of mappings like set:
    STUDY_KEY_WHERE,    // StudyConfig.where: a list of "lhs op rhs" strings
    STUDY_KEY_NODES,    // StudyCluster: nodes as a list, or a range of study_range_keys
    STUDY_KEY_DEVICE,   // StudyDevice: a name, or a mapping of study_device_keys
    STUDY_KEY_COST,     // StudyConfig.platforms: a list of mappings of study_cost_keys
    STUDY_KEY_TYPE_COUNT
} StudyKeyType;

typedef struct StudyKey {
    const char *name;  // dotted from the file's top ("cluster.intra.latency_us", "cost.local.years")
    StudyKeyType type;
    size_t offset;     // into the struct the table fills
    double min, max;   // inclusive range of a number in the file's units ...
    bool min_open;     // ... min itself excluded (a rate or a price that must be positive)
    double scale;      // the file's unit in SI (GB/s: 1e9); 0 reads as 1
    bool resume_free;  // may change on --resume (does not decide results): the fingerprint skips it
} StudyKey;

typedef struct StudyKeyTable {
    const StudyKey *keys;
    int n;
} StudyKeyTable;

extern const StudyKeyTable study_main_keys;    // StudyConfig
extern const StudyKeyTable study_device_keys;  // StudyDevice: cluster.device as a mapping
extern const StudyKeyTable study_range_keys;   // StudyNodeRange: cluster.nodes as a range
extern const StudyKeyTable study_cost_keys;    // StudyPlatform: one entry of cost:

// cluster.nodes as a range: from, from x factor, ... up to `to`.
typedef struct StudyNodeRange {
    int64_t from, to, factor;
} StudyNodeRange;

// The values a where: constraint may name besides swept keys, computed for each point.
typedef enum StudyDerived { STUDY_DERIVED_WORLD, STUDY_DERIVED_NODES, STUDY_DERIVED_GPUS_PER_NODE, STUDY_DERIVED_COUNT } StudyDerived;
extern const char *const study_derived_names[STUDY_DERIVED_COUNT];

// Where the values being parsed come from.
typedef struct StudySource {
    StudyConfig *s;
    YamlDoc *yd;
    const char *file;      // what positions record: s->path, or an override's label (owned by s)
    const char *base_dir;  // where relative paths resolve: the study file's folder, or the working directory
} StudySource;

// Parses every key of mapping `map`, whose keys are prefixed by `section` ("" at the top), into
// `base` as table t says, recording where each key's value was in origins[key index] (t->n entries).
bool study_apply_mapping(const StudySource *src, const StudyKeyTable *t, void *base, StudyPos *origins,
                         yaml_node_t *map, const char *section, Error *err);
StudyPos study_pos(const StudySource *src, const yaml_node_t *node);
// "file:line:col: ..." at pos, or at path:1:1 for a default. Returns false.
bool study_error_at(StudyPos pos, const char *path, Error *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

// The values with a structure of their own (study_values.c). Each replaces what it fills.
bool study_parse_settings(const StudySource *src, yaml_node_t *map, const char *what, int *n, StudySetting **out,
                          Error *err);
// One experiment override `key` = `value`; key_node is where the key was written (NULL: an override's
// own key, reported against src->file).
bool study_parse_setting(const StudySource *src, const yaml_node_t *key_node, const char *key, yaml_node_t *value,
                         const char *what, StudySetting *out, Error *err);
bool study_parse_axis(const StudySource *src, const yaml_node_t *key_node, const char *key, yaml_node_t *values,
                      StudyAxis *out, Error *err);
bool study_parse_sweep(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err);
bool study_parse_points(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err);
bool study_parse_where(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err);
bool study_parse_nodes(const StudySource *src, yaml_node_t *node, StudyCluster *c, Error *err);
bool study_parse_device(const StudySource *src, yaml_node_t *node, StudyDevice *d, Error *err);
bool study_parse_cost(const StudySource *src, yaml_node_t *node, StudyConfig *s, Error *err);
// The checks of where: that need the final axes: each side names a swept key or a derived value or is
// a literal; at least one side names something; ordering compares numbers; a word compared with a
// swept key is one of its values.
bool study_check_where(const StudyConfig *s, Error *err);

// Each frees what its item owns (not the item itself).
void study_setting_clear(StudySetting *st);
void study_axis_clear(StudyAxis *axis);
// Each frees what its items own and then the array.
void study_settings_free(int n, StudySetting *settings);
void study_axes_free(int n, StudyAxis *axes);
void study_explicit_points_free(int n, StudyExplicitPoint *points);
void study_where_free(int n, StudyConstraint *where);
void study_platforms_free(int n, StudyPlatform *platforms);

// The axis of swept key `name`, or -1.
int study_axis_index(const StudyConfig *s, const char *name);
// The index of experiment key `name` (config_key_name), or -1.
int study_experiment_key(const char *name);
// The candidate closest to `name` by edit distance when close enough to be a likely typo, else NULL.
const char *study_suggest(const char *name, int n, const char *(*candidate)(int i, const void *ctx), const void *ctx);
const char *study_suggest_experiment_key(const char *name);

// A node as YAML text that parses back to the same value: a scalar's text (plain) or a JSON string
// (quoted), a collection in flow style ("[[0, 9], [10, 22]]"). The caller frees it.
char *study_node_text(YamlDoc *yd, const yaml_node_t *node);
// A config_load message without its "file:line:col: " prefix: what is wrong, to be reported at the
// study file's own position of the value.
const char *study_message_text(const char *message);
// "key=value", as config_load's overrides take it. The caller frees it.
char *study_setting_arg(const StudySetting *st);

// The value point p's settings give `key` (the last one wins, as in config_load), or NULL.
const char *study_point_value(const StudyPoint *p, const char *key);
// The base experiment loaded with point p's settings (config_load's user errors as they are). The
// caller destroys *out.
bool study_point_config_load(const StudyConfig *s, const StudyPoint *p, ExperimentConfig **out, Error *err);
// printf into a new string. The caller frees it.
char *study_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
