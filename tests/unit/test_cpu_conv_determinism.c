// The CPU backend's convolutions (oneDNN) give the same bits at a fixed thread count (the suite's
// OMP_NUM_THREADS): the same convolution run twice on one backend, and once more on a fresh backend
// whose primitives are made anew, must agree bit for bit in forward, backward data and backward
// weights. The pipeline equivalence tests rely on it: every layout's processes make their own
// primitives. Then whether a result depends on the batch size N the primitive is made for (a
// micro-batch split): forward and backward data of N images against two runs of N / 2, bit for bit.
// Backward weights sums over the images, so there only the order of that sum may differ.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

// Sizes of YOLO's convolutions at a few percent of the work: large enough that oneDNN threads them.
static const ConvDesc conv_shapes[] = {
    {.n = 4, .c_in = 16, .h_in = 24, .w_in = 20, .c_out = 32, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .dilation = 1, .groups = 1},
    {.n = 4, .c_in = 16, .h_in = 24, .w_in = 24, .c_out = 32, .kh = 3, .kw = 3, .stride = 2, .pad = 1, .dilation = 1, .groups = 1},
    {.n = 4, .c_in = 32, .h_in = 12, .w_in = 12, .c_out = 16, .kh = 1, .kw = 1, .stride = 1, .pad = 0, .dilation = 1, .groups = 1},
    {.n = 4, .c_in = 32, .h_in = 12, .w_in = 10, .c_out = 32, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .dilation = 1, .groups = 32},
    {.n = 4, .c_in = 16, .h_in = 10, .w_in = 10, .c_out = 16, .kh = 5, .kw = 5, .stride = 1, .pad = 4, .dilation = 2, .groups = 2},
};
enum { CONV_SHAPES = sizeof conv_shapes / sizeof conv_shapes[0] };

// One convolution's inputs on the host, and what the three passes gave.
typedef struct ConvRun {
    ConvDesc d;
    float *x, *w, *bias, *dy;   // inputs, owned
    float *y, *dx, *dw, *dbias;  // results, owned
} ConvRun;

static float *host_floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static ConvRun conv_run_create(const ConvDesc *shape, uint64_t seed) {
    ConvRun r = {.d = conv_desc_make(shape)};
    const size_t nx = conv_desc_x_elems(&r.d), ny = conv_desc_y_elems(&r.d), nw = conv_desc_w_elems(&r.d);
    r.x = host_floats(nx), r.w = host_floats(nw), r.bias = host_floats((size_t)r.d.c_out), r.dy = host_floats(ny);
    test_fill_uniform(r.x, (int64_t)nx, -1.0f, 1.0f, seed);
    test_fill_uniform(r.w, (int64_t)nw, -1.0f, 1.0f, seed + 1);
    test_fill_uniform(r.bias, r.d.c_out, -1.0f, 1.0f, seed + 2);
    test_fill_uniform(r.dy, (int64_t)ny, -1.0f, 1.0f, seed + 3);
    r.y = host_floats(ny), r.dx = host_floats(nx), r.dw = host_floats(nw), r.dbias = host_floats((size_t)r.d.c_out);
    return r;
}

static void conv_run_destroy(ConvRun *r) {
    float *bufs[] = {r->x, r->w, r->bias, r->dy, r->y, r->dx, r->dw, r->dbias};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void *upload(Backend *be, const float *host, size_t n_elems) {
    void *dev = be->ops->alloc(be, n_elems * sizeof(float));
    be->ops->upload(be, dev, host, n_elems * sizeof(float));
    return dev;
}

// Runs the three passes of r->d on images [img0, img0 + d.n) of r's (N-image) tensors, with the
// the input gradient accumulating from zero and the weight and bias gradients onto r's (as over
// micro-batches), and writes the results into r's result arrays at those images.
static void conv_run_passes(Backend *be, ConvRun *r, const ConvDesc *d, int64_t img0) {
    const size_t nx = conv_desc_x_elems(d), ny = conv_desc_y_elems(d), nw = conv_desc_w_elems(d);
    const size_t x0 = (size_t)img0 * (nx / (size_t)d->n), y0 = (size_t)img0 * (ny / (size_t)d->n);
    be->ops->reserve_workspace(be, be->ops->conv_workspace_bytes(be, d));
    void *x = upload(be, r->x + x0, nx), *dy = upload(be, r->dy + y0, ny);
    void *w = upload(be, r->w, nw), *bias = upload(be, r->bias, (size_t)d->c_out);
    void *y = be->ops->alloc(be, ny * sizeof(float)), *dx = be->ops->alloc(be, nx * sizeof(float));
    float *dw = be->ops->alloc(be, nw * sizeof(float)), *dbias = be->ops->alloc(be, (size_t)d->c_out * sizeof(float));
    be->ops->zero(be, dx, nx * sizeof(float));
    be->ops->upload(be, dw, r->dw, nw * sizeof(float));
    be->ops->upload(be, dbias, r->dbias, (size_t)d->c_out * sizeof(float));
    be->ops->conv2d_forward(be, d, x, w, bias, y);
    be->ops->conv2d_backward_data(be, d, dy, w, dx);
    be->ops->conv2d_backward_filter(be, d, x, dy, dw, dbias);
    be->ops->synchronize(be);
    be->ops->download(be, r->y + y0, y, ny * sizeof(float));
    be->ops->download(be, r->dx + x0, dx, nx * sizeof(float));
    be->ops->download(be, r->dw, dw, nw * sizeof(float));
    be->ops->download(be, r->dbias, dbias, (size_t)d->c_out * sizeof(float));
    void *bufs[] = {x, dy, w, bias, y, dx, dw, dbias};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
}

// Whether a and b hold the same bits; prints the first difference with `what`.
static bool same_bits(const char *what, const ConvDesc *d, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            fprintf(stderr, "%s [%lldx%lld k%lld s%lld g%lld]: element %zu of %zu: %.9g != %.9g\n", what,
                    (long long)d->c_in, (long long)d->h_in, (long long)d->kh, (long long)d->stride,
                    (long long)d->groups, i, n, (double)a[i], (double)b[i]);
            return false;
        }
    }
    return true;
}

