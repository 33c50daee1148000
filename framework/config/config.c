#include "framework/config/config.h"

#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/core/json.h"
#include "framework/core/numfmt.h"
#include "framework/core/path.h"
#include "framework/core/yaml_doc.h"

const char *const config_task_names[CONFIG_TASK_COUNT] = {"detect", "classify"};
const char *const config_optimizer_names[CONFIG_OPTIMIZER_COUNT] = {"auto", "SGD", "AdamW"};
static const char *const rank_order_names[RANK_ORDER_COUNT] = {"pipeline-first", "replica-first"};
static const char *const transport_names[CONFIG_TRANSPORT_COUNT] = {"auto", "mpi", "nccl"};
static const char *const backend_names[CONFIG_BACKEND_COUNT] = {"auto", "cpu", "cuda"};
static const char *const render_names[CONFIG_RENDER_COUNT] = {"auto", "host", "backend"};
const char *const config_precision_names[CONFIG_PRECISION_COUNT] = {"fp32", "tf32", "bf16", "fp16"};

int64_t config_accumulate(int64_t nbs, int64_t batch) {
    YP_CHECK(nbs > 0 && batch > 0);
    int64_t a = (int64_t)nearbyint((double)nbs / (double)batch);
    return a > 1 ? a : 1;
}

DType config_precision_activation_type(ConfigPrecision p) {
    return p == CONFIG_PRECISION_BF16 ? DTYPE_BF16 : p == CONFIG_PRECISION_FP16 ? DTYPE_F16 : DTYPE_F32;
}

typedef enum KeyType {
    KEY_INT,
    KEY_FLOAT,
    KEY_BOOL,
    KEY_STRING,     // char *, NULL allowed when the default is NULL (null in YAML)
    KEY_PATH,       // char *, resolved against the experiment file's folder
    KEY_ENUM,       // int, one of `choices`
    KEY_PARTITION,  // ConfigPartition
    KEY_SYNTH,      // ConfigSynth: a mapping of its own keys
    KEY_TYPE_COUNT
} KeyType;

typedef struct ConfigKey {
    const char *name;  // "section.key" or "key"
    KeyType type;
    size_t offset;     // into ExperimentConfig
    double min, max;   // inclusive range for KEY_INT and KEY_FLOAT
    const char *const *choices;
    int n_choices;
} ConfigKey;

#define OFF(field) offsetof(ExperimentConfig, field)
#define INT(name, field, lo, hi) {name, KEY_INT, OFF(field), lo, hi, NULL, 0}
#define FLOAT(name, field, lo, hi) {name, KEY_FLOAT, OFF(field), lo, hi, NULL, 0}
#define BOOL(name, field) {name, KEY_BOOL, OFF(field), 0, 0, NULL, 0}
#define ENUM(name, field, table) {name, KEY_ENUM, OFF(field), 0, 0, table, (int)(sizeof table / sizeof *table)}

