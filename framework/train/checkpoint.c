#include "framework/train/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/experiment_data.h"
#include "framework/core/fsutil.h"
#include "framework/core/json.h"
#include "framework/core/path.h"
#include "framework/core/safetensors.h"
#include "framework/core/yaml_doc.h"
#include "framework/train/loss_scale.h"

enum { CHECKPOINT_MAX_STAGES = 256 };
static const char nbt_suffix[] = "num_batches_tracked";

// The tensor list of one stage file, with the names and host copies it owns.
typedef struct TensorList {
    int n, cap;
    SafetensorsTensor *tensors;
    char **names;     // owned
    void *owned[8];   // host copies to free
    int n_owned;
} TensorList;

static void list_add(TensorList *l, const char *prefix, const char *name, SafetensorsDtype dtype, int ndim,
                     const int64_t *dims, const void *data, size_t n_bytes) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->tensors = yp_realloc(l->tensors, (size_t)l->cap * sizeof *l->tensors);
        l->names = yp_realloc(l->names, (size_t)l->cap * sizeof *l->names);
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = l->names[l->n] = yp_malloc(len);
    snprintf(full, len, "%s%s", prefix, name);
    SafetensorsTensor *t = &l->tensors[l->n++];
    *t = (SafetensorsTensor){.name = full, .dtype = dtype, .ndim = ndim, .data = data, .n_bytes = n_bytes};
    for (int d = 0; d < ndim; d++) t->shape[d] = dims[d];
}

static void *list_keep(TensorList *l, void *host) {
    YP_CHECK(l->n_owned < (int)(sizeof l->owned / sizeof *l->owned));
    return l->owned[l->n_owned++] = host;
}

static void list_free(TensorList *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    for (int i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->tensors);
    free(l->names);
}

// "model.0.bn.running_var" -> "model.0.bn.num_batches_tracked"; false for other names.
static bool nbt_name_for(const char *running_var, char *out, size_t cap) {
    const char *tail = ".running_var";
    size_t n = strlen(running_var), t = strlen(tail);
    if (n < t || strcmp(running_var + n - t, tail)) return false;
    snprintf(out, cap, "%.*s.%s", (int)(n - t), running_var, nbt_suffix);
    return true;
}

// The model's state dict in Ultralytics' order: parameters and buffers of each module as declared,
// with num_batches_tracked after each batch norm's running_var (an int64 scalar, as PyTorch has it).
// Values come from `params`/`buffers` (host copies laid out as the graph's storage).
static void list_add_state_dict(TensorList *l, const Graph *g, const char *prefix, const float *params,
                                const float *buffers, int64_t *nbt_value) {
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        const float *src = (p->flags & PARAM_BUFFER ? buffers : params) + p->offset;
        list_add(l, prefix, p->name, SAFETENSORS_F32, p->ndim, p->dims, src, (size_t)p->n_elems * sizeof(float));
        char nbt[PARAM_NAME_MAX + 32];
        if ((p->flags & PARAM_BUFFER) && nbt_name_for(p->name, nbt, sizeof nbt))
            list_add(l, prefix, nbt, SAFETENSORS_I64, 0, NULL, nbt_value, sizeof *nbt_value);
    }
}

static float *download(const Graph *g, const float *src, int64_t n) {
    float *host = yp_malloc((size_t)(n ? n : 1) * sizeof(float));
    if (n) g->be->ops->download(g->be, host, src, (size_t)n * sizeof(float));
    return host;
}

bool checkpoint_write_manifest(const char *dir, const TrainProgress *p, const ExperimentConfig *cfg, int n_stages,
                               const int (*layers)[2], Error *err) {
    char path[PATH_MAX];
    FsAtomicFile *af = NULL;
    if (!path_format(path, sizeof path, err, "%s/manifest.yaml", dir) || !fs_atomic_file_open(path, &af, err))
        return false;
    FILE *f = fs_atomic_file_stream(af);
    fprintf(f,
            "# yolopipe checkpoint manifest\n"
            "format: %d\n"
            "epoch: %lld\nbatch: %lld\niteration: %lld\nlast_step_iteration: %lld\noptimizer_steps: %lld\n"
            "bn_batches: %lld\nbest_fitness: %.17g\nseed: %lld\n"
            "loss_scale: %.17g\nloss_scale_good_steps: %lld\nskipped_steps: %lld\nskipped_in_a_row: %lld\nstages:\n",
            CHECKPOINT_FORMAT_VERSION, (long long)p->epoch, (long long)p->batch, (long long)p->iteration,
            (long long)p->last_step_iteration, (long long)p->optimizer_steps, (long long)p->bn_batches,
            p->best_fitness, (long long)p->seed, p->loss_scale.scale, (long long)p->loss_scale.good_steps,
            (long long)p->loss_scale.skipped, (long long)p->loss_scale.in_a_row);
    for (int k = 0; k < n_stages; k++)
        fprintf(f, "  - {file: stage-%d.safetensors, layers: [%d, %d]}\n", k, layers[k][0], layers[k][1]);
    if (!fs_atomic_file_commit(af, err)) return false;
    if (!path_format(path, sizeof path, err, "%s/config.yaml", dir) || !fs_atomic_file_open(path, &af, err)) return false;
    config_write_yaml(cfg, fs_atomic_file_stream(af));
    return fs_atomic_file_commit(af, err);
}

