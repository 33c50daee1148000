// The study file: its key table, the walk over a mapping with it, "key=value" overrides, the checks
// that need the whole file (and the base experiment), and study_config_same. The values with a
// structure of their own are parsed in study_values.c.
#include "framework/study/study.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/config/config.h"
#include "framework/config/experiment_plan.h"
#include "framework/core/json.h"
#include "framework/core/numfmt.h"
#include "framework/core/path.h"
#include "framework/study/study_internal.h"

const char *const study_mode_names[STUDY_MODE_COUNT] = {"simulate", "measure", "both"};

#define OFF(field) offsetof(StudyConfig, field)
#define INT(n, field, lo, hi) {.name = n, .type = STUDY_KEY_INT, .offset = OFF(field), .min = lo, .max = hi}
// A number in [lo, hi] of the file's unit, held as value x unit.
#define NUMBER(n, field, lo, hi, unit) \
    {.name = n, .type = STUDY_KEY_NUMBER, .offset = OFF(field), .min = lo, .max = hi, .scale = unit}
// A number above 0 and at most hi.
#define RATE(n, field, hi, unit) \
    {.name = n, .type = STUDY_KEY_NUMBER, .offset = OFF(field), .max = hi, .min_open = true, .scale = unit}
#define OF_TYPE(n, t, field) {.name = n, .type = t, .offset = OFF(field)}

static const StudyKey main_keys[] = {
    {.name = "name", .type = STUDY_KEY_STRING, .offset = OFF(name), .resume_free = true},
    OF_TYPE("experiment", STUDY_KEY_PATH, experiment),
    OF_TYPE("set", STUDY_KEY_SET, set),
    OF_TYPE("sweep", STUDY_KEY_SWEEP, axes),
    OF_TYPE("points", STUDY_KEY_POINTS, points),
    OF_TYPE("where", STUDY_KEY_WHERE, where),
    INT("batch_per_gpu", batch_per_gpu, 1, 1 << 20),
    OF_TYPE("mode", STUDY_KEY_MODE, mode),
    INT("measure.steps", measure.steps, 1, 1e6),
    INT("measure.warmup", measure.warmup, 0, 1e6),
    INT("measure.takes", measure.takes, 1, 100),
    OF_TYPE("measure.launcher", STUDY_KEY_STRING, measure.launcher),
    {.name = "measure.time_limit", .type = STUDY_KEY_NUMBER, .offset = OFF(measure.time_limit_s), .max = 1e7,
     .min_open = true, .resume_free = true},
    OF_TYPE("cluster.nodes", STUDY_KEY_NODES, cluster),
    INT("cluster.gpus_per_node", cluster.gpus_per_node, 1, 4096),
    OF_TYPE("cluster.device", STUDY_KEY_DEVICE, cluster.device),
    OF_TYPE("cluster.profile", STUDY_KEY_PATH, cluster.device.profile),
    RATE("cluster.intra.bandwidth_gbps", cluster.intra.bandwidth_bytes_per_s, 1e6, 1e9),
    NUMBER("cluster.intra.latency_us", cluster.intra.latency_s, 0, 1e7, 1e-6),
    RATE("cluster.inter.bandwidth_gbps", cluster.inter.bandwidth_bytes_per_s, 1e6, 1e9),
    NUMBER("cluster.inter.latency_us", cluster.inter.latency_s, 0, 1e7, 1e-6),
    INT("cluster.nics_per_node", cluster.nics_per_node, 1, 64),
    RATE("cluster.loader_images_per_s", cluster.loader_images_per_s, 1e9, 1),
    NUMBER("cluster.cores_per_node", cluster.cores_per_node, 0, 1 << 20, 1),
    NUMBER("cluster.wait_cost", cluster.wait_cost, 0, 0.9, 1),
    INT("cluster.threads_per_rank", cluster.threads_per_rank, 1, 4096),
    OF_TYPE("cluster.calibrate", STUDY_KEY_BOOL, cluster.calibrate),
    INT("train_for.epochs", train_for.epochs, 1, 100000),
    INT("train_for.images", train_for.images, 1, 1e12),
    OF_TYPE("train_for.dataset", STUDY_KEY_PATH, train_for.dataset),
    NUMBER("train_for.val_s_per_epoch", train_for.val_s_per_epoch, 0, 1e9, 1),
    OF_TYPE("cost", STUDY_KEY_COST, platforms),
    {.name = "out", .type = STUDY_KEY_STRING, .offset = OFF(out), .resume_free = true},
};
enum { STUDY_N_MAIN_KEYS = sizeof main_keys / sizeof *main_keys };
const StudyKeyTable study_main_keys = {main_keys, STUDY_N_MAIN_KEYS};

