#include "framework/data/synth.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "framework/core/launcher.h"
#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/rng.h"
#include "framework/data/image_io.h"

const char *const synth_task_names[SYNTH_TASK_COUNT] = {"detect", "classify"};
const char *const synth_shape_names[SYNTH_SHAPE_COUNT] = {"circle", "square", "triangle", "cross", "ring", "star"};

typedef enum SynthSplit { SYNTH_SPLIT_TRAIN, SYNTH_SPLIT_VAL, SYNTH_SPLIT_COUNT } SynthSplit;
static const char *const split_names[SYNTH_SPLIT_COUNT] = {"train", "val"};

enum {
    SYNTH_MAX_IMAGES = 1000000,  // file names have six digits
    SYNTH_MAX_OBJECTS = 6,       // per detection image
    SYNTH_PLACE_TRIES = 30,      // positions tried per object before it is left out
    SHAPE_MAX_VERTICES = 12,     // the cross
};

// Detection objects: the longer side of each box is 8%–40% of the image side (log-uniform, so small
// objects are as common as large ones); a new object may cover at most 30% of an earlier object's box,
// so every labelled object stays mostly visible. Classification: one shape of 35%–75% of the side,
// its centre within 12% of the image's.
static const float detect_side_min = 0.08f, detect_side_max = 0.40f, max_occluded = 0.30f;
static const float classify_side_min = 0.35f, classify_side_max = 0.75f, classify_offset = 0.12f;

// Shape outlines in unit coordinates: the ring's hole radius, the cross's half arm width, the star's
// inner radius, chosen by eye so that each still reads as its shape at the smallest object size.
static const float ring_inner = 0.55f, cross_arm = 0.3f, star_inner = 0.45f;

// ---- settings -------------------------------------------------------------------------------------

typedef struct IntSetting {
    const char *key;  // in a synth: block; the command-line option is "--" + key
    size_t offset;    // of the int64_t field in SynthConfig
    int64_t min, max;
} IntSetting;

static const IntSetting int_settings[] = {
    {"train", offsetof(SynthConfig, n_train), 1, SYNTH_MAX_IMAGES},
    {"val", offsetof(SynthConfig, n_val), 1, SYNTH_MAX_IMAGES},
    {"imgsz", offsetof(SynthConfig, imgsz), 32, 4096},
    {"classes", offsetof(SynthConfig, n_classes), 1, SYNTH_SHAPE_COUNT},
    {"seed", offsetof(SynthConfig, seed), 0, INT64_MAX},
};
enum { N_INT_SETTINGS = sizeof int_settings / sizeof *int_settings };

static int64_t *setting_field(const SynthConfig *cfg, const IntSetting *s) {
    return (int64_t *)((char *)cfg + s->offset);
}

static const IntSetting *setting_find(const char *key) {
    for (int i = 0; i < N_INT_SETTINGS; i++)
        if (!strcmp(key, int_settings[i].key)) return &int_settings[i];
    return NULL;
}

static bool setting_check(const IntSetting *s, int64_t value, const char *what, Error *err) {
    if (value >= s->min && value <= s->max) return true;
    if (s->max == INT64_MAX)
        return error_set(err, "%s must be %lld or more, found %lld", what, (long long)s->min, (long long)value);
    return error_set(err, "%s must be from %lld to %lld, found %lld", what, (long long)s->min, (long long)s->max,
                     (long long)value);
}

SynthConfig synth_config_default(void) {
    return (SynthConfig){.task = SYNTH_TASK_DETECT, .n_train = 2000, .n_val = 200, .imgsz = 256, .n_classes = 4};
}

bool synth_task_parse(const char *text, SynthTask *out) {
    for (int t = 0; t < SYNTH_TASK_COUNT; t++) {
        if (!strcmp(text, synth_task_names[t])) {
            *out = (SynthTask)t;
            return true;
        }
    }
    return false;
}

bool synth_config_set_int(SynthConfig *cfg, const char *key, int64_t value, const char *what, Error *err) {
    const IntSetting *s = setting_find(key);
    if (!s) return error_set(err, "unknown synth setting '%s' (known: train, val, imgsz, classes, seed)", key);
    if (!setting_check(s, value, what, err)) return false;
    *setting_field(cfg, s) = value;
    return true;
}

