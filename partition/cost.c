#include "partition/cost.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"

// Effective rates for whole training passes, not peak figures, and each device's node:
//   cpu   measured with `yolopipe profile` (YOLOv8n, 160 px, 8 images per micro-batch, the 2 cores
//         of this project's build machine): 48 GFLOP/s over forward and backward; ~10 GB/s of
//         memory bandwidth for streaming passes (one DDR4 channel's worth); ranks of one machine
//         exchange messages through shared memory (MPI, ~5 GB/s, 5 us); nodes over 10 GbE.
//   h100  H100 SXM: a tenth of its dense bf16 tensor-core peak (989 TFLOP/s): YOLO's convolutions
//         are small and memory-bound, far from the peak that large GEMMs reach; 0.7 x its 3.35 TB/s
//         HBM3 (what streaming kernels reach); NVLink 4 (900 GB/s per GPU) gives ~150 GB/s to one
//         point-to-point stream and ~370 GB/s of NCCL all-reduce bus bandwidth in an 8-GPU node
//         (nccl-tests on DGX H100); one NDR InfiniBand NIC per GPU, 400 Gb/s ~ 48 GB/s achieved.
//   a100  A100 SXM 80 GB: a tenth of 312 TFLOP/s dense bf16, as for the H100; 0.7 x 2.0 TB/s HBM2e;
//         NVLink 3 (600 GB/s per GPU): ~100 GB/s per stream, ~230 GB/s all-reduce bus bandwidth
//         (nccl-tests on DGX A100); one HDR NIC per GPU, 200 Gb/s ~ 24 GB/s achieved.
// Per-step collective latencies follow NCCL's tuning model (src/graph/tuning.cc: hwLat of a ring
// step with the Simple protocol, 3.4 us over NVLink, 14 us over the network).
static const CostDevice cost_devices[] = {
    {.name = "cpu", .flops_per_s = 50e9, .memory_bytes_per_s = 10e9, .memory_bytes = 0,
     .link = {5e-6, 5e9}, .collective = {5e-6, 5e9}, .nic = {20e-6, 1.15e9}, .nics_per_node = 1,
     .host_progress = true},
    {.name = "h100", .flops_per_s = 1e14, .memory_bytes_per_s = 0.7 * 3.35e12, .memory_bytes = 80LL << 30,
     .link = {10e-6, 150e9}, .collective = {3.4e-6, 370e9}, .nic = {14e-6, 48e9}, .nics_per_node = 8},
    {.name = "a100", .flops_per_s = 3.12e13, .memory_bytes_per_s = 0.7 * 2.0e12, .memory_bytes = 80LL << 30,
     .link = {10e-6, 100e9}, .collective = {3.4e-6, 230e9}, .nic = {14e-6, 24e9}, .nics_per_node = 8},
};
const char cost_device_names[] = "cpu, h100 or a100";

const CostDevice *cost_device_find(const char *name) {
    for (size_t i = 0; i < sizeof cost_devices / sizeof *cost_devices; i++)
        if (!strcmp(cost_devices[i].name, name)) return &cost_devices[i];
    return NULL;
}

// Per step, in units of the parameter bytes: the squared gradient norm reads the gradients (1),
// unscaling and clipping rescale them (2), SGD with momentum reads parameters, gradients and
// momenta and writes parameters and momenta (5; AdamW has a second moment, 7), zeroing writes the
// gradients (1), the EMA update reads the parameters and reads and writes its copy (3).
double cost_optimizer_passes(bool adamw) { return 1 + 2 + (adamw ? 7 : 5) + 1 + 3; }

static bool layer_reads_only_input(const Layer *l) {
    for (int k = 0; k < l->n_in; k++)
        if (l->in_index[k] >= 0) return false;
    return true;
}

