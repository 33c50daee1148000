// The training losses (layers/loss.h) against Ultralytics' own v8DetectionLoss and
// v8ClassificationLoss (tests/reference/make_loss_reference.py, float64 on float32 inputs), against
// finite differences, and on edge cases: no targets, a box covering the image, degenerate boxes;
// and the CPU backend's detection loss slots against the host loss.
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/core/dtype.h"
#include "kernels/cpu/cpu_backend.h"
#include "layers/loss.h"
#include "tests/unit/gradcheck.h"
#include "tests/common/assert_close.h"
#include "tests/common/reference_file.h"

// Reference tolerances, float32 against float64. Loss values: relative 1e-5; the assigner, boxes
// and DFL run in double, only the class BCE (every anchor x class) in float (measured: 1e-9).
// Gradients: 1e-4 of the largest reference gradient; each is a float32 rounding, the class ones
// from a float sigmoid (measured: 6e-8).
static const double loss_tol = 1e-5, grad_tol = 1e-4;

// Finite differences: central, step 3e-3 on logits of order 1 (1e-2 straddled CIoU's min/max
// kinks on two probes). Measured agreement is about 3e-5 relative: the float BCE term and the
// float gradient round at 6e-8, and the difference divides that by the step.
static const float fd_step = 3e-3f;
static const double fd_atol = 1e-5, fd_rtol = 2e-4;

typedef struct DetectCase {
    DetectLossConfig cfg;
    int64_t batch, n_targets, n_pred;
    TargetBox *targets;
    float *pred;
} DetectCase;

static Reference load_fixture(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/loss.bin", root ? root : ".");
    return reference_load(path);
}

static const Record *find(const Reference *ref, const char *c, const char *what) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s/", c);
    const Record *r = reference_find(ref, prefix, what);
    if (!r) fail_msg("loss.bin has no %s/%s", c, what);
    return r;
}

static DetectCase case_load(const Reference *ref, const char *name) {
    const double *cfg = find(ref, name, "config")->values;
    DetectCase c = {.cfg = detect_loss_config_default((int64_t)cfg[1], (int64_t)cfg[2]), .batch = (int64_t)cfg[0]};
    c.cfg.n_levels = (int)cfg[3];
    for (int l = 0; l < c.cfg.n_levels; l++)
        c.cfg.levels[l] = (DetectLossLevel){(int64_t)cfg[4 + 3 * l], (int64_t)cfg[5 + 3 * l], (int64_t)cfg[6 + 3 * l]};
    const Record *t = find(ref, name, "targets"), *p = find(ref, name, "pred");
    c.n_targets = t->count / 6;
    c.targets = calloc((size_t)c.n_targets + 1, sizeof *c.targets);
    for (int64_t j = 0; j < c.n_targets; j++) {
        const double *v = t->values + 6 * j;
        c.targets[j] = (TargetBox){(int32_t)v[0], (int32_t)v[1], (float)v[2], (float)v[3], (float)v[4], (float)v[5]};
    }
    c.n_pred = p->count;
    c.pred = malloc((size_t)c.n_pred * sizeof *c.pred);
    for (int64_t i = 0; i < c.n_pred; i++) c.pred[i] = (float)p->values[i];
    return c;
}

static void case_free(DetectCase *c) {
    free(c->targets);
    free(c->pred);
}

static DetectLoss *loss_make(const DetectLossConfig *cfg, int64_t max_batch) {
    DetectLoss *loss = NULL;
    Error err = {0};
    if (!detect_loss_create(cfg, max_batch, &loss, &err)) fail_msg("%s", err.message);
    return loss;
}