static const ConfigKey config_keys[] = {
    {"name", KEY_STRING, OFF(name), 0, 0, NULL, 0},
    ENUM("task", task, config_task_names),
    {"model", KEY_PATH, OFF(model), 0, 0, NULL, 0},
    {"scale", KEY_STRING, OFF(scale), 0, 0, NULL, 0},
    {"data", KEY_PATH, OFF(data), 0, 0, NULL, 0},
    {"synth", KEY_SYNTH, OFF(synth), 0, 0, NULL, 0},
    INT("train.epochs", train.epochs, 1, 100000),
    INT("train.max_steps", train.max_steps, 0, 1e12),
    INT("train.max_skipped_steps", train.max_skipped_steps, 1, 1e9),
    INT("train.batch", train.batch, 1, 1 << 20),
    INT("train.imgsz", train.imgsz, 32, 8192),
    FLOAT("train.multiscale", train.multiscale, 0, 0.9),
    ENUM("train.optimizer", train.optimizer, config_optimizer_names),
    FLOAT("train.lr0", train.lr0, 0, 10),
    FLOAT("train.lrf", train.lrf, 0, 1),
    BOOL("train.cos_lr", train.cos_lr),
    FLOAT("train.momentum", train.momentum, 0, 0.9999),
    FLOAT("train.weight_decay", train.weight_decay, 0, 1),
    FLOAT("train.warmup_epochs", train.warmup_epochs, 0, 1000),
    FLOAT("train.warmup_momentum", train.warmup_momentum, 0, 0.9999),
    FLOAT("train.warmup_bias_lr", train.warmup_bias_lr, 0, 10),
    INT("train.nbs", train.nbs, 1, 1 << 20),
    FLOAT("train.box", train.box, 0, 1000),
    FLOAT("train.cls", train.cls, 0, 1000),
    FLOAT("train.dfl", train.dfl, 0, 1000),
    INT("train.close_mosaic", train.close_mosaic, 0, 100000),
    INT("train.seed", train.seed, 0, (double)INT32_MAX),
    INT("train.workers", train.workers, 0, 256),
    FLOAT("augment.hsv_h", augment.hsv_h, 0, 0.5),
    FLOAT("augment.hsv_s", augment.hsv_s, 0, 1),
    FLOAT("augment.hsv_v", augment.hsv_v, 0, 1),
    FLOAT("augment.translate", augment.translate, 0, 0.9),
    FLOAT("augment.scale", augment.scale, 0, 0.9),
    FLOAT("augment.fliplr", augment.fliplr, 0, 1),
    FLOAT("augment.mosaic", augment.mosaic, 0, 1),
    ENUM("augment.render", augment.render, render_names),
    INT("val.period", val.period, 0, 100000),
    FLOAT("val.conf", val.conf, 0, 1),
    FLOAT("val.iou", val.iou, 0, 1),
    INT("val.max_det", val.max_det, 1, 100000),
    INT("parallel.stages", parallel.stages, 1, CONFIG_MAX_STAGES),
    INT("parallel.replicas", parallel.replicas, 1, 1 << 16),
    INT("parallel.micro_batches", parallel.micro_batches, 1, 1 << 16),
    ENUM("parallel.schedule", parallel.schedule, sched_kind_names),
    INT("parallel.chunks", parallel.chunks, 1, 64),
    {"parallel.partition", KEY_PARTITION, OFF(parallel.partition), 0, 0, NULL, 0},
    ENUM("parallel.rank_order", parallel.rank_order, rank_order_names),
    ENUM("parallel.transport", parallel.transport, transport_names),
    INT("parallel.recv_timeout", parallel.recv_timeout, 0, 1 << 20),
    ENUM("device.backend", device.backend, backend_names),
    ENUM("device.precision", device.precision, config_precision_names),
    BOOL("device.deterministic", device.deterministic),
    {"output.dir", KEY_STRING, OFF(output.dir), 0, 0, NULL, 0},
    BOOL("output.trace", output.trace),
    BOOL("output.plots", output.plots),
};
enum { CONFIG_N_KEYS = sizeof config_keys / sizeof *config_keys };

int config_key_count(void) { return CONFIG_N_KEYS; }
const char *config_key_name(int i) { return config_keys[i].name; }
bool config_key_is_path(int i) { return config_keys[i].type == KEY_PATH; }