// Every table, in the order STUDY.md documents them.
static const StudyKeyTable *const all_tables[] = {&study_main_keys, &study_device_keys, &study_range_keys,
                                                  &study_cost_keys};

int study_key_count(void) {
    int n = 0;
    for (size_t t = 0; t < sizeof all_tables / sizeof *all_tables; t++) n += all_tables[t]->n;
    return n;
}

const char *study_key_name(int i) {
    for (size_t t = 0; t < sizeof all_tables / sizeof *all_tables; t++) {
        if (i < all_tables[t]->n) return all_tables[t]->keys[i].name;
        i -= all_tables[t]->n;
    }
    yp_fatal("study key index out of range");
}

static int key_index(const StudyKeyTable *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->keys[i].name, name)) return i;
    return -1;
}

// Whether `name` is a section of the table: a prefix of some key followed by '.'.
static bool is_section(const StudyKeyTable *t, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < t->n; i++)
        if (!strncmp(t->keys[i].name, name, n) && t->keys[i].name[n] == '.') return true;
    return false;
}

static const char *table_key_name(int i, const void *t) { return ((const StudyKeyTable *)t)->keys[i].name; }

StudyPos study_pos(const StudySource *src, const yaml_node_t *node) {
    return (StudyPos){yaml_node_line(node), yaml_node_col(node), src->file};
}

bool study_error_at(StudyPos pos, const char *path, Error *err, const char *fmt, ...) {
    char text[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!pos.line || !pos.file) return error_at(err, path, 1, 1, "%s", text);
    return error_at(err, pos.file, pos.line, pos.col, "%s", text);
}

static bool parse_number(const StudySource *src, const StudyKey *key, const yaml_node_t *node, double *out,
                         Error *err) {
    if (!yaml_node_number(src->yd, node, key->name, out, err)) return false;
    if (key->min_open && !(*out > key->min && *out <= key->max))
        return yaml_doc_error_at(src->yd, node, err, "%s must be above %g and at most %g, found %s", key->name,
                                 key->min, key->max, yaml_node_text(node));
    if (!(*out >= key->min && *out <= key->max))
        return yaml_doc_error_at(src->yd, node, err, "%s must be between %g and %g, found %s", key->name, key->min,
                                 key->max, yaml_node_text(node));
    return true;
}

// A path value: resolved against the source's folder, and the file must be readable now.
static bool parse_path(const StudySource *src, const StudyKey *key, const yaml_node_t *node, char **slot, Error *err) {
    const char *text;
    if (!yaml_node_string(src->yd, node, key->name, &text, err)) return false;
    if (!*text) return yaml_doc_error_at(src->yd, node, err, "%s must not be empty", key->name);
    char *resolved = path_join(src->base_dir, text, PATH_CLEAN_DOTDOT);
    if (access(resolved, R_OK)) {
        int e = errno;
        free(resolved);
        const char *relative_to = src->file == src->s->path ? " (relative to the study file's folder)"
                                                             : " (relative to the working directory)";
        return yaml_doc_error_at(src->yd, node, err, "%s: cannot open '%s'%s: %s", key->name, text,
                                 *text == '/' ? "" : relative_to, strerror(e));
    }
    free(*slot);
    *slot = resolved;
    return true;
}

static const char *mode_name_at(int i, const void *ctx) {
    (void)ctx;
    return study_mode_names[i];
}