static void check_reference_case(const Reference *ref, const char *name) {
    DetectCase c = case_load(ref, name);
    DetectLoss *loss = loss_make(&c.cfg, c.batch);
    assert_int_equal(c.batch * (4 * c.cfg.reg_max + c.cfg.nc) * detect_loss_anchors(loss), c.n_pred);
    float *dpred = malloc((size_t)c.n_pred * sizeof *dpred);
    DetectLossParts parts;
    double total = detect_loss_compute(loss, c.batch, c.pred, c.targets, c.n_targets, dpred, &parts);

    const double *want = find(ref, name, "loss")->values;  // total, box, cls, dfl, foreground
    const Record *want_grad = find(ref, name, "grad");
    double got[4] = {total, parts.box, parts.cls, parts.dfl};
    for (int j = 0; j < 4; j++) {
        if (want[j] == 0) assert_true(got[j] == 0);  // no foreground: box and DFL exactly 0
        else if (!close_enough(got[j], want[j], 0.0, loss_tol))
            fail_msg("%s: loss %d is %.9g, Ultralytics %.9g", name, j, got[j], want[j]);
    }
    assert_int_equal(parts.n_foreground, (int64_t)want[4]);
    assert_int_equal(parts.n_instances, c.n_targets);
    double grad_err = close_peak_error_f64(dpred, want_grad->values, want_grad->count);
    printf("%s: total %.9g (Ultralytics %.9g), gradient error %.2e of its largest value\n", name, total, want[0],
           grad_err);
    assert_true(grad_err <= grad_tol);
    free(dpred);
    detect_loss_destroy(loss);
    case_free(&c);
}

static void test_detect_reference(void **state) {
    (void)state;
    Reference ref = load_fixture();
    check_reference_case(&ref, "square");  // 64x64, overlapping, small, whole-image boxes; an empty image
    check_reference_case(&ref, "wide");    // 64x96 input: non-square levels
    check_reference_case(&ref, "empty");   // no targets in the batch
    reference_free(&ref);
}

static void test_classify_reference(void **state) {
    (void)state;
    Reference ref = load_fixture();
    const double *cfg = find(&ref, "cls", "config")->values;
    int64_t batch = (int64_t)cfg[0], nc = (int64_t)cfg[1];
    const Record *x = find(&ref, "cls", "logits"), *y = find(&ref, "cls", "labels"), *g = find(&ref, "cls", "grad");
    float *logits = malloc((size_t)(batch * nc) * sizeof *logits), *grad = malloc((size_t)(batch * nc) * sizeof *grad);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    for (int64_t i = 0; i < batch * nc; i++) logits[i] = (float)x->values[i];
    for (int64_t i = 0; i < batch; i++) labels[i] = (int32_t)y->values[i];
    double loss = classify_loss_compute(batch, nc, logits, labels, grad);
    assert_close(loss, find(&ref, "cls", "loss")->values[0], 0.0, loss_tol);
    assert_true(close_peak_error_f64(grad, g->values, g->count) <= grad_tol);
    free(logits);
    free(grad);
    free(labels);
    reference_free(&ref);
}

// ---- finite differences --------------------------------------------------------------------------

typedef struct FdContext {
    DetectLoss *loss;
    const float *pred;  // the array gradcheck perturbs
} FdContext;

static double evaluated_loss(void *p) {
    FdContext *ctx = p;
    return detect_loss_evaluate(ctx->loss, ctx->pred, NULL, NULL);
}

// A small case for finite differences: two images, levels 4x4 and 2x2 (stride 16, 32: a 64x64
// input), reg_max 4, 3 classes; small enough to probe every element.
enum { FD_BATCH = 2, FD_ANCHORS = 20, FD_REG_MAX = 4, FD_NC = 3 };
enum { FD_CHANNELS = 4 * FD_REG_MAX + FD_NC, FD_ELEMS = FD_BATCH * FD_CHANNELS * FD_ANCHORS };

// Checks d total / d pred with the assignment held fixed: Ultralytics runs the assigner under
// no_grad, so its target scores (which move with the predictions) are constants for backward. A
// finite difference of detect_loss_compute would include their change, so we assign once at the
// unperturbed predictions and difference detect_loss_evaluate against that assignment.
static void detect_gradcheck(const char *what, DetectLossConfig cfg, float *pred, const TargetBox *targets,
                             int64_t n_targets) {
    cfg.n_levels = 2;
    cfg.levels[0] = (DetectLossLevel){4, 4, 16};
    cfg.levels[1] = (DetectLossLevel){2, 2, 32};
    float dpred[FD_ELEMS];
    DetectLoss *loss = loss_make(&cfg, FD_BATCH);
    assert_int_equal(detect_loss_anchors(loss), FD_ANCHORS);
    DetectLossParts parts;
    detect_loss_compute(loss, FD_BATCH, pred, targets, n_targets, dpred, &parts);
    assert_true(parts.n_foreground > 10);  // most box logits take part
    FdContext ctx = {loss, pred};
    assert_true(gradcheck(&(GradcheckSpec){.what = what, .x = pred, .analytic = dpred, .n = FD_ELEMS,
                                           .loss = evaluated_loss, .ctx = &ctx, .h = fd_step, .atol = fd_atol,
                                           .rtol = fd_rtol, .max_checks = FD_ELEMS}));
    detect_loss_destroy(loss);
}

