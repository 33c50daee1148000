#include "layers/model_spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

// Far above any published model (YOLOv5x stacks 12); a typo beyond it would exhaust memory, not train.
enum { MODEL_MAX_REPEATS = 1000 };

// Depth and width multipliers beyond this are typos (real models use 0.33 to 1.5), and would
// overflow the channel arithmetic.
static const double max_multiple = 100.0;

static const char *const known_keys[] = {"nc", "scales", "scale", "depth_multiple", "width_multiple",
                                         "activation", "ch", "reg_max", "end2end", "backbone", "head"};

// parse_model turns `legacy` off at the first row of one of these (tasks.py); the Detect rows after
// it get the light class branch.
static const char *const nonlegacy_modules[] = {"C3k2", "A2C2f", "C2fCIB"};

bool model_spec_error_at(const ModelSpec *spec, const yaml_node_t *node, Error *err, const char *fmt, ...) {
    char text[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return yaml_doc_error_at(spec->yaml, node, err, "%s", text);
}

static bool check_keys(ModelSpec *spec, yaml_node_t *root, Error *err) {
    YamlDoc *yd = spec->yaml;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_doc_node(yd, p->key);
        const char *k = yaml_node_text(key);
        if (!k) return yaml_doc_error_at(yd, key, err, "expected a key name, found %s", yaml_node_describe(key));
        bool known = false;
        for (size_t i = 0; i < sizeof known_keys / sizeof *known_keys; i++) known |= !strcmp(k, known_keys[i]);
        if (!known)
            return yaml_doc_error_at(yd, key, err,
                                     "unknown key '%s' in a model file (known: nc, scales, scale, depth_multiple, "
                                     "width_multiple, activation, ch, reg_max, end2end, backbone, head)", k);
    }
    return true;
}

static bool read_positive_int(ModelSpec *spec, const yaml_node_t *node, const char *what, int64_t *out, Error *err) {
    if (!yaml_node_int(spec->yaml, node, what, out, err)) return false;
    if (*out < 1) return model_spec_error_at(spec, node, err, "%s must be at least 1, found %lld", what, (long long)*out);
    return true;
}

// A number in (0, max]; max may be INFINITY (max_channels: .inf is "no cap").
static bool read_positive_number(ModelSpec *spec, const yaml_node_t *node, const char *what, double max, double *out,
                                 Error *err) {
    if (!yaml_node_number(spec->yaml, node, what, out, err)) return false;
    if (!(*out > 0) || *out > max) {
        char range[32] = "";
        if (!isinf(max)) snprintf(range, sizeof range, " up to %g", max);
        return model_spec_error_at(spec, node, err, "%s must be a positive number%s, found '%s'", what, range,
                                   yaml_node_text(node));
    }
    return true;
}

// Picks the scale and sets depth, width and max_channels, following Ultralytics: an explicit
// scale must exist; without one the first is used.
// The scale the caller asked for (--scale), or NULL.
static const char *requested_scale(const ModelOptions *opt) { return opt && opt->scale && *opt->scale ? opt->scale : NULL; }

