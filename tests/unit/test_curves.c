// The curves and confusion matrices of validation against Ultralytics 8.4 itself:
// tests/reference/curves.bin was written by make_curves_reference.py with DetectionValidator
// (update_metrics, get_stats -> ap_per_class: p, r, F1 curves and the PR envelope),
// ConfusionMatrix.process_batch (conf 0.25, IoU 0.45) and process_cls_preds on random but
// structured detections (see the script). Plus a hand-made confusion case whose answer is known.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/eval/metrics.h"
#include "framework/eval/nms.h"
#include "tests/common/assert_close.h"
#include "tests/common/reference_file.h"

// Curves: the matching (float32 IoU) and every comparison reproduce Ultralytics exactly; what is left
// is float64 arithmetic in another order (numpy's vectorised interp and pairwise sums against plain
// loops), ~1e-16. 1e-9 leaves room and still catches a real difference (one detection moves a
// curve by > 1e-2). Confusion matrices are counts: zero tolerance.
static const double curve_tol = 1e-9;

static Reference load(void) {
    const char *root = getenv("YP_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/curves.bin", root ? root : ".");
    return reference_load(path);
}

static void assert_rows(const char *what, const double *got, const Record *want) {
    int64_t bad = 0;
    for (int64_t i = 0; i < want->count; i++)
        if (!close_enough(got[i], want->values[i], curve_tol, 0.0)) {
            if (bad++ < 5)
                fprintf(stderr, "%s[%lld]: got %.17g, want %.17g\n", what, (long long)i, got[i], want->values[i]);
        }
    assert_int_equal(bad, 0);
}

static void assert_counts(const ConfusionMatrix *cm, const Record *want) {
    assert_int_equal(want->count, cm->n * cm->n);
    for (int64_t i = 0; i < want->count; i++) {
        if (cm->counts[i] != (int64_t)want->values[i])
            fprintf(stderr, "confusion[%lld][%lld]: got %lld, want %g\n", (long long)(i / cm->n),
                    (long long)(i % cm->n), (long long)cm->counts[i], want->values[i]);
        assert_int_equal(cm->counts[i], (int64_t)want->values[i]);
    }
}

static void test_detect_reference(void **state) {
    (void)state;
    Reference ref = load();
    const Record *shape = reference_require(&ref, "det:shape"), *t = reference_require(&ref, "det:targets");
    const Record *count = reference_require(&ref, "det:count"), *det = reference_require(&ref, "det:det");
    int64_t n_images = (int64_t)shape->values[0], nc = (int64_t)shape->values[1];
    int64_t img_h = (int64_t)shape->values[2], img_w = (int64_t)shape->values[3];
    int n_targets = (int)(t->count / 6);
    TargetBox *targets = calloc((size_t)n_targets + 1, sizeof *targets);
    for (int i = 0; i < n_targets; i++) {
        const double *v = t->values + 6 * i;
        targets[i] = (TargetBox){(int32_t)v[0], (int32_t)v[1], (float)v[2], (float)v[3], (float)v[4], (float)v[5]};
    }
    int64_t max_det = 0;
    for (int64_t i = 0; i < n_images; i++) max_det = (int64_t)count->values[i] > max_det ? (int64_t)count->values[i] : max_det;
    Detections *d = detections_create(n_images, max_det);
    d->n_images = n_images;
    for (int64_t i = 0, row = 0; i < n_images; i++) {
        d->count[i] = (int64_t)count->values[i];
        for (int64_t j = 0; j < d->count[i]; j++, row++) {
            const double *v = det->values + 6 * row;
            for (int k = 0; k < 4; k++) d->boxes[(i * max_det + j) * 4 + k] = (float)v[k];
            d->scores[i * max_det + j] = (float)v[4];
            d->cls[i * max_det + j] = (int32_t)v[5];
        }
    }
    DetectMetrics *m = detect_metrics_create(nc);
    detect_metrics_add_batch(m, d, targets, n_targets, img_h, img_w);
    const DetectSummary *s = detect_metrics_finalize(m);
    const Record *cls = reference_require(&ref, "curve:cls"), *px = reference_require(&ref, "curve:px");
    assert_int_equal(s->curves.n_rows, cls->count);
    for (int64_t r = 0; r < cls->count; r++) assert_int_equal(s->curves.cls[r], (int64_t)cls->values[r]);
    for (int i = 0; i < DETECT_CURVE_POINTS; i++) assert_true(detect_curve_x(i) == px->values[i]);  // same doubles
    assert_rows("p", s->curves.p, reference_require(&ref, "curve:p"));
    assert_rows("r", s->curves.r, reference_require(&ref, "curve:r"));
    assert_rows("f1", s->curves.f1, reference_require(&ref, "curve:f1"));
    assert_rows("pr", s->curves.pr, reference_require(&ref, "curve:pr"));
    assert_counts(s->confusion, reference_require(&ref, "cm:det"));
    // A second validation starts from zero.
    detect_metrics_reset(m);
    detect_metrics_add_batch(m, d, targets, n_targets, img_h, img_w);
    s = detect_metrics_finalize(m);
    assert_counts(s->confusion, reference_require(&ref, "cm:det"));
    assert_rows("pr", s->curves.pr, reference_require(&ref, "curve:pr"));
    detect_metrics_destroy(m);
    detections_destroy(d);
    free(targets);
    reference_free(&ref);
}