// Class BCE and DFL (box gain 0) on random predictions and boxes: overlapping (anchors claimed
// twice), small, and the whole image.
static void test_detect_gradcheck_cls_dfl(void **state) {
    (void)state;
    DetectLossConfig cfg = detect_loss_config_default(FD_NC, FD_REG_MAX);
    cfg.box_gain = 0;
    float pred[FD_ELEMS];
    test_fill_uniform(pred, FD_ELEMS, -2.0f, 2.0f, 11);
    TargetBox targets[] = {
        {0, 1, 0.40f, 0.45f, 0.55f, 0.60f}, {0, 2, 0.55f, 0.50f, 0.50f, 0.45f},
        {0, 0, 0.80f, 0.20f, 0.10f, 0.15f}, {1, 1, 0.50f, 0.50f, 1.00f, 1.00f},
    };
    detect_gradcheck("detect loss, class and DFL terms", cfg, pred, targets, 4);
}

// The CIoU term alone. PyTorch treats CIoU's alpha as a constant (no_grad), so its gradient is
// not the exact derivative of the loss wherever the aspect term v is non-zero (about 1% here on
// random boxes); the comparison with Ultralytics checks that path. Here square ground truths and
// side-symmetric distributions (square predicted boxes) make v vanish, with its derivative, so the
// finite difference checks the IoU, centre-distance and enclosing-box gradients exactly.
static void test_detect_gradcheck_box(void **state) {
    (void)state;
    DetectLossConfig cfg = detect_loss_config_default(FD_NC, FD_REG_MAX);
    cfg.cls_gain = cfg.dfl_gain = 0;
    float pred[FD_ELEMS];
    test_fill_uniform(pred, FD_ELEMS, -2.0f, 2.0f, 12);
    int64_t side_elems = FD_REG_MAX * FD_ANCHORS;
    for (int64_t i = 0; i < FD_BATCH; i++)
        for (int side = 1; side < 4; side++)
            memcpy(pred + (i * FD_CHANNELS * FD_ANCHORS + side * side_elems), pred + i * FD_CHANNELS * FD_ANCHORS,
                   (size_t)side_elems * sizeof *pred);
    TargetBox targets[] = {
        {0, 1, 0.40f, 0.45f, 0.55f, 0.55f}, {0, 2, 0.55f, 0.50f, 0.45f, 0.45f},
        {0, 0, 0.80f, 0.20f, 0.15f, 0.15f}, {1, 1, 0.50f, 0.50f, 1.00f, 1.00f},
    };
    detect_gradcheck("detect loss, CIoU term", cfg, pred, targets, 4);
}

typedef struct ClassifyFd {
    int64_t batch, nc;
    const float *logits;
    const int32_t *labels;
} ClassifyFd;

static double classify_value(void *p) {
    ClassifyFd *c = p;
    return classify_loss_compute(c->batch, c->nc, c->logits, c->labels, NULL);
}

static void test_classify_gradcheck(void **state) {
    (void)state;
    enum { BATCH = 3, NC = 5 };
    float logits[BATCH * NC], grad[BATCH * NC];
    int32_t labels[BATCH] = {4, 0, 2};
    test_fill_uniform(logits, BATCH * NC, -3.0f, 3.0f, 5);
    classify_loss_compute(BATCH, NC, logits, labels, grad);
    ClassifyFd ctx = {BATCH, NC, logits, labels};
    // All in double from float logits: only truncation (h^2 f''', below 1e-5 here) remains.
    assert_true(gradcheck(&(GradcheckSpec){.what = "classify loss", .x = logits, .analytic = grad, .n = BATCH * NC,
                                           .loss = classify_value, .ctx = &ctx, .h = fd_step, .atol = 1e-6,
                                           .rtol = 1e-4, .max_checks = BATCH * NC}));
}