bool checkpoint_save_stage(const char *dir, int stage, const TrainProgress *progress, const CheckpointModel *model,
                           Error *err) {
    const Graph *g = model->graph;
    TensorList l = {0};
    // Host copies: the model's storage lives on the backend.
    float *params = list_keep(&l, download(g, g->param_data, g->param_elems));
    float *buffers = list_keep(&l, download(g, g->buffer_data, g->buffer_elems));
    int64_t nbt_model = progress->bn_batches, nbt_ema = 0;  // ModelEMA copies floating entries only
    list_add_state_dict(&l, g, "", params, buffers, &nbt_model);
    // Gradients accumulated since the last optimizer step (an epoch can end between two steps).
    const float *grads = list_keep(&l, download(g, g->grad_data, g->param_elems));
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        if (!(p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)))
            list_add(&l, "grad.", p->name, SAFETENSORS_F32, p->ndim, p->dims, grads + p->offset,
                     (size_t)p->n_elems * sizeof(float));
    }
    if (model->ema) {
        float *ema_params = list_keep(&l, yp_malloc((size_t)g->param_elems * sizeof(float) + 1));
        float *ema_buffers = list_keep(&l, yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1));
        ema_copy_to_graph_layout(model->ema, g, ema_params, ema_buffers);
        list_add_state_dict(&l, g, "ema.", ema_params, ema_buffers, &nbt_ema);
    }
    if (model->optimizer) {
        float *state = list_keep(&l, yp_malloc((size_t)optim_state_elems(model->optimizer) * sizeof(float) + 1));
        for (int i = 0; i < optim_state_count(model->optimizer); i++) {
            const OptimState *s = optim_state_get(model->optimizer, i);
            optim_state_download(model->optimizer, i, state);
            list_add(&l, "optimizer.", s->name, SAFETENSORS_F32, 1, &s->n_elems, state, (size_t)s->n_elems * sizeof(float));
            state += s->n_elems;
        }
    }
    char counts[2][32];
    snprintf(counts[0], sizeof counts[0], "%lld", (long long)(model->optimizer ? optim_step_count(model->optimizer) : 0));
    snprintf(counts[1], sizeof counts[1], "%lld", (long long)(model->ema ? ema_updates(model->ema) : 0));
    SafetensorsMetadata meta[] = {
        {"format", "yolopipe"},
        {"optimizer", model->optimizer ? optim_kind_name(optim_kind(model->optimizer)) : "none"},
        {"optimizer_steps", counts[0]},
        {"ema_updates", counts[1]},
    };
    char path[PATH_MAX];
    bool ok = path_format(path, sizeof path, err, "%s/stage-%d.safetensors", dir, stage) &&
              safetensors_write(path, l.tensors, l.n, meta, (int)(sizeof meta / sizeof *meta), err);
    list_free(&l);
    return ok;
}

bool checkpoint_dir_begin(const char *dir, FsAtomicDir **out, Error *err) {
    char parent[PATH_MAX];
    if (!path_format(parent, sizeof parent, err, "%s", dir)) return false;
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0';
    return (!slash || fs_mkdir_p(parent, err)) && fs_atomic_dir_begin(dir, out, err);
}

bool checkpoint_save(const char *dir, const TrainProgress *progress, const ExperimentConfig *cfg,
                     const CheckpointModel *model, Error *err) {
    FsAtomicDir *ad = NULL;
    if (!checkpoint_dir_begin(dir, &ad, err)) return false;
    int layers[1][2] = {{0, model->graph->n_layers - 1}};
    bool ok = checkpoint_save_stage(fs_atomic_dir_path(ad), 0, progress, model, err) &&
              checkpoint_write_manifest(fs_atomic_dir_path(ad), progress, cfg, 1, (const int(*)[2])layers, err);
    if (ok) return fs_atomic_dir_commit(ad, err);
    fs_atomic_dir_abort(ad);
    return false;
}

// ---- reading: the manifest -----------------------------------------------------------------------
// A checkpoint is untrusted input (edited by hand, damaged, or another run's): every value is parsed
// strictly and range-checked before anything uses it, so that a bad one is a user error naming the
// file, its line and column, the key and the reason, never a crash, an internal check failure or a run
// resumed at a position that does not exist.

