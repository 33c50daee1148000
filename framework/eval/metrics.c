#include "framework/eval/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/error.h"
#include "framework/core/sort.h"

// torch.linspace(0.5, 0.95, 10) in float32: the nearest floats to 0.50, 0.55, ..., 0.95.
static const float detect_iou_thresholds[DETECT_METRICS_N_IOU] = {0.50f, 0.55f, 0.60f, 0.65f, 0.70f,
                                                                   0.75f, 0.80f, 0.85f, 0.90f, 0.95f};

// ap_per_class' confidence axis (np.linspace(0, 1, 1000)) and smooth(·, 0.1) over it: a box filter of
// round(1000 * 0.1 * 2) // 2 + 1 = 101 points, the ends padded with the end values.
enum { CURVE_POINTS = DETECT_CURVE_POINTS, SMOOTH_POINTS = 101, AP_POINTS = 101 };

// ap_per_class' eps: recall = tp / (n_labels + eps), F1 = 2pr / (p + r + eps).
static const double AP_EPS = 1e-16;

struct DetectMetrics {
    int64_t nc, n_images;
    int64_t *instances, *images;  // (nc) ground-truth boxes, images containing the class
    int64_t n_det, capacity;      // detections added, in the order added
    float *conf;
    int32_t *cls;
    uint16_t *correct;            // bit t: true positive at detect_iou_thresholds[t]
    ConfusionMatrix *confusion;
    int64_t *curve_cls;           // (nc) DetectCurves.cls
    double *p_curve, *r_curve, *f1_curve, *pr_curve;  // (nc, CURVE_POINTS), the first n_classes rows used
    DetectSummary summary;        // filled by finalize; summary.classes (nc) owned
};

static void detect_metrics_reserve(DetectMetrics *m, int64_t more) {
    if (m->n_det + more <= m->capacity) return;
    m->capacity = (m->n_det + more) * 2;
    m->conf = yp_realloc(m->conf, (size_t)m->capacity * sizeof *m->conf);
    m->cls = yp_realloc(m->cls, (size_t)m->capacity * sizeof *m->cls);
    m->correct = yp_realloc(m->correct, (size_t)m->capacity * sizeof *m->correct);
}

DetectMetrics *detect_metrics_create(int64_t nc) {
    YP_CHECK(nc >= 1);
    DetectMetrics *m = yp_calloc(1, sizeof *m);
    m->nc = nc;
    m->instances = yp_calloc((size_t)nc, sizeof *m->instances);
    m->images = yp_calloc((size_t)nc, sizeof *m->images);
    m->summary.classes = yp_calloc((size_t)nc, sizeof *m->summary.classes);
    m->confusion = confusion_create(nc, true);
    m->curve_cls = yp_calloc((size_t)nc, sizeof *m->curve_cls);
    m->p_curve = yp_calloc((size_t)nc * CURVE_POINTS, sizeof *m->p_curve);
    m->r_curve = yp_calloc((size_t)nc * CURVE_POINTS, sizeof *m->r_curve);
    m->f1_curve = yp_calloc((size_t)nc * CURVE_POINTS, sizeof *m->f1_curve);
    m->pr_curve = yp_calloc((size_t)nc * CURVE_POINTS, sizeof *m->pr_curve);
    detect_metrics_reserve(m, 1024);  // never NULL, even before the first detection
    return m;
}

void detect_metrics_destroy(DetectMetrics *m) {
    if (!m) return;
    free(m->instances);
    free(m->images);
    free(m->conf);
    free(m->cls);
    free(m->correct);
    free(m->summary.classes);
    confusion_destroy(m->confusion);
    free(m->curve_cls);
    free(m->p_curve);
    free(m->r_curve);
    free(m->f1_curve);
    free(m->pr_curve);
    free(m);
}

void detect_metrics_reset(DetectMetrics *m) {
    m->n_images = 0;
    m->n_det = 0;
    memset(m->instances, 0, (size_t)m->nc * sizeof *m->instances);
    memset(m->images, 0, (size_t)m->nc * sizeof *m->images);
    confusion_reset(m->confusion);
}

// Ultralytics' box_iou in float32: inter / (area1 + area2 - inter + 1e-7).
static float box_iou(const float *a, const float *b) {
    float w = fmaxf(fminf(a[2], b[2]) - fmaxf(a[0], b[0]), 0.0f);
    float h = fmaxf(fminf(a[3], b[3]) - fmaxf(a[1], b[1]), 0.0f);
    float inter = w * h;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-7f);
}