bool synth_config_from_yaml(YamlDoc *yd, const yaml_node_t *node, SynthConfig *cfg, Error *err) {
    *cfg = synth_config_default();
    char found[160];
    if (node->type != YAML_MAPPING_NODE)
        return yaml_doc_error_at(yd, node, err,
                                 "a synth block must be a mapping of task, train, val, imgsz, classes, seed; found %s",
                                 yaml_node_describe_found(node, found, sizeof found));
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_doc_node(yd, p->key), *value = yaml_doc_node(yd, p->value);
        const char *k = yaml_node_text(key);
        if (!k) return yaml_doc_error_at(yd, key, err, "expected a key name, found %s", yaml_node_describe(key));
        char what[64];
        snprintf(what, sizeof what, "synth.%s", k);
        if (!strcmp(k, "task")) {
            const char *text;
            if (!yaml_node_string(yd, value, what, &text, err)) return false;
            if (!synth_task_parse(text, &cfg->task))
                return yaml_doc_error_at(yd, value, err, "synth.task must be detect or classify, found '%s'", text);
            continue;
        }
        if (!setting_find(k))
            return yaml_doc_error_at(yd, key, err,
                                     "unknown key '%s' in a synth block (known: task, train, val, imgsz, classes, seed)",
                                     k);
        int64_t v;
        Error range = {0};
        if (!yaml_node_int(yd, value, what, &v, err)) return false;
        if (!synth_config_set_int(cfg, k, v, what, &range)) return yaml_doc_error_at(yd, value, err, "%s", range.message);
    }
    return true;
}

// ---- random draws ---------------------------------------------------------------------------------

// The draws of one image: consecutive elements of its own stream, so the image does not depend on
// which thread makes it or in which order.
typedef struct Draws {
    uint64_t seed;
    uint64_t next;
} Draws;

static Draws draws_for_image(int64_t seed, SynthSplit split, int64_t index) {
    uint64_t split_seed = rng_seed_for_name((uint64_t)seed, split_names[split]);
    return (Draws){.seed = rng_mix64(split_seed ^ rng_mix64((uint64_t)index))};
}

static float draw_uniform(Draws *d, float lo, float hi) {
    return lo + (hi - lo) * rng_uniform(d->seed, d->next++);
}

static int draw_index(Draws *d, int n) {
    int k = (int)(rng_uniform(d->seed, d->next++) * (float)n);
    return k < n ? k : n - 1;
}

static float draw_log_uniform(Draws *d, float lo, float hi) {
    return lo * powf(hi / lo, rng_uniform(d->seed, d->next++));
}

// Hue, saturation, value in [0, 1] to RGB in [0, 255].
static void hsv_to_rgb(float h, float s, float v, float rgb[3]) {
    float h6 = h * 6.0f;
    int sector = (int)h6 % 6;
    float f = h6 - floorf(h6);
    float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    const float table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int c = 0; c < 3; c++) rgb[c] = 255.0f * table[sector][c];
}

// Backgrounds have saturation ≤ 0.3 and every texture on them changes all three channels alike, so a
// background pixel's chroma (max − min channel) is at most 0.3 · 0.85 · 255 ≈ 65; shapes have
// saturation ≥ 0.75 and value ≥ 0.7, chroma ≥ 134. Where objects are is never ambiguous, which keeps
// the labels truthful (the tests check it); what they are is left to the shapes.
static void background_colour(Draws *d, float rgb[3]) {
    hsv_to_rgb(draw_uniform(d, 0, 1), draw_uniform(d, 0, 0.3f), draw_uniform(d, 0.25f, 0.85f), rgb);
}

static void shape_colour(Draws *d, float rgb[3]) {
    hsv_to_rgb(draw_uniform(d, 0, 1), draw_uniform(d, 0.75f, 1), draw_uniform(d, 0.7f, 1), rgb);
}

// ---- background -----------------------------------------------------------------------------------