static void test_classify_reference(void **state) {
    (void)state;
    Reference ref = load();
    const Record *shape = reference_require(&ref, "cls:shape"), *logits = reference_require(&ref, "cls:logits");
    const Record *labels = reference_require(&ref, "cls:labels");
    int64_t n = (int64_t)shape->values[0], nc = (int64_t)shape->values[1];
    float *scores = malloc((size_t)(n * nc) * sizeof *scores);
    int32_t *lab = malloc((size_t)n * sizeof *lab);
    for (int64_t i = 0; i < n * nc; i++) scores[i] = (float)logits->values[i];
    for (int64_t i = 0; i < n; i++) lab[i] = (int32_t)labels->values[i];
    ConfusionMatrix *cm = confusion_create(nc, false);
    ClassifyMetrics metrics = {.nc = nc, .confusion = cm};
    classify_metrics_add(&metrics, scores, lab, n / 2);  // two batches
    classify_metrics_add(&metrics, scores + n / 2 * nc, lab + n / 2, n - n / 2);
    assert_counts(cm, reference_require(&ref, "cm:cls"));
    int64_t diagonal = 0;
    for (int64_t c = 0; c < nc; c++) diagonal += cm->counts[c * nc + c];
    assert_int_equal(diagonal, metrics.top1);  // the matrix's diagonal is the top-1 count
    confusion_destroy(cm);
    free(scores);
    free(lab);
    reference_free(&ref);
}

// Known answers: nc = 2, background index 2. gt A (class 0) and B (class 1) far apart; detection 0
// (class 1, 0.9) sits on A: a confusion [1][0]; detection 1 (class 0, 0.8) also on A, which is claimed,
// so it is a false positive [0][2]; detection 2 (0.2) on B is below conf 0.25: B is missed [2][1].
static void test_confusion_hand(void **state) {
    (void)state;
    ConfusionMatrix *cm = confusion_create(2, true);
    const float gt[] = {0, 0, 10, 10, 50, 50, 60, 60};
    const int32_t gt_cls[] = {0, 1};
    const float det[] = {0, 0, 10, 11, 1, 0, 10, 10, 50, 50, 60, 60};
    const float score[] = {0.9f, 0.8f, 0.2f};
    const int32_t det_cls[] = {1, 0, 1};
    confusion_add_detections(cm, det, score, det_cls, 3, gt, gt_cls, 2);
    const int64_t want[9] = {0, 0, 1, 1, 0, 0, 0, 1, 0};
    for (int i = 0; i < 9; i++) assert_int_equal(cm->counts[i], want[i]);
    // No detections at all: every ground truth is missed; no ground truth: every detection above conf is a false positive.
    confusion_reset(cm);
    confusion_add_detections(cm, det, score, det_cls, 0, gt, gt_cls, 2);
    confusion_add_detections(cm, det, score, det_cls, 3, gt, gt_cls, 0);
    const int64_t want2[9] = {0, 0, 1, 0, 0, 1, 1, 1, 0};
    for (int i = 0; i < 9; i++) assert_int_equal(cm->counts[i], want2[i]);
    confusion_destroy(cm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_reference),
        cmocka_unit_test(test_classify_reference),
        cmocka_unit_test(test_confusion_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
