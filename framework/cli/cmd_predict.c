// `yolopipe predict WEIGHTS SOURCE... [--imgsz N] [--conf C] [--iou I] [--max-det K] [--device D] [--out DIR]`:
// runs a detection model on images as Ultralytics' model.predict does (LetterBox auto with OpenCV's
// resize, Detect's decode, NMS, scale_boxes) in this process, on the graph and backend directly.
//
// Writes into DIR (runs/predict, or runs/predict2, ... as run directories are numbered): each image
// with its boxes drawn (JPEG), labels/<stem>.txt (Ultralytics' save_txt with save_conf: one line
// "class cx cy w h conf" per box, normalised to the image, none when nothing was found) and
// predictions.json. Prints one line per image, as Ultralytics does.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "framework/cli/cli.h"
#include "framework/core/clock.h"
#include "framework/core/fsutil.h"
#include "framework/core/json.h"
#include "framework/core/path.h"
#include "framework/data/augment.h"
#include "framework/data/image_io.h"
#include "framework/data/sources.h"
#include "framework/eval/draw.h"
#include "framework/eval/nms.h"
#include "framework/eval/scale_boxes.h"
#include "framework/train/predict_model.h"

enum { PREDICT_MAX_DET = 30000, PREDICT_JPEG_QUALITY = 95 };

typedef struct PredictArgs {
    const char *weights;
    CliList sources;
    int64_t imgsz;  // 0: the run's train.imgsz
    double conf, iou;
    int64_t max_det;
    const char *device, *out;
} PredictArgs;

// --conf and --iou: a number from 0 to 1.
static bool parse_fraction(void *args, const CliOption *option, const char *text, Error *err) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= 0 && v <= 1))
        return error_set(err, "--%s expects a number from 0 to 1, found '%s'", option->name, text);
    *(double *)((char *)args + option->offset) = v;
    return true;
}

static const CliOption predict_options[] = {
    {.name = "imgsz", .value = CLI_VALUE_POSITIVE, .offset = offsetof(PredictArgs, imgsz), .metavar = "N", .max = 8192,
     .help = "the long side of the network input (default: the run's train.imgsz),\n"
             "rounded up to a multiple of the model's largest stride"},
    {.name = "conf", .value = CLI_VALUE_CUSTOM, .offset = offsetof(PredictArgs, conf), .metavar = "C",
     .parse = parse_fraction, .help = "keep boxes whose class score is above C (default 0.25)"},
    {.name = "iou", .value = CLI_VALUE_CUSTOM, .offset = offsetof(PredictArgs, iou), .metavar = "I",
     .parse = parse_fraction,
     .help = "NMS: drop a box overlapping a better one of its class by more than I\n(default 0.7)"},
    {.name = "max-det", .value = CLI_VALUE_POSITIVE, .offset = offsetof(PredictArgs, max_det), .metavar = "K",
     .max = PREDICT_MAX_DET, .help = "at most K boxes per image (default 300)"},
    {.name = "device", .value = CLI_VALUE_STRING, .offset = offsetof(PredictArgs, device), .metavar = "cpu|cuda",
     .help = "where to run (default: a GPU when there is one)"},
    {.name = "out", .value = CLI_VALUE_STRING, .offset = offsetof(PredictArgs, out), .metavar = "DIR",
     .help = "the results folder (default runs/predict; DIR2, DIR3, ... when it exists)"},
};

static const CliPositional predict_positionals[] = {
    {.metavar = "WEIGHTS", .offset = offsetof(PredictArgs, weights)},
    {.metavar = "SOURCE", .offset = offsetof(PredictArgs, sources), .repeated = true},
};