static bool parse_mode(const StudySource *src, const StudyKey *key, const yaml_node_t *node, StudyMode *out,
                       Error *err) {
    const char *text = yaml_node_text(node);
    for (int i = 0; text && i < STUDY_MODE_COUNT; i++)
        if (!strcmp(text, study_mode_names[i])) return *out = (StudyMode)i, true;
    char found[160];
    const char *hint = text ? study_suggest(text, STUDY_MODE_COUNT, mode_name_at, NULL) : NULL;
    if (hint)
        return yaml_doc_error_at(src->yd, node, err, "%s must be one of simulate | measure | both, found %s (did you mean "
                                 "'%s'?)", key->name, yaml_node_describe_found(node, found, sizeof found), hint);
    return yaml_doc_error_at(src->yd, node, err, "%s must be one of simulate | measure | both, found %s", key->name,
                             yaml_node_describe_found(node, found, sizeof found));
}

static bool parse_value(const StudySource *src, const StudyKey *key, void *base, yaml_node_t *node, Error *err) {
    void *field = (char *)base + key->offset;
    YamlDoc *yd = src->yd;
    double scale = key->scale ? key->scale : 1;
    switch (key->type) {
    case STUDY_KEY_INT: {
        int64_t v;
        if (!yaml_node_int(yd, node, key->name, &v, err)) return false;
        if (v < (int64_t)key->min || v > (int64_t)key->max)
            return yaml_doc_error_at(yd, node, err, "%s must be between %lld and %lld, found %lld", key->name,
                                     (long long)key->min, (long long)key->max, (long long)v);
        *(int64_t *)field = v;
        return true;
    }
    case STUDY_KEY_BOOL: {
        char found[160];
        const char *text = yaml_node_is_plain(node) ? yaml_node_text(node) : NULL;
        if (!text || !yaml_text_bool(text, (bool *)field))
            return yaml_doc_error_at(yd, node, err, "%s must be true or false, found %s", key->name,
                                     yaml_node_describe_found(node, found, sizeof found));
        return true;
    }
    case STUDY_KEY_NUMBER: {
        double v;
        if (!parse_number(src, key, node, &v, err)) return false;
        *(double *)field = v * scale;
        return true;
    }
    case STUDY_KEY_GIB: {
        double v;
        if (!parse_number(src, key, node, &v, err)) return false;
        *(int64_t *)field = (int64_t)llround(v * (double)(1LL << 30));
        return true;
    }
    case STUDY_KEY_STRING: {
        const char *text;
        if (!yaml_node_string(yd, node, key->name, &text, err)) return false;
        if (!*text) return yaml_doc_error_at(yd, node, err, "%s must not be empty", key->name);
        free(*(char **)field);
        *(char **)field = yp_strdup(text);
        return true;
    }
    case STUDY_KEY_PATH: return parse_path(src, key, node, field, err);
    case STUDY_KEY_MODE: return parse_mode(src, key, node, field, err);
    case STUDY_KEY_SET: return study_parse_settings(src, node, "set", &src->s->n_set, &src->s->set, err);
    case STUDY_KEY_SWEEP: return study_parse_sweep(src, node, src->s, err);
    case STUDY_KEY_POINTS: return study_parse_points(src, node, src->s, err);
    case STUDY_KEY_WHERE: return study_parse_where(src, node, src->s, err);
    case STUDY_KEY_NODES: return study_parse_nodes(src, node, field, err);
    case STUDY_KEY_DEVICE: return study_parse_device(src, node, field, err);
    case STUDY_KEY_COST: return study_parse_cost(src, node, src->s, err);
    case STUDY_KEY_TYPE_COUNT: break;
    }
    yp_fatal("unhandled study key type %d", (int)key->type);
}

static bool unknown_key(const StudySource *src, const StudyKeyTable *t, const yaml_node_t *at, const char *name,
                        Error *err) {
    const char *hint = study_suggest(name, t->n, table_key_name, t);
    if (hint) return yaml_doc_error_at(src->yd, at, err, "unknown key '%s' (did you mean '%s'?)", name, hint);
    return yaml_doc_error_at(src->yd, at, err, "unknown key '%s'; see experiments/STUDY.md for the keys", name);
}