// Splits a layer's backward time into B and W (the rules in cost.h); weight_s is the measured W, or
// negative for half of it.
static void layer_cost_split_backward(LayerCost *c, const Layer *l, double bwd_s, double weight_s) {
    if (layer_reads_only_input(l)) {
        c->bwd_weight_s = bwd_s;
    } else if (l->n_grads == 0) {
        c->bwd_input_s = bwd_s;
    } else {
        c->bwd_weight_s = weight_s >= 0 ? weight_s : 0.5 * bwd_s;
        c->bwd_input_s = bwd_s - c->bwd_weight_s;
    }
}

// Everything but the times: FLOPs and bytes, scaled from the graph's batch to the micro-batch.
static CostModel *cost_model_describe(const Graph *g, int64_t micro_batch) {
    YP_CHECK(micro_batch > 0);
    int64_t graph_batch = g->input.shape.n;
    CostModel *m = yp_calloc(1, sizeof *m);
    m->n_layers = g->n_layers;
    m->micro_batch = micro_batch;
    m->input_bytes = shape_elems(g->input.shape) / graph_batch * micro_batch * (int64_t)sizeof(float);
    m->layers = yp_calloc((size_t)g->n_layers, sizeof *m->layers);
    for (int i = 0; i < g->n_layers; i++) {
        const Layer *l = &g->layers[i];
        LayerCost *c = &m->layers[i];
        // thop's count plus what it misses (attention's softmax), so that attention layers weigh in.
        c->flops = 2.0 * (l->ops + l->uncounted_ops) * (double)micro_batch;
        c->param_bytes = l->n_params * (int64_t)sizeof(float);
        c->activation_bytes = l->activation_elems * (int64_t)sizeof(float) * micro_batch / graph_batch;
        c->output_bytes = shape_elems(l->out_shape) / graph_batch * micro_batch * (int64_t)sizeof(float);
    }
    for (int p = 0; p < g->n_params; p++)
        if (g->params[p].flags & PARAM_BUFFER)
            m->layers[g->params[p].layer].buffer_bytes += g->params[p].n_elems * (int64_t)sizeof(float);
    return m;
}

void cost_model_set_activation_type(CostModel *m, DType act) {
    int64_t size = (int64_t)dtype_size(act), f32 = (int64_t)sizeof(float);
    m->input_bytes = m->input_bytes / f32 * size;
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].activation_bytes = m->layers[i].activation_bytes / f32 * size;
        m->layers[i].output_bytes = m->layers[i].output_bytes / f32 * size;
    }
}

CostModel *cost_model_estimate(const Graph *g, int64_t micro_batch, double flops_per_s) {
    YP_CHECK(flops_per_s > 0);
    CostModel *m = cost_model_describe(g, micro_batch);
    for (int i = 0; i < g->n_layers; i++) {
        LayerCost *c = &m->layers[i];
        c->fwd_s = c->flops / flops_per_s;
        // Backward: the input gradient and the weight gradient each cost about one forward.
        const Layer *l = &g->layers[i];
        double bwd_s = (layer_reads_only_input(l) || l->n_grads == 0 ? 1.0 : 2.0) * c->fwd_s;
        layer_cost_split_backward(c, l, bwd_s, -1);
    }
    return m;
}