static bool read_scaling(ModelSpec *spec, yaml_node_t *root, const ModelOptions *opt, Error *err) {
    YamlDoc *yd = spec->yaml;
    spec->depth = spec->width = 1.0;
    spec->max_channels = INFINITY;
    yaml_node_t *depth = yaml_map_get(yd, root, "depth_multiple");
    yaml_node_t *width = yaml_map_get(yd, root, "width_multiple");
    if (depth && !read_positive_number(spec, depth, "depth_multiple", max_multiple, &spec->depth, err)) return false;
    if (width && !read_positive_number(spec, width, "width_multiple", max_multiple, &spec->width, err)) return false;

    yaml_node_t *scales = yaml_map_get(yd, root, "scales");
    yaml_node_t *scale_key = yaml_map_get(yd, root, "scale");
    const char *requested = requested_scale(opt), *wanted = requested;
    if (!wanted && scale_key && !yaml_node_string(yd, scale_key, "scale", &wanted, err)) return false;
    if (!scales) {
        if (wanted && scale_key && !requested)
            return yaml_doc_error_at(yd, scale_key, err, "scale '%s' given but the model has no 'scales'; remove 'scale'",
                                     wanted);
        if (wanted)
            return error_at(err, yd->path, 1, 1, "scale '%s' requested but the model has no 'scales'", wanted);
        return true;
    }
    if (scales->type != YAML_MAPPING_NODE || scales->data.mapping.pairs.top == scales->data.mapping.pairs.start)
        return yaml_doc_error_at(yd, scales, err,
                                 "'scales' must be a mapping like {n: [depth, width, max_channels]}, found %s",
                                 scales->type == YAML_MAPPING_NODE ? "an empty mapping" : yaml_node_describe(scales));
    char names[128] = "", found[128];
    yaml_node_t *chosen = NULL;
    for (yaml_node_pair_t *p = scales->data.mapping.pairs.start; p < scales->data.mapping.pairs.top; p++) {
        const char *name = yaml_node_text(yaml_doc_node(yd, p->key));
        yaml_node_t *value = yaml_doc_node(yd, p->value);
        if (!name || strlen(name) >= sizeof spec->scale)
            return yaml_doc_error_at(yd, yaml_doc_node(yd, p->key), err, "a scale name must be a short string");
        if (value->type != YAML_SEQUENCE_NODE || yaml_seq_len(value) != 3)
            return yaml_doc_error_at(yd, value, err, "scale '%s' must be [depth, width, max_channels], found %s",
                                     name, yaml_node_describe_found(value, found, sizeof found));
        if (strlen(names) + strlen(name) + 3 < sizeof names) {
            if (*names) strcat(names, ", ");
            strcat(names, name);
        }
        if ((!wanted && !chosen) || (wanted && !strcmp(wanted, name))) {
            chosen = value;
            snprintf(spec->scale, sizeof spec->scale, "%s", name);
        }
    }
    if (!chosen) {
        const yaml_node_t *where = scale_key && !requested ? scale_key : scales;
        return yaml_doc_error_at(yd, where, err, "unknown scale '%s' (this model has %s)", wanted, names);
    }
    return read_positive_number(spec, yaml_seq_at(yd, chosen, 0), "depth", max_multiple, &spec->depth, err) &&
           read_positive_number(spec, yaml_seq_at(yd, chosen, 1), "width", max_multiple, &spec->width, err) &&
           read_positive_number(spec, yaml_seq_at(yd, chosen, 2), "max_channels", INFINITY, &spec->max_channels, err);
}

// Ultralytics evaluates string arguments: YAML-level names are substituted, Python literals
// (None, True, numbers) are evaluated, anything else stays a string.
static bool read_arg(ModelSpec *spec, yaml_node_t *node, Arg *arg, Error *err) {
    *arg = (Arg){.node = node};
    if (node->type == YAML_SEQUENCE_NODE) return arg->kind = ARG_KIND_LIST, true;
    const char *text = yaml_node_text(node);
    if (!text)
        return model_spec_error_at(spec, node, err, "module arguments must be plain values, found %s",
                                   yaml_node_describe(node));
    bool plain = yaml_node_is_plain(node);
    if (!strcmp(text, "nc")) return arg->kind = ARG_KIND_INT, arg->i = spec->nc, arg->f = (double)spec->nc, true;
    if (!strcmp(text, "reg_max"))
        return arg->kind = ARG_KIND_INT, arg->i = spec->reg_max, arg->f = (double)spec->reg_max, true;
    if ((plain && yaml_text_is_null(text)) || !strcmp(text, "None")) return arg->kind = ARG_KIND_NONE, true;
    if ((plain && yaml_text_bool(text, &arg->b)) || (!plain && !strcmp(text, "True")))
        return arg->kind = ARG_KIND_BOOL, arg->b = plain ? arg->b : true, true;
    if (!plain && !strcmp(text, "False")) return arg->kind = ARG_KIND_BOOL, arg->b = false, true;
    if (yaml_text_int(text, &arg->i)) return arg->kind = ARG_KIND_INT, arg->f = (double)arg->i, true;
    if (yaml_text_number(text, &arg->f)) return arg->kind = ARG_KIND_FLOAT, true;
    arg->kind = ARG_KIND_STRING;
    arg->s = text;
    return true;
}