enum { NOISE_GRID = 5 };  // value-noise lattice points per side: features of about a quarter image

typedef enum Pattern { PATTERN_NONE, PATTERN_STRIPES, PATTERN_CHECKER, PATTERN_COUNT } Pattern;

static float smoothstep(float t) {
    return t * t * (3 - 2 * t);
}

// A gradient between two greyish colours, plus low-frequency value noise, plus faint stripes or a
// faint checkerboard at a random angle and period, into rgb (size, size, 3).
static void background_render(float *rgb, int64_t size, Draws *d) {
    float c0[3], c1[3];
    background_colour(d, c0);
    background_colour(d, c1);
    float angle = draw_uniform(d, 0, 2 * (float)M_PI);
    float gx = cosf(angle), gy = sinf(angle);
    float lattice[NOISE_GRID][NOISE_GRID];
    for (int i = 0; i < NOISE_GRID; i++)
        for (int j = 0; j < NOISE_GRID; j++) lattice[i][j] = draw_uniform(d, -1, 1);
    float noise_amplitude = draw_uniform(d, 4, 24);
    Pattern pattern = (Pattern)draw_index(d, PATTERN_COUNT);
    float pattern_angle = draw_uniform(d, 0, (float)M_PI);
    float px = cosf(pattern_angle), py = sinf(pattern_angle);
    float frequency = 2 * (float)M_PI / (draw_uniform(d, 0.04f, 0.16f) * (float)size);
    float pattern_amplitude = draw_uniform(d, 3, 12);

    float half = 0.5f * (float)size, inv_size = 1.0f / (float)size;
    for (int64_t y = 0; y < size; y++) {
        for (int64_t x = 0; x < size; x++) {
            float fx = (float)x + 0.5f - half, fy = (float)y + 0.5f - half;
            // Along the gradient direction, the image's corners are at most ±size/√2 from its centre.
            float t = fminf(fmaxf(0.5f + (fx * gx + fy * gy) * inv_size * (float)M_SQRT1_2, 0), 1);
            float nx = ((float)x + 0.5f) * inv_size * (NOISE_GRID - 1), ny = ((float)y + 0.5f) * inv_size * (NOISE_GRID - 1);
            int ix = (int)nx < NOISE_GRID - 2 ? (int)nx : NOISE_GRID - 2;
            int iy = (int)ny < NOISE_GRID - 2 ? (int)ny : NOISE_GRID - 2;
            float ux = smoothstep(nx - (float)ix), uy = smoothstep(ny - (float)iy);
            float top = lattice[iy][ix] + (lattice[iy][ix + 1] - lattice[iy][ix]) * ux;
            float bottom = lattice[iy + 1][ix] + (lattice[iy + 1][ix + 1] - lattice[iy + 1][ix]) * ux;
            float luma = noise_amplitude * (top + (bottom - top) * uy);
            float u = fx * px + fy * py, v = fy * px - fx * py;
            if (pattern == PATTERN_STRIPES) luma += pattern_amplitude * sinf(frequency * u);
            if (pattern == PATTERN_CHECKER)
                luma += sinf(frequency * u) * sinf(frequency * v) > 0 ? pattern_amplitude : -pattern_amplitude;
            float *out = rgb + 3 * (y * size + x);
            for (int c = 0; c < 3; c++) out[c] = fminf(fmaxf(c0[c] + (c1[c] - c0[c]) * t + luma, 0), 255);
        }
    }
}

// ---- shapes ---------------------------------------------------------------------------------------

// One shape: its outline in unit coordinates mapped to pixels by `map` around `centre`.
typedef struct Shape {
    SynthShape kind;
    float centre[2];   // pixels
    float map[2][2];   // pixel offset from the centre = map · unit point (rotation × aspect × scale)
    float inverse[2][2];
    float box[4];      // x0, y0, x1, y1: the exact extent; relative to the centre until shape_place
    float colour[3];
} Shape;

