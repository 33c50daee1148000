// A full training-mode forward and backward of yolov8n at 640x640, batch 2, on the CPU backend:
// the workload the pipeline splits across stages. Prints time and peak memory (resident set and
// what the graph allocated) and checks that every output and parameter gradient is finite and that
// every trainable tensor receives a gradient.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "framework/core/clock.h"
#include "kernels/cpu/cpu_backend.h"
#include "layers/graph.h"
#include "tests/unit/gradcheck.h"

static bool all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static void test_yolov8n_forward_backward(void **state) {
    (void)state;
    const char *root = getenv("YP_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/experiments/models/yolov8.yaml", root ? root : ".");
    Backend *be = cpu_backend_create(DTYPE_F32);
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    Error err = {0};
    GraphOptions opt = {.batch = 2, .imgsz_h = 640, .imgsz_w = 640, .be = be, .seed = 1};
    if (!model_spec_load(path, &(ModelOptions){.scale = "n"}, &spec, &err) || !graph_create(spec, &opt, &g, &err))
        fail_msg("%s", err.message);
    test_fill_uniform(g->input.data, tensor_elems(&g->input), 0.0f, 1.0f, 3);

    double t0 = clock_monotonic_s();
    graph_forward(g, true);
    double t1 = clock_monotonic_s();
    Layer *out = graph_output(g);
    int64_t n_out = tensor_elems(&out->out);
    assert_int_equal(n_out, 2 * 144 * 8400);
    assert_true(all_finite(out->out.data, n_out));
    test_fill_uniform(out->dout.data, n_out, -1.0f, 1.0f, 4);
    graph_zero_grads(g);
    graph_backward(g);
    double t2 = clock_monotonic_s();

    assert_true(all_finite(g->grad_data, g->param_elems));
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        if (p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)) continue;
        double norm = 0.0;
        for (int64_t k = 0; k < p->n_elems; k++) norm += fabs(g->grad_data[p->offset + k]);
        if (!(norm > 0.0)) fail_msg("%s received no gradient", p->name);
    }

    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("yolov8n 640x640 batch 2 on CPU: forward %.2f s, backward %.2f s; peak resident memory %.0f MiB "
           "(graph allocations %.0f MiB)\n",
           t1 - t0, t2 - t1, (double)usage.ru_maxrss / 1024.0, (double)g->allocated_bytes / (1024.0 * 1024.0));
    graph_destroy(g);
    model_spec_destroy(spec);
    backend_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_yolov8n_forward_backward)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