// Defaults: Ultralytics' (cfg/default.yaml) for the training keys, one process for the parallel ones.
static void config_set_defaults(ExperimentConfig *cfg) {
    cfg->task = CONFIG_TASK_DETECT;
    cfg->synth = (ConfigSynth){.synth = synth_config_default()};
    cfg->train = (TrainConfig){.epochs = 100, .max_skipped_steps = 100, .batch = 16, .imgsz = 640, .optimizer = CONFIG_OPTIMIZER_AUTO,
                               .lr0 = 0.01, .lrf = 0.01, .momentum = 0.937, .weight_decay = 5e-4,
                               .warmup_epochs = 3.0, .warmup_momentum = 0.8, .warmup_bias_lr = 0.1, .nbs = 64,
                               .box = 7.5, .cls = 0.5, .dfl = 1.5, .close_mosaic = 10, .seed = 0, .workers = 2};
    cfg->augment = (AugmentConfig){.hsv_h = 0.015, .hsv_s = 0.7, .hsv_v = 0.4, .translate = 0.1, .scale = 0.5,
                                   .fliplr = 0.5, .mosaic = 1.0};
    cfg->val = (ValConfig){.period = 1, .max_det = 300, .conf = 0.001, .iou = 0.7};
    cfg->parallel = (ParallelConfig){.stages = 1, .replicas = 1, .micro_batches = 1, .chunks = 1,
                                     .schedule = SCHED_KIND_1F1B, .rank_order = RANK_ORDER_PIPELINE_FIRST,
                                     .recv_timeout = 300};
    cfg->device = (DeviceConfig){.backend = CONFIG_BACKEND_AUTO, .precision = CONFIG_PRECISION_FP32, .deterministic = true};
    cfg->output.dir = yp_strdup("runs");
    cfg->output.plots = true;
}

// Where relative paths are resolved: the experiment file's folder for values in the file, the
// working directory for --set values.
typedef struct ValueSource {
    YamlDoc *yd;
    const char *file;      // what origins record: cfg->path or a "--set <key>" label owned by cfg
    const char *base_dir;  // absolute
    const char *what;      // the dotted key name, for messages
} ValueSource;

static bool parse_int_in(const ValueSource *src, const yaml_node_t *node, int64_t min, int64_t max, int64_t *out,
                         Error *err) {
    if (!yaml_node_int(src->yd, node, src->what, out, err)) return false;
    if (*out < min || *out > max)
        return yaml_doc_error_at(src->yd, node, err, "%s must be between %lld and %lld, found %lld", src->what,
                                 (long long)min, (long long)max, (long long)*out);
    return true;
}

// parallel.partition: `auto`, [[first, last], ...] or {balance: [n, ...]}.
static bool parse_partition(const ValueSource *src, yaml_node_t *node, ConfigPartition *out, Error *err) {
    YamlDoc *yd = src->yd;
    const char *text = yaml_node_text(node);
    const char *expected = "`auto`, a list of [first, last] layer ranges such as [[0, 9], [10, 22]], or {balance: "
                           "[10, 13]}";
    char found[160];
    if (text && !strcmp(text, "auto")) {
        *out = (ConfigPartition){.kind = PARTITION_KIND_AUTO};
        return true;
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        ConfigPartition p = {.kind = PARTITION_KIND_RANGES, .n = yaml_seq_len(node)};
        if (p.n < 1 || p.n > CONFIG_MAX_STAGES)
            return yaml_doc_error_at(yd, node, err, "%s needs 1 to %d ranges, found %d", src->what, CONFIG_MAX_STAGES,
                                     p.n);
        for (int i = 0; i < p.n; i++) {
            yaml_node_t *range = yaml_seq_at(yd, node, i);
            if (yaml_seq_len(range) != 2)
                return yaml_doc_error_at(yd, range, err, "%s: each range is [first, last], found %s", src->what,
                                         yaml_node_describe_found(range, found, sizeof found));
            for (int k = 0; k < 2; k++)
                if (!parse_int_in(src, yaml_seq_at(yd, range, k), 0, INT32_MAX, &p.ranges[i][k], err)) return false;
            if (p.ranges[i][1] < p.ranges[i][0])
                return yaml_doc_error_at(yd, range, err, "%s: range [%lld, %lld] ends before it starts", src->what,
                                         (long long)p.ranges[i][0], (long long)p.ranges[i][1]);
            if (i > 0 && p.ranges[i][0] != p.ranges[i - 1][1] + 1)
                return yaml_doc_error_at(yd, range, err,
                                         "%s: ranges must be contiguous; this one should start at layer %lld", src->what,
                                         (long long)p.ranges[i - 1][1] + 1);
        }
        if (p.ranges[0][0] != 0)
            return yaml_doc_error_at(yd, node, err, "%s: the first range must start at layer 0", src->what);
        *out = p;
        return true;
    }
    yaml_node_t *balance = yaml_map_get(yd, node, "balance");
    if (node->type == YAML_MAPPING_NODE && balance && node->data.mapping.pairs.top - node->data.mapping.pairs.start == 1) {
        ConfigPartition p = {.kind = PARTITION_KIND_BALANCE, .n = yaml_seq_len(balance)};
        if (balance->type != YAML_SEQUENCE_NODE || p.n < 1 || p.n > CONFIG_MAX_STAGES)
            return yaml_doc_error_at(yd, balance, err, "%s.balance must be a list of 1 to %d layer counts, found %s",
                                     src->what, CONFIG_MAX_STAGES, yaml_node_describe_found(balance, found, sizeof found));
        for (int i = 0; i < p.n; i++)
            if (!parse_int_in(src, yaml_seq_at(yd, balance, i), 1, INT32_MAX, &p.balance[i], err)) return false;
        *out = p;
        return true;
    }
    return yaml_doc_error_at(yd, node, err, "%s must be %s; found %s", src->what, expected,
                             yaml_node_describe_found(node, found, sizeof found));
}