bool study_apply_mapping(const StudySource *src, const StudyKeyTable *t, void *base, StudyPos *origins,
                         yaml_node_t *map, const char *section, Error *err) {
    char found[160];
    if (map->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(src->yd, map, err, "%s must be a mapping of keys, found %s",
                                 *section ? section : "a study file", yaml_node_describe_found(map, found, sizeof found));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key_node = yaml_doc_node(src->yd, p->key), *value = yaml_doc_node(src->yd, p->value);
        const char *key_text = yaml_node_text(key_node);
        if (!key_text) return yaml_doc_error_at(src->yd, key_node, err, "keys must be plain names");
        char name[160];
        snprintf(name, sizeof name, "%s%s%s", section, *section ? "." : "", key_text);
        int i = key_index(t, name);
        if (i >= 0) {
            origins[i] = study_pos(src, value);
            if (!parse_value(src, &t->keys[i], base, value, err)) return false;
        } else if (is_section(t, name)) {
            if (!study_apply_mapping(src, t, base, origins, value, name, err)) return false;
        } else {
            return unknown_key(src, t, key_node, name, err);
        }
    }
    return true;
}

// ---- "key=value" overrides ---------------------------------------------------------------------

// The state of one study_config_load.
typedef struct StudyLoad {
    StudyConfig *s;
    StudyPos origins[STUDY_N_MAIN_KEYS];  // where each key's value was given (line 0: its default)
    char cwd[PATH_MAX];
    ExperimentConfig *base;  // the base experiment as its file says (owned)
    YamlDoc *resolved;       // base written back with every key, for the value checks (owned)
} StudyLoad;

static StudyPos origin_of(const StudyLoad *ld, const char *name) {
    int i = key_index(&study_main_keys, name);
    YP_CHECK(i >= 0);
    return ld->origins[i];
}

// "set.<experiment key>=value" and "sweep.<experiment key>=[...]": one entry, replacing the
// entry of that key or added after the file's.
static bool apply_entry_override(const StudySource *src, const char *name, yaml_node_t *value, Error *err) {
    StudyConfig *s = src->s;
    if (!strncmp(name, "set.", 4)) {
        StudySetting st;
        if (!study_parse_setting(src, NULL, name + 4, value, "set", &st, err)) return false;
        int at = 0;
        while (at < s->n_set && strcmp(s->set[at].key, st.key)) at++;
        if (at == s->n_set) s->set = yp_realloc(s->set, (size_t)++s->n_set * sizeof *s->set);
        else study_setting_clear(&s->set[at]);
        s->set[at] = st;
        return true;
    }
    StudyAxis axis;
    if (!study_parse_axis(src, NULL, name + 6, value, &axis, err)) return false;
    int at = study_axis_index(s, axis.key);
    if (at < 0) {
        s->axes = yp_realloc(s->axes, (size_t)(s->n_axes + 1) * sizeof *s->axes);
        at = s->n_axes++;
    } else {
        study_axis_clear(&s->axes[at]);
    }
    s->axes[at] = axis;
    return true;
}

// One override "key=value": the value is YAML text of its own, positioned as "--set <key>".
static bool apply_override(StudyLoad *ld, const char *override, Error *err) {
    StudyConfig *s = ld->s;
    const char *eq = strchr(override, '=');
    if (!eq || eq == override)
        return error_set(err, "--set %s: expected key=value, e.g. --set measure.steps=3 or --set set.train.epochs=2",
                         override);
    char name[160];
    snprintf(name, sizeof name, "%.*s", (int)(eq - override), override);
    s->override_labels = yp_realloc(s->override_labels, (size_t)(s->n_override_labels + 1) * sizeof(char *));
    char *label = s->override_labels[s->n_override_labels++] = study_printf("--set %s", name);
    YamlDoc *yd = NULL;
    if (!yaml_doc_parse_text(label, eq + 1, &yd, err)) return false;
    StudySource src = {s, yd, label, ld->cwd};
    yaml_node_t *root = yaml_doc_root(yd);
    int i = key_index(&study_main_keys, name);
    bool ok;
    if (i >= 0) {
        ld->origins[i] = study_pos(&src, root);
        ok = parse_value(&src, &main_keys[i], s, root, err);
    } else if (!strncmp(name, "set.", 4) || !strncmp(name, "sweep.", 6)) {
        ok = apply_entry_override(&src, name, root, err);
    } else if (is_section(&study_main_keys, name)) {
        ok = study_apply_mapping(&src, &study_main_keys, s, ld->origins, root, name, err);
    } else {
        const char *hint = study_suggest(name, STUDY_N_MAIN_KEYS, table_key_name, &study_main_keys);
        ok = hint ? error_set(err, "--set %s: unknown key '%s' (did you mean '%s'?)", override, name, hint)
                  : error_set(err, "--set %s: unknown key '%s'; see experiments/STUDY.md for the keys", override, name);
    }
    yaml_doc_destroy(yd);
    return ok;
}

