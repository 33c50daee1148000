#include "framework/train/predict_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build_config.h"

#include "framework/core/path.h"
#include "framework/core/safetensors.h"
#include "framework/core/yaml_doc.h"
#include "framework/train/checkpoint.h"
#include "framework/train/trainer.h"
#include "kernels/cpu/cpu_backend.h"
#if YP_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#endif

enum { PREDICT_MAX_CLASSES = 100000, PREDICT_MAX_IMGSZ = 8192 };

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_manifest(const char *dir) {
    char path[PATH_MAX];
    Error ignored = {0};
    struct stat st;
    return path_format(path, sizeof path, &ignored, "%s/manifest.yaml", dir) && stat(path, &st) == 0;
}

// A checkpoint directory's EMA weights as an export (the same checks and metadata), read back from a
// temporary file: one reader for every kind of WEIGHTS.
static bool read_checkpoint(const char *dir, SafetensorsFile **file, Error *err) {
    const char *tmp = getenv("TMPDIR");
    char tmp_dir[PATH_MAX], path[PATH_MAX];
    if (!path_format(tmp_dir, sizeof tmp_dir, err, "%s/yolopipe-predict-XXXXXX", tmp && *tmp ? tmp : "/tmp"))
        return false;
    if (!mkdtemp(tmp_dir)) return error_set(err, "%s: cannot create a temporary folder: %s", tmp_dir, strerror(errno));
    bool ok = path_format(path, sizeof path, err, "%s/weights.safetensors", tmp_dir) &&
              checkpoint_export(dir, path, err) && safetensors_read(path, file, err);
    unlink(path);
    rmdir(tmp_dir);
    return ok;
}

// WEIGHTS → the safetensors file of its EMA weights with the export's metadata.
static bool read_weights(const char *weights, SafetensorsFile **file, Error *err) {
    struct stat st;
    if (stat(weights, &st) != 0) return error_set(err, "%s: no such file or directory (WEIGHTS: a run directory, a checkpoint directory or an exported .safetensors file)", weights);
    if (!S_ISDIR(st.st_mode)) return safetensors_read(weights, file, err);
    if (has_manifest(weights)) return read_checkpoint(weights, file, err);
    char dir[PATH_MAX];
    const char *const which[] = {"best", "last"};
    for (int i = 0; i < 2; i++) {
        if (!path_format(dir, sizeof dir, err, "%s/weights/%s", weights, which[i])) return false;
        if (is_dir(dir)) return read_checkpoint(dir, file, err);
    }
    return error_set(err, "%s: neither a run directory (no weights/best or weights/last) nor a checkpoint directory (no manifest.yaml)", weights);
}

static bool meta_int(const SafetensorsFile *f, const char *key, int64_t lo, int64_t hi, int64_t *out, Error *err) {
    const char *text = safetensors_file_metadata(f, key);
    if (!yaml_text_int(text, out) || *out < lo || *out > hi)
        return error_set(err, "%s: metadata %s must be an integer from %lld to %lld, found '%.40s'", f->path, key,
                         (long long)lo, (long long)hi, text);
    return true;
}

// The class names: a flow list of nc strings.
static bool meta_names(const SafetensorsFile *f, int64_t nc, char ***names, Error *err) {
    YamlDoc *yd;
    char label[PATH_MAX + 64];
    snprintf(label, sizeof label, "%s: metadata %s", f->path, EXPORT_META_NAMES);
    if (!yaml_doc_parse_text(label, safetensors_file_metadata(f, EXPORT_META_NAMES), &yd, err)) return false;
    yaml_node_t *root = yaml_doc_root(yd);
    bool ok = root->type == YAML_SEQUENCE_NODE && yaml_seq_len(root) == nc;
    if (!ok) error_set(err, "%s: metadata %s must be a list of %lld class names", f->path, EXPORT_META_NAMES, (long long)nc);
    *names = yp_calloc((size_t)nc, sizeof **names);
    for (int i = 0; ok && i < nc; i++) {
        const char *name;
        ok = yaml_node_string(yd, yaml_seq_at(yd, root, i), "a class name", &name, err);
        if (ok) (*names)[i] = yp_strdup(name);
    }
    yaml_doc_destroy(yd);
    return ok;
}