// The outline of a polygonal shape in unit coordinates (within [-1, 1]²); 0 for the round ones.
static int shape_unit_polygon(SynthShape kind, float v[SHAPE_MAX_VERTICES][2]) {
    const float a = cross_arm;
    switch (kind) {
    case SYNTH_SHAPE_SQUARE: {
        const float square[4][2] = {{-1, -1}, {1, -1}, {1, 1}, {-1, 1}};
        memcpy(v, square, sizeof square);
        return 4;
    }
    case SYNTH_SHAPE_TRIANGLE:  // equilateral, centred on its centroid
    case SYNTH_SHAPE_STAR: {    // five points, alternating outer and inner radius
        int n = kind == SYNTH_SHAPE_TRIANGLE ? 3 : 10;
        for (int i = 0; i < n; i++) {
            float r = (kind == SYNTH_SHAPE_STAR && i % 2) ? star_inner : 1.0f;
            float angle = (float)M_PI / 2 + 2 * (float)M_PI * (float)i / (float)n;
            v[i][0] = r * cosf(angle);
            v[i][1] = r * sinf(angle);
        }
        return n;
    }
    case SYNTH_SHAPE_CROSS: {
        const float cross[12][2] = {{a, 1},  {a, a},   {1, a},   {1, -a},   {a, -a},  {a, -1},
                                    {-a, -1}, {-a, -a}, {-1, -a}, {-1, a}, {-a, a}, {-a, 1}};
        memcpy(v, cross, sizeof cross);
        return 12;
    }
    case SYNTH_SHAPE_CIRCLE:
    case SYNTH_SHAPE_RING:
    case SYNTH_SHAPE_COUNT:
        break;
    }
    return 0;
}

// A shape of `kind` with random rotation, aspect ratio (0.8–1.25) and colour, scaled so that the
// longer side of its box is `side` pixels. Its box is relative to its (not yet chosen) centre.
static Shape shape_draw(SynthShape kind, float side, Draws *d) {
    Shape s = {.kind = kind};
    float angle = draw_uniform(d, 0, 2 * (float)M_PI);
    float aspect = sqrtf(draw_log_uniform(d, 0.8f, 1.25f));
    float c = cosf(angle), sn = sinf(angle);
    float m[2][2] = {{c * aspect, -sn / aspect}, {sn * aspect, c / aspect}};
    shape_colour(d, s.colour);

    float v[SHAPE_MAX_VERTICES][2];
    int n = shape_unit_polygon(kind, v);
    float box[4];
    if (n) {
        box[0] = box[1] = INFINITY;
        box[2] = box[3] = -INFINITY;
        for (int i = 0; i < n; i++) {
            float x = m[0][0] * v[i][0] + m[0][1] * v[i][1], y = m[1][0] * v[i][0] + m[1][1] * v[i][1];
            box[0] = fminf(box[0], x), box[1] = fminf(box[1], y);
            box[2] = fmaxf(box[2], x), box[3] = fmaxf(box[3], y);
        }
    } else {  // the unit circle mapped by m is an ellipse whose half extents are the rows' norms
        float hx = hypotf(m[0][0], m[0][1]), hy = hypotf(m[1][0], m[1][1]);
        box[0] = -hx, box[1] = -hy, box[2] = hx, box[3] = hy;
    }
    float scale = side / fmaxf(box[2] - box[0], box[3] - box[1]);
    for (int i = 0; i < 4; i++) s.box[i] = box[i] * scale;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) s.map[i][j] = m[i][j] * scale;
    float det = s.map[0][0] * s.map[1][1] - s.map[0][1] * s.map[1][0];
    s.inverse[0][0] = s.map[1][1] / det, s.inverse[0][1] = -s.map[0][1] / det;
    s.inverse[1][0] = -s.map[1][0] / det, s.inverse[1][1] = s.map[0][0] / det;
    return s;
}

static void shape_place(Shape *s, float cx, float cy) {
    s->centre[0] = cx, s->centre[1] = cy;
    s->box[0] += cx, s->box[2] += cx;
    s->box[1] += cy, s->box[3] += cy;
}