bool cost_model_measured(const Graph *g, int64_t micro_batch, const CostProfile *profile, CostModel **out, Error *err) {
    *out = NULL;
    const char *path = profile->path ? profile->path : "profile";
    if (profile->n_layers != g->n_layers)
        return error_set(err, "%s: the profile has %d layers but the model %s has %d", path, profile->n_layers,
                         g->spec->name, g->n_layers);
    if (profile->imgsz != g->input.shape.h || profile->imgsz != g->input.shape.w)
        return error_set(err, "%s: profiled at imgsz %lld but the plan is for %lldx%lld images; run yolopipe profile at that size",
                         path, (long long)profile->imgsz, (long long)g->input.shape.h, (long long)g->input.shape.w);
    for (int i = 0; i < g->n_layers; i++)
        if (strcmp(profile->rows[i].module, g->layers[i].row->module))
            return error_at(err, path, i + 2, 1, "layer %d is %s in the profile but %s in the model %s", i,
                            profile->rows[i].module, g->layers[i].row->module, g->spec->name);
    CostModel *m = cost_model_describe(g, micro_batch);
    double scale = (double)micro_batch / (double)profile->batch;
    if (profile->batch != micro_batch) m->profile_batch = profile->batch;
    for (int i = 0; i < g->n_layers; i++) {
        LayerCost *c = &m->layers[i];
        c->fwd_s = profile->rows[i].fwd_s * scale;
        const CostProfileRow *row = &profile->rows[i];
        layer_cost_split_backward(c, &g->layers[i], row->bwd_s * scale, row->bwd_weight_s >= 0 ? row->bwd_weight_s * scale : -1);
    }
    *out = m;
    return true;
}

void cost_model_destroy(CostModel *m) {
    if (!m) return;
    free(m->layers);
    free(m);
}

// ---- the profile CSV -----------------------------------------------------------------------------

static const char profile_header[] = "layer,module,fwd_s,bwd_s,batch,imgsz,bwd_weight_s";
enum { PROFILE_FIELDS = 7, PROFILE_STEP_FIELDS = 4 };
// Files written before bwd_weight_s: the header and lines without it.
static const char profile_header_unsplit[] = "layer,module,fwd_s,bwd_s,batch,imgsz";

// The step lines (cost.h): `step,<name>,<value>,<unit>`, in this order, each into its field.
typedef enum ProfileStep {
    PROFILE_STEP_OPTIMIZER,
    PROFILE_STEP_EMA,
    PROFILE_STEP_LOSS,
    PROFILE_STEP_LOADER,
    PROFILE_STEP_COUNT
} ProfileStep;
static const struct {
    const char *name, *unit;
    size_t offset;  // of its double in CostProfile
} profile_steps[] = {
    {"optimizer", "s_per_param_byte", offsetof(CostProfile, optimizer_s_per_param_byte)},
    {"ema", "s_per_param_byte", offsetof(CostProfile, ema_s_per_param_byte)},
    {"loss", "s_per_image", offsetof(CostProfile, loss_s_per_image)},
    {"loader", "images_per_s_per_worker", offsetof(CostProfile, loader_images_per_s_per_worker)},
};
_Static_assert(sizeof profile_steps / sizeof *profile_steps == PROFILE_STEP_COUNT, "a name and unit per step line");

static double *profile_step_field(CostProfile *p, ProfileStep k) {
    return (double *)((char *)p + profile_steps[k].offset);
}
static double profile_step_get(const CostProfile *p, ProfileStep k) {
    return *(const double *)((const char *)p + profile_steps[k].offset);
}

CostProfile *cost_profile_create(int n_layers, int64_t batch, int64_t imgsz) {
    YP_CHECK(n_layers > 0 && batch > 0 && imgsz > 0);
    CostProfile *p = yp_calloc(1, sizeof *p);
    p->batch = batch;
    p->imgsz = imgsz;
    p->n_layers = n_layers;
    p->rows = yp_calloc((size_t)n_layers, sizeof *p->rows);
    for (int i = 0; i < n_layers; i++) p->rows[i].bwd_weight_s = -1;
    return p;
}

void cost_profile_destroy(CostProfile *p) {
    if (!p) return;
    free(p->path);
    free(p->rows);
    free(p);
}

