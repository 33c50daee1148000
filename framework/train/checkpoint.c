#include "framework/train/checkpoint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/safetensors.h"
#include "framework/core/yaml_doc.h"

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
            "loss_scale: %.17g\nloss_scale_good_steps: %lld\nskipped_steps: %lld\nstages:\n",
            CHECKPOINT_FORMAT_VERSION, (long long)p->epoch, (long long)p->batch, (long long)p->iteration,
            (long long)p->last_step_iteration, (long long)p->optimizer_steps, (long long)p->bn_batches,
            p->best_fitness, (long long)p->seed, p->loss_scale.scale, (long long)p->loss_scale.good_steps,
            (long long)p->loss_scale.skipped);
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
    const float *grads = model->grads ? model->grads : list_keep(&l, download(g, g->grad_data, g->param_elems));
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

// ---- reading ---------------------------------------------------------------------------------------

static bool manifest_int(YamlDoc *yd, yaml_node_t *root, const char *key, int64_t *out, Error *err) {
    yaml_node_t *node = yaml_map_get(yd, root, key);
    if (!node) return yaml_doc_error_at(yd, root, err, "checkpoint manifest has no '%s'", key);
    return yaml_node_int(yd, node, key, out, err);
}

static bool manifest_number(YamlDoc *yd, yaml_node_t *root, const char *key, double *out, Error *err) {
    yaml_node_t *node = yaml_map_get(yd, root, key);
    if (!node) return yaml_doc_error_at(yd, root, err, "checkpoint manifest has no '%s'", key);
    return yaml_node_number(yd, node, key, out, err);
}

bool checkpoint_read_progress(const char *dir, TrainProgress *progress, Error *err) {
    char path[PATH_MAX];
    YamlDoc *yd = NULL;
    if (!path_format(path, sizeof path, err, "%s/manifest.yaml", dir) || !yaml_doc_load(path, &yd, err)) return false;
    yaml_node_t *root = yaml_doc_root(yd);
    TrainProgress p = {0};
    int64_t format = 0;
    bool ok = manifest_int(yd, root, "format", &format, err);
    if (ok && format != CHECKPOINT_FORMAT_VERSION)
        ok = yaml_doc_error_at(yd, root, err, "checkpoint format %lld; this yolopipe reads format %d", (long long)format,
                               CHECKPOINT_FORMAT_VERSION);
    ok = ok && manifest_int(yd, root, "epoch", &p.epoch, err) && manifest_int(yd, root, "batch", &p.batch, err) &&
         manifest_int(yd, root, "iteration", &p.iteration, err) &&
         manifest_int(yd, root, "last_step_iteration", &p.last_step_iteration, err) &&
         manifest_int(yd, root, "optimizer_steps", &p.optimizer_steps, err) &&
         manifest_int(yd, root, "bn_batches", &p.bn_batches, err) && manifest_int(yd, root, "seed", &p.seed, err) &&
         manifest_number(yd, root, "loss_scale", &p.loss_scale.scale, err) &&
         manifest_int(yd, root, "loss_scale_good_steps", &p.loss_scale.good_steps, err) &&
         manifest_int(yd, root, "skipped_steps", &p.loss_scale.skipped, err);
    ok = ok && manifest_number(yd, root, "best_fitness", &p.best_fitness, err);
    yaml_doc_destroy(yd);
    if (ok) *progress = p;
    return ok;
}

// Every stage file of a checkpoint, in stage order (whatever partitioning wrote it).
typedef struct StageFiles {
    int n;
    SafetensorsFile *files[CHECKPOINT_MAX_STAGES];
} StageFiles;

static void stage_files_close(StageFiles *sf) {
    for (int k = 0; k < sf->n; k++) safetensors_file_destroy(sf->files[k]);
    sf->n = 0;
}

static bool stage_files_open(const char *dir, StageFiles *sf, Error *err) {
    *sf = (StageFiles){0};
    DIR *d = opendir(dir);
    if (!d) return error_set(err, "%s: cannot open the checkpoint directory", dir);
    int n_stages = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int k, len = 0;
        if (sscanf(e->d_name, "stage-%d.safetensors%n", &k, &len) == 1 && e->d_name[len] == '\0' && k >= 0 &&
            k < CHECKPOINT_MAX_STAGES && k + 1 > n_stages)
            n_stages = k + 1;
    }
    closedir(d);
    if (!n_stages) return error_set(err, "%s: no stage-<k>.safetensors file (not a yolopipe checkpoint?)", dir);
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