static bool parse_synth(const ValueSource *src, yaml_node_t *node, ConfigSynth *out, Error *err) {
    ConfigSynth s = {.present = true};
    if (!synth_config_from_yaml(src->yd, node, &s.synth, err)) return false;
    s.task_given = yaml_map_get(src->yd, node, "task") != NULL;
    *out = s;
    return true;
}

static bool parse_value(const ConfigKey *key, const ValueSource *src, yaml_node_t *node, ExperimentConfig *cfg,
                        Error *err) {
    cfg->origins[key - config_keys] = (ConfigOrigin){src->file, yaml_node_line(node), yaml_node_col(node)};
    void *field = (char *)cfg + key->offset;
    YamlDoc *yd = src->yd;
    char found[160];
    switch (key->type) {
    case KEY_INT:
        return parse_int_in(src, node, (int64_t)key->min, (int64_t)key->max, field, err);
    case KEY_FLOAT: {
        double v;
        if (!yaml_node_number(yd, node, key->name, &v, err)) return false;
        if (!(v >= key->min && v <= key->max))
            return yaml_doc_error_at(yd, node, err, "%s must be between %g and %g, found %s", key->name, key->min,
                                     key->max, yaml_node_text(node));
        // + 0.0 turns -0.0 into 0.0: written as "-0" it would read back as the integer 0, and a
        // resumed run would find the key changed.
        *(double *)field = v + 0.0;
        return true;
    }
    case KEY_BOOL: {
        const char *text = yaml_node_text(node);
        if (!yaml_node_is_plain(node) || !yaml_text_bool(text, field))
            return yaml_doc_error_at(yd, node, err, "%s must be true or false, found %s", key->name,
                                     yaml_node_describe_found(node, found, sizeof found));
        return true;
    }
    case KEY_STRING:
    case KEY_PATH: {
        char **slot = field;
        const char *text = yaml_node_text(node);
        if (key->type == KEY_STRING && !strcmp(key->name, "scale") && yaml_node_is_plain(node) && yaml_text_is_null(text)) {
            free(*slot);
            *slot = NULL;  // the model's first scale
            return true;
        }
        if (!yaml_node_string(yd, node, key->name, &text, err)) return false;
        if (!*text) return yaml_doc_error_at(yd, node, err, "%s must not be empty", key->name);
        free(*slot);
        *slot = key->type == KEY_PATH ? path_join(src->base_dir, text, PATH_CLEAN_DOTDOT) : yp_strdup(text);
        return true;
    }
    case KEY_ENUM: {
        const char *text = yaml_node_text(node);
        for (int i = 0; text && i < key->n_choices; i++)
            if (!strcmp(text, key->choices[i])) return *(int *)field = i, true;
        char list[256] = "";
        for (int i = 0; i < key->n_choices; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " | " : "", key->choices[i]);
        return yaml_doc_error_at(yd, node, err, "%s must be one of %s, found %s", key->name, list,
                                 yaml_node_describe_found(node, found, sizeof found));
    }
    case KEY_PARTITION:
        return parse_partition(src, node, field, err);
    case KEY_SYNTH:
        return parse_synth(src, node, field, err);
    case KEY_TYPE_COUNT:
        break;
    }
    yp_fatal("unhandled config key type %d", (int)key->type);
}