// Signed distance in pixels from (x, y) to a polygon's outline, negative inside (crossing-number sign;
// after Inigo Quilez's sdPolygon).
static float polygon_distance(const float v[][2], int n, float x, float y) {
    float d = (x - v[0][0]) * (x - v[0][0]) + (y - v[0][1]) * (y - v[0][1]);
    float sign = 1;
    for (int i = 0, j = n - 1; i < n; j = i, i++) {
        float ex = v[j][0] - v[i][0], ey = v[j][1] - v[i][1];
        float wx = x - v[i][0], wy = y - v[i][1];
        float t = fminf(fmaxf((wx * ex + wy * ey) / (ex * ex + ey * ey), 0), 1);
        float bx = wx - ex * t, by = wy - ey * t;
        d = fminf(d, bx * bx + by * by);
        bool c0 = y >= v[i][1], c1 = y < v[j][1], c2 = ex * wy > ey * wx;
        if ((c0 && c1 && c2) || (!c0 && !c1 && !c2)) sign = -sign;
    }
    return sign * sqrtf(d);
}

// Signed distance in pixels from (x, y) to a round shape's outline, to first order: the unit-space
// distance divided by the length of its gradient in pixel space.
static float round_distance(const Shape *s, float x, float y) {
    float dx = x - s->centre[0], dy = y - s->centre[1];
    float ux = s->inverse[0][0] * dx + s->inverse[0][1] * dy, uy = s->inverse[1][0] * dx + s->inverse[1][1] * dy;
    float r = hypotf(ux, uy);
    if (r < 1e-6f) return s->kind == SYNTH_SHAPE_RING ? INFINITY : -INFINITY;
    float gx = (s->inverse[0][0] * ux + s->inverse[1][0] * uy) / r, gy = (s->inverse[0][1] * ux + s->inverse[1][1] * uy) / r;
    float unit = s->kind == SYNTH_SHAPE_RING ? fmaxf(r - 1, ring_inner - r) : r - 1;
    return unit / hypotf(gx, gy);
}

// Composites the shape over rgb (size, size, 3) with coverage clamp(0.5 − distance, 0, 1) per pixel:
// a box-filtered edge, so outlines are anti-aliased.
static void shape_render(const Shape *s, float *rgb, int64_t size) {
    float unit[SHAPE_MAX_VERTICES][2], v[SHAPE_MAX_VERTICES][2];
    int n = shape_unit_polygon(s->kind, unit);
    for (int i = 0; i < n; i++) {
        v[i][0] = s->centre[0] + s->map[0][0] * unit[i][0] + s->map[0][1] * unit[i][1];
        v[i][1] = s->centre[1] + s->map[1][0] * unit[i][0] + s->map[1][1] * unit[i][1];
    }
    int64_t x0 = (int64_t)fmaxf(floorf(s->box[0]) - 1, 0), x1 = (int64_t)fminf(ceilf(s->box[2]) + 1, (float)size);
    int64_t y0 = (int64_t)fmaxf(floorf(s->box[1]) - 1, 0), y1 = (int64_t)fminf(ceilf(s->box[3]) + 1, (float)size);
    for (int64_t y = y0; y < y1; y++) {
        for (int64_t x = x0; x < x1; x++) {
            float px = (float)x + 0.5f, py = (float)y + 0.5f;
            float dist = n ? polygon_distance((const float(*)[2])v, n, px, py) : round_distance(s, px, py);
            float alpha = fminf(fmaxf(0.5f - dist, 0), 1);
            if (alpha <= 0) continue;
            float *out = rgb + 3 * (y * size + x);
            for (int c = 0; c < 3; c++) out[c] += (s->colour[c] - out[c]) * alpha;
        }
    }
}

static float box_overlap(const float a[4], const float b[4]) {
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    return w > 0 && h > 0 ? w * h : 0;
}

