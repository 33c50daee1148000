// Fuzz target: an Ultralytics model YAML, through what `yolopipe info MODEL.yaml` runs
// (model_spec_load, then graph_create without a backend: every row parsed with its module's rules,
// shapes, parameters and FLOPs).
//
// Input: the model YAML file itself, so that every corpus file and every crash reproducer is also a
// valid argument of `yolopipe info`. The model's first scale is used and imgsz is info's 640.
// Checks, beyond the sanitizers: a refused model leaves one non-empty line of error; an accepted one
// has layers with positive output shapes and non-negative parameter counts.
#include <stdio.h>
#include <stdlib.h>

#include "layers/graph.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *model_path = fuzz_file("yolov8.yaml");  // its name gives the model's name
    fuzz_write_file(model_path, data, size);
    Error err = {0};
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    const ModelOptions options = {0};
    const GraphOptions graph_options = {.batch = 1, .imgsz_h = 640, .imgsz_w = 640};
    if (!model_spec_load(model_path, &options, &spec, &err) || !graph_create(spec, &graph_options, &g, &err)) {
        fuzz_check_error(&err);
        model_spec_destroy(spec);
        return 0;
    }
    for (int i = 0; i < g->n_layers; i++) {
        const Layer *l = &g->layers[i];
        if (l->out_shape.c <= 0 || l->out_shape.h <= 0 || l->out_shape.w <= 0 || l->n_params < 0) {
            fprintf(stderr, "fuzz: layer %d of an accepted model has output %lldx%lldx%lld and %lld parameters\n", i,
                    (long long)l->out_shape.c, (long long)l->out_shape.h, (long long)l->out_shape.w,
                    (long long)l->n_params);
            abort();
        }
    }
    (void)graph_gflops(g);
    graph_destroy(g);
    model_spec_destroy(spec);
    return 0;
}