typedef struct ManifestReader {
    YamlDoc *yd;
    yaml_node_t *root;
    Error *err;
} ManifestReader;

// Text from a file, for a message: its first 40 characters (then "..."), control characters as '?'
// (the message stays one line). buf holds at least 44 bytes.
static const char *shown(const char *text, char *buf, size_t cap) {
    YP_CHECK(cap >= 44);
    size_t n = 0;
    for (; text[n] && n < 40; n++) buf[n] = (unsigned char)text[n] < 0x20 || text[n] == 0x7f ? '?' : text[n];
    snprintf(buf + n, cap - n, "%s", text[n] ? "..." : "");
    return buf;
}

// What a node holds, for "found ...": a plain scalar as written, anything else described.
static const char *found_text(const yaml_node_t *node, char *buf, size_t cap) {
    char described[160];
    const char *text = yaml_node_is_plain(node) ? yaml_node_text(node) : NULL;
    return shown(text ? text : yaml_node_describe_found(node, described, sizeof described), buf, cap);
}

// A decimal integer as the writer prints it: an optional '-' and digits, no '+', '_' or spaces,
// within int64_t.
static bool decimal_int(const char *text, int64_t *out) {
    const char *digits = text + (*text == '-');
    if (!*digits) return false;
    for (const char *c = digits; *c; c++)
        if (*c < '0' || *c > '9') return false;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno) return false;
    *out = v;
    return true;
}

// "5", "an integer from 0 to 3", "an integer >= 0", for messages.
static const char *int_range_text(int64_t lo, int64_t hi, char *buf, size_t cap) {
    if (lo == hi) snprintf(buf, cap, "%lld", (long long)lo);
    else if (hi == INT64_MAX) snprintf(buf, cap, "an integer >= %lld", (long long)lo);
    else snprintf(buf, cap, "an integer from %lld to %lld", (long long)lo, (long long)hi);
    return buf;
}

// Reads the integer at `node` (called `what`) in [lo, hi]; `why` ("" or " (...)") says where the
// bounds come from.
static bool node_int(const ManifestReader *r, const yaml_node_t *node, const char *what, int64_t lo, int64_t hi,
                     const char *why, int64_t *out) {
    const char *text = yaml_node_is_plain(node) ? yaml_node_text(node) : NULL;
    // *out only ever receives a value in range: manifest_read computes with it (the iteration a
    // batch is) before it looks at whether reading it failed (fuzz_manifest: batch 2^63 - 1 overflowed).
    int64_t v;
    if (text && decimal_int(text, &v) && v >= lo && v <= hi) return *out = v, true;
    char range[96], found[64];
    return yaml_doc_error_at(r->yd, node, r->err, "%s must be %s%s, found %s", what,
                             int_range_text(lo, hi, range, sizeof range), why, found_text(node, found, sizeof found));
}

static yaml_node_t *manifest_value(const ManifestReader *r, const char *key) {
    yaml_node_t *node = yaml_map_get(r->yd, r->root, key);
    if (!node) yaml_doc_error_at(r->yd, r->root, r->err, "checkpoint manifest has no '%s'", key);
    return node;
}

static bool manifest_int(const ManifestReader *r, const char *key, int64_t lo, int64_t hi, const char *why,
                         int64_t *out) {
    yaml_node_t *node = manifest_value(r, key);
    return node && node_int(r, node, key, lo, hi, why, out);
}

// Reads a finite number that `valid` accepts; `must` says which, for the message.
static bool manifest_number(const ManifestReader *r, const char *key, bool (*valid)(double), const char *must,
                            double *out) {
    yaml_node_t *node = manifest_value(r, key);
    if (!node) return false;
    if (yaml_node_is_plain(node) && yaml_text_number(yaml_node_text(node), out) && isfinite(*out) && valid(*out))
        return true;
    char found[64];
    return yaml_doc_error_at(r->yd, node, r->err, "%s must be %s, found %s", key, must,
                             found_text(node, found, sizeof found));
}

// Validation's fitness (detection: mAP50-95; classification: the mean of top-1 and top-5) is in
// [0, 1]; -1 before the first validation.
static bool fitness_valid(double v) { return v == -1 || (v >= 0 && v <= 1); }
// The dynamic loss scale only ever halves and doubles from a power of two.
static bool loss_scale_valid(double v) {
    int exponent;
    return v > 0 && frexp(v, &exponent) == 0.5;
}
static bool loss_scale_off(double v) { return v == 1; }