// A result that is all zero would agree with anything: each pass must have written something.
static bool any_nonzero(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0.0f) return true;
    return false;
}

static bool same_results(const char *what, const ConvRun *a, const ConvRun *b, bool weights_too) {
    const ConvDesc *d = &a->d;
    char name[96];
    bool ok = true;
    snprintf(name, sizeof name, "%s: y", what);
    ok &= same_bits(name, d, a->y, b->y, conv_desc_y_elems(d));
    snprintf(name, sizeof name, "%s: dx", what);
    ok &= same_bits(name, d, a->dx, b->dx, conv_desc_x_elems(d));
    if (!weights_too) return ok;
    snprintf(name, sizeof name, "%s: dw", what);
    ok &= same_bits(name, d, a->dw, b->dw, conv_desc_w_elems(d));
    snprintf(name, sizeof name, "%s: dbias", what);
    ok &= same_bits(name, d, a->dbias, b->dbias, (size_t)d->c_out);
    return ok;
}

static void test_conv_repeat_and_fresh_backend(void **state) {
    (void)state;
    Backend *be = cpu_backend_create(DTYPE_F32);
    for (int c = 0; c < CONV_SHAPES; c++) {
        enum { FIRST, AGAIN, FRESH, RUNS };
        ConvRun runs[RUNS];
        for (int i = 0; i < RUNS; i++) runs[i] = conv_run_create(&conv_shapes[c], 10 + (uint64_t)c);
        conv_run_passes(be, &runs[FIRST], &runs[FIRST].d, 0);
        conv_run_passes(be, &runs[AGAIN], &runs[AGAIN].d, 0);
        // oneDNN keeps made primitives in a process-wide cache: off, so the fresh backend's are
        // generated anew, as in another process.
        int capacity = 0;
        assert_int_equal(dnnl_get_primitive_cache_capacity(&capacity), dnnl_success);
        assert_int_equal(dnnl_set_primitive_cache_capacity(0), dnnl_success);
        Backend *be2 = cpu_backend_create(DTYPE_F32);
        conv_run_passes(be2, &runs[FRESH], &runs[FRESH].d, 0);
        backend_destroy(be2);
        assert_int_equal(dnnl_set_primitive_cache_capacity(capacity), dnnl_success);
        const ConvRun *first = &runs[FIRST];
        const ConvDesc *d = &first->d;
        assert_true(any_nonzero(first->y, conv_desc_y_elems(d)) && any_nonzero(first->dx, conv_desc_x_elems(d)) &&
                    any_nonzero(first->dw, conv_desc_w_elems(d)) && any_nonzero(first->dbias, (size_t)d->c_out));
        assert_true(same_results("run twice", first, &runs[AGAIN], true));
        assert_true(same_results("fresh backend", first, &runs[FRESH], true));
        for (int i = 0; i < RUNS; i++) conv_run_destroy(&runs[i]);
    }
    backend_destroy(be);
}

static void test_conv_batch_split(void **state) {
    (void)state;
    Backend *be = cpu_backend_create(DTYPE_F32);
    for (int c = 0; c < CONV_SHAPES; c++) {
        ConvRun whole = conv_run_create(&conv_shapes[c], 20 + (uint64_t)c);
        ConvRun halves = conv_run_create(&conv_shapes[c], 20 + (uint64_t)c);
        conv_run_passes(be, &whole, &whole.d, 0);
        ConvDesc half = whole.d;
        half.n /= 2;
        conv_run_passes(be, &halves, &half, 0);
        conv_run_passes(be, &halves, &half, half.n);
        assert_true(same_results("N against two N / 2", &whole, &halves, false));
        const ConvDesc *d = &whole.d;
        const size_t nw = conv_desc_w_elems(d);
        double *want = malloc(nw * sizeof(double));
        assert_non_null(want);
        for (size_t i = 0; i < nw; i++) want[i] = whole.dw[i];
        // One sum over N images against two sums of N / 2 added: float32 rounding of sums of ~1e3
        // products of values in [-1, 1] (magnitude ~30), a few ulps.
        assert_true(close_elements("N against two N / 2: dw", halves.dw, want, (int64_t)nw, 1e-4, 1e-5));
        for (size_t i = 0; i < nw; i++) {
            if (memcmp(&halves.dw[i], &whole.dw[i], sizeof(float))) {
                fprintf(stderr, "note: dw differs in the last bits between N and two N / 2 (element %zu)\n", i);
                break;
            }
        }
        free(want);
        conv_run_destroy(&whole);
        conv_run_destroy(&halves);
    }
    backend_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_repeat_and_fresh_backend),
        cmocka_unit_test(test_conv_batch_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