void cost_profile_write(const CostProfile *p, FILE *f) {
    fprintf(f, "%s\n", profile_header);
    // %.9g keeps nanoseconds of a one-second layer; the reader takes any strtod number.
    for (int i = 0; i < p->n_layers; i++) {
        const CostProfileRow *r = &p->rows[i];
        fprintf(f, "%d,%s,%.9g,%.9g,%lld,%lld,", i, r->module, r->fwd_s, r->bwd_s, (long long)p->batch,
                (long long)p->imgsz);
        if (r->bwd_weight_s >= 0) fprintf(f, "%.9g", r->bwd_weight_s);
        fputc('\n', f);
    }
    for (int k = 0; k < PROFILE_STEP_COUNT; k++) {
        double v = profile_step_get(p, (ProfileStep)k);
        if (v != 0) fprintf(f, "step,%s,%.9g,%s\n", profile_steps[k].name, v, profile_steps[k].unit);
    }
}

// One line's fields, split at commas in place. Returns the field count (at most `cap`, more counts
// as cap + 1).
static int csv_split(char *line, char **fields, int *cols, int cap) {
    int n = 0;
    char *start = line;
    for (char *c = line;; c++) {
        if (*c != ',' && *c != '\0') continue;
        if (n == cap) return cap + 1;
        cols[n] = (int)(start - line) + 1;
        fields[n++] = start;
        if (*c == '\0') return n;
        *c = '\0';
        start = c + 1;
    }
}

static bool csv_number(const char *path, int line, int col, const char *name, const char *text, double *out, Error *err) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < 0)
        return error_at(err, path, line, col, "%s must be a non-negative number of seconds, found '%s'", name, text);
    *out = v;
    return true;
}

static bool csv_integer(const char *path, int line, int col, const char *name, const char *text, int64_t *out,
                        Error *err) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 1)
        return error_at(err, path, line, col, "%s must be a positive integer, found '%s'", name, text);
    *out = v;
    return true;
}

// Parses one data line (1-based `line`) into p->rows[n_rows]; the first one sets batch and imgsz.
// `split`: the header has bwd_weight_s.
static bool profile_parse_line(CostProfile *p, const char *path, int line, char *text, bool split, Error *err) {
    char *f[PROFILE_FIELDS];
    int col[PROFILE_FIELDS];
    int want = split ? PROFILE_FIELDS : PROFILE_FIELDS - 1;
    int n = csv_split(text, f, col, want);
    if (n != want)
        return error_at(err, path, line, 1, "expected %d comma-separated fields (%s), found %s", want,
                        split ? profile_header : profile_header_unsplit, n > want ? "more" : "fewer");
    int64_t layer, batch = 0, imgsz = 0;
    char *end;
    errno = 0;
    layer = strtoll(f[0], &end, 10);
    if (errno || end == f[0] || *end || layer != p->n_layers)
        return error_at(err, path, line, col[0], "expected layer %d, found '%s'", p->n_layers, f[0]);
    CostProfileRow row = {0};
    if (!f[1][0] || strlen(f[1]) >= sizeof row.module)
        return error_at(err, path, line, col[1], "module must be a name of 1 to %zu characters, found '%s'",
                        sizeof row.module - 1, f[1]);
    memcpy(row.module, f[1], strlen(f[1]) + 1);
    if (!csv_number(path, line, col[2], "fwd_s", f[2], &row.fwd_s, err) ||
        !csv_number(path, line, col[3], "bwd_s", f[3], &row.bwd_s, err) ||
        !csv_integer(path, line, col[4], "batch", f[4], &batch, err) ||
        !csv_integer(path, line, col[5], "imgsz", f[5], &imgsz, err))
        return false;
    row.bwd_weight_s = -1;
    if (split && f[6][0]) {
        if (!csv_number(path, line, col[6], "bwd_weight_s", f[6], &row.bwd_weight_s, err)) return false;
        if (row.bwd_weight_s > row.bwd_s)
            return error_at(err, path, line, col[6], "bwd_weight_s %s is more than bwd_s %s: it is a part of it", f[6],
                            f[3]);
    }
    if (p->n_layers == 0) {
        p->batch = batch;
        p->imgsz = imgsz;
    } else if (batch != p->batch || imgsz != p->imgsz) {
        return error_at(err, path, line, col[batch != p->batch ? 4 : 5],
                        "every line must have the same batch and imgsz: found %lld and %lld, line 2 has %lld and %lld",
                        (long long)batch, (long long)imgsz, (long long)p->batch, (long long)p->imgsz);
    }
    p->rows = yp_realloc(p->rows, (size_t)(p->n_layers + 1) * sizeof *p->rows);
    p->rows[p->n_layers++] = row;
    return true;
}