// Every key is known: a misspelt or foreign key is an error, as in an experiment file.
static bool manifest_keys_known(const ManifestReader *r) {
    static const char *const known[] = {"format", "epoch", "batch", "iteration", "last_step_iteration",
                                        "optimizer_steps", "bn_batches", "best_fitness", "seed", "loss_scale",
                                        "loss_scale_good_steps", "skipped_steps", "skipped_in_a_row", "stages"};
    const yaml_node_t *root = r->root;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_doc_node(r->yd, p->key);
        const char *text = yaml_node_text(key);
        bool found = false;
        for (size_t i = 0; text && !found && i < sizeof known / sizeof *known; i++) found = !strcmp(text, known[i]);
        char shown_key[64];
        if (!found) return yaml_doc_error_at(r->yd, key, r->err, "unknown key '%s' in a checkpoint manifest",
                                             found_text(key, shown_key, sizeof shown_key));
    }
    return true;
}

// stages: one {file: stage-<k>.safetensors, layers: [first, last]} per stage, in order, the ranges
// contiguous from layer 0 (and ending at the model's last layer when n_layers > 0).
static bool manifest_stages(const ManifestReader *r, int n_layers, int *n_stages) {
    yaml_node_t *seq = manifest_value(r, "stages");
    if (!seq) return false;
    int n = yaml_seq_len(seq);
    char found[64], what[64], why[96], file[48];
    if (seq->type != YAML_SEQUENCE_NODE || n < 1 || n > CHECKPOINT_MAX_STAGES)
        return yaml_doc_error_at(r->yd, seq, r->err, "stages must be a list of 1 to %d stages, found %s",
                                 CHECKPOINT_MAX_STAGES, found_text(seq, found, sizeof found));
    int64_t next = 0, max_layer = n_layers > 0 ? n_layers - 1 : INT32_MAX;
    for (int k = 0; k < n; k++) {
        yaml_node_t *entry = yaml_seq_at(r->yd, seq, k);
        yaml_node_t *file_node = yaml_map_get(r->yd, entry, "file"), *layers = yaml_map_get(r->yd, entry, "layers");
        snprintf(file, sizeof file, "stage-%d.safetensors", k);
        if (!file_node || !layers || entry->data.mapping.pairs.top - entry->data.mapping.pairs.start != 2)
            return yaml_doc_error_at(r->yd, entry, r->err, "stages[%d] must be {file: %s, layers: [first, last]}, found %s",
                                     k, file, found_text(entry, found, sizeof found));
        const char *text = yaml_node_text(file_node);
        if (!text || strcmp(text, file))
            return yaml_doc_error_at(r->yd, file_node, r->err, "stages[%d].file must be %s, found %s", k, file,
                                     found_text(file_node, found, sizeof found));
        if (yaml_seq_len(layers) != 2)
            return yaml_doc_error_at(r->yd, layers, r->err, "stages[%d].layers must be [first, last], found %s", k,
                                     found_text(layers, found, sizeof found));
        int64_t first, last;
        snprintf(what, sizeof what, "stages[%d].layers[0]", k);
        snprintf(why, sizeof why, k ? " (the layer after stage %d's last)" : " (the first stage starts the model)", k - 1);
        if (!node_int(r, yaml_seq_at(r->yd, layers, 0), what, next, next, why, &first)) return false;
        bool final = k == n - 1 && n_layers > 0;
        snprintf(what, sizeof what, "stages[%d].layers[1]", k);
        snprintf(why, sizeof why, final ? " (the model's last layer)" : n_layers > 0 ? " (a layer of the model)" : "");
        if (!node_int(r, yaml_seq_at(r->yd, layers, 1), what, final ? max_layer : first, max_layer, why, &last))
            return false;
        next = last + 1;
    }
    *n_stages = n;
    return true;
}

