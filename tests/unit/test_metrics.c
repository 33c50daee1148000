// Validation metrics against Ultralytics 8.4 itself: tests/reference/metrics.bin was written by
// make_metrics_reference.py with Ultralytics' Detect inference decode, non_max_suppression
// (torchvision NMS), DetectionValidator (postprocess, _process_batch / match_predictions,
// update_metrics, get_stats -> ap_per_class) and ClassificationValidator on random but structured
// data (see the script). Plus hand-made cases whose answers are known.
#include <math.h>
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
#include "framework/core/sort.h"
#include "tests/common/assert_close.h"
#include "tests/common/reference_file.h"

// Decoded boxes and scores: float32 like Ultralytics, but expf, the softmax sum and DFL's 1x1
// convolution round in a different order than torch's vectorised kernels: distances (up to 15 grid
// units) differ by ~1e-6 relative, i.e. up to ~1.6e-5 grid units, 5e-4 px at stride 32 (6e-5 seen
// here); sigmoid scores by an ulp or two.
static const double decode_box_tol = 5e-4, decode_score_tol = 1e-6;

// Metrics: the matching (float32 IoU) and every comparison reproduce Ultralytics exactly; what is
// left is float64 arithmetic in a different summation order (numpy's pairwise sums and BLAS-backed
// convolve against plain loops), ~1e-16. 1e-9 leaves room and still catches any real difference
// (one detection changes AP here by > 1e-3).
static const double metric_tol = 1e-9;

enum { N_NMS_CASES = 4 };  // nms0 .. nms3 in the reference file

typedef struct Fixture {
    Reference ref;
    int64_t n_images, nc, reg_max, img_h, img_w, n_anchors;
    DetectLevelSize levels[8];
    int n_levels;
    float *raw, *pred;  // (N, 4 reg_max + nc, A), (N, 4 + nc, A)
    TargetBox *targets;
    int n_targets;
} Fixture;

static float *floats_of(const Record *r) {
    float *x = malloc((size_t)r->count * sizeof *x);
    for (int64_t i = 0; i < r->count; i++) x[i] = (float)r->values[i];
    return x;
}

static int setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    const char *root = getenv("YP_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/metrics.bin", root ? root : ".");
    fx->ref = reference_load(path);
    const Record *shape = reference_require(&fx->ref, "det:shape"), *levels = reference_require(&fx->ref, "det:levels");
    fx->n_images = (int64_t)shape->values[0];
    fx->nc = (int64_t)shape->values[1];
    fx->reg_max = (int64_t)shape->values[2];
    fx->img_h = (int64_t)shape->values[3];
    fx->img_w = (int64_t)shape->values[4];
    fx->n_levels = (int)(levels->count / 3);
    for (int l = 0; l < fx->n_levels; l++) {
        fx->levels[l] = (DetectLevelSize){(int64_t)levels->values[3 * l], (int64_t)levels->values[3 * l + 1],
                                          (int64_t)levels->values[3 * l + 2]};
        fx->n_anchors += fx->levels[l].h * fx->levels[l].w;
    }
    fx->raw = floats_of(reference_require(&fx->ref, "det:raw"));
    fx->pred = floats_of(reference_require(&fx->ref, "det:pred"));
    const Record *t = reference_require(&fx->ref, "det:targets");
    fx->n_targets = (int)(t->count / 6);
    fx->targets = malloc((size_t)(fx->n_targets ? fx->n_targets : 1) * sizeof *fx->targets);
    for (int i = 0; i < fx->n_targets; i++) {
        const double *v = t->values + 6 * i;
        fx->targets[i] = (TargetBox){(int32_t)v[0], (int32_t)v[1], (float)v[2], (float)v[3], (float)v[4], (float)v[5]};
    }
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    Fixture *fx = *state;
    reference_free(&fx->ref);
    free(fx->raw);
    free(fx->pred);
    free(fx->targets);
    free(fx);
    return 0;
}

static NmsConfig nms_case(const Fixture *fx, int k) {
    char name[64];
    snprintf(name, sizeof name, "nms%d:config", k);
    const double *v = reference_require(&fx->ref, name)->values;
    return (NmsConfig){.conf = (float)v[0], .iou = v[1], .multi_label = v[2] != 0, .max_det = (int64_t)v[3],
                       .max_nms = (int64_t)v[4], .max_wh = (float)v[5]};
}