// Parses one step line into its field; seen[k] holds the line of step k so far (0: not yet).
static bool profile_parse_step_line(CostProfile *p, const char *path, int line, char *text, int *seen, Error *err) {
    char *f[PROFILE_STEP_FIELDS];
    int col[PROFILE_STEP_FIELDS];
    int n = csv_split(text, f, col, PROFILE_STEP_FIELDS);
    if (n != PROFILE_STEP_FIELDS)
        return error_at(err, path, line, 1, "expected %d comma-separated fields (step,name,value,unit), found %s",
                        PROFILE_STEP_FIELDS, n > PROFILE_STEP_FIELDS ? "more" : "fewer");
    int k = 0;
    while (k < PROFILE_STEP_COUNT && strcmp(f[1], profile_steps[k].name)) k++;
    if (k == PROFILE_STEP_COUNT)
        return error_at(err, path, line, col[1], "unknown step '%s': expected optimizer, ema, loss or loader", f[1]);
    if (seen[k]) return error_at(err, path, line, col[1], "step '%s' again (first on line %d)", f[1], seen[k]);
    if (strcmp(f[3], profile_steps[k].unit))
        return error_at(err, path, line, col[3], "step '%s' is in %s, found '%s'", f[1], profile_steps[k].unit, f[3]);
    char *end;
    errno = 0;
    double v = strtod(f[2], &end);
    if (errno || end == f[2] || *end || !isfinite(v) || v < 0)
        return error_at(err, path, line, col[2], "step '%s' must be a non-negative number, found '%s'", f[1], f[2]);
    *profile_step_field(p, (ProfileStep)k) = v;
    seen[k] = line;
    return true;
}

bool cost_profile_load(const char *path, CostProfile **out, Error *err) {
    *out = NULL;
    char *text;
    size_t n_bytes;
    if (!fs_read_file(path, FS_READ_CSV, &text, &n_bytes, err)) return false;
    CostProfile *p = yp_calloc(1, sizeof *p);
    p->path = yp_strdup(path);
    bool ok = true;
    int line = 0, first_step_line = 0, seen[PROFILE_STEP_COUNT] = {0};
    bool split = true;
    for (char *s = text; ok && *s;) {
        char *nl = strchr(s, '\n');
        char *next = nl ? nl + 1 : s + strlen(s);
        if (nl) {
            *nl = '\0';
            if (nl > s && nl[-1] == '\r') nl[-1] = '\0';
        }
        line++;
        if (line == 1) {
            split = !strcmp(s, profile_header);
            if (!split && strcmp(s, profile_header_unsplit))
                ok = error_at(err, path, 1, 1, "expected the header '%s' (or one without bwd_weight_s), found '%s'",
                              profile_header, s);
        } else if (!strncmp(s, "step,", 5)) {
            if (!first_step_line) first_step_line = line;
            ok = profile_parse_step_line(p, path, line, s, seen, err);
        } else if (*s && first_step_line) {
            ok = error_at(err, path, line, 1, "a layer line after the step lines (from line %d): layers come first",
                          first_step_line);
        } else if (*s) {
            ok = profile_parse_line(p, path, line, s, split, err);
        }
        s = next;
    }
    free(text);
    if (ok && p->n_layers == 0) ok = error_at(err, path, line > 0 ? line : 1, 1, "no layer lines after the header");
    if (!ok) {
        cost_profile_destroy(p);
        return false;
    }
    *out = p;
    return true;
}