static const ConfigKey *config_key_find(const char *name) {
    for (int i = 0; i < CONFIG_N_KEYS; i++)
        if (!strcmp(config_keys[i].name, name)) return &config_keys[i];
    return NULL;
}

// A hint for a mistyped key: a known key of the same section (or a top-level key) sharing the
// longest prefix with it.
static const char *config_key_suggest(const char *name) {
    const char *best = NULL;
    size_t best_len = 1;
    for (int i = 0; i < CONFIG_N_KEYS; i++) {
        const char *k = config_keys[i].name;
        size_t n = 0;
        while (k[n] && k[n] == name[n]) n++;
        const char *dot = strchr(name, '.');
        bool same_section = dot ? !strncmp(k, name, (size_t)(dot - name) + 1) : !strchr(k, '.');
        if (same_section && n > best_len) best = k, best_len = n;
    }
    return best;
}

static bool unknown_key(YamlDoc *yd, const yaml_node_t *at, const char *name, Error *err) {
    const char *hint = config_key_suggest(name);
    if (hint) return yaml_doc_error_at(yd, at, err, "unknown key '%s' (did you mean '%s'?)", name, hint);
    return yaml_doc_error_at(yd, at, err, "unknown key '%s'; see experiments/SCHEMA.md for the keys", name);
}

static bool is_section(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < CONFIG_N_KEYS; i++)
        if (!strncmp(config_keys[i].name, name, n) && config_keys[i].name[n] == '.') return true;
    return false;
}

// Applies every key of mapping `map`, whose keys are prefixed by `section` ("" at the top).
static bool apply_mapping(YamlDoc *yd, yaml_node_t *map, const char *section, const char *base_dir,
                          ExperimentConfig *cfg, Error *err) {
    char found[160];
    if (map->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(yd, map, err, "%s must be a mapping of keys, found %s",
                                 *section ? section : "an experiment file", yaml_node_describe_found(map, found, sizeof found));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key_node = yaml_doc_node(yd, p->key), *value = yaml_doc_node(yd, p->value);
        const char *key_text = yaml_node_text(key_node);
        if (!key_text) return yaml_doc_error_at(yd, key_node, err, "keys must be plain names");
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", section, *section ? "." : "", key_text);
        const ConfigKey *key = config_key_find(name);
        if (key) {
            ValueSource src = {yd, cfg->path, base_dir, key->name};
            if (!parse_value(key, &src, value, cfg, err)) return false;
        } else if (!*section && is_section(name)) {
            if (!apply_mapping(yd, value, name, base_dir, cfg, err)) return false;
        } else {
            return unknown_key(yd, key_node, name, err);
        }
    }
    return true;
}

