// Model parsing against Ultralytics itself: for every reference model and scale, the parameter,
// gradient and layer counts, GFLOPs, per-layer parameters and output shapes, and the state-dict
// names and shapes must match the figures Ultralytics reported (tests/reference/*.tsv, written by
// make_ultralytics_reference.py from the same YAML files).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/graph.h"
#include "tests/common/assert_close.h"
#include "tests/common/reference_file.h"

// models.tsv: the 35 detect and classify YAMLs of Ultralytics 8.4.190 at every scale they list.
enum { MODEL_ROWS = 115 };

static char source_root[512];

static FILE *open_reference(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/%s", source_root, name);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    return f;
}

// Builds the graph of the model YAML `dir`/`model`.yaml at one scale ("-": none), without memory.
static bool try_describe(const char *dir, const char *model, const char *scale, int64_t imgsz, Graph **g,
                         ModelSpec **spec, Error *err) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s.yaml", source_root, dir, model);
    ModelOptions opt = {.scale = strcmp(scale, "-") ? scale : NULL};
    GraphOptions gopt = {.batch = 1, .imgsz_h = imgsz, .imgsz_w = imgsz};
    *spec = NULL;
    *g = NULL;
    if (model_spec_load(path, &opt, spec, err) && graph_create(*spec, &gopt, g, err)) return true;
    model_spec_destroy(*spec);
    *spec = NULL;
    return false;
}

// The graph of one reference model at one scale; fails the test when it does not build.
static Graph *describe(const char *model, const char *scale, int64_t imgsz, ModelSpec **spec) {
    Error err = {0};
    Graph *g = NULL;
    if (!try_describe("experiments/models", model, scale, imgsz, &g, spec, &err))
        fail_msg("%s scale %s: %s", model, scale, err.message);
    return g;
}

static void test_model_totals(void **state) {
    (void)state;
    FILE *f = open_reference("models.tsv");
    char line[512];
    int rows = 0, checked = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char model[64], scale[8];
        long long leaves, params, grads;
        char gflops_text[3][32];
        assert_int_equal(sscanf(line, "%63s %7s %lld %lld %lld %31s %31s %31s", model, scale, &leaves, &params, &grads,
                                gflops_text[0], gflops_text[1], gflops_text[2]),
                         8);
        rows++;
        static const int64_t sizes[3] = {224, 320, 640};
        for (int s = 0; s < 3; s++) {
            // "-": the size is no multiple of the model's largest stride (a P6 model at 224).
            if (!strcmp(gflops_text[s], "-")) continue;
            char *end;
            double gflops = strtod(gflops_text[s], &end);
            assert_true(*end == '\0');
            ModelSpec *spec;
            Graph *g = describe(model, scale, sizes[s], &spec);
            // Counts are exact integers: they must match to the unit.
            assert_int_equal(g->param_elems, params);
            assert_int_equal(g->grad_elems, grads);
            assert_int_equal(g->leaf_modules, leaves);
            // Ops are counted as Ultralytics' profiler counts them (inference path, DFL included), so the
            // only difference allowed is the reference's rounding to 6 decimals.
            if (!close_enough(graph_gflops(g), gflops, 1e-6, 0.0))
                fail_msg("%s%s at %lld: %.6f GFLOPs, Ultralytics %.6f", model, scale, (long long)sizes[s],
                         graph_gflops(g), gflops);
            graph_destroy(g);
            model_spec_destroy(spec);
        }
        checked++;
    }
    fclose(f);
    assert_int_equal(rows, MODEL_ROWS);
    assert_true(checked >= 16);  // yolov8 n-x, yolov5 n-x, yolov3, yolov8-cls n-x were there first
}