// Detection: 1 to SYNTH_MAX_OBJECTS shapes, each fully inside the image and covering at most
// max_occluded of any earlier shape's box; an object with no such place in SYNTH_PLACE_TRIES is left
// out (the first always fits). Returns how many were placed into shapes.
static int objects_place(const SynthConfig *cfg, Draws *d, Shape shapes[SYNTH_MAX_OBJECTS]) {
    float size = (float)cfg->imgsz;
    int wanted = 1 + draw_index(d, SYNTH_MAX_OBJECTS), n = 0;
    for (int k = 0; k < wanted; k++) {
        SynthShape kind = (SynthShape)draw_index(d, (int)cfg->n_classes);
        Shape s = shape_draw(kind, size * draw_log_uniform(d, detect_side_min, detect_side_max), d);
        for (int t = 0; t < SYNTH_PLACE_TRIES; t++) {
            Shape placed = s;
            shape_place(&placed, draw_uniform(d, -s.box[0], size - s.box[2]), draw_uniform(d, -s.box[1], size - s.box[3]));
            bool fits = true;
            for (int j = 0; j < n && fits; j++) {
                const float *b = shapes[j].box;
                fits = box_overlap(placed.box, b) <= max_occluded * (b[2] - b[0]) * (b[3] - b[1]);
            }
            if (fits) {
                shapes[n++] = placed;
                break;
            }
        }
    }
    return n;
}

// Classification: one shape of class index % n_classes, near the centre.
static Shape object_centred(const SynthConfig *cfg, int64_t index, Draws *d) {
    float size = (float)cfg->imgsz;
    Shape s = shape_draw((SynthShape)(index % cfg->n_classes),
                         size * draw_uniform(d, classify_side_min, classify_side_max), d);
    float cx = size * (0.5f + draw_uniform(d, -classify_offset, classify_offset));
    float cy = size * (0.5f + draw_uniform(d, -classify_offset, classify_offset));
    shape_place(&s, fminf(fmaxf(cx, -s.box[0]), size - s.box[2]), fminf(fmaxf(cy, -s.box[1]), size - s.box[3]));
    return s;
}

// ---- files ----------------------------------------------------------------------------------------

static bool dir_is_empty(const char *path, bool *empty, Error *err) {
    DIR *dir = opendir(path);
    if (!dir) return error_set(err, "%s: cannot read directory: %s", path, strerror(errno));
    *empty = true;
    for (struct dirent *e; *empty && (e = readdir(dir));) *empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(dir);
    return true;
}

static bool labels_write(const char *path, const Shape *shapes, int n, float size, Error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot create file: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        const float *b = shapes[i].box;
        fprintf(f, "%d %.6f %.6f %.6f %.6f\n", (int)shapes[i].kind, 0.5f * (b[0] + b[2]) / size,
                0.5f * (b[1] + b[3]) / size, (b[2] - b[0]) / size, (b[3] - b[1]) / size);
    }
    bool failed = ferror(f);
    if (fclose(f) || failed) return error_set(err, "%s: cannot write file: %s", path, strerror(errno));
    return true;
}