// One --set "section.key=value": the value is parsed as YAML text of its own.
static bool apply_override(const char *override, const char *cwd, ExperimentConfig *cfg, Error *err) {
    const char *eq = strchr(override, '=');
    if (!eq || eq == override)
        return error_set(err, "--set %s: expected section.key=value, e.g. --set train.lr0=0.02", override);
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - override), override);
    const ConfigKey *key = config_key_find(name);
    if (!key) {
        const char *hint = config_key_suggest(name);
        if (hint) return error_set(err, "--set %s: unknown key '%s' (did you mean '%s'?)", override, name, hint);
        return error_set(err, "--set %s: unknown key '%s'; see experiments/SCHEMA.md for the keys", override, name);
    }
    char label[160];
    snprintf(label, sizeof label, "--set %s", name);
    cfg->override_labels = yp_realloc(cfg->override_labels, (size_t)(cfg->n_override_labels + 1) * sizeof(char *));
    char *owned_label = cfg->override_labels[cfg->n_override_labels++] = yp_strdup(label);
    YamlDoc *yd = NULL;
    if (!yaml_doc_parse_text(label, eq + 1, &yd, err)) return false;
    ValueSource src = {yd, owned_label, cwd, key->name};
    bool ok = parse_value(key, &src, yaml_doc_root(yd), cfg, err);
    yaml_doc_destroy(yd);
    return ok;
}