void detect_match(const float *det_boxes, const int32_t *det_cls, int64_t n_det, const float *gt_boxes,
                  const int32_t *gt_cls, int64_t n_gt, uint16_t *correct) {
    memset(correct, 0, (size_t)n_det * sizeof *correct);
    if (n_det == 0 || n_gt == 0) return;
    float *iou = yp_malloc((size_t)n_gt * sizeof *iou);
    bool *claimed = yp_calloc((size_t)n_gt * DETECT_METRICS_N_IOU, sizeof *claimed);  // (n_gt, thresholds)
    for (int64_t j = 0; j < n_det; j++) {
        for (int64_t k = 0; k < n_gt; k++)
            iou[k] = gt_cls[k] == det_cls[j] ? box_iou(gt_boxes + 4 * k, det_boxes + 4 * j) : 0.0f;
        for (int t = 0; t < DETECT_METRICS_N_IOU; t++) {
            // The first unclaimed ground truth with the highest IoU (numpy's argmax).
            int64_t best = 0;
            float best_iou = claimed[t] ? 0.0f : iou[0];
            for (int64_t k = 1; k < n_gt; k++) {
                float v = claimed[k * DETECT_METRICS_N_IOU + t] ? 0.0f : iou[k];
                if (v > best_iou) best = k, best_iou = v;
            }
            if (best_iou >= detect_iou_thresholds[t]) {
                correct[j] |= (uint16_t)(1u << t);
                claimed[best * DETECT_METRICS_N_IOU + t] = true;
            }
        }
    }
    free(iou);
    free(claimed);
}

void detect_metrics_add_batch(DetectMetrics *m, const Detections *dets, const TargetBox *targets, int n_targets,
                              int64_t img_h, int64_t img_w) {
    YP_CHECK(img_h >= 1 && img_w >= 1 && n_targets >= 0);
    int64_t n_images = dets->n_images;
    // Ground truth grouped by image, in the given order within an image (ties in matching depend on
    // it), converted as DetectionValidator does: xywh2xyxy, then x (w, h, w, h) in float32.
    int64_t *start = yp_calloc((size_t)n_images + 1, sizeof *start);
    for (int i = 0; i < n_targets; i++) {
        YP_CHECK(targets[i].image >= 0 && targets[i].image < n_images);
        YP_CHECK(targets[i].cls >= 0 && targets[i].cls < m->nc);
        start[targets[i].image + 1]++;
    }
    for (int64_t i = 0; i < n_images; i++) start[i + 1] += start[i];
    float *gt_boxes = yp_malloc((size_t)n_targets * 4 * sizeof *gt_boxes);
    int32_t *gt_cls = yp_malloc((size_t)n_targets * sizeof *gt_cls);
    int64_t *next = yp_malloc((size_t)n_images * sizeof *next);
    memcpy(next, start, (size_t)n_images * sizeof *next);
    float w = (float)img_w, h = (float)img_h;
    for (int i = 0; i < n_targets; i++) {
        const TargetBox *t = &targets[i];
        int64_t at = next[t->image]++;
        float half_w = t->w / 2, half_h = t->h / 2;
        gt_boxes[4 * at] = (t->cx - half_w) * w;
        gt_boxes[4 * at + 1] = (t->cy - half_h) * h;
        gt_boxes[4 * at + 2] = (t->cx + half_w) * w;
        gt_boxes[4 * at + 3] = (t->cy + half_h) * h;
        gt_cls[at] = t->cls;
    }
    bool *present = yp_malloc((size_t)m->nc * sizeof *present);
    for (int64_t i = 0; i < n_images; i++) {
        m->n_images++;
        memset(present, 0, (size_t)m->nc * sizeof *present);
        for (int64_t k = start[i]; k < start[i + 1]; k++) {
            m->instances[gt_cls[k]]++;
            present[gt_cls[k]] = true;
        }
        for (int64_t c = 0; c < m->nc; c++) m->images[c] += present[c];
        int64_t n_det = dets->count[i], slot0 = i * dets->max_det;
        YP_CHECK(n_det >= 0 && n_det <= dets->max_det);
        detect_metrics_reserve(m, n_det);
        for (int64_t j = 0; j < n_det; j++) YP_CHECK(dets->cls[slot0 + j] >= 0 && dets->cls[slot0 + j] < m->nc);
        memcpy(m->conf + m->n_det, dets->scores + slot0, (size_t)n_det * sizeof *m->conf);
        memcpy(m->cls + m->n_det, dets->cls + slot0, (size_t)n_det * sizeof *m->cls);
        detect_match(dets->boxes + 4 * slot0, dets->cls + slot0, n_det, gt_boxes + 4 * start[i], gt_cls + start[i],
                     start[i + 1] - start[i], m->correct + m->n_det);
        confusion_add_detections(m->confusion, dets->boxes + 4 * slot0, dets->scores + slot0, dets->cls + slot0, n_det,
                                 gt_boxes + 4 * start[i], gt_cls + start[i], start[i + 1] - start[i]);
        m->n_det += n_det;
    }
    free(start);
    free(next);
    free(gt_boxes);
    free(gt_cls);
    free(present);
}