static bool open_backend(PredictDevice device, FILE *out, Backend **be, Error *err) {
    int gpus = trainer_gpu_count();
    if (device == PREDICT_DEVICE_CUDA && gpus == 0)
        return error_set(err, "--device cuda, but %s", trainer_no_gpu_reason());
    if (device == PREDICT_DEVICE_CPU || gpus == 0) {
        fprintf(out, "device: cpu, fp32\n");
        *be = cpu_backend_create(DTYPE_F32);
        return true;
    }
#if YP_HAVE_CUDA
    char name[256];
    cuda_device_name(0, name, sizeof name);
    fprintf(out, "device: cuda:0 (%s), fp32\n", name);
    *be = cuda_backend_create(&(CudaBackendOptions){.device = 0, .act = DTYPE_F32, .deterministic = true});
#endif
    return true;
}

bool predict_model_open(const char *weights, PredictDevice device, int64_t imgsz, FILE *out, PredictModel **model,
                        Error *err) {
    *model = NULL;
    PredictModel *m = yp_calloc(1, sizeof *m);
    m->weights = yp_strdup(weights);
    SafetensorsFile *f = NULL;
    bool ok = read_weights(weights, &f, err);
    const char *yaml = ok ? safetensors_file_metadata(f, EXPORT_META_MODEL_YAML) : NULL;
    const char *task = ok ? safetensors_file_metadata(f, EXPORT_META_TASK) : NULL;
    const char *file = ok ? safetensors_file_metadata(f, EXPORT_META_MODEL_FILE) : NULL;
    const char *scale = ok ? safetensors_file_metadata(f, EXPORT_META_SCALE) : NULL;
    if (ok && !(yaml && task && file && scale && safetensors_file_metadata(f, EXPORT_META_NAMES)))
        ok = error_set(err, "%s: the file does not record its model (an export from an older yolopipe?): re-export it with `yolopipe export RUN --out FILE.safetensors`", f->path);
    if (ok && strcmp(task, "detect") && strcmp(task, "classify"))
        ok = error_set(err, "%s: metadata %s must be detect or classify, found '%.40s'", f->path, EXPORT_META_TASK, task);
    int64_t recorded_imgsz = 0;
    ok = ok && meta_int(f, EXPORT_META_NC, 1, PREDICT_MAX_CLASSES, &m->nc, err) &&
         meta_int(f, EXPORT_META_IMGSZ, 1, PREDICT_MAX_IMGSZ, &recorded_imgsz, err) && meta_names(f, m->nc, &m->names, err);
    // Classification would need its own output (top-5); predict refuses it rather than guess.
    if (ok && !strcmp(task, "classify"))
        ok = error_set(err, "%s: a classification model (task classify): predict runs detection models only", weights);
    if (ok) {
        char label[PATH_MAX + 64];
        snprintf(label, sizeof label, "%s: recorded model %s", f->path, file);
        ok = model_spec_parse_text(label, yaml, &(ModelOptions){.scale = scale, .nc = m->nc}, &m->spec, err);
    }
    // Ultralytics' check_imgsz: up to a multiple of the largest stride (a described graph knows it).
    Graph *described = NULL;
    m->imgsz = imgsz > 0 ? imgsz : recorded_imgsz;
    ok = ok && graph_create(m->spec, &(GraphOptions){.batch = 1, .imgsz_h = m->imgsz, .imgsz_w = m->imgsz}, &described, err);
    if (ok && !described->n_strides)
        ok = error_set(err, "%s: the model has no detection head: predict runs detection models only", weights);
    if (ok) {
        int64_t stride = described->strides[described->n_strides - 1], rounded = (m->imgsz + stride - 1) / stride * stride;
        if (rounded != m->imgsz) fprintf(out, "note: imgsz %lld is not a multiple of the model's stride %lld: using %lld\n",
                                         (long long)m->imgsz, (long long)stride, (long long)rounded);
        m->imgsz = rounded;
    }
    graph_destroy(described);
    ok = ok && open_backend(device, out, &m->be, err) &&
         graph_create(m->spec, &(GraphOptions){.batch = 1, .imgsz_h = m->imgsz, .imgsz_w = m->imgsz, .be = m->be},
                      &m->graph, err) &&
         checkpoint_load_export(f, m->graph, err);
    safetensors_file_destroy(f);
    if (!ok) {
        predict_model_destroy(m);
        return false;
    }
    *model = m;
    return true;
}

int64_t predict_model_stride(const PredictModel *m) { return m->graph->strides[m->graph->n_strides - 1]; }

void predict_model_destroy(PredictModel *m) {
    if (!m) return;
    graph_destroy(m->graph);
    if (m->be) m->be->ops->destroy(m->be);
    model_spec_destroy(m->spec);
    for (int64_t i = 0; m->names && i < m->nc; i++) free(m->names[i]);
    free(m->names);
    free(m->weights);
    free(m);
}