// Reads <dir>/manifest.yaml into *p: every value strictly, within what the other values allow and,
// when resuming, within the experiment; the stages list against a model of n_layers layers (0: any).
static bool manifest_read(const char *dir, const CheckpointResume *resume, int n_layers, TrainProgress *progress,
                          int *n_stages, Error *err) {
    char path[PATH_MAX];
    YamlDoc *yd = NULL;
    if (!path_format(path, sizeof path, err, "%s/manifest.yaml", dir) || !yaml_doc_load(path, &yd, err)) return false;
    ManifestReader r = {.yd = yd, .root = yaml_doc_root(yd), .err = err};
    char found[64], why[128];
    TrainProgress p = {0};
    int64_t format = 0, max = INT64_MAX;
    bool ok = r.root->type == YAML_MAPPING_NODE ||
              yaml_doc_error_at(yd, r.root, err, "a checkpoint manifest must be a mapping, found %s",
                                found_text(r.root, found, sizeof found));
    ok = ok && manifest_keys_known(&r) &&
         manifest_int(&r, "format", CHECKPOINT_FORMAT_VERSION, CHECKPOINT_FORMAT_VERSION, " (the format this yolopipe reads)", &format) &&
         manifest_int(&r, "epoch", 0, resume ? resume->epochs : max, resume ? " (train.epochs)" : "", &p.epoch);
    // Resuming: the position must be a batch of this run, whose epochs have batches_per_epoch batches.
    if (ok && resume) {
        bool finished = p.epoch == resume->epochs;
        snprintf(why, sizeof why, finished ? " (epoch %lld is the end of training)" : " (the run has %lld batches per epoch)",
                 (long long)(finished ? p.epoch : resume->batches_per_epoch));
        ok = manifest_int(&r, "batch", 0, finished ? 0 : resume->batches_per_epoch - 1, why, &p.batch);
        int64_t iteration = p.epoch * resume->batches_per_epoch + p.batch;
        snprintf(why, sizeof why, " (epoch %lld x %lld batches per epoch + batch %lld)", (long long)p.epoch,
                 (long long)resume->batches_per_epoch, (long long)p.batch);
        ok = ok && manifest_int(&r, "iteration", iteration, iteration, why, &p.iteration);
    } else if (ok) {
        ok = manifest_int(&r, "batch", 0, max, "", &p.batch) && manifest_int(&r, "iteration", 0, max, "", &p.iteration);
    }
    // The last optimizer step was at a batch before the next one; one step per batch at most.
    ok = ok && manifest_int(&r, "last_step_iteration", -1, p.iteration - 1, " (-1 or a batch before iteration)",
                            &p.last_step_iteration);
    bool stepped = p.last_step_iteration >= 0;
    ok = ok && manifest_int(&r, "optimizer_steps", stepped, p.last_step_iteration + 1,
                            stepped ? " (at most one step per batch up to last_step_iteration)"
                                    : " (last_step_iteration -1: no step yet)",
                            &p.optimizer_steps);
    if (ok && resume) {
        int64_t passes = p.iteration * resume->passes_per_batch;
        snprintf(why, sizeof why, " (iteration %lld x %lld forward passes per batch)", (long long)p.iteration,
                 (long long)resume->passes_per_batch);
        ok = manifest_int(&r, "bn_batches", passes, passes, why, &p.bn_batches) &&
             manifest_int(&r, "seed", resume->seed, resume->seed, " (train.seed)", &p.seed);
    } else if (ok) {
        ok = manifest_int(&r, "bn_batches", 0, max, "", &p.bn_batches) &&
             manifest_int(&r, "seed", 0, INT32_MAX, "", &p.seed);
    }
    bool scaling = !resume || resume->loss_scaling;
    int64_t good_max = p.optimizer_steps < LOSS_SCALE_GROWTH_INTERVAL ? p.optimizer_steps : LOSS_SCALE_GROWTH_INTERVAL - 1;
    ok = ok && manifest_number(&r, "best_fitness", fitness_valid, "-1 (no validation yet) or a fitness from 0 to 1",
                               &p.best_fitness) &&
         manifest_number(&r, "loss_scale", scaling ? loss_scale_valid : loss_scale_off,
                         scaling ? "a power of two > 0" : "1 (loss scaling is fp16's only)", &p.loss_scale.scale) &&
         manifest_int(&r, "loss_scale_good_steps", 0, good_max, " (steps since the scale last changed)",
                      &p.loss_scale.good_steps) &&
         manifest_int(&r, "skipped_steps", 0, p.optimizer_steps, " (at most optimizer_steps)", &p.loss_scale.skipped) &&
         // Checkpoints written before skipped_in_a_row existed resume counting from 0.
         (!yaml_map_get(yd, r.root, "skipped_in_a_row") ||
          manifest_int(&r, "skipped_in_a_row", 0, p.loss_scale.skipped, " (at most skipped_steps)",
                       &p.loss_scale.in_a_row));
    int n = 0;
    ok = ok && manifest_stages(&r, n_layers, &n);
    yaml_doc_destroy(yd);
    if (ok) *progress = p;
    if (ok && n_stages) *n_stages = n;
    return ok;
}

bool checkpoint_read_progress(const char *dir, const CheckpointResume *resume, TrainProgress *progress, Error *err) {
    return manifest_read(dir, resume, 0, progress, NULL, err);
}

// ---- reading: the stage files --------------------------------------------------------------------

// Every stage file of a checkpoint, in stage order (whatever partitioning wrote it).
typedef struct StageFiles {
    int n;
    SafetensorsFile *files[CHECKPOINT_MAX_STAGES];
} StageFiles;

static void stage_files_close(StageFiles *sf) {
    for (int k = 0; k < sf->n; k++) safetensors_file_destroy(sf->files[k]);
    sf->n = 0;
}