static int names_compare(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// data.yaml. Classification class indices follow Ultralytics', which numbers class folders in sorted
// order; detection's are the shape order.
static bool data_yaml_write(const SynthConfig *cfg, const char *root, Error *err) {
    char path[PATH_MAX];
    if (!path_format(path, sizeof path, err, "%s/data.yaml", root)) return false;
    const char *names[SYNTH_SHAPE_COUNT];
    memcpy(names, synth_shape_names, sizeof names);
    bool detect = cfg->task == SYNTH_TASK_DETECT;
    if (!detect) qsort(names, (size_t)cfg->n_classes, sizeof *names, names_compare);
    FILE *f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot create file: %s", path, strerror(errno));
    fprintf(f,
            "# Synthetic shapes: yolopipe synth --task %s --train %lld --val %lld --imgsz %lld --classes %lld --seed %lld\n"
            "# path '.' is this file's folder (Ultralytics reads a relative path from its working directory).\n"
            "path: .\ntrain: %s\nval: %s\nnc: %lld\nnames:\n",
            synth_task_names[cfg->task], (long long)cfg->n_train, (long long)cfg->n_val, (long long)cfg->imgsz,
            (long long)cfg->n_classes, (long long)cfg->seed, detect ? "images/train" : "train",
            detect ? "images/val" : "val", (long long)cfg->n_classes);
    for (int64_t k = 0; k < cfg->n_classes; k++) fprintf(f, "  - %s\n", names[k]);
    bool failed = ferror(f);
    if (fclose(f) || failed) return error_set(err, "%s: cannot write file: %s", path, strerror(errno));
    return true;
}

// ---- generation -----------------------------------------------------------------------------------

// Renders and writes image `index` of `split` (and its labels) under root. *n_boxes gets its box count.
static bool image_generate(const SynthConfig *cfg, const char *root, SynthSplit split, int64_t index, int *n_boxes,
                           Error *err) {
    int64_t size = cfg->imgsz, n_px = size * size;
    Draws d = draws_for_image(cfg->seed, split, index);
    float *rgb = yp_malloc((size_t)(3 * n_px) * sizeof *rgb);  // (size, size, 3)
    background_render(rgb, size, &d);
    Shape shapes[SYNTH_MAX_OBJECTS];
    bool detect = cfg->task == SYNTH_TASK_DETECT;
    int n = 1;
    if (detect) n = objects_place(cfg, &d, shapes);
    else shapes[0] = object_centred(cfg, index, &d);
    for (int i = 0; i < n; i++) shape_render(&shapes[i], rgb, size);
    uint8_t *px = yp_malloc((size_t)(3 * n_px));
    for (int64_t i = 0; i < 3 * n_px; i++) px[i] = (uint8_t)lrintf(rgb[i]);
    free(rgb);

    char path[PATH_MAX];
    bool ok = detect ? path_format(path, sizeof path, err, "%s/images/%s/%06lld.png", root, split_names[split], (long long)index)
                     : path_format(path, sizeof path, err, "%s/%s/%s/%06lld.png", root, split_names[split],
                                   synth_shape_names[shapes[0].kind], (long long)index);
    ok = ok && image_write_png(path, &(Image){.width = (int)size, .height = (int)size, .data = px}, err);
    free(px);
    if (ok && detect)
        ok = path_format(path, sizeof path, err, "%s/labels/%s/%06lld.txt", root, split_names[split], (long long)index) &&
             labels_write(path, shapes, n, (float)size, err);
    *n_boxes = detect ? n : 0;
    return ok;
}

static bool split_dirs_make(const SynthConfig *cfg, const char *root, SynthSplit split, Error *err) {
    char path[PATH_MAX];
    const char *name = split_names[split];
    if (cfg->task == SYNTH_TASK_DETECT)
        return path_format(path, sizeof path, err, "%s/images/%s", root, name) && fs_mkdir_p(path, err) &&
               path_format(path, sizeof path, err, "%s/labels/%s", root, name) && fs_mkdir_p(path, err);
    if (!path_format(path, sizeof path, err, "%s/%s", root, name) || !fs_mkdir_p(path, err)) return false;
    for (int64_t k = 0; k < cfg->n_classes; k++)
        if (!path_format(path, sizeof path, err, "%s/%s/%s", root, name, synth_shape_names[k]) || !fs_mkdir_p(path, err))
            return false;
    return true;
}

// All images of one split, in parallel. On failure err holds the failing image with the lowest index
// among those tried (the others stop early).
static bool split_generate(const SynthConfig *cfg, const char *root, SynthSplit split, int64_t *n_boxes, Error *err) {
    if (!split_dirs_make(cfg, root, split, err)) return false;
    int64_t n = split == SYNTH_SPLIT_TRAIN ? cfg->n_train : cfg->n_val;
    // A line redrawn in place on a terminal; plain lines in a log and under mpirun (launcher.h).
    bool live = cfg->progress && launcher_live_terminal(fileno(cfg->progress));
    int64_t step = n / 100 > 0 ? n / 100 : 1, done = 0, boxes = 0, failed_at = n;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : boxes)
    for (int64_t i = 0; i < n; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        Error e = {0};
        int nb = 0;
        if (!image_generate(cfg, root, split, i, &nb, &e)) {
#pragma omp critical(synth_failure)
            {
                if (i < failed_at) {
                    failed_at = i;
                    *err = e;
                }
            }
#pragma omp atomic write
            failed = 1;
        }
        boxes += nb;
        int64_t k;
#pragma omp atomic capture
        k = ++done;
        if (live && k % step == 0) {
#pragma omp critical(synth_progress)
            {
                fprintf(cfg->progress, "\rsynth: %s %lld/%lld images", split_names[split], (long long)k, (long long)n);
                fflush(cfg->progress);
            }
        }
    }
    if (failed) return false;
    if (cfg->progress) {
        fprintf(cfg->progress, "%ssynth: %s %lld images", live ? "\r" : "", split_names[split], (long long)n);
        if (cfg->task == SYNTH_TASK_DETECT) fprintf(cfg->progress, ", %lld boxes", (long long)boxes);
        fprintf(cfg->progress, "\n");
    }
    *n_boxes += boxes;
    return true;
}