const CliCommand cmd_predict_cli = {
    .name = "predict",
    .summary = "run a detection model on images",
    .description = "Runs the EMA weights of WEIGHTS (a run directory: its best checkpoint, else last; a checkpoint\n"
                   "directory; or a file from `yolopipe export`) on each SOURCE (an image, a folder of images, or a\n"
                   ".txt list of image paths relative to its folder), as Ultralytics' model.predict does.\n",
    .positionals = predict_positionals,
    .n_positionals = 2,
    .options = predict_options,
    .n_options = sizeof predict_options / sizeof *predict_options,
    .notes = "Writes each image with its boxes drawn, labels/<stem>.txt (class cx cy w h conf, normalised) and\n"
             "predictions.json into DIR. An image that cannot be read, or a folder without images, is reported\n"
             "and skipped.\n",
    .run = cmd_predict,
};

// One image's results in original-image pixels.
typedef struct PredictResult {
    int64_t n;
    const float *boxes;  // (n, 4) x1 y1 x2 y2
    const float *scores;
    const int32_t *cls;
} PredictResult;

// "bus.jpg: 480x640 4 person, 1 bus, 12.3 ms": counts per class in class order.
static void print_line(const char *path, const Letterbox *lb, const PredictResult *r, const PredictModel *m,
                       double ms) {
    printf("%s: %dx%d ", path, lb->out_h, lb->out_w);
    int64_t *counts = yp_calloc((size_t)m->nc, sizeof *counts);
    for (int64_t i = 0; i < r->n; i++) counts[r->cls[i]]++;
    bool any = false;
    for (int64_t c = 0; c < m->nc; c++)
        if (counts[c]) printf("%s%lld %s", any ? ", " : "", (long long)counts[c], m->names[c]), any = true;
    printf("%s, %.1f ms\n", any ? "" : "(no detections)", ms);
    free(counts);
}

// labels/<stem>.txt as Ultralytics' save_txt(save_conf=True) writes it ("%g" of each value).
static bool write_labels(const char *dir, const char *path, const Image *im, const PredictResult *r, Error *err) {
    if (!r->n) return true;
    char *stem = path_stem(path), file[PATH_MAX];
    bool ok = path_format(file, sizeof file, err, "%s/labels/%s.txt", dir, stem);
    free(stem);
    FsAtomicFile *af = NULL;
    if (!ok || !fs_atomic_file_open(file, &af, err)) return false;
    FILE *f = fs_atomic_file_stream(af);
    for (int64_t i = 0; i < r->n; i++) {
        const float *b = r->boxes + 4 * i;
        float cx = (b[0] + b[2]) / 2 / (float)im->width, cy = (b[1] + b[3]) / 2 / (float)im->height;
        float w = (b[2] - b[0]) / (float)im->width, h = (b[3] - b[1]) / (float)im->height;
        fprintf(f, "%d %g %g %g %g %g\n", r->cls[i], cx, cy, w, h, r->scores[i]);
    }
    return fs_atomic_file_commit(af, err);
}

// The image with its boxes, under its own name (a .jpg name when it had another extension: the file is JPEG).
static bool write_drawn(const char *dir, const char *path, Image *im, const PredictResult *r, const PredictModel *m,
                        Error *err) {
    DrawBox *boxes = yp_malloc((size_t)(r->n + 1) * sizeof *boxes);
    for (int64_t i = 0; i < r->n; i++)
        boxes[i] = (DrawBox){.x1 = r->boxes[4 * i], .y1 = r->boxes[4 * i + 1], .x2 = r->boxes[4 * i + 2],
                             .y2 = r->boxes[4 * i + 3], .cls = r->cls[i], .conf = r->scores[i]};
    draw_boxes(im, boxes, (int)r->n, (const char *const *)m->names, m->nc);
    free(boxes);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    bool jpeg = dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
    char *stem = path_stem(path), file[PATH_MAX];
    bool ok = jpeg ? path_format(file, sizeof file, err, "%s/%s", dir, base)
                   : path_format(file, sizeof file, err, "%s/%s.jpg", dir, stem);
    free(stem);
    return ok && image_write_jpeg(file, im, PREDICT_JPEG_QUALITY, err);
}