// ---- edge cases and invariants -------------------------------------------------------------------

static DetectLossConfig small_config(void) {
    DetectLossConfig cfg = detect_loss_config_default(4, 16);
    cfg.n_levels = 3;
    cfg.levels[0] = (DetectLossLevel){8, 8, 8};
    cfg.levels[1] = (DetectLossLevel){4, 4, 16};
    cfg.levels[2] = (DetectLossLevel){2, 2, 32};
    return cfg;
}

static bool all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

// No targets: only the class BCE against all-zero targets remains, normalised by max(0, 1) = 1:
// total = batch * cls_gain * sum softplus(x), d/dx = batch * cls_gain * sigmoid(x), box channels 0.
// An invalid box (x1 + y1 + x2 + y2 = 0, Ultralytics' mask_gt) must give exactly the same.
static void test_detect_no_targets(void **state) {
    (void)state;
    DetectLossConfig cfg = small_config();
    int64_t batch = 2, A = 84, C = 4 * cfg.reg_max + cfg.nc, n = batch * C * A;
    float *pred = malloc((size_t)n * sizeof *pred), *dpred = malloc((size_t)n * sizeof *dpred);
    float *dpred2 = malloc((size_t)n * sizeof *dpred2);
    test_fill_uniform(pred, n, -4.0f, 4.0f, 3);
    DetectLoss *loss = loss_make(&cfg, batch);
    DetectLossParts parts;
    double total = detect_loss_compute(loss, batch, pred, NULL, 0, dpred, &parts);
    double want = 0;
    for (int64_t i = 0; i < batch; i++)
        for (int64_t j = 4 * cfg.reg_max * A; j < C * A; j++) {
            double x = pred[i * C * A + j];
            want += log1p(exp(x));
            assert_close(dpred[i * C * A + j], batch * cfg.cls_gain / (1 + exp(-x)), 1e-6, 0.0);
        }
    want *= batch * cfg.cls_gain;
    assert_close(total, want, 0.0, loss_tol);
    assert_true(parts.box == 0 && parts.dfl == 0 && parts.n_foreground == 0 && parts.n_instances == 0);
    for (int64_t i = 0; i < batch; i++)
        for (int64_t j = 0; j < 4 * cfg.reg_max * A; j++) assert_true(dpred[i * C * A + j] == 0.0f);

    TargetBox at_origin = {1, 2, 0.0f, 0.0f, 0.0f, 0.0f};
    assert_true(detect_loss_compute(loss, batch, pred, &at_origin, 1, dpred2, &parts) == total);
    assert_int_equal(parts.n_instances, 1);
    assert_memory_equal(dpred, dpred2, (size_t)n * sizeof *dpred);
    free(pred);
    free(dpred);
    free(dpred2);
    detect_loss_destroy(loss);
}