// Opens the n_stages files the manifest lists.
static bool stage_files_open(const char *dir, int n_stages, StageFiles *sf, Error *err) {
    *sf = (StageFiles){0};
    for (int k = 0; k < n_stages; k++) {
        char path[PATH_MAX];
        if (!path_format(path, sizeof path, err, "%s/stage-%d.safetensors", dir, k) ||
            !safetensors_read(path, &sf->files[k], err))
            return stage_files_close(sf), false;
        sf->n = k + 1;
    }
    return true;
}

static const SafetensorsFile *stage_files_find(const StageFiles *sf, const char *name, const SafetensorsTensor **t) {
    for (int k = 0; k < sf->n; k++)
        if ((*t = safetensors_file_find(sf->files[k], name))) return sf->files[k];
    return NULL;
}

// The counts a stage file's metadata holds (its optimizer's steps, its EMA's updates): strict
// decimal integers in [0, max] ("why" says where max comes from), the same in every stage file.
static bool stage_files_count(const StageFiles *sf, const char *key, int64_t max, const char *why, int64_t *out,
                              Error *err) {
    for (int k = 0; k < sf->n; k++) {
        const SafetensorsFile *f = sf->files[k];
        const char *text = safetensors_file_metadata(f, key);
        int64_t v;
        char found[64];
        if (!text) return error_set(err, "%s: the metadata has no %s (not a yolopipe stage file?)", f->path, key);
        if (!decimal_int(text, &v) || v < 0 || v > max)
            return error_set(err, "%s: metadata %s must be an integer from 0 to %lld%s, found '%s'", f->path, key,
                             (long long)max, why, shown(text, found, sizeof found));
        if (k && v != *out)
            return error_set(err, "%s: metadata %s is %lld, but %s has %lld (stage files of different checkpoints?)",
                             f->path, key, (long long)v, sf->files[0]->path, (long long)*out);
        *out = v;
    }
    return true;
}