// The detections Ultralytics kept in NMS case k, as a Detections batch.
static Detections *reference_detections(const Fixture *fx, int k) {
    char name[64];
    snprintf(name, sizeof name, "nms%d:count", k);
    const Record *count = reference_require(&fx->ref, name);
    snprintf(name, sizeof name, "nms%d:det", k);
    const Record *rows = reference_require(&fx->ref, name);
    Detections *d = detections_create(fx->n_images, nms_case(fx, k).max_det);
    int64_t row = 0;
    for (int64_t i = 0; i < fx->n_images; i++) {
        d->count[i] = (int64_t)count->values[i];
        for (int64_t j = 0; j < d->count[i]; j++, row++) {
            const double *v = rows->values + 6 * row;
            int64_t slot = i * d->max_det + j;
            for (int q = 0; q < 4; q++) d->boxes[4 * slot + q] = (float)v[q];
            d->scores[slot] = (float)v[4];
            d->cls[slot] = (int32_t)v[5];
        }
    }
    assert_int_equal(row * 6, rows->count);
    return d;
}

static void assert_detections_equal(const Detections *got, const Detections *want, int64_t n_images) {
    for (int64_t i = 0; i < n_images; i++) {
        assert_int_equal(got->count[i], want->count[i]);
        for (int64_t j = 0; j < want->count[i]; j++) {
            int64_t a = i * got->max_det + j, b = i * want->max_det + j;
            assert_memory_equal(got->boxes + 4 * a, want->boxes + 4 * b, 4 * sizeof(float));
            assert_true(got->scores[a] == want->scores[b]);
            assert_int_equal(got->cls[a], want->cls[b]);
        }
    }
}

static void test_sort_order(void **state) {
    (void)state;
    const float keys[] = {0.5f, -1.0f, 2.0f, 0.5f, -0.0f, 0.0f, -3.5f, 2.0f, 1e-30f};
    const int64_t want[] = {2, 7, 0, 3, 8, 4, 5, 1, 6};  // equal keys (0.5, 2.0, -0 == 0) in index order
    int64_t order[9];
    sort_order_descending(keys, 9, order);
    assert_memory_equal(order, want, sizeof want);
}

// Detect's inference output from the training-layout logits.
static void test_decode(void **state) {
    Fixture *fx = *state;
    DetectDecoder *dec = detect_decoder_create(fx->levels, fx->n_levels, fx->nc, fx->reg_max);
    int64_t A = detect_decoder_anchors(dec), c_raw = 4 * fx->reg_max + fx->nc, c_pred = 4 + fx->nc;
    assert_int_equal(A, fx->n_anchors);
    float *pred = malloc((size_t)(c_pred * A) * sizeof *pred);
    double worst_box = 0.0, worst_score = 0.0;
    for (int64_t i = 0; i < fx->n_images; i++) {
        detect_decoder_predict(dec, fx->raw + i * c_raw * A, pred);
        const float *want = fx->pred + i * c_pred * A;
        for (int64_t e = 0; e < c_pred * A; e++) {
            double diff = fabs((double)pred[e] - want[e]);
            if (e < 4 * A) worst_box = fmax(worst_box, diff);
            else worst_score = fmax(worst_score, diff / fmax(fabs(want[e]), 1e-30));
        }
    }
    printf("decode: boxes within %.2e px, scores within %.2e relative\n", worst_box, worst_score);
    assert_true(worst_box <= decode_box_tol);
    assert_true(worst_score <= decode_score_tol);
    free(pred);
    detect_decoder_destroy(dec);
}

// NMS on Ultralytics' own inference output: the same boxes, scores and classes, in the same order,
// bit for bit, for the validator's settings, the max_nms / max_det cuts, best-class-only, and an offset
// too small to separate the classes (NMS across classes, the general path).
static void test_nms_reference(void **state) {
    Fixture *fx = *state;
    int64_t A = fx->n_anchors, c_pred = 4 + fx->nc;
    for (int k = 0; k < N_NMS_CASES; k++) {
        NmsConfig cfg = nms_case(fx, k);
        Detections *want = reference_detections(fx, k), *got = detections_create(fx->n_images, cfg.max_det);
        for (int64_t i = 0; i < fx->n_images; i++) nms_predictions(fx->pred + i * c_pred * A, A, fx->nc, &cfg, got, i);
        assert_detections_equal(got, want, fx->n_images);
        detections_destroy(got);
        detections_destroy(want);
    }
    NmsConfig validation = nms_config_validation(), case0 = nms_case(fx, 0);
    assert_true(validation.conf == case0.conf && validation.iou == case0.iou && validation.multi_label &&
                validation.max_det == case0.max_det && validation.max_nms == case0.max_nms &&
                validation.max_wh == case0.max_wh);
}