// A box covering the whole image (every anchor a candidate): finite, with foreground anchors. A
// zero-size box and one a millionth of the image wide: their IoU with any prediction is (about) 0,
// so CIoU <= 0, clamped to 0, makes every alignment 0 and the loss is the no-target loss. (The
// top-k then ties at 0; the lowest anchor indices lie outside these boxes, so nothing is
// foreground. torch's tie order may pick anchors inside, with target score 0: same loss.)
static void test_detect_extreme_boxes(void **state) {
    (void)state;
    DetectLossConfig cfg = small_config();
    int64_t batch = 3, A = 84, n = batch * (4 * cfg.reg_max + cfg.nc) * A;
    float *pred = malloc((size_t)n * sizeof *pred), *dpred = malloc((size_t)n * sizeof *dpred);
    float *d_none = malloc((size_t)n * sizeof *d_none);
    test_fill_uniform(pred, n, -3.0f, 3.0f, 9);
    DetectLoss *loss = loss_make(&cfg, batch);
    DetectLossParts parts;
    double none = detect_loss_compute(loss, batch, pred, NULL, 0, d_none, NULL);

    TargetBox whole = {0, 0, 0.5f, 0.5f, 1.0f, 1.0f};
    double total = detect_loss_compute(loss, batch, pred, &whole, 1, dpred, &parts);
    assert_true(isfinite(total) && all_finite(dpred, n));
    assert_true(parts.n_foreground >= 1 && parts.n_foreground <= cfg.topk && parts.box > 0 && parts.dfl > 0);

    TargetBox degenerate[] = {{1, 1, 0.3f, 0.6f, 0.0f, 0.0f}, {2, 3, 0.7f, 0.4f, 1e-6f, 1e-6f}};
    for (int j = 0; j < 2; j++) {
        assert_true(detect_loss_compute(loss, batch, pred, &degenerate[j], 1, dpred, &parts) == none);
        assert_int_equal(parts.n_foreground, 0);
        assert_memory_equal(dpred, d_none, (size_t)n * sizeof *dpred);
    }
    free(pred);
    free(dpred);
    free(d_none);
    detect_loss_destroy(loss);
}

// Images run in parallel, sums reduce in image order: the result must not depend on the thread
// count. Interleaved targets must give what grouped ones give (grouping is stable per image).
static void test_detect_deterministic(void **state) {
    (void)state;
    Reference ref = load_fixture();
    DetectCase c = case_load(&ref, "square");
    float *d1 = malloc((size_t)c.n_pred * sizeof *d1), *d3 = malloc((size_t)c.n_pred * sizeof *d3);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    DetectLoss *one = loss_make(&c.cfg, c.batch);
    omp_set_num_threads(3);
    DetectLoss *three = loss_make(&c.cfg, c.batch);
    omp_set_num_threads(threads);
    double t1 = detect_loss_compute(one, c.batch, c.pred, c.targets, c.n_targets, d1, NULL);
    double t3 = detect_loss_compute(three, c.batch, c.pred, c.targets, c.n_targets, d3, NULL);
    assert_true(t1 == t3);
    assert_memory_equal(d1, d3, (size_t)c.n_pred * sizeof *d1);

    // Move image 2's boxes between image 0's, keeping each image's own order.
    TargetBox *mixed = malloc((size_t)c.n_targets * sizeof *mixed);
    int64_t n0 = 0, n2 = 0, m = 0;
    for (int64_t j = 0; j < c.n_targets; j++) *(c.targets[j].image == 0 ? &n0 : &n2) += 1;
    for (int64_t j = 0; j < n0 || j < n2; j++) {
        if (j < n0) mixed[m++] = c.targets[j];
        if (j < n2) mixed[m++] = c.targets[n0 + j];
    }
    assert_true(detect_loss_compute(three, c.batch, c.pred, mixed, m, d3, NULL) == t1);
    assert_memory_equal(d1, d3, (size_t)c.n_pred * sizeof *d1);
    free(mixed);
    free(d1);
    free(d3);
    detect_loss_destroy(one);
    detect_loss_destroy(three);
    case_free(&c);
    reference_free(&ref);
}