static bool read_from(ModelSpec *spec, yaml_node_t *node, ModelRow *row, Error *err) {
    YamlDoc *yd = spec->yaml;
    row->from_node = node;
    int n = 1;
    if (node->type == YAML_SEQUENCE_NODE) {
        row->from_is_list = true;
        n = yaml_seq_len(node);
        if (n < 1 || n > MODEL_MAX_FROM)
            return model_spec_error_at(spec, node, err, "'from' must list 1 to %d layers, found %d", MODEL_MAX_FROM, n);
    }
    for (int k = 0; k < n; k++) {
        yaml_node_t *item = row->from_is_list ? yaml_seq_at(yd, node, k) : node;
        int64_t f;
        char found[128];
        if (!yaml_node_is_plain(item) || !yaml_text_int(yaml_node_text(item), &f))
            return model_spec_error_at(spec, item, err,
                                       "'from' must be a layer number or a list of them (-1 = previous layer), "
                                       "found %s",
                                       yaml_node_describe_found(item, found, sizeof found));
        int64_t target = f < 0 ? row->index + f : f;
        if (row->index == 0 && f != -1)
            return model_spec_error_at(spec, item, err, "layer 0 can only take the network input, from -1; found %lld",
                                       (long long)f);
        if (row->index > 0 && target < 0)
            return model_spec_error_at(spec, item, err, "from %lld reaches before layer 0: layer %d can use -1 to -%d",
                                       (long long)f, row->index, row->index);
        if (target >= row->index)
            return model_spec_error_at(spec, item, err,
                                       "from %lld refers to layer %lld, which is not before layer %d; "
                                       "a layer can only take earlier layers",
                                       (long long)f, (long long)target, row->index);
        row->from_written[k] = f;
        row->from[k] = (int)target;
    }
    row->n_from = n;
    return true;
}

static bool read_row(ModelSpec *spec, yaml_node_t *node, ModelRow *row, Error *err) {
    YamlDoc *yd = spec->yaml;
    row->node = node;
    char found[128];
    if (node->type != YAML_SEQUENCE_NODE || yaml_seq_len(node) != 4)
        return model_spec_error_at(spec, node, err, "layer %d must be [from, repeats, module, args], found %s",
                                   row->index, yaml_node_describe_found(node, found, sizeof found));
    if (!read_from(spec, yaml_seq_at(yd, node, 0), row, err)) return false;

    row->repeats_node = yaml_seq_at(yd, node, 1);
    if (!read_positive_int(spec, row->repeats_node, "repeats", &row->repeats_written, err)) return false;
    if (row->repeats_written > MODEL_MAX_REPEATS)
        return model_spec_error_at(spec, row->repeats_node, err, "repeats must be at most %d, found %lld",
                                   MODEL_MAX_REPEATS, (long long)row->repeats_written);
    // Python's round() rounds halves to even; rint does the same in the default rounding mode.
    row->repeats = row->repeats_written > 1
                       ? (int64_t)fmax(rint((double)row->repeats_written * spec->depth), 1.0)
                       : row->repeats_written;

    row->module_node = yaml_seq_at(yd, node, 2);
    row->module = yaml_node_text(row->module_node);
    if (!row->module || (yaml_node_is_plain(row->module_node) && yaml_text_is_null(row->module)))
        return model_spec_error_at(spec, row->module_node, err, "the module must be a name such as Conv or C2f, found %s",
                                   yaml_node_describe_found(row->module_node, found, sizeof found));
    if (layer_kind_find(row->module) == LAYER_KIND_COUNT) {
        char known[1024] = "";
        for (int k = 0; k < LAYER_KIND_COUNT; k++) {
            strcat(known, k ? ", " : "");
            strcat(known, layer_kinds[k]->name);
        }
        return model_spec_error_at(spec, row->module_node, err, "unknown module '%s' (supported: %s)", row->module,
                                   known);
    }

    row->args_node = yaml_seq_at(yd, node, 3);
    if (row->args_node->type != YAML_SEQUENCE_NODE)
        return model_spec_error_at(spec, row->args_node, err, "module arguments must be a list like [64, 3, 2], found %s",
                                   yaml_node_describe_found(row->args_node, found, sizeof found));
    row->n_args = yaml_seq_len(row->args_node);
    if (row->n_args > MODEL_MAX_ARGS)
        return model_spec_error_at(spec, row->args_node, err, "too many arguments (%d) for %s", row->n_args,
                                   row->module);
    for (int k = 0; k < row->n_args; k++)
        if (!read_arg(spec, yaml_seq_at(yd, row->args_node, k), &row->args[k], err)) return false;
    return true;
}