static void write_json_image(FILE *f, bool first, const char *path, const Image *im, const PredictResult *r,
                             const PredictModel *m) {
    fprintf(f, "%s\n    {\"path\": ", first ? "" : ",");
    json_write_string(f, path);
    fprintf(f, ", \"width\": %d, \"height\": %d, \"detections\": [", im->width, im->height);
    for (int64_t i = 0; i < r->n; i++) {
        const float *b = r->boxes + 4 * i;
        fprintf(f, "%s\n      {\"class\": %d, \"name\": ", i ? "," : "", r->cls[i]);
        json_write_string(f, m->names[r->cls[i]]);
        fprintf(f, ", \"confidence\": %.9g, \"box\": [%.9g, %.9g, %.9g, %.9g]}", r->scores[i], b[0], b[1], b[2], b[3]);
    }
    fprintf(f, "%s]}", r->n ? "\n    " : "");
}

// Letterbox, forward, decode and NMS of one image into det (slot 0), boxes in original pixels.
static void predict_image(PredictModel *m, const Image *im, const Letterbox *lb, const NmsConfig *nms, float *raw,
                          Detections *det) {
    Graph *g = m->graph;
    Backend *be = m->be;
    Image boxed;
    augment_letterbox_image(im, lb, true, &boxed);
    Error err = {0};
    YP_CHECK(graph_set_input_size(g, 1, lb->out_h, lb->out_w, &err));  // within imgsz, multiples of the stride
    be->ops->upload_images(be, g->input.data, boxed.data, 1, lb->out_h, lb->out_w);
    image_free(&boxed);
    graph_forward(g, false);
    Layer *out = graph_output(g);
    be->ops->download_activation(be, raw, out->out.data, (size_t)tensor_elems(&out->out));
    DetectDecoder *dec = detect_decoder_for_graph(g, lb->out_h, lb->out_w, m->nc);
    det->n_images = 1;
    detect_decoder_nms(dec, raw, 1, nms, det);
    detect_decoder_destroy(dec);
    scale_boxes_to_original(lb->out_w, lb->out_h, im->width, im->height, det->boxes, det->count[0]);
}

// What was skipped (sources that name nothing, images that do not decode): held back until the first
// image is predicted, so that a run with nothing to predict prints one line, then reported as it
// happens.
typedef struct Skips {
    char *held;
    size_t held_len;
    FILE *f;       // the held lines, until `shown`
    bool shown;
    int64_t n;
} Skips;

static void skips_show(Skips *s) {
    if (s->shown) return;
    fclose(s->f);
    fputs(s->held, stderr);
    s->f = stderr;
    s->shown = true;
}

// The one line for a run that predicted nothing: the first reason held, and how many more there were.
static bool skips_nothing_left(Skips *s, Error *err) {
    fclose(s->f);
    s->f = NULL;
    const char *first = s->held;
    size_t len = strcspn(first, "\n"), tail = strlen(", skipped");
    if (len >= tail && !strncmp(first + len - tail, ", skipped", tail)) len -= tail;
    int64_t lines = 0;
    for (const char *p = s->held; *p; p++) lines += *p == '\n';
    if (lines > 1) return error_set(err, "yolopipe predict: nothing to predict: %.*s (and %lld more skipped)", (int)len, first, (long long)(lines - 1));
    return error_set(err, "yolopipe predict: nothing to predict: %.*s", (int)len, first);
}