// "64x8400" or "boxes=64x8400;scores=80x8400" -> channels and positions.
static void parse_shape(const char *text, int64_t *c, int64_t *h, int64_t *w) {
    *c = 0;
    *h = *w = 1;
    const char *p = text;
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *semi = strchr(p, ';');
        // An end-to-end head's dict: yolopipe's output is its one-to-many branch (the one-to-one
        // branch's forward is issue 17's follow-up), so one2one.* entries are not part of it.
        if (!strncmp(p, "one2one.", 8)) {
            if (!semi) break;
            p = semi + 1;
            continue;
        }
        if (eq && (!semi || eq < semi)) p = eq + 1;
        long long dims[3] = {0, 1, 1};
        int n = sscanf(p, "%lldx%lldx%lld", &dims[0], &dims[1], &dims[2]);
        assert_true(n >= 1);
        *c += dims[0];
        *h = dims[1];
        *w = dims[2];
        if (!semi) break;
        p = semi + 1;
    }
}

static void test_layer_params_and_shapes(void **state) {
    (void)state;
    FILE *f = open_reference("layers.tsv");
    char line[512], current[80] = "";
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char model[64], scale[8], shape[128], key[80];
        int index;
        long long params;
        assert_int_equal(sscanf(line, "%63s %7s %d %lld %127s", model, scale, &index, &params, shape), 5);
        snprintf(key, sizeof key, "%s %s", model, scale);
        if (strcmp(key, current) != 0) {
            graph_destroy(g);
            model_spec_destroy(spec);
            g = describe(model, scale, 640, &spec);
            snprintf(current, sizeof current, "%s", key);
        }
        assert_true(index < g->n_layers);
        const Layer *l = &g->layers[index];
        if (l->n_params != params) fail_msg("%s layer %d: %lld parameters, Ultralytics %lld", key, index, (long long)l->n_params, params);
        int64_t c, h, w;
        parse_shape(shape, &c, &h, &w);
        // Detect's and Classify's outputs are (N, C, A, 1) and (N, C, 1, 1): compare element counts per channel.
        if (l->out_shape.c != c || l->out_shape.h * l->out_shape.w != h * w)
            fail_msg("%s layer %d: output %lldx%lldx%lld, Ultralytics %s", key, index, (long long)l->out_shape.c,
                     (long long)l->out_shape.h, (long long)l->out_shape.w, shape);
        checked++;
    }
    graph_destroy(g);
    model_spec_destroy(spec);
    fclose(f);
    assert_true(checked > 300);
}

// Ultralytics' state dict also holds BatchNorm's num_batches_tracked counters, which yolopipe
// does not keep yet; every other tensor must appear with the same name, shape and order.
static void test_state_dict_names(void **state) {
    (void)state;
    FILE *f = open_reference("state_dict.tsv");
    char line[512], current[80] = "";
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    int cursor = 0, checked = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char model[64], scale[8], name[128], shape[64] = "", key[80];
        int n = sscanf(line, "%63s %7s %127s %63s", model, scale, name, shape);
        assert_true(n >= 3);
        if (strstr(name, "num_batches_tracked")) continue;
        snprintf(key, sizeof key, "%s %s", model, scale);
        if (strcmp(key, current) != 0) {
            if (g) assert_int_equal(cursor, g->n_params);
            graph_destroy(g);
            model_spec_destroy(spec);
            g = describe(model, scale, 640, &spec);
            snprintf(current, sizeof current, "%s", key);
            cursor = 0;
        }
        if (cursor >= g->n_params) fail_msg("%s: Ultralytics has more tensors, next %s", key, name);
        const ParamInfo *p = &g->params[cursor++];
        if (strcmp(p->name, name) != 0) fail_msg("%s: tensor %d is %s, Ultralytics %s", key, cursor - 1, p->name, name);
        char ours[64] = "";
        for (int d = 0; d < p->ndim; d++)
            snprintf(ours + strlen(ours), sizeof ours - strlen(ours), "%s%lld", d ? "x" : "", (long long)p->dims[d]);
        if (strcmp(ours, shape) != 0) fail_msg("%s %s: shape %s, Ultralytics %s", key, name, ours, shape);
        checked++;
    }
    assert_int_equal(cursor, g->n_params);
    graph_destroy(g);
    model_spec_destroy(spec);
    fclose(f);
    assert_true(checked > 5000);
}

int main(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    snprintf(source_root, sizeof source_root, "%s", root ? root : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_totals),
        cmocka_unit_test(test_layer_params_and_shapes),
        cmocka_unit_test(test_state_dict_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