static bool read_rows(ModelSpec *spec, yaml_node_t *root, Error *err) {
    YamlDoc *yd = spec->yaml;
    yaml_node_t *sections[2] = {yaml_map_get(yd, root, "backbone"), yaml_map_get(yd, root, "head")};
    static const char *const names[2] = {"backbone", "head"};
    int total = 0;
    for (int s = 0; s < 2; s++) {
        if (!sections[s])
            return error_at(err, yd->path, yaml_node_line(root), yaml_node_col(root),
                            "missing '%s': a model needs a 'backbone' and a 'head' list of layers", names[s]);
        if (sections[s]->type != YAML_SEQUENCE_NODE)
            return yaml_doc_error_at(yd, sections[s], err, "'%s' must be a list of layers, found %s", names[s],
                                     yaml_node_describe(sections[s]));
        total += yaml_seq_len(sections[s]);
    }
    if (yaml_seq_len(sections[0]) == 0)
        return yaml_doc_error_at(yd, sections[0], err, "'backbone' has no layers");
    spec->rows = yp_calloc((size_t)total, sizeof *spec->rows);
    bool legacy = true;
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < yaml_seq_len(sections[s]); k++) {
            ModelRow *row = &spec->rows[spec->n_rows];
            row->index = spec->n_rows++;
            if (!read_row(spec, yaml_seq_at(yd, sections[s], k), row, err)) return false;
            for (size_t m = 0; m < sizeof nonlegacy_modules / sizeof *nonlegacy_modules; m++)
                legacy &= strcmp(row->module, nonlegacy_modules[m]) != 0;
            row->legacy = legacy;
        }
    }
    return true;
}

// The activation modules that the `activation:` key may name (Ultralytics evaluates it as Python),
// and whether PyTorch's constructor takes `inplace`.
static const struct {
    const char *name;
    Activation kind;
    bool inplace;
} model_activations[] = {
    {"SiLU", ACTIVATION_SILU, true},       {"ReLU", ACTIVATION_RELU, true},
    {"LeakyReLU", ACTIVATION_LEAKY_RELU, true}, {"ReLU6", ACTIVATION_RELU6, true},
    {"Hardswish", ACTIVATION_HARDSWISH, true}, {"Sigmoid", ACTIVATION_SIGMOID, false},
    {"Tanh", ACTIVATION_TANH, false},      {"Identity", ACTIVATION_NONE, false},
};

// Reads the keyword `key=` at *p (blanks skipped) and moves past it.
static bool activation_keyword(const char **p, const char *key) {
    size_t n = strlen(key);
    if (strncmp(*p, key, n) != 0) return false;
    const char *q = *p + n;
    while (*q == ' ') q++;
    if (*q != '=') return false;
    for (q++; *q == ' '; q++) {}
    *p = q;
    return true;
}

// One argument of the call at *p: a LeakyReLU slope (positional first, or negative_slope=), or
// inplace=True/False. Moves past it and its blanks.
static bool activation_arg(const char **p, bool first, bool slope_ok, bool inplace_ok, ActivationSpec *out) {
    if (inplace_ok && activation_keyword(p, "inplace")) {
        if (!strncmp(*p, "True", 4)) *p += 4;
        else if (!strncmp(*p, "False", 5)) *p += 5;
        else return false;
    } else if (slope_ok && (activation_keyword(p, "negative_slope") || first)) {
        char *end;
        double v = strtod(*p, &end);
        if (end == *p || !isfinite(v)) return false;
        out->negative_slope = (float)v;
        *p = end;
    } else {
        return false;
    }
    while (**p == ' ') (*p)++;
    return true;
}

bool model_activation_parse(const char *text, ActivationSpec *out) {
    const char *p = text;
    while (*p == ' ') p++;
    if (!strncmp(p, "torch.", 6)) p += 6;
    if (strncmp(p, "nn.", 3) != 0) return false;
    p += 3;
    size_t len = strcspn(p, "( ");
    for (size_t i = 0; i < sizeof model_activations / sizeof *model_activations; i++) {
        if (strlen(model_activations[i].name) != len || strncmp(p, model_activations[i].name, len) != 0) continue;
        ActivationSpec a = {.kind = model_activations[i].kind};
        const bool slope_ok = a.kind == ACTIVATION_LEAKY_RELU;
        if (slope_ok) a.negative_slope = 0.01f;  // PyTorch's default
        const char *q = p + len;
        while (*q == ' ') q++;
        if (*q++ != '(') return false;
        while (*q == ' ') q++;
        for (bool first = true; *q != ')'; first = false) {
            if (!first && *q++ != ',') return false;
            while (*q == ' ') q++;
            if (!activation_arg(&q, first, slope_ok, model_activations[i].inplace, &a)) return false;
        }
        for (q++; *q == ' '; q++) {}
        if (*q) return false;
        *out = a;
        return true;
    }
    return false;
}