// numpy.interp at one point: xp ascending (ties allowed), n >= 1; left / right outside [xp[0], xp[n-1]].
static double interp(double x, const double *xp, const double *fp, int64_t n, double left, double right) {
    if (x > xp[n - 1]) return right;
    int64_t lo = 0, hi = n;  // find j, the last index with xp[j] <= x
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (xp[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    int64_t j = lo - 1;
    if (j < 0) return left;
    if (j == n - 1 || xp[j] == x) return fp[j];
    double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    return slope * (x - xp[j]) + fp[j];
}

double detect_curve_x(int i) { return i == CURVE_POINTS - 1 ? 1.0 : i * (1.0 / (CURVE_POINTS - 1)); }

// compute_ap: recall padded to 0 .. 1, the precision envelope, interpolated at 101 recall points and
// integrated with the trapezoid rule (np.trapezoid, not COCO's mean of the 101 values). pr_curve:
// NULL, or CURVE_POINTS doubles that get the envelope at px (ap_per_class' prec_values).
// scratch: 2 (n + 3) doubles.
static double compute_ap(const double *recall, const double *precision, int64_t n, double *pr_curve,
                         double *scratch) {
    double *mrec = scratch, *mpre = scratch + n + 3;
    mrec[0] = 0.0;
    mpre[0] = 1.0;
    for (int64_t i = 0; i < n; i++) mrec[i + 1] = recall[i], mpre[i + 1] = precision[i];
    mrec[n + 1] = recall[n - 1], mpre[n + 1] = 0.0;
    mrec[n + 2] = 1.0, mpre[n + 2] = 0.0;
    for (int64_t i = n + 1; i >= 0; i--) mpre[i] = mpre[i] > mpre[i + 1] ? mpre[i] : mpre[i + 1];
    for (int x = 0; pr_curve && x < CURVE_POINTS; x++)
        pr_curve[x] = interp(detect_curve_x(x), mrec, mpre, n + 3, mpre[0], mpre[n + 2]);
    double ap = 0.0, x_prev = 0.0, y_prev = 0.0;
    for (int k = 0; k < AP_POINTS; k++) {
        double x = k == AP_POINTS - 1 ? 1.0 : k * (1.0 / (AP_POINTS - 1));  // np.linspace(0, 1, 101)
        double y = interp(x, mrec, mpre, n + 3, mpre[0], mpre[n + 2]);
        if (k) ap += (x - x_prev) * (y + y_prev) / 2.0;
        x_prev = x, y_prev = y;
    }
    return ap;
}

// One class's detections (conf descending): AP at every threshold, its precision and recall curves
// over the confidence axis and its precision envelope over recall (at IoU 0.5). scratch: 5 n + 6 doubles.
static void class_curves(const DetectMetrics *m, const int64_t *dets, int64_t n, int64_t n_labels,
                         DetectClassMetrics *out, double *p_curve, double *r_curve, double *pr_curve,
                         double *scratch) {
    double *neg_conf = scratch, *recall = scratch + n, *precision = scratch + 2 * n, *ap_scratch = scratch + 3 * n;
    for (int64_t i = 0; i < n; i++) neg_conf[i] = -(double)m->conf[dets[i]];
    for (int t = 0; t < DETECT_METRICS_N_IOU; t++) {
        int64_t tp = 0;
        for (int64_t i = 0; i < n; i++) {
            tp += (m->correct[dets[i]] >> t) & 1;
            recall[i] = (double)tp / ((double)n_labels + AP_EPS);
            precision[i] = (double)tp / (double)(i + 1);
        }
        if (t == 0)
            for (int x = 0; x < CURVE_POINTS; x++) {
                r_curve[x] = interp(-detect_curve_x(x), neg_conf, recall, n, 0.0, recall[n - 1]);
                p_curve[x] = interp(-detect_curve_x(x), neg_conf, precision, n, 1.0, precision[n - 1]);
            }
        out->ap[t] = compute_ap(recall, precision, n, t == 0 ? pr_curve : NULL, ap_scratch);
    }
}

// Index of the largest smooth(mean F1, 0.1) (the first one).
static int best_f1_index(const double *mean_f1) {
    enum { PAD = SMOOTH_POINTS / 2 };
    int best = 0;
    double best_value = 0.0;
    for (int i = 0; i < CURVE_POINTS; i++) {
        double s = 0.0;
        for (int k = 0; k < SMOOTH_POINTS; k++) {
            int at = i + k - PAD;
            at = at < 0 ? 0 : at >= CURVE_POINTS ? CURVE_POINTS - 1 : at;
            s += mean_f1[at] * (1.0 / SMOOTH_POINTS);
        }
        if (i == 0 || s > best_value) best = i, best_value = s;
    }
    return best;
}

const DetectSummary *detect_metrics_finalize(DetectMetrics *m) {
    int64_t nc = m->nc, n = m->n_det;
    DetectSummary *s = &m->summary;
    DetectClassMetrics *classes = s->classes;
    memset(classes, 0, (size_t)nc * sizeof *classes);
    *s = (DetectSummary){.nc = nc, .n_images = m->n_images, .classes = classes};
    // Detections by class, each class in descending confidence.
    int64_t *order = yp_malloc((size_t)n * sizeof *order);
    sort_order_descending(m->conf, n, order);
    int64_t *start = yp_calloc((size_t)nc + 1, sizeof *start);
    for (int64_t i = 0; i < n; i++) start[m->cls[i] + 1]++;
    for (int64_t c = 0; c < nc; c++) start[c + 1] += start[c];
    int64_t *by_class = yp_malloc((size_t)n * sizeof *by_class);
    int64_t *next = yp_malloc((size_t)nc * sizeof *next);
    memcpy(next, start, (size_t)nc * sizeof *next);
    for (int64_t i = 0; i < n; i++) by_class[next[m->cls[order[i]]]++] = order[i];

    int64_t n_classes = 0;
    for (int64_t c = 0; c < nc; c++) n_classes += m->instances[c] > 0;
    double *p_curve = m->p_curve, *r_curve = m->r_curve, *f1_curve = m->f1_curve, *pr_curve = m->pr_curve;
    size_t curve_bytes = (size_t)n_classes * CURVE_POINTS * sizeof(double);
    memset(p_curve, 0, curve_bytes);
    memset(r_curve, 0, curve_bytes);
    memset(pr_curve, 0, curve_bytes);
    double *scratch = yp_malloc((size_t)(5 * n + 6) * sizeof *scratch);
    for (int64_t c = 0, ci = 0; c < nc; c++) {
        classes[c].images = m->images[c];
        classes[c].instances = m->instances[c];
        s->n_instances += m->instances[c];
        if (!m->instances[c]) continue;
        int64_t n_pred = start[c + 1] - start[c];
        m->curve_cls[ci] = c;
        if (n_pred)  // a class that is never predicted keeps AP 0 and zero curves
            class_curves(m, by_class + start[c], n_pred, m->instances[c], &classes[c], p_curve + ci * CURVE_POINTS,
                         r_curve + ci * CURVE_POINTS, pr_curve + ci * CURVE_POINTS, scratch);
        ci++;
    }
    // Precision and recall where the smoothed mean F1 over the classes with labels is highest.
    double *mean_f1 = yp_calloc(CURVE_POINTS, sizeof *mean_f1);
    for (int64_t ci = 0; ci < n_classes; ci++)
        for (int x = 0; x < CURVE_POINTS; x++) {
            double p = p_curve[ci * CURVE_POINTS + x], r = r_curve[ci * CURVE_POINTS + x];
            f1_curve[ci * CURVE_POINTS + x] = 2 * p * r / (p + r + AP_EPS);
            mean_f1[x] += f1_curve[ci * CURVE_POINTS + x];
        }
    for (int x = 0; x < CURVE_POINTS && n_classes; x++) mean_f1[x] /= (double)n_classes;
    int at = n_classes ? best_f1_index(mean_f1) : 0;
    double ap_sum = 0.0;
    for (int64_t c = 0, ci = 0; c < nc; c++) {
        if (!m->instances[c]) continue;
        DetectClassMetrics *k = &classes[c];
        k->p = p_curve[ci * CURVE_POINTS + at];
        k->r = r_curve[ci * CURVE_POINTS + at];
        k->ap50 = k->ap[0];
        double row = 0.0;
        for (int t = 0; t < DETECT_METRICS_N_IOU; t++) row += k->ap[t];
        k->ap50_95 = row / DETECT_METRICS_N_IOU;
        s->p += k->p;
        s->r += k->r;
        s->map50 += k->ap50;
        ap_sum += row;
        ci++;
    }
    s->n_classes = n_classes;
    if (n_classes) {
        s->p /= (double)n_classes;
        s->r /= (double)n_classes;
        s->map50 /= (double)n_classes;
        s->map50_95 = ap_sum / (double)(n_classes * DETECT_METRICS_N_IOU);
    }
    s->fitness = s->map50_95;
    s->curves = (DetectCurves){.n_rows = n_classes, .cls = m->curve_cls, .p = p_curve, .r = r_curve, .f1 = f1_curve,
                               .pr = pr_curve};
    s->confusion = m->confusion;
    free(order);
    free(start);
    free(by_class);
    free(next);
    free(scratch);
    free(mean_f1);
    return s;
}

void detect_summary_print(const DetectSummary *s, const char *const *names, FILE *f) {
    static const char *row = "%22s%11lld%11lld%11.3g%11.3g%11.3g%11.3g\n";
    fprintf(f, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)");
    fprintf(f, row, "all", (long long)s->n_images, (long long)s->n_instances, s->p, s->r, s->map50, s->map50_95);
    if (!s->n_instances) fprintf(f, "no labels found in the validation set, cannot compute metrics without labels\n");
    if (s->nc <= 1) return;
    for (int64_t c = 0; c < s->nc; c++) {
        const DetectClassMetrics *k = &s->classes[c];
        if (!k->instances) continue;
        char index[24];
        snprintf(index, sizeof index, "%lld", (long long)c);
        fprintf(f, row, names ? names[c] : index, (long long)k->images, (long long)k->instances, k->p, k->r, k->ap50,
                k->ap50_95);
    }
}

void classify_metrics_add(ClassifyMetrics *m, const float *scores, const int32_t *labels, int64_t n) {
    int64_t top_k = m->nc < 5 ? m->nc : 5;
    YP_CHECK(m->nc >= 1);
    for (int64_t i = 0; i < n; i++) {
        const float *row = scores + i * m->nc;
        int32_t label = labels[i];
        YP_CHECK(label >= 0 && label < m->nc);
        // The label's place in a stable descending sort: classes above it, and equal ones before it.
        int64_t rank = 0;
        for (int64_t c = 0; c < m->nc; c++) rank += row[c] > row[label] || (row[c] == row[label] && c < label);
        m->top1 += rank == 0;
        if (m->confusion) confusion_add_top1(m->confusion, row, &label, 1);
        m->top5 += rank < top_k;
        m->n_images++;
    }
}

double classify_metrics_top1(const ClassifyMetrics *m) {
    return m->n_images ? (double)m->top1 / (double)m->n_images : 0.0;
}

double classify_metrics_top5(const ClassifyMetrics *m) {
    return m->n_images ? (double)m->top5 / (double)m->n_images : 0.0;
}

double classify_metrics_fitness(const ClassifyMetrics *m) {
    return (classify_metrics_top1(m) + classify_metrics_top5(m)) / 2;
}

void classify_metrics_print(const ClassifyMetrics *m, FILE *f) {
    fprintf(f, "%22s%11s%11s\n", "classes", "top1_acc", "top5_acc");
    fprintf(f, "%22s%11.3g%11.3g\n", "all", classify_metrics_top1(m), classify_metrics_top5(m));
}

// ---- confusion matrix ------------------------------------------------------------------------------

ConfusionMatrix *confusion_create(int64_t nc, bool detect) {
    YP_CHECK(nc >= 1);
    ConfusionMatrix *cm = yp_calloc(1, sizeof *cm);
    *cm = (ConfusionMatrix){.nc = nc, .n = detect ? nc + 1 : nc, .conf = CONFUSION_DETECT_CONF,
                            .iou = CONFUSION_DETECT_IOU};
    cm->counts = yp_calloc((size_t)(cm->n * cm->n), sizeof *cm->counts);
    return cm;
}

void confusion_destroy(ConfusionMatrix *cm) {
    if (!cm) return;
    free(cm->counts);
    free(cm);
}

void confusion_reset(ConfusionMatrix *cm) { memset(cm->counts, 0, (size_t)(cm->n * cm->n) * sizeof *cm->counts); }

void confusion_add_detections(ConfusionMatrix *cm, const float *det_boxes, const float *det_scores,
                              const int32_t *det_cls, int64_t n_det, const float *gt_boxes, const int32_t *gt_cls,
                              int64_t n_gt) {
    YP_CHECK(cm->n == cm->nc + 1);
    int64_t bg = cm->nc, n = cm->n;
    if (n_gt && !n_det) {  // checked before the confidence cut, as process_batch does
        for (int64_t k = 0; k < n_gt; k++) cm->counts[bg * n + gt_cls[k]]++;
        return;
    }
    // The detections above the confidence cut, in their order.
    int64_t *kept = yp_malloc((size_t)(n_det + 1) * sizeof *kept), n_kept = 0;
    for (int64_t j = 0; j < n_det; j++)
        if (det_scores[j] > cm->conf) kept[n_kept++] = j;
    float *iou = yp_malloc((size_t)(n_gt * n_kept + 1) * sizeof *iou);  // (n_gt, n_kept)
    for (int64_t k = 0; k < n_gt; k++)
        for (int64_t j = 0; j < n_kept; j++) iou[k * n_kept + j] = box_iou(gt_boxes + 4 * k, det_boxes + 4 * kept[j]);
    // Candidates (any IoU above the cut) by descending score, ties in index order (a stable argsort).
    float *cand_score = yp_malloc((size_t)(n_kept + 1) * sizeof *cand_score);
    int64_t *cand = yp_malloc((size_t)(n_kept + 1) * sizeof *cand), n_cand = 0;
    for (int64_t j = 0; j < n_kept; j++) {
        bool any = false;
        for (int64_t k = 0; k < n_gt && !any; k++) any = iou[k * n_kept + j] > cm->iou;
        if (any) cand[n_cand] = j, cand_score[n_cand++] = det_scores[kept[j]];
    }
    int64_t *order = yp_malloc((size_t)(n_cand + 1) * sizeof *order);
    sort_order_descending(cand_score, n_cand, order);
    int64_t *gt_match = yp_malloc((size_t)(n_gt + 1) * sizeof *gt_match);
    bool *det_matched = yp_calloc((size_t)(n_kept + 1), sizeof *det_matched);
    for (int64_t k = 0; k < n_gt; k++) gt_match[k] = -1;
    for (int64_t q = 0; q < n_cand; q++) {
        int64_t j = cand[order[q]], best = 0;  // numpy's argmax: the first largest
        for (int64_t k = 1; k < n_gt; k++)
            if (iou[k * n_kept + j] > iou[best * n_kept + j]) best = k;
        if (!(iou[best * n_kept + j] > cm->iou)) continue;
        gt_match[best] = j;
        det_matched[j] = true;
        for (int64_t i = 0; i < n_kept; i++) iou[best * n_kept + i] = 0.0f;  // the ground truth is claimed
    }
    for (int64_t k = 0; k < n_gt; k++)
        cm->counts[(gt_match[k] >= 0 ? det_cls[kept[gt_match[k]]] : bg) * n + gt_cls[k]]++;
    for (int64_t j = 0; j < n_kept; j++)
        if (!det_matched[j]) cm->counts[det_cls[kept[j]] * n + bg]++;
    free(kept);
    free(iou);
    free(cand_score);
    free(cand);
    free(order);
    free(gt_match);
    free(det_matched);
}

void confusion_add_top1(ConfusionMatrix *cm, const float *scores, const int32_t *labels, int64_t n) {
    YP_CHECK(cm->n == cm->nc);
    for (int64_t i = 0; i < n; i++) {
        const float *row = scores + i * cm->nc;
        int64_t top = 0;
        for (int64_t c = 1; c < cm->nc; c++)
            if (row[c] > row[top]) top = c;
        YP_CHECK(labels[i] >= 0 && labels[i] < cm->nc);
        cm->counts[top * cm->n + labels[i]]++;
    }
}