// The CPU backend's detect_loss_* slots (kernels/backend.h), what the executor calls: the host loss
// on the prediction as the backend stores it (pred rounded to the activation type), its gradient
// times grad_scale rounded to the activation type once, the total and parts unchanged, and no
// gradient written without dpred. Reference: the host loss on the prediction rounded by
// framework/core/dtype.h, its gradient scaled and rounded the same way; tolerance 0 (the slot runs the
// same float operations on the same values, so any difference is a conversion or scaling bug).
static void test_detect_backend_slots(void **state) {
    (void)state;
    Reference ref = load_fixture();
    DetectCase c = case_load(&ref, "square");
    const DType types[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16};
    const float scales[] = {1.0f, 1024.0f};
    float *host_pred = malloc((size_t)c.n_pred * sizeof *host_pred);
    float *host_dpred = malloc((size_t)c.n_pred * sizeof *host_dpred);
    DetectLoss *host = loss_make(&c.cfg, c.batch);
    for (int t = 0; t < 3; t++) {
        Backend *be = cpu_backend_create(types[t]);
        be->ops->reserve_activations(be, (size_t)c.n_pred);
        void *pred = be->ops->alloc(be, backend_act_bytes(be, c.n_pred));
        void *dpred = be->ops->alloc(be, backend_act_bytes(be, c.n_pred));
        be->ops->upload_activation(be, pred, c.pred, (size_t)c.n_pred);
        for (int64_t i = 0; i < c.n_pred; i++) host_pred[i] = dtype_round(types[t], c.pred[i]);
        DetectLossParts want_parts, parts;
        double want = detect_loss_compute(host, c.batch, host_pred, c.targets, c.n_targets, host_dpred, &want_parts);

        // Created for no boxes, then reserved for the batch's: the executor's order.
        BackendDetectLoss *loss = NULL;
        Error err = {0};
        if (!be->ops->detect_loss_create(be, &c.cfg, c.batch, 0, &loss, &err)) fail_msg("%s", err.message);
        be->ops->detect_loss_reserve(be, loss, c.n_targets);
        for (int k = 0; k < 2; k++) {
            for (int64_t i = 0; i < c.n_pred; i++) dtype_store(types[t], dpred, (size_t)i, NAN);  // unwritten shows
            double total = be->ops->detect_loss_compute(be, loss, c.batch, pred, c.targets, c.n_targets, scales[k],
                                                        dpred, &parts);
            assert_true(total == want);
            assert_memory_equal(&parts, &want_parts, sizeof parts);
            for (int64_t i = 0; i < c.n_pred; i++) {
                float got = dtype_load(types[t], dpred, (size_t)i);
                float expect = dtype_round(types[t], host_dpred[i] * scales[k]);
                if (dtype_float_bits(got) != dtype_float_bits(expect))
                    fail_msg("%s, grad_scale %g: dpred[%lld] is %.9g, want %.9g", dtype_name(types[t]),
                             (double)scales[k], (long long)i, (double)got, (double)expect);
            }
        }
        // Validation: no gradient, dpred untouched.
        for (int64_t i = 0; i < c.n_pred; i++) dtype_store(types[t], dpred, (size_t)i, 7.0f);
        assert_true(be->ops->detect_loss_compute(be, loss, c.batch, pred, c.targets, c.n_targets, 1.0f, NULL,
                                                 NULL) == want);
        for (int64_t i = 0; i < c.n_pred; i++) assert_true(dtype_load(types[t], dpred, (size_t)i) == 7.0f);
        be->ops->detect_loss_destroy(be, loss);
        be->ops->detect_loss_destroy(be, NULL);
        be->ops->free(be, pred);
        be->ops->free(be, dpred);
        backend_destroy(be);
    }
    detect_loss_destroy(host);
    free(host_pred);
    free(host_dpred);
    case_free(&c);
    reference_free(&ref);
}

static void test_detect_config_errors(void **state) {
    (void)state;
    DetectLoss *loss = NULL;
    Error err = {0};
    DetectLossConfig cfg = small_config();
    cfg.n_levels = 1;
    cfg.levels[0] = (DetectLossLevel){3, 3, 32};  // 9 anchors < topk 10
    assert_false(detect_loss_create(&cfg, 2, &loss, &err));
    assert_non_null(strstr(err.message, "topk 10"));
    cfg = small_config();
    cfg.reg_max = 1;
    assert_false(detect_loss_create(&cfg, 2, &loss, &err));
    assert_non_null(strstr(err.message, "reg_max 1"));
    cfg = small_config();
    cfg.n_levels = 0;
    assert_false(detect_loss_create(&cfg, 2, &loss, &err));
    assert_null(loss);
    detect_loss_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_reference),
        cmocka_unit_test(test_classify_reference),
        cmocka_unit_test(test_detect_gradcheck_cls_dfl),
        cmocka_unit_test(test_detect_gradcheck_box),
        cmocka_unit_test(test_classify_gradcheck),
        cmocka_unit_test(test_detect_no_targets),
        cmocka_unit_test(test_detect_extreme_boxes),
        cmocka_unit_test(test_detect_deterministic),
        cmocka_unit_test(test_detect_backend_slots),
        cmocka_unit_test(test_detect_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