static bool read_header(ModelSpec *spec, yaml_node_t *root, const ModelOptions *opt, Error *err) {
    YamlDoc *yd = spec->yaml;
    yaml_node_t *nc = yaml_map_get(yd, root, "nc");
    if (nc && !read_positive_int(spec, nc, "nc", &spec->nc, err)) return false;
    if (opt && opt->nc > 0) spec->nc = opt->nc;
    if (spec->nc < 1) return yaml_doc_error_at(yd, root, err, "missing 'nc': add 'nc: N' with the number of classes");
    spec->reg_max = 16;
    yaml_node_t *reg_max = yaml_map_get(yd, root, "reg_max");
    if (reg_max && !read_positive_int(spec, reg_max, "reg_max", &spec->reg_max, err)) return false;
    // Ultralytics passes d.get("end2end") to Detect: absent or null is off.
    yaml_node_t *end2end = yaml_map_get(yd, root, "end2end");
    const char *e2e_text = end2end ? yaml_node_text(end2end) : NULL;
    if (end2end && !(e2e_text && yaml_node_is_plain(end2end) &&
                     (yaml_text_is_null(e2e_text) || yaml_text_bool(e2e_text, &spec->end2end))))
        return yaml_doc_error_at(yd, end2end, err, "end2end must be True or False, found %s",
                                 yaml_node_describe(end2end));
    spec->ch = 3;
    yaml_node_t *ch = yaml_map_get(yd, root, "ch");
    if (ch && !read_positive_int(spec, ch, "ch", &spec->ch, err)) return false;
    spec->activation = ACTIVATION_SPEC_SILU;
    yaml_node_t *act = yaml_map_get(yd, root, "activation");
    const char *act_text = NULL;
    if (act && !yaml_node_string(yd, act, "activation", &act_text, err)) return false;
    if (act_text && !model_activation_parse(act_text, &spec->activation))
        return yaml_doc_error_at(yd, act, err,
                                 "unsupported activation '%s' (supported: nn.SiLU(), nn.ReLU(), nn.LeakyReLU(0.1), "
                                 "nn.ReLU6(), nn.Hardswish(), nn.Sigmoid(), nn.Tanh(), nn.Identity())",
                                 act_text);
    return read_scaling(spec, root, opt, err);
}

// "experiments/models/yolov8.yaml" + "n" -> "yolov8n"
static char *model_name(const char *path, const char *scale) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strcspn(base, ".");
    char *name = yp_malloc(len + strlen(scale) + 1);
    // Ultralytics names classify models "yolov8n-cls": the scale goes before a '-' suffix.
    const char *dash = memchr(base, '-', len);
    size_t stem = dash ? (size_t)(dash - base) : len;
    memcpy(name, base, stem);
    strcpy(name + stem, scale);
    memcpy(name + stem + strlen(scale), base + stem, len - stem);
    name[len + strlen(scale)] = '\0';
    return name;
}

// Builds the spec from a loaded document (owned by the spec from here on); path names the model.
static bool model_spec_from_doc(YamlDoc *yd, const char *path, const ModelOptions *opt, ModelSpec **out, Error *err) {
    ModelSpec *spec = yp_calloc(1, sizeof *spec);
    spec->yaml = yd;
    yaml_node_t *root = yaml_doc_root(spec->yaml);
    bool ok = true;
    if (root->type != YAML_MAPPING_NODE)
        ok = yaml_doc_error_at(spec->yaml, root, err, "a model file must be a mapping with 'nc', 'backbone' and 'head', found %s",
                               yaml_node_describe(root));
    ok = ok && check_keys(spec, root, err) && read_header(spec, root, opt, err) && read_rows(spec, root, err);
    if (!ok) {
        model_spec_destroy(spec);
        return false;
    }
    spec->name = model_name(path, spec->scale);
    spec->scale_defaulted = *spec->scale && !requested_scale(opt) && !yaml_map_get(spec->yaml, root, "scale");
    *out = spec;
    return true;
}

bool model_spec_load(const char *path, const ModelOptions *opt, ModelSpec **out, Error *err) {
    *out = NULL;
    YamlDoc *yd;
    return yaml_doc_load(path, &yd, err) && model_spec_from_doc(yd, path, opt, out, err);
}

bool model_spec_parse_text(const char *label, const char *text, const ModelOptions *opt, ModelSpec **out, Error *err) {
    *out = NULL;
    YamlDoc *yd;
    return yaml_doc_parse_text(label, text, &yd, err) && model_spec_from_doc(yd, label, opt, out, err);
}

int model_spec_end2end_row(const ModelSpec *spec) {
    for (int i = 0; i < spec->n_rows; i++) {
        LayerKind kind = layer_kind_find(spec->rows[i].module);
        if (kind == LAYER_KIND_V10DETECT || (kind == LAYER_KIND_DETECT && spec->end2end)) return i;
    }
    return -1;
}

void model_spec_destroy(ModelSpec *spec) {
    if (!spec) return;
    yaml_doc_destroy(spec->yaml);
    free(spec->rows);
    free(spec->name);
    free(spec);
}