bool config_error_at(const ExperimentConfig *cfg, const char *key, Error *err, const char *fmt, ...) {
    char text[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const ConfigKey *k = config_key_find(key);
    YP_CHECK(k);
    const ConfigOrigin *o = &cfg->origins[k - config_keys];
    if (!o->line) return error_at(err, cfg->path, 1, 1, "%s (%s is at its default)", text, key);
    return error_at(err, o->file, o->line, o->col, "%s", text);
}

static bool config_key_set(const ExperimentConfig *cfg, const char *key) {
    return cfg->origins[config_key_find(key) - config_keys].line > 0;
}

// The run's folder is <output.dir>/<name>: one folder name, which a repeated run extends with a
// number ("name2"), so a little under the file systems' 255-byte limit.
enum { CONFIG_NAME_MAX_BYTES = 240 };

static bool config_check_name(const ExperimentConfig *cfg, Error *err) {
    const char *name = cfg->name;
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return config_error_at(cfg, "name", err,
                               "name '%.80s' is not a folder name (no '/', '.' or '..'): the run's folder must be "
                               "inside output.dir", name);
    size_t n = strlen(name);
    if (n > CONFIG_NAME_MAX_BYTES)
        return config_error_at(cfg, "name", err, "name longer than %d bytes (%zu): it names the run's folder",
                               CONFIG_NAME_MAX_BYTES, n);
    return true;
}

// Checks that involve several keys, reported at the value that most likely needs changing.
static bool config_check(const ExperimentConfig *cfg, Error *err) {
    if (!config_check_name(cfg, err)) return false;
    if (!cfg->model) return error_at(err, cfg->path, 1, 1, "missing key 'model': the Ultralytics model YAML to train");
    if (!cfg->data)
        return error_at(err, cfg->path, 1, 1, "missing key 'data': the dataset YAML (generated by a synth: block when missing)");
    if (cfg->train.imgsz % 32)
        return config_error_at(cfg, "train.imgsz", err, "train.imgsz must be a multiple of 32 (the largest stride), found %lld; use %lld",
                               (long long)cfg->train.imgsz, (long long)(cfg->train.imgsz + 31) / 32 * 32);
    int64_t per_step = cfg->parallel.replicas * cfg->parallel.micro_batches;
    if (cfg->train.batch % per_step)
        return config_error_at(cfg, config_key_set(cfg, "train.batch")            ? "train.batch"
                                    : config_key_set(cfg, "parallel.micro_batches") ? "parallel.micro_batches"
                                                                                    : "parallel.replicas",
                               err,
                               "train.batch (%lld) must be a multiple of parallel.replicas x parallel.micro_batches (%lld x %lld)",
                               (long long)cfg->train.batch, (long long)cfg->parallel.replicas,
                               (long long)cfg->parallel.micro_batches);
    const ConfigPartition *p = &cfg->parallel.partition;
    if (p->kind != PARTITION_KIND_AUTO && p->n != cfg->parallel.stages * cfg->parallel.chunks)
        return config_error_at(cfg, "parallel.partition", err,
                               "parallel.partition gives %d stage%s but parallel.stages x parallel.chunks is %lld", p->n,
                               p->n == 1 ? "" : "s", (long long)(cfg->parallel.stages * cfg->parallel.chunks));
    SynthTask synth_task = cfg->task == CONFIG_TASK_CLASSIFY ? SYNTH_TASK_CLASSIFY : SYNTH_TASK_DETECT;
    if (cfg->synth.present && cfg->synth.task_given && cfg->synth.synth.task != synth_task)
        return config_error_at(cfg, "synth", err, "synth.task is %s but the experiment's task is %s",
                               synth_task_names[cfg->synth.synth.task], config_task_names[cfg->task]);
    if (cfg->parallel.chunks > 1 && cfg->parallel.schedule != SCHED_KIND_INTERLEAVED)
        return config_error_at(cfg, "parallel.chunks", err, "parallel.chunks > 1 needs parallel.schedule: interleaved");
    return true;
}

// The experiment file's folder as an absolute path.
static char *absolute_dir_of(const char *path, const char *cwd) {
    char *abs = path_join(cwd, path, PATH_CLEAN_DOTDOT);
    char *dir = path_dirname(abs);
    free(abs);
    return dir;
}

// The default run name: the experiment file's base name without its extension.
bool config_load(const char *path, int n_overrides, char *const *overrides, ExperimentConfig **out, Error *err) {
    *out = NULL;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) yp_fatal("getcwd failed: %s", strerror(errno));
    YamlDoc *yd = NULL;
    if (!yaml_doc_load(path, &yd, err)) return false;
    ExperimentConfig *cfg = yp_calloc(1, sizeof *cfg);
    cfg->path = yp_strdup(path);
    cfg->origins = yp_calloc(CONFIG_N_KEYS, sizeof *cfg->origins);
    config_set_defaults(cfg);
    char *base_dir = absolute_dir_of(path, cwd);
    bool ok = apply_mapping(yd, yaml_doc_root(yd), "", base_dir, cfg, err);
    for (int i = 0; ok && i < n_overrides; i++) ok = apply_override(overrides[i], cwd, cfg, err);
    if (ok && !cfg->name) cfg->name = path_stem(path);
    if (ok && cfg->synth.present && !cfg->synth.task_given)
        cfg->synth.synth.task = cfg->task == CONFIG_TASK_CLASSIFY ? SYNTH_TASK_CLASSIFY : SYNTH_TASK_DETECT;
    if (ok) ok = config_check(cfg, err);
    free(base_dir);
    yaml_doc_destroy(yd);
    if (!ok) {
        config_destroy(cfg);
        return false;
    }
    *out = cfg;
    return true;
}

void config_destroy(ExperimentConfig *cfg) {
    if (!cfg) return;
    free(cfg->path);
    free(cfg->name);
    free(cfg->model);
    free(cfg->scale);
    free(cfg->data);
    free(cfg->output.dir);
    free(cfg->origins);
    for (int i = 0; i < cfg->n_override_labels; i++) free(cfg->override_labels[i]);
    free(cfg->override_labels);
    free(cfg);
}