// The fast path (decoding only anchors that can pass) equals decode-everything then NMS exactly, and
// matches Ultralytics up to the decode tolerance.
static void test_nms_fast_path(void **state) {
    Fixture *fx = *state;
    DetectDecoder *dec = detect_decoder_create(fx->levels, fx->n_levels, fx->nc, fx->reg_max);
    int64_t A = fx->n_anchors, c_raw = 4 * fx->reg_max + fx->nc, c_pred = 4 + fx->nc;
    float *pred = malloc((size_t)(c_pred * A) * sizeof *pred);
    for (int k = 0; k < N_NMS_CASES; k++) {
        NmsConfig cfg = nms_case(fx, k);
        Detections *fast = detections_create(fx->n_images, cfg.max_det);
        Detections *slow = detections_create(fx->n_images, cfg.max_det);
        Detections *want = reference_detections(fx, k);
        detect_decoder_nms(dec, fx->raw, fx->n_images, &cfg, fast);
        for (int64_t i = 0; i < fx->n_images; i++) {
            detect_decoder_predict(dec, fx->raw + i * c_raw * A, pred);
            nms_predictions(pred, A, fx->nc, &cfg, slow, i);
        }
        assert_detections_equal(fast, slow, fx->n_images);
        for (int64_t i = 0; i < fx->n_images; i++) {
            assert_int_equal(fast->count[i], want->count[i]);
            for (int64_t j = 0; j < want->count[i]; j++) {
                int64_t s = i * cfg.max_det + j;
                assert_int_equal(fast->cls[s], want->cls[s]);
                for (int q = 0; q < 4; q++)
                    assert_true(fabs(fast->boxes[4 * s + q] - want->boxes[4 * s + q]) <= decode_box_tol);
            }
        }
        detections_destroy(fast);
        detections_destroy(slow);
        detections_destroy(want);
    }
    free(pred);
    detect_decoder_destroy(dec);
}

// Ground truth of image i in pixels, as DetectionValidator._prepare_batch converts it.
static int64_t image_targets(const Fixture *fx, int64_t i, float *boxes, int32_t *cls) {
    int64_t n = 0;
    for (int t = 0; t < fx->n_targets; t++) {
        const TargetBox *b = &fx->targets[t];
        if (b->image != i) continue;
        float hw = b->w / 2, hh = b->h / 2, w = (float)fx->img_w, h = (float)fx->img_h;
        boxes[4 * n] = (b->cx - hw) * w, boxes[4 * n + 1] = (b->cy - hh) * h;
        boxes[4 * n + 2] = (b->cx + hw) * w, boxes[4 * n + 3] = (b->cy + hh) * h;
        cls[n++] = b->cls;
    }
    return n;
}

// match_predictions: the true-positive flags of every detection at every threshold, exactly.
static void test_match_reference(void **state) {
    Fixture *fx = *state;
    Detections *d = reference_detections(fx, 0);
    const Record *want = reference_require(&fx->ref, "match:tp");
    float *gt = malloc((size_t)(fx->n_targets + 1) * 4 * sizeof *gt);
    int32_t *gt_cls = malloc((size_t)(fx->n_targets + 1) * sizeof *gt_cls);
    uint16_t *correct = malloc((size_t)d->max_det * sizeof *correct);
    int64_t row = 0, n_tp50 = 0;
    for (int64_t i = 0; i < fx->n_images; i++) {
        int64_t n_gt = image_targets(fx, i, gt, gt_cls), slot0 = i * d->max_det;
        detect_match(d->boxes + 4 * slot0, d->cls + slot0, d->count[i], gt, gt_cls, n_gt, correct);
        for (int64_t j = 0; j < d->count[i]; j++, row++) {
            assert_int_equal(correct[j], (uint16_t)want->values[row]);
            n_tp50 += correct[j] & 1;
        }
    }
    assert_int_equal(row, want->count);
    printf("match: %lld detections, %lld true positives at IoU 0.5\n", (long long)row, (long long)n_tp50);
    free(gt);
    free(gt_cls);
    free(correct);
    detections_destroy(d);
}

// Fails when got and want differ by more than metric_tol; returns the larger of worst and the difference.
static double metric_check(double got, double want, const char *what, double worst) {
    assert_close_named(what, got, want, metric_tol, 0.0);
    return fmax(worst, fabs(got - want));
}