// Copies tensor `name` of f into dst (n_elems floats, host memory) after checking its shape.
static bool take_f32(const StageFiles *sf, const char *name, float *dst, int64_t n_elems, Error *err) {
    const SafetensorsTensor *t = NULL;
    const SafetensorsFile *f = stage_files_find(sf, name, &t);
    if (!f) return error_set(err, "%s: no tensor '%s' in any stage file (a checkpoint of another model?)",
                             sf->files[0]->path, name);
    if (t->dtype != SAFETENSORS_F32 || safetensors_tensor_elems(t) != n_elems)
        return error_set(err, "%s: tensor '%s' has %lld %s elements, the model needs %lld F32", f->path, name,
                         (long long)safetensors_tensor_elems(t), safetensors_dtype_name(t->dtype), (long long)n_elems);
    memcpy(dst, t->data, (size_t)n_elems * sizeof(float));
    return true;
}

bool checkpoint_load(const char *dir, TrainProgress *progress, const CheckpointModel *model, Error *err) {
    Graph *g = model->graph;
    StageFiles sf;
    if (!checkpoint_read_progress(dir, progress, err) || !stage_files_open(dir, &sf, err)) return false;
    const SafetensorsFile *f = sf.files[0];
    float *params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
    float *buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    float *ema_params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
    float *ema_buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    float *grads = yp_calloc((size_t)g->param_elems + 1, sizeof(float));
    bool ok = true;
    for (int i = 0; ok && i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        bool buffer = p->flags & PARAM_BUFFER;
        char name[PARAM_NAME_MAX + 8];
        ok = take_f32(&sf, p->name, (buffer ? buffers : params) + p->offset, p->n_elems, err);
        snprintf(name, sizeof name, "grad.%s", p->name);
        if (ok && !(p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)))
            ok = take_f32(&sf, name, grads + p->offset, p->n_elems, err);
        snprintf(name, sizeof name, "ema.%s", p->name);
        if (ok && model->ema) ok = take_f32(&sf, name, (buffer ? ema_buffers : ema_params) + p->offset, p->n_elems, err);
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
        ok = take_f32(&sf, name, state, s->n_elems, err);
        if (ok) optim_state_upload(model->optimizer, i, state);
    }
    free(state);
    if (ok && model->optimizer) {
        const char *kind = safetensors_file_metadata(f, "optimizer");
        if (!kind || strcmp(kind, optim_kind_name(optim_kind(model->optimizer))))
            ok = error_set(err, "%s: saved with optimizer %s, resumed with %s", f->path, kind ? kind : "none",
                           optim_kind_name(optim_kind(model->optimizer)));
        else optim_set_step_count(model->optimizer, progress->optimizer_steps);
    }
    if (ok && model->ema) {
        const char *updates = safetensors_file_metadata(f, "ema_updates");
        ema_set_updates(model->ema, updates ? strtoll(updates, NULL, 10) : 0);
    }
    free(params);
    free(buffers);
    free(ema_params);
    free(ema_buffers);
    free(grads);
    stage_files_close(&sf);
    return ok;
}

bool checkpoint_export(const char *dir, const char *out_path, Error *err) {
    StageFiles sf;
    if (!stage_files_open(dir, &sf, err)) return false;
    TensorList l = {0};
    // Stage files in stage order, each in declaration order: the state dict's order.
    for (int k = 0; k < sf.n; k++)
        for (int i = 0; i < sf.files[k]->n_tensors; i++) {
            const SafetensorsTensor *t = &sf.files[k]->tensors[i];
            if (strncmp(t->name, "ema.", 4)) continue;
            list_add(&l, "", t->name + 4, t->dtype, t->ndim, t->shape, t->data, t->n_bytes);
        }
    SafetensorsMetadata meta[] = {{"format", "pt"}, {"source", "yolopipe EMA weights"}};
    bool ok = l.n ? safetensors_write(out_path, l.tensors, l.n, meta, 2, err)
                  : error_set(err, "%s: the checkpoint holds no EMA weights to export", dir);
    list_free(&l);
    stage_files_close(&sf);
    return ok;
}