// ---- checks of the whole file ------------------------------------------------------------------

// The base experiment's value of `key` as an override "key=value", or NULL when the resolved file
// leaves the key out (an absent synth: block).
static char *base_value_arg(YamlDoc *resolved, const char *key) {
    yaml_node_t *node = yaml_doc_root(resolved);
    const char *dot = strchr(key, '.');
    if (dot) {
        char section[64];
        snprintf(section, sizeof section, "%.*s", (int)(dot - key), key);
        node = yaml_map_get(resolved, node, section);
    }
    node = node ? yaml_map_get(resolved, node, dot ? dot + 1 : key) : NULL;
    if (!node) return NULL;
    char *text = study_node_text(resolved, node);
    char *arg = study_printf("%s=%s", key, text);
    free(text);
    return arg;
}

// Whether one experiment value is valid on its own (type, range, choices). It is applied to the base
// experiment and then the key is set back to the base's own value: config_load applies overrides in
// order and stops at the first one it cannot parse, and only then checks keys against each other, so
// a value that fits only some combinations (micro-batches that divide some batches) passes here and
// is judged point by point when the points are expanded.
static bool check_experiment_value(const StudyLoad *ld, const StudySetting *st, Error *err) {
    char *args[2] = {study_setting_arg(st), base_value_arg(ld->resolved, st->key)};
    ExperimentConfig *cfg = NULL;
    Error e = {0};
    bool ok = config_load(ld->s->experiment, args[1] ? 2 : 1, args, &cfg, &e);
    config_destroy(cfg);
    free(args[0]);
    free(args[1]);
    if (!ok) return study_error_at(st->pos, ld->s->path, err, "%s", study_message_text(e.message));
    return true;
}

// Loads the base experiment and checks every value of set:, sweep: and points: against it.
static bool check_experiment(StudyLoad *ld, Error *err) {
    StudyConfig *s = ld->s;
    if (!s->experiment)
        return error_at(err, s->path, 1, 1, "missing key 'experiment': the experiment file whose keys the points change");
    if (!config_load(s->experiment, 0, NULL, &ld->base, err)) return false;
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    YP_CHECK(f);
    config_write_yaml(ld->base, f);
    YP_CHECK(fclose(f) == 0);
    bool ok = yaml_doc_parse_text("the resolved base experiment", text, &ld->resolved, err);
    free(text);
    YP_CHECK(ok);  // config_write_yaml writes what config_load reads back
    for (int i = 0; i < s->n_set; i++)
        if (!check_experiment_value(ld, &s->set[i], err)) return false;
    for (int a = 0; a < s->n_axes; a++)
        for (int i = 0; i < s->axes[a].n_values; i++)
            if (!check_experiment_value(ld, &s->axes[a].values[i], err)) return false;
    for (int p = 0; p < s->n_points; p++)
        for (int i = 0; i < s->points[p].n_settings; i++)
            if (!check_experiment_value(ld, &s->points[p].settings[i], err)) return false;
    return true;
}

// A key the study derives for every point (parallel.replicas from cluster.nodes, train.batch from
// batch_per_gpu) may not be given as well.
static bool check_not_derived(const StudyConfig *s, const char *key, StudyPos pos, Error *err) {
    if (s->cluster.n_nodes && !strcmp(key, "parallel.replicas"))
        return study_error_at(pos, s->path, err, "parallel.replicas is derived from cluster.nodes for every point "
                              "(world / parallel.stages); give one or the other");
    if (s->batch_per_gpu && !strcmp(key, "train.batch"))
        return study_error_at(pos, s->path, err, "train.batch is derived from batch_per_gpu for every point "
                              "(batch_per_gpu x world); give one or the other");
    return true;
}