// The whole DetectionValidator run, batch by batch as the generator fed it.
static void test_validation_reference(void **state) {
    Fixture *fx = *state;
    Detections *all = reference_detections(fx, 0);
    const Record *batches = reference_require(&fx->ref, "val:batches");
    DetectMetrics *m = detect_metrics_create(fx->nc);
    int64_t first = 0;
    for (int64_t b = 0; b < batches->count; b++) {
        int64_t n = (int64_t)batches->values[b];
        Detections *d = detections_create(n, all->max_det);
        for (int64_t i = 0; i < n; i++) {
            int64_t from = (first + i) * all->max_det, to = i * all->max_det;
            d->count[i] = all->count[first + i];
            memcpy(d->boxes + 4 * to, all->boxes + 4 * from, (size_t)d->count[i] * 4 * sizeof(float));
            memcpy(d->scores + to, all->scores + from, (size_t)d->count[i] * sizeof(float));
            memcpy(d->cls + to, all->cls + from, (size_t)d->count[i] * sizeof(int32_t));
        }
        TargetBox *t = malloc((size_t)(fx->n_targets + 1) * sizeof *t);
        int n_t = 0;
        for (int k = 0; k < fx->n_targets; k++)
            if (fx->targets[k].image >= first && fx->targets[k].image < first + n) {
                t[n_t] = fx->targets[k];
                t[n_t++].image -= (int32_t)first;
            }
        detect_metrics_add_batch(m, d, t, n_t, fx->img_h, fx->img_w);
        free(t);
        detections_destroy(d);
        first += n;
    }
    assert_int_equal(first, fx->n_images);
    const DetectSummary *s = detect_metrics_finalize(m);
    const double *sum = reference_require(&fx->ref, "val:summary")->values;
    assert_int_equal(s->n_images, (int64_t)sum[0]);
    assert_int_equal(s->n_instances, (int64_t)sum[1]);
    double worst = metric_check(s->p, sum[2], "mean precision", 0.0);
    worst = metric_check(s->r, sum[3], "mean recall", worst);
    worst = metric_check(s->map50, sum[4], "mAP50", worst);
    worst = metric_check(s->map50_95, sum[5], "mAP50-95", worst);
    worst = metric_check(s->fitness, sum[6], "fitness", worst);
    const Record *classes = reference_require(&fx->ref, "val:classes");
    const double *p = reference_require(&fx->ref, "val:p")->values, *r = reference_require(&fx->ref, "val:r")->values;
    const double *ap = reference_require(&fx->ref, "val:ap")->values;
    const double *nt_class = reference_require(&fx->ref, "val:nt_class")->values;
    const double *nt_image = reference_require(&fx->ref, "val:nt_image")->values;
    assert_int_equal(s->n_classes, classes->count);
    for (int64_t c = 0; c < fx->nc; c++) {
        assert_int_equal(s->classes[c].instances, (int64_t)nt_class[c]);
        assert_int_equal(s->classes[c].images, (int64_t)nt_image[c]);
    }
    for (int64_t ci = 0; ci < classes->count; ci++) {
        const DetectClassMetrics *k = &s->classes[(int64_t)classes->values[ci]];
        worst = metric_check(k->p, p[ci], "class precision", worst);
        worst = metric_check(k->r, r[ci], "class recall", worst);
        for (int t = 0; t < DETECT_METRICS_N_IOU; t++)
            worst = metric_check(k->ap[t], ap[ci * DETECT_METRICS_N_IOU + t], "AP", worst);
    }
    printf("metrics: largest difference from Ultralytics %.2e\n", worst);
    detect_summary_print(s, NULL, stdout);
    // finalize again after a reset: an empty run.
    detect_metrics_reset(m);
    s = detect_metrics_finalize(m);
    assert_int_equal(s->n_images, 0);
    assert_true(s->map50_95 == 0.0 && s->p == 0.0);
    detect_metrics_destroy(m);
    detections_destroy(all);
}

// Hand-made runs: two images of 64x64 with three boxes of two classes.
static const TargetBox hand_targets[] = {
    {0, 0, 0.25f, 0.25f, 0.25f, 0.25f}, {0, 1, 0.6f, 0.6f, 0.5f, 0.3f}, {1, 1, 0.5f, 0.5f, 0.8f, 0.8f}};

static const DetectSummary *hand_run(DetectMetrics *m, Detections *d) {
    detect_metrics_reset(m);
    detect_metrics_add_batch(m, d, hand_targets, 3, 64, 64);
    return detect_metrics_finalize(m);
}