bool synth_generate(const SynthConfig *cfg, SynthSummary *summary, Error *err) {
    YP_CHECK(cfg->out_dir && cfg->task >= 0 && cfg->task < SYNTH_TASK_COUNT);
    for (int i = 0; i < N_INT_SETTINGS; i++)
        if (!setting_check(&int_settings[i], *setting_field(cfg, &int_settings[i]), int_settings[i].key, err)) return false;

    char out[PATH_MAX];
    if (!path_format(out, sizeof out, err, "%s", cfg->out_dir)) return false;
    for (size_t len = strlen(out); len > 1 && out[len - 1] == '/'; len--) out[len - 1] = '\0';
    if (!out[0] || !strcmp(out, "/")) return error_set(err, "'%s': not a directory a dataset can be written to", cfg->out_dir);

    // An existing directory is replaced only when empty, or forced and holding a previous dataset.
    struct stat st;
    bool replace = false;
    if (!stat(out, &st)) {
        if (!S_ISDIR(st.st_mode)) return error_set(err, "%s: exists and is not a directory", out);
        bool empty = false;
        if (!dir_is_empty(out, &empty, err)) return false;
        char yaml[PATH_MAX];
        if (!empty && !cfg->force)
            return error_set(err, "%s: exists and is not empty; not replacing it without --force", out);
        if (!empty && (!path_format(yaml, sizeof yaml, err, "%s/data.yaml", out) || access(yaml, F_OK)))
            return error_set(err, "%s: --force replaces only a dataset directory (one with a data.yaml); not this one", out);
        replace = !empty;
    } else if (errno != ENOENT) {
        return error_set(err, "%s: %s", out, strerror(errno));
    } else {
        char *parent = path_dirname(out);
        bool made = fs_mkdir_p(parent, err);
        free(parent);
        if (!made) return false;
    }

    char partial[PATH_MAX], old[PATH_MAX];
    if (!path_format(partial, sizeof partial, err, "%s.partial-XXXXXX", out) ||
        !path_format(old, sizeof old, err, "%s.old-XXXXXX", out))
        return false;
    if (!mkdtemp(partial)) return error_set(err, "%s: cannot create directory: %s", partial, strerror(errno));
    int64_t n_boxes = 0;
    bool ok = data_yaml_write(cfg, partial, err);
    for (int s = 0; ok && s < SYNTH_SPLIT_COUNT; s++) ok = split_generate(cfg, partial, (SynthSplit)s, &n_boxes, err);
    // rename() replaces an empty directory; a full one is first moved aside, then removed.
    if (ok && replace) {
        bool made = mkdtemp(old);
        if (!made || rename(out, old)) {
            ok = error_set(err, "%s: cannot move the old dataset aside to %s: %s", out, old, strerror(errno));
            if (made) rmdir(old);
        }
    }
    if (ok && rename(partial, out)) {
        ok = error_set(err, "%s: cannot rename %s to it: %s", out, partial, strerror(errno));
        if (replace) rename(old, out);  // put the old dataset back
    }
    Error ignored = {0};
    if (!ok) {
        fs_remove_tree(partial, &ignored);
        return false;
    }
    if (replace && !fs_remove_tree(old, err)) return false;
    if (summary) *summary = (SynthSummary){.n_images = cfg->n_train + cfg->n_val, .n_boxes = n_boxes};
    return true;
}
