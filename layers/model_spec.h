// A parsed Ultralytics model YAML: the rows as written, with positions for error messages.
//
// model_spec_load reads the file and checks its structure (keys, row shapes, value types, `from`
// references). Module-specific argument checks and channel arithmetic happen later, in each
// module's parse function (layers/layer.h), because they need the scaling and input channels.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/error.h"
#include "framework/core/yaml_doc.h"

enum { MODEL_MAX_FROM = 8, MODEL_MAX_ARGS = 8 };

// ARG_KIND_LIST: a flow list such as CBLinear's [64, 128]; its items are read by the module's parse
// (module_arg_int_list), from the node.
typedef enum ArgKind {
    ARG_KIND_NONE,
    ARG_KIND_BOOL,
    ARG_KIND_INT,
    ARG_KIND_FLOAT,
    ARG_KIND_STRING,
    ARG_KIND_LIST,
    ARG_KIND_COUNT
} ArgKind;

// One constructor argument after Ultralytics' substitutions (`nc` -> its value, "None" -> None, ...).
typedef struct Arg {
    ArgKind kind;
    bool b;
    int64_t i;
    double f;
    const char *s;           // ARG_KIND_STRING: points into the YAML document
    const yaml_node_t *node; // where it was written
} Arg;

typedef struct ModelRow {
    int index;                    // Ultralytics' layer number (backbone then head)
    int n_from;
    int from[MODEL_MAX_FROM];     // absolute layer indices; -1 is the network input
    int64_t from_written[MODEL_MAX_FROM];  // as written (-1, 6, ...), for display
    bool from_is_list;
    int64_t repeats_written;      // before depth scaling
    int64_t repeats;              // max(round(n * depth), 1) when n > 1
    const char *module;           // as written, e.g. "C2f", "nn.Upsample"
    int n_args;
    Arg args[MODEL_MAX_ARGS];
    const yaml_node_t *node, *from_node, *repeats_node, *module_node, *args_node;
    // Ultralytics' parse_model `legacy` as it stands when this row is built: true until a row (this
    // one included) is C3k2, A2C2f or C2fCIB, the modules of YOLO10/11/12/26. A Detect built while it
    // holds has the v8 class branch (Conv3x3, Conv3x3, Conv2d); otherwise the light one (DWConv3x3 +
    // Conv1x1, twice, then Conv2d).
    bool legacy;
} ModelRow;

typedef struct ModelSpec {
    YamlDoc *yaml;       // owned; rows and args point into it
    char *name;          // file stem with the scale, e.g. "yolov8n"
    char scale[16];      // chosen scale, "" when the file has none
    bool scale_defaulted;  // the file has scales but none was chosen: the first one is used
    int64_t nc;          // number of classes (after an override)
    int64_t reg_max;     // DFL bins per box side (Ultralytics' `reg_max`, default 16; 1: no DFL)
    bool end2end;        // Ultralytics' `end2end` (YOLO26): Detect adds the one-to-one branches
    int64_t ch;          // input channels (default 3)
    ActivationSpec activation;  // the `activation:` key, Ultralytics' Conv.default_act (default SiLU)
    double depth, width, max_channels;  // max_channels is +inf without scales
    int n_rows;
    ModelRow *rows;      // owned
} ModelSpec;

typedef struct ModelOptions {
    const char *scale;  // NULL or "": the file's first scale (with a notice on stderr)
    int64_t nc;         // > 0 overrides the file's nc
} ModelOptions;

// Loads `path`. The caller destroys *out with model_spec_destroy.
bool model_spec_load(const char *path, const ModelOptions *opt, ModelSpec **out, Error *err);
// The same from the file's text (as an export records it); label stands for the path (the model's
// name and error messages).
bool model_spec_parse_text(const char *label, const char *text, const ModelOptions *opt, ModelSpec **out, Error *err);
void model_spec_destroy(ModelSpec *spec);  // accepts NULL

// The row of an end-to-end head (Detect under `end2end: True`, or v10Detect), or -1. Such a head has
// one-to-one branches that yolopipe declares (parameters, FLOPs, state dict) but does not yet run.
int model_spec_end2end_row(const ModelSpec *spec);

// Parses an `activation:` value as Ultralytics evaluates it: [torch.]nn.SiLU(), nn.ReLU(),
// nn.LeakyReLU([negative_slope=]s) (default 0.01), nn.ReLU6(), nn.Hardswish(), nn.Sigmoid(),
// nn.Tanh(), nn.Identity() (none), with inplace=True/False where PyTorch's module takes it.
// False for anything else (*out untouched).
bool model_activation_parse(const char *text, ActivationSpec *out);

// Reports an error at a row element (a YAML node of spec->yaml).
bool model_spec_error_at(const ModelSpec *spec, const yaml_node_t *node, Error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