static void write_value(const ConfigKey *key, const ExperimentConfig *cfg, FILE *f) {
    const void *field = (const char *)cfg + key->offset;
    switch (key->type) {
    case KEY_INT:
        fprintf(f, "%lld", (long long)*(const int64_t *)field);
        return;
    case KEY_FLOAT: {
        char number[32];
        fputs(format_double_shortest(number, sizeof number, *(const double *)field), f);
        return;
    }
    case KEY_BOOL:
        fprintf(f, "%s", *(const bool *)field ? "true" : "false");
        return;
    case KEY_STRING:
    case KEY_PATH: {
        const char *s = *(char *const *)field;
        if (s) json_write_string(f, s);  // a JSON string is a valid double-quoted YAML scalar
        else fprintf(f, "null");
        return;
    }
    case KEY_ENUM:
        fprintf(f, "%s", key->choices[*(const int *)field]);
        return;
    case KEY_PARTITION: {
        const ConfigPartition *p = field;
        if (p->kind == PARTITION_KIND_AUTO) fprintf(f, "auto");
        for (int i = 0; p->kind == PARTITION_KIND_RANGES && i < p->n; i++)
            fprintf(f, "%s[%lld, %lld]%s", i ? ", " : "[", (long long)p->ranges[i][0], (long long)p->ranges[i][1],
                    i == p->n - 1 ? "]" : "");
        for (int i = 0; p->kind == PARTITION_KIND_BALANCE && i < p->n; i++)
            fprintf(f, "%s%lld%s", i ? ", " : "{balance: [", (long long)p->balance[i], i == p->n - 1 ? "]}" : "");
        return;
    }
    case KEY_SYNTH: {
        const SynthConfig *s = &((const ConfigSynth *)field)->synth;
        fprintf(f, "{task: %s, train: %lld, val: %lld, imgsz: %lld, classes: %lld, seed: %lld}",
                synth_task_names[s->task], (long long)s->n_train, (long long)s->n_val, (long long)s->imgsz,
                (long long)s->n_classes, (long long)s->seed);
        return;
    }
    case KEY_TYPE_COUNT:
        break;
    }
    yp_fatal("unhandled config key type %d", (int)key->type);
}

static bool key_free_on_resume(const char *name) {
    static const char *const free_keys[] = {"name", "train.max_steps", "train.max_skipped_steps", "train.workers", "device.backend",
                                            "device.deterministic", "augment.render"};
    for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++)
        if (!strcmp(name, free_keys[i])) return true;
    // A checkpoint loads under any partitioning: the parallel layout may change (the trainer checks
    // that the micro-batch size, which batch-norm statistics depend on, does not).
    return !strncmp(name, "val.", 4) || !strncmp(name, "output.", 7) || !strncmp(name, "parallel.", 9);
}

// The value of `key` in cfg as config_write_yaml writes it; the caller frees it.
static char *value_text(const ConfigKey *key, const ExperimentConfig *cfg) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    YP_CHECK(f);
    write_value(key, cfg, f);
    fclose(f);
    return text;
}

const char *config_resume_mismatch(const ExperimentConfig *saved, const ExperimentConfig *now) {
    for (int i = 0; i < CONFIG_N_KEYS; i++) {
        const ConfigKey *key = &config_keys[i];
        if (key_free_on_resume(key->name)) continue;
        char *a = value_text(key, saved), *b = value_text(key, now);
        bool same = !strcmp(a, b);
        free(a);
        free(b);
        if (!same) return key->name;
    }
    return NULL;
}

void config_write_yaml(const ExperimentConfig *cfg, FILE *f) {
    fprintf(f, "# resolved experiment configuration (every key, defaults included)\n");
    const char *section = "";
    size_t section_len = 0;
    for (int i = 0; i < CONFIG_N_KEYS; i++) {
        const ConfigKey *key = &config_keys[i];
        if (key->type == KEY_SYNTH && !cfg->synth.present) continue;
        const char *dot = strchr(key->name, '.');
        size_t len = dot ? (size_t)(dot - key->name) : 0;
        if (len != section_len || strncmp(section, key->name, len)) {
            section = key->name;
            section_len = len;
            if (len) fprintf(f, "%.*s:\n", (int)len, key->name);
        }
        fprintf(f, "%s%s: ", len ? "  " : "", len ? dot + 1 : key->name);
        write_value(key, cfg, f);
        fputc('\n', f);
    }
}