// "[16,3,3,3]"
static const char *shape_text(int ndim, const int64_t *dims, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? "," : "", (long long)dims[d]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

// The index of the first element of n floats at data (possibly unaligned) that is NaN or infinite, or -1.
static int64_t first_non_finite(const void *data, int64_t n, float *value) {
    for (int64_t i = 0; i < n; i++) {
        memcpy(value, (const char *)data + (size_t)i * sizeof *value, sizeof *value);
        if (!isfinite(*value)) return i;
    }
    return -1;
}

static bool non_finite_error(const char *path, const char *name, int64_t at, float value, Error *err) {
    return error_set(err, "%s: tensor '%s' holds %s at element %lld; a checkpoint holds finite values only", path,
                     name, isnan(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf", (long long)at);
}

// Copies F32 tensor `name` into dst (host memory) after checking that its shape is the model's, whole
// (rank and every dimension), and, when `finite`, that it holds no NaN or infinity.
static bool take_f32(const StageFiles *sf, const char *name, int ndim, const int64_t *dims, bool finite, float *dst,
                     Error *err) {
    const SafetensorsTensor *t = NULL;
    const SafetensorsFile *f = stage_files_find(sf, name, &t);
    if (!f) return error_set(err, "%s: no tensor '%s' in any stage file (a checkpoint of another model?)",
                             sf->files[0]->path, name);
    bool same = t->dtype == SAFETENSORS_F32 && t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == dims[d];
    char stored[200], needed[200];
    if (!same)
        return error_set(err, "%s: tensor '%s' is %s %s, the model needs F32 %s", f->path, name,
                         safetensors_dtype_name(t->dtype), shape_text(t->ndim, t->shape, stored, sizeof stored),
                         shape_text(ndim, dims, needed, sizeof needed));
    int64_t n_elems = safetensors_tensor_elems(t);
    float value;
    int64_t at = finite ? first_non_finite(t->data, n_elems, &value) : -1;
    if (at >= 0) return non_finite_error(f->path, name, at, value, err);
    memcpy(dst, t->data, (size_t)n_elems * sizeof(float));
    return true;
}

bool checkpoint_load(const char *dir, const CheckpointResume *resume, TrainProgress *progress,
                     const CheckpointModel *model, Error *err) {
    Graph *g = model->graph;
    StageFiles sf;
    int n_stages = 0;
    TrainProgress at;
    if (!manifest_read(dir, resume, g->n_layers, &at, &n_stages, err) || !stage_files_open(dir, n_stages, &sf, err))
        return false;
    // The EMA is updated after each optimizer step taken (none after a skipped one), and the
    // optimizer counts the steps it took.
    int64_t optimizer_steps = 0, ema_updates_done = 0;
    bool ok = stage_files_count(&sf, "optimizer_steps", at.optimizer_steps, " (the manifest's optimizer_steps)",
                                &optimizer_steps, err) &&
              stage_files_count(&sf, "ema_updates", at.optimizer_steps, " (the manifest's optimizer_steps)",
                                &ema_updates_done, err);
    float *params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
    float *buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    float *ema_params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
    float *ema_buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    float *grads = yp_calloc((size_t)g->param_elems + 1, sizeof(float));
    for (int i = 0; ok && i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        bool buffer = p->flags & PARAM_BUFFER;
        char name[PARAM_NAME_MAX + 8];
        ok = take_f32(&sf, p->name, p->ndim, p->dims, true, (buffer ? buffers : params) + p->offset, err);
        // Gradients accumulated since the last step may hold an overflow that the next step skips.
        snprintf(name, sizeof name, "grad.%s", p->name);
        if (ok && !(p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)))
            ok = take_f32(&sf, name, p->ndim, p->dims, false, grads + p->offset, err);
        snprintf(name, sizeof name, "ema.%s", p->name);
        if (ok && model->ema)
            ok = take_f32(&sf, name, p->ndim, p->dims, true, (buffer ? ema_buffers : ema_params) + p->offset, err);
    }
    if (ok) {
        g->be->ops->upload(g->be, g->param_data, params, (size_t)g->param_elems * sizeof(float));
        g->be->ops->upload(g->be, g->buffer_data, buffers, (size_t)g->buffer_elems * sizeof(float));
        g->be->ops->upload(g->be, g->grad_data, grads, (size_t)g->param_elems * sizeof(float));
    }
    if (ok && model->ema) ema_copy_from_graph_layout(model->ema, g, ema_params, ema_buffers);
    float *state = model->optimizer ? yp_malloc((size_t)optim_state_elems(model->optimizer) * sizeof(float) + 1) : NULL;
    for (int i = 0; ok && model->optimizer && i < optim_state_count(model->optimizer); i++) {
        const OptimState *s = optim_state_get(model->optimizer, i);
        char name[PARAM_NAME_MAX + 64];
        snprintf(name, sizeof name, "optimizer.%s", s->name);
        ok = take_f32(&sf, name, 1, &s->n_elems, true, state, err);
        if (ok) optim_state_upload(model->optimizer, i, state);
    }
    free(state);
    for (int k = 0; ok && model->optimizer && k < sf.n; k++) {
        const char *kind = safetensors_file_metadata(sf.files[k], "optimizer"), *want = optim_kind_name(optim_kind(model->optimizer));
        char found[64];
        if (!kind || strcmp(kind, want))
            ok = error_set(err, "%s: saved with optimizer %s, resumed with %s", sf.files[k]->path,
                           kind ? shown(kind, found, sizeof found) : "none", want);
    }
    if (ok && model->optimizer) optim_set_step_count(model->optimizer, optimizer_steps);
    if (ok && model->ema) ema_set_updates(model->ema, ema_updates_done);
    if (ok) *progress = at;
    free(params);
    free(buffers);
    free(ema_params);
    free(ema_buffers);
    free(grads);
    stage_files_close(&sf);
    return ok;
}

// Checks the EMA tensor `t` of file f before it is exported: the model's tensor of the same name is in
// the checkpoint with the same dtype and shape (so the file is a state dict of one model), and its
// values are finite.
static bool export_tensor_valid(const StageFiles *sf, const SafetensorsFile *f, const SafetensorsTensor *t,
                                Error *err) {
    const SafetensorsTensor *twin = NULL;
    if (!stage_files_find(sf, t->name + 4, &twin))
        return error_set(err, "%s: tensor '%s' has no '%s' beside it in the checkpoint", f->path, t->name, t->name + 4);
    bool same = twin->dtype == t->dtype && twin->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = twin->shape[d] == t->shape[d];
    char stored[200], needed[200];
    if (!same)
        return error_set(err, "%s: tensor '%s' is %s %s, but '%s' is %s %s", f->path, t->name,
                         safetensors_dtype_name(t->dtype), shape_text(t->ndim, t->shape, stored, sizeof stored),
                         twin->name, safetensors_dtype_name(twin->dtype),
                         shape_text(twin->ndim, twin->shape, needed, sizeof needed));
    float value;
    int64_t at = t->dtype == SAFETENSORS_F32 ? first_non_finite(t->data, safetensors_tensor_elems(t), &value) : -1;
    return at < 0 || non_finite_error(f->path, t->name, at, value, err);
}

// ---- export: what predict needs besides the weights --------------------------------------------------

// The metadata values of an export, as text (all owned).
typedef struct ExportInfo {
    char *task, *model_file, *model_yaml, *scale, *nc, *names, *imgsz;
} ExportInfo;

static void export_info_free(ExportInfo *info) {
    char **fields[] = {&info->task, &info->model_file, &info->model_yaml, &info->scale, &info->nc, &info->names,
                       &info->imgsz};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) free(*fields[i]);
    *info = (ExportInfo){0};
}

static char *text_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *text_printf(const char *fmt, ...) {
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    YP_CHECK(vasprintf(&text, fmt, ap) >= 0);
    va_end(ap);
    return text;
}

// From the checkpoint's config.yaml (absolute model and data paths): the model YAML's text, the scale
// the model was built at, and the dataset's class names (a JSON list).
static bool export_info_read(const char *dir, ExportInfo *info, Error *err) {
    char path[PATH_MAX];
    ExperimentConfig *cfg = NULL;
    Dataset *ds = NULL;
    ModelSpec *spec = NULL;
    size_t n_bytes;
    bool ok = path_format(path, sizeof path, err, "%s/config.yaml", dir) && config_load(path, 0, NULL, &cfg, err) &&
              fs_read_file(cfg->model, FS_READ_YAML, &info->model_yaml, &n_bytes, err) &&
              experiment_data_open(cfg, &ds, err) &&
              model_spec_load(cfg->model, &(ModelOptions){.scale = cfg->scale, .nc = ds->nc}, &spec, err);
    if (ok) {
        const char *base = strrchr(cfg->model, '/');
        info->task = yp_strdup(config_task_names[cfg->task]);
        info->model_file = yp_strdup(base ? base + 1 : cfg->model);
        info->scale = yp_strdup(spec->scale);
        info->nc = text_printf("%d", ds->nc);
        info->imgsz = text_printf("%lld", (long long)cfg->train.imgsz);
        size_t cap = 0;
        FILE *f = open_memstream(&info->names, &cap);
        YP_CHECK(f);
        fputc('[', f);
        for (int i = 0; i < ds->nc; i++) {
            if (i) fputs(", ", f);
            json_write_string(f, ds->names[i]);
        }
        fputc(']', f);
        fclose(f);
    }
    model_spec_destroy(spec);
    dataset_destroy(ds);
    config_destroy(cfg);
    return ok;
}

bool checkpoint_export(const char *dir, const char *out_path, Error *err) {
    StageFiles sf;
    TrainProgress progress;
    int n_stages = 0;
    if (!manifest_read(dir, NULL, 0, &progress, &n_stages, err) || !stage_files_open(dir, n_stages, &sf, err))
        return false;
    TensorList l = {0};
    bool ok = true;
    // Stage files in stage order, each in declaration order: the state dict's order.
    for (int k = 0; ok && k < sf.n; k++)
        for (int i = 0; ok && i < sf.files[k]->n_tensors; i++) {
            const SafetensorsTensor *t = &sf.files[k]->tensors[i];
            if (strncmp(t->name, "ema.", 4)) continue;
            ok = export_tensor_valid(&sf, sf.files[k], t, err);
            if (ok) list_add(&l, "", t->name + 4, t->dtype, t->ndim, t->shape, t->data, t->n_bytes);
        }
    ExportInfo info = {0};
    if (ok && !l.n) ok = error_set(err, "%s: the checkpoint holds no EMA weights to export", dir);
    if (ok) ok = export_info_read(dir, &info, err);
    if (ok) {
        SafetensorsMetadata meta[] = {{"format", "pt"},
                                      {"source", "yolopipe EMA weights"},
                                      {EXPORT_META_TASK, info.task},
                                      {EXPORT_META_MODEL_FILE, info.model_file},
                                      {EXPORT_META_MODEL_YAML, info.model_yaml},
                                      {EXPORT_META_SCALE, info.scale},
                                      {EXPORT_META_NC, info.nc},
                                      {EXPORT_META_NAMES, info.names},
                                      {EXPORT_META_IMGSZ, info.imgsz}};
        ok = safetensors_write(out_path, l.tensors, l.n, meta, (int)(sizeof meta / sizeof *meta), err);
    }
    export_info_free(&info);
    list_free(&l);
    stage_files_close(&sf);
    return ok;
}

bool checkpoint_load_export(const SafetensorsFile *file, Graph *g, Error *err) {
    StageFiles sf = {.n = 1, .files = {(SafetensorsFile *)file}};  // read only: take_f32 copies out
    float *params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
    float *buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    bool ok = true;
    for (int i = 0; ok && i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        ok = take_f32(&sf, p->name, p->ndim, p->dims, true, (p->flags & PARAM_BUFFER ? buffers : params) + p->offset, err);
    }
    if (ok) {
        g->be->ops->upload(g->be, g->param_data, params, (size_t)g->param_elems * sizeof(float));
        g->be->ops->upload(g->be, g->buffer_data, buffers, (size_t)g->buffer_elems * sizeof(float));
    }
    free(params);
    free(buffers);
    return ok;
}