static int predict_run(const PredictArgs *args, PredictDevice device) {
    Skips skips = {0};
    skips.f = open_memstream(&skips.held, &skips.held_len);
    YP_CHECK(skips.f);
    SourceList src;
    source_list_expand(args->sources.items, args->sources.n, skips.f, &src);
    PredictModel *m = NULL;
    Error err = {0};
    char dir[PATH_MAX], sub[PATH_MAX];
    FsAtomicFile *json = NULL;
    bool ok = src.n > 0 || skips_nothing_left(&skips, &err);
    ok = ok && predict_model_open(args->weights, device, args->imgsz, stdout, &m, &err) &&
         path_increment(dir, sizeof dir, args->out ? args->out : "runs/predict", &err) &&
         path_format(sub, sizeof sub, &err, "%s/labels", dir) && fs_mkdir_p(sub, &err) &&
         path_format(sub, sizeof sub, &err, "%s/predictions.json", dir) && fs_atomic_file_open(sub, &json, &err);
    NmsConfig nms = nms_config_validation();
    nms.conf = (float)args->conf;
    nms.iou = args->iou;
    nms.max_det = args->max_det;
    nms.multi_label = false;  // the predictor's setting (validation's is multi-label)
    Detections *det = ok ? detections_create(1, args->max_det) : NULL;
    float *raw = ok ? yp_malloc((size_t)tensor_elems(&graph_output(m->graph)->out) * sizeof(float)) : NULL;
    FILE *f = ok ? fs_atomic_file_stream(json) : NULL;
    if (ok) {
        fprintf(f, "{\"weights\": ");
        json_write_string(f, args->weights);
        fprintf(f, ", \"imgsz\": %lld, \"conf\": %.9g, \"iou\": %.9g, \"images\": [", (long long)m->imgsz, args->conf,
                args->iou);
    }
    int64_t done = 0;
    for (int64_t i = 0; ok && i < src.n; i++) {
        const char *path = src.paths[i];
        Image im;
        Error read_err = {0};
        if (!image_read(path, &im, &read_err)) {
            fprintf(skips.f, "%s, skipped\n", read_err.message);
            continue;
        }
        skips_show(&skips);
        Letterbox lb = augment_letterbox_rect(im.width, im.height, (int)m->imgsz, (int)predict_model_stride(m));
        double t0 = clock_monotonic_s();
        predict_image(m, &im, &lb, &nms, raw, det);
        double ms = (clock_monotonic_s() - t0) * 1e3;
        PredictResult r = {.n = det->count[0], .boxes = det->boxes, .scores = det->scores, .cls = det->cls};
        write_json_image(f, done == 0, path, &im, &r, m);
        print_line(path, &lb, &r, m, ms);
        ok = write_labels(dir, path, &im, &r, &err) && write_drawn(dir, path, &im, &r, m, &err);
        image_free(&im);
        done++;
    }
    if (ok && !done) ok = skips_nothing_left(&skips, &err);
    if (ok) {
        fprintf(f, "\n  ]}\n");
        ok = fs_atomic_file_commit(json, &err);
        json = NULL;
    }
    if (json) fs_atomic_file_abort(json);
    if (skips.f && !skips.shown) fclose(skips.f);
    free(skips.held);
    if (ok) printf("%lld image%s, results in %s (drawn images, labels/, predictions.json)\n", (long long)done,
                   done == 1 ? "" : "s", dir);
    else fprintf(stderr, "%s\n", err.message);
    free(raw);
    detections_destroy(det);
    predict_model_destroy(m);
    source_list_free(&src);
    return ok ? 0 : YP_EXIT_USAGE;
}

int cmd_predict(int argc, char **argv) {
    PredictArgs args = {.conf = 0.25, .iou = 0.7, .max_det = 300};
    int rc = cli_parse(&cmd_predict_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    PredictDevice device = PREDICT_DEVICE_AUTO;
    if (args.device && !strcmp(args.device, "cpu")) device = PREDICT_DEVICE_CPU;
    else if (args.device && !strcmp(args.device, "cuda")) device = PREDICT_DEVICE_CUDA;
    else if (args.device) rc = cli_usage_error(&cmd_predict_cli, "--device must be cpu or cuda, found '%s'", args.device);
    if (rc == CLI_PARSED) rc = predict_run(&args, device);
    free(args.sources.items);
    return rc;
}