static void put_detection(Detections *d, int64_t image, const TargetBox *t, float score, int32_t cls) {
    int64_t slot = image * d->max_det + d->count[image]++;
    d->boxes[4 * slot] = (t->cx - t->w / 2) * 64, d->boxes[4 * slot + 1] = (t->cy - t->h / 2) * 64;
    d->boxes[4 * slot + 2] = (t->cx + t->w / 2) * 64, d->boxes[4 * slot + 3] = (t->cy + t->h / 2) * 64;
    d->scores[slot] = score;
    d->cls[slot] = cls;
}

static void test_hand_cases(void **state) {
    (void)state;
    DetectMetrics *m = detect_metrics_create(3);
    Detections *d = detections_create(2, 10);

    // Every box found, right class: P = R = 1, AP 0.995, not 1: compute_ap's recall padding ends with
    // a point (1, 0), so the last trapezoid (recall 0.99 .. 1) counts half. Class 2 has no labels and
    // is not averaged.
    for (int k = 0; k < 3; k++)
        put_detection(d, hand_targets[k].image, &hand_targets[k], 0.9f - 0.1f * (float)k, hand_targets[k].cls);
    const DetectSummary *s = hand_run(m, d);
    assert_int_equal(s->n_classes, 2);
    assert_int_equal(s->n_instances, 3);
    assert_int_equal(s->classes[1].images, 2);
    assert_true(fabs(s->map50 - 0.995) < 1e-12 && fabs(s->map50_95 - 0.995) < 1e-12);
    assert_true(fabs(s->p - 1.0) < 1e-12 && fabs(s->r - 1.0) < 1e-12);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    const char *names[] = {"cat", "dog", "bird"};
    detect_summary_print(s, names, f);
    fclose(f);
    const char *want_text =
        "                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95)\n"
        "                   all          2          3          1          1      0.995      0.995\n"
        "                   cat          1          1          1          1      0.995      0.995\n"
        "                   dog          2          2          1          1      0.995      0.995\n";
    assert_string_equal(text, want_text);
    free(text);

    // No detections at all.
    d->count[0] = d->count[1] = 0;
    s = hand_run(m, d);
    assert_true(s->map50 == 0.0 && s->map50_95 == 0.0 && s->p == 0.0 && s->r == 0.0);

    // Perfect boxes of the wrong class never match.
    for (int k = 0; k < 3; k++) put_detection(d, hand_targets[k].image, &hand_targets[k], 0.5f, 2);
    s = hand_run(m, d);
    assert_true(s->map50 == 0.0 && s->map50_95 == 0.0);

    detections_destroy(d);
    detect_metrics_destroy(m);
}

// Top-1 / top-5 against ClassificationValidator (nc = 3: "top-5" is top-3; nc = 12).
static void test_classify_reference(void **state) {
    Fixture *fx = *state;
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "cls%d:shape", k);
        const double *shape = reference_require(&fx->ref, name)->values;
        int64_t n = (int64_t)shape[0], nc = (int64_t)shape[1];
        snprintf(name, sizeof name, "cls%d:logits", k);
        float *logits = floats_of(reference_require(&fx->ref, name));
        snprintf(name, sizeof name, "cls%d:labels", k);
        const double *label_values = reference_require(&fx->ref, name)->values;
        int32_t *labels = malloc((size_t)n * sizeof *labels);
        for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)label_values[i];
        snprintf(name, sizeof name, "cls%d:result", k);
        const double *want = reference_require(&fx->ref, name)->values;
        ClassifyMetrics m = {.nc = nc};
        classify_metrics_add(&m, logits, labels, n / 2);  // two batches, as the generator fed them
        classify_metrics_add(&m, logits + n / 2 * nc, labels + n / 2, n - n / 2);
        assert_int_equal(m.n_images, n);
        assert_int_equal(m.top1, (int64_t)want[0]);
        assert_int_equal(m.top5, (int64_t)want[1]);
        // Ultralytics averages in float32: its accuracies are within float32 rounding of the counts'.
        assert_true(fabs(classify_metrics_top1(&m) - want[2]) < 1e-7);
        assert_true(fabs(classify_metrics_top5(&m) - want[3]) < 1e-7);
        classify_metrics_print(&m, stdout);
        free(logits);
        free(labels);
    }
    // Ties rank the lower class first.
    const float tied[] = {1.0f, 3.0f, 3.0f};
    const int32_t second = 2;
    ClassifyMetrics m = {.nc = 3};
    classify_metrics_add(&m, tied, &second, 1);
    assert_int_equal(m.top1, 0);
    assert_int_equal(m.top5, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sort_order),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_nms_reference),
        cmocka_unit_test(test_nms_fast_path),
        cmocka_unit_test(test_match_reference),
        cmocka_unit_test(test_validation_reference),
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_classify_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