static bool check_conflicts(const StudyConfig *s, Error *err) {
    for (int i = 0; i < s->n_set; i++) {
        if (!check_not_derived(s, s->set[i].key, s->set[i].pos, err)) return false;
        if (study_axis_index(s, s->set[i].key) >= 0)
            return study_error_at(s->set[i].pos, s->path, err, "%s is both set and swept: the sweep's values replace it "
                                  "in every point; remove it from set", s->set[i].key);
    }
    for (int a = 0; a < s->n_axes; a++)
        if (!check_not_derived(s, s->axes[a].key, s->axes[a].pos, err)) return false;
    for (int p = 0; p < s->n_points; p++)
        for (int i = 0; i < s->points[p].n_settings; i++)
            if (!check_not_derived(s, s->points[p].settings[i].key, s->points[p].settings[i].pos, err)) return false;
    return true;
}

// Whether `word` is a program: a path to an executable file, or found on PATH.
static bool program_exists(const char *word) {
    if (strchr(word, '/')) return !access(word, X_OK);
    const char *dirs = getenv("PATH");
    for (const char *p = dirs ? dirs : "/usr/bin:/bin"; p;) {
        const char *end = strchr(p, ':');
        int len = end ? (int)(end - p) : (int)strlen(p);
        char candidate[PATH_MAX];
        Error ignored;
        // An empty entry is the working directory.
        if (path_format(candidate, sizeof candidate, &ignored, "%.*s/%s", len ? len : 1, len ? p : ".", word) &&
            !access(candidate, X_OK))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

// The launcher template: {world} (and {nodes}) only, and when points are measured its program exists.
static bool check_launcher(const StudyLoad *ld, Error *err) {
    const StudyConfig *s = ld->s;
    StudyPos at = origin_of(ld, "measure.launcher");
    const char *t = s->measure.launcher;
    bool has_world = false;
    for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
        const char *close = strchr(p, '}');
        int n = close ? (int)(close - p) + 1 : (int)strlen(p);
        if (n == 7 && !strncmp(p, "{world}", 7)) has_world = true;
        else if (n != 7 || strncmp(p, "{nodes}", 7))
            return study_error_at(at, s->path, err, "measure.launcher: '%.*s' is no placeholder; use {world} and {nodes}",
                                  n, p);
    }
    if (!has_world)
        return study_error_at(at, s->path, err, "measure.launcher must contain {world}, the number of processes to start, "
                              "such as 'srun -n {world}'");
    if (s->mode == STUDY_MODE_SIMULATE) return true;
    char word[PATH_MAX];
    snprintf(word, sizeof word, "%s", t + strspn(t, " \t"));
    word[strcspn(word, " \t")] = '\0';
    if (program_exists(word)) return true;
    if (at.line)
        return study_error_at(at, s->path, err, "measure.launcher: '%s' is not found on PATH (mode %s runs every point "
                              "with it)", word, study_mode_names[s->mode]);
    return study_error_at(origin_of(ld, "mode"), s->path, err, "mode %s runs every point with measure.launcher ('%s' by "
                          "default) but '%s' is not found on PATH; install it or set measure.launcher",
                          study_mode_names[s->mode], t, word);
}

// Whether any key of `section` ("cluster.") was given; *first gets the first one's position.
static bool section_given(const StudyLoad *ld, const char *section, StudyPos *first) {
    for (int i = 0; i < STUDY_N_MAIN_KEYS; i++)
        if (!strncmp(main_keys[i].name, section, strlen(section)) && ld->origins[i].line) {
            if (first) *first = ld->origins[i];
            return true;
        }
    return false;
}

static bool check_train_for(const StudyLoad *ld, Error *err) {
    StudyConfig *s = ld->s;
    if (!origin_of(ld, "train_for.epochs").line) {
        // The experiment's train.epochs, as set: leaves it.
        s->train_for.epochs = ld->base->train.epochs;
        for (int i = 0; i < s->n_set; i++)
            if (!strcmp(s->set[i].key, "train.epochs")) YP_CHECK(yaml_text_int(s->set[i].value, &s->train_for.epochs));
    }
    StudyPos at, dataset = origin_of(ld, "train_for.dataset");
    if (!section_given(ld, "train_for.", &at)) return true;
    s->train_for.present = true;
    if (!origin_of(ld, "train_for.images").line && !dataset.line)
        return study_error_at(at, s->path, err, "train_for needs images (training images per epoch) or dataset (a dataset "
                              "YAML to count them in)");
    if (origin_of(ld, "train_for.images").line && dataset.line)
        return study_error_at(dataset, s->path, err, "train_for: give images or dataset, not both");
    return true;
}

// ---- loading -----------------------------------------------------------------------------------

static void set_defaults(StudyConfig *s) {
    s->mode = STUDY_MODE_SIMULATE;
    s->measure = (StudyMeasure){.steps = 6, .warmup = 2, .takes = 1, .launcher = yp_strdup("mpirun -np {world} --oversubscribe"),
                                .time_limit_s = 600};
    s->cluster = (StudyCluster){.gpus_per_node = 8, .nics_per_node = 1};
}

// Everything that needs the whole file and its overrides, then the defaults that depend on them.
static bool finish(StudyLoad *ld, Error *err) {
    StudyConfig *s = ld->s;
    s->cluster.present = section_given(ld, "cluster.", &s->cluster.pos);
    if (!s->name) s->name = path_stem(s->path);  // the file's base name without its extension
    if (!s->out) s->out = study_printf("studies/%s", s->name);
    if (!check_experiment(ld, err) || !check_conflicts(s, err) || !study_check_where(s, err) || !check_launcher(ld, err) ||
        !check_train_for(ld, err))
        return false;
    // The planner's default device for the experiment (as `yolopipe plan` picks it).
    if (!s->cluster.device.name) s->cluster.device.name = yp_strdup(experiment_plan_default_device(ld->base));
    return true;
}

bool study_config_load(const char *path, int n_overrides, char *const *overrides, StudyConfig **out, Error *err) {
    *out = NULL;
    StudyLoad ld = {0};
    if (!getcwd(ld.cwd, sizeof ld.cwd)) yp_fatal("getcwd failed: %s", strerror(errno));
    YamlDoc *yd = NULL;
    if (!yaml_doc_load(path, &yd, err)) return false;
    StudyConfig *s = ld.s = yp_calloc(1, sizeof *s);
    s->path = yp_strdup(path);
    set_defaults(s);
    char *absolute = path_join(ld.cwd, path, PATH_CLEAN_DOTDOT);
    char *folder = path_dirname(absolute);
    StudySource src = {s, yd, s->path, folder};
    bool ok = study_apply_mapping(&src, &study_main_keys, s, ld.origins, yaml_doc_root(yd), "", err);
    for (int i = 0; ok && i < n_overrides; i++) ok = apply_override(&ld, overrides[i], err);
    if (ok) ok = finish(&ld, err);
    free(absolute);
    free(folder);
    yaml_doc_destroy(yd);
    yaml_doc_destroy(ld.resolved);
    config_destroy(ld.base);
    if (!ok) {
        study_config_destroy(s);
        return false;
    }
    *out = s;
    return true;
}

void study_config_destroy(StudyConfig *s) {
    if (!s) return;
    free(s->path);
    free(s->name);
    free(s->experiment);
    study_settings_free(s->n_set, s->set);
    study_axes_free(s->n_axes, s->axes);
    study_explicit_points_free(s->n_points, s->points);
    study_where_free(s->n_where, s->where);
    free(s->measure.launcher);
    free(s->cluster.nodes);
    free(s->cluster.device.name);
    free(s->cluster.device.profile);
    free(s->train_for.dataset);
    study_platforms_free(s->n_platforms, s->platforms);
    free(s->out);
    for (int i = 0; i < s->n_override_labels; i++) free(s->override_labels[i]);
    free(s->override_labels);
    free(s);
}

// ---- what decides the results: the fingerprint and study_config_same ----------------------------

static void write_string(FILE *f, const char *text) {
    if (text) json_write_string(f, text);
    else fputs("null", f);
}

static void write_settings(FILE *f, int n, const StudySetting *settings) {
    for (int i = 0; i < n; i++) fprintf(f, "%s=%s;", settings[i].key, settings[i].value);
}

// The value of key k in s as stable text: equal texts, equal values.
static void write_key_value(const StudyKey *k, const StudyConfig *s, FILE *f) {
    const void *field = (const char *)s + k->offset;
    switch (k->type) {
    case STUDY_KEY_INT:
    case STUDY_KEY_GIB: fprintf(f, "%lld", (long long)*(const int64_t *)field); return;
    case STUDY_KEY_BOOL: fputs(*(const bool *)field ? "true" : "false", f); return;
    case STUDY_KEY_NUMBER: {
        char number[32];
        fputs(format_double_shortest(number, sizeof number, *(const double *)field), f);
        return;
    }
    case STUDY_KEY_STRING:
    case STUDY_KEY_PATH: write_string(f, *(char *const *)field); return;
    case STUDY_KEY_MODE: fputs(study_mode_names[s->mode], f); return;
    case STUDY_KEY_SET: write_settings(f, s->n_set, s->set); return;
    case STUDY_KEY_SWEEP:
        for (int a = 0; a < s->n_axes; a++) {
            fprintf(f, "%s:", s->axes[a].key);
            write_settings(f, s->axes[a].n_values, s->axes[a].values);
        }
        return;
    case STUDY_KEY_POINTS:
        for (int p = 0; p < s->n_points; p++) {
            write_settings(f, s->points[p].n_settings, s->points[p].settings);
            fputc('|', f);
        }
        return;
    case STUDY_KEY_WHERE:
        for (int i = 0; i < s->n_where; i++) fprintf(f, "%s %d %s;", s->where[i].lhs, (int)s->where[i].op, s->where[i].rhs);
        return;
    case STUDY_KEY_NODES:
        for (int i = 0; i < s->cluster.n_nodes; i++) fprintf(f, "%lld,", (long long)s->cluster.nodes[i]);
        return;
    case STUDY_KEY_DEVICE: {
        const StudyDevice *d = &s->cluster.device;
        write_string(f, d->name);
        fprintf(f, " %.17g %.17g %lld %.17g", d->peak_flops, d->efficiency, (long long)d->memory_bytes,
                d->memory_bytes_per_s);
        return;
    }
    case STUDY_KEY_COST:
        for (int i = 0; i < s->n_platforms; i++) {
            const StudyPlatform *p = &s->platforms[i];
            write_string(f, p->name);
            fprintf(f, " %d %.17g %.17g %.17g %.17g %.17g %.17g %.17g;", (int)p->kind, p->on_demand_per_gpu_hour,
                    p->spot_per_gpu_hour, p->purchase_per_gpu, p->years, p->utilisation, p->watts_per_gpu,
                    p->electricity_per_kwh);
        }
        return;
    case STUDY_KEY_TYPE_COUNT: break;
    }
    yp_fatal("unhandled study key type %d", (int)k->type);
}

static char *key_value_text(const StudyKey *k, const StudyConfig *s) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    YP_CHECK(f);
    write_key_value(k, s, f);
    YP_CHECK(fclose(f) == 0);
    return text;
}

void study_config_write_fingerprint(const StudyConfig *s, FILE *f) {
    fprintf(f, "cluster: %s\ntrain_for: %s\n", s->cluster.present ? "given" : "none", s->train_for.present ? "given" : "none");
    for (int i = 0; i < STUDY_N_MAIN_KEYS; i++) {
        if (main_keys[i].resume_free) continue;
        char *text = key_value_text(&main_keys[i], s);
        fprintf(f, "%s: %s\n", main_keys[i].name, text);
        free(text);
    }
}
bool study_config_same(const StudyConfig *a, const StudyConfig *b, const char **key) {
    *key = NULL;
    if (a->cluster.present != b->cluster.present) *key = "cluster";
    else if (a->train_for.present != b->train_for.present) *key = "train_for";
    for (int i = 0; !*key && i < STUDY_N_MAIN_KEYS; i++) {
        if (main_keys[i].resume_free) continue;
        char *ta = key_value_text(&main_keys[i], a), *tb = key_value_text(&main_keys[i], b);
        if (strcmp(ta, tb)) *key = main_keys[i].name;
        free(ta);
        free(tb);
    }
    return !*key;
}
