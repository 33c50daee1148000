#include "framework/train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "build_config.h"

#include "framework/train/checkpoint.h"
#include "framework/data/dataset.h"
#include "framework/train/ema.h"
#include "framework/runtime/executor.h"
#include "framework/config/experiment_plan.h"
#include "framework/runtime/failure.h"
#include "framework/core/fsutil.h"
#include "framework/data/loader.h"
#include "framework/train/loss_scale.h"
#include "framework/eval/metrics.h"
#include "framework/eval/nms.h"
#include "framework/train/optim.h"
#include "framework/train/optim_schedule.h"
#include "framework/train/progress.h"
#include "framework/data/synth.h"
#include "kernels/cpu/cpu_backend.h"
#if YP_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#endif
#if YP_HAVE_NCCL
#include "framework/runtime/transport_nccl.h"
#endif
#include "layers/graph.h"
#include "layers/loss.h"

// Per model chunk on this rank: its optimizer, its EMA, and host copies for swapping the EMA in.
typedef struct TrainerChunk {
    Optimizer *optimizer;
    ModelEma *ema;
    float *live_params, *live_buffers;  // the model's own weights while validation uses the EMA's
    float *ema_params, *ema_buffers;    // the EMA's weights in the graph's layout, to upload
} TrainerChunk;

typedef struct Trainer {
    const ExperimentConfig *cfg;
    FILE *out;     // world rank 0: progress, tables and notices; other ranks: a sink
    FILE *sink;    // owned /dev/null of the other ranks
    Progress progress_line;
    bool classify;
    Transport *tr;
    const Topology *topo;
    bool lead;     // world rank 0 prints, writes results.csv and the manifest

    Dataset *dataset;
    DatasetSplit *splits[DATASET_SPLIT_COUNT];  // train and val, scanned
    Loader *train_loader;                       // ranks holding stage 0 or the last stage
    LoaderOptions val_options;

    ModelSpec *spec;
    ExperimentPlan ep;
    Backend *be;
    Transport *be_tr;  // the executor's transport: over backend memory (tr itself, or host staging over it)
    Executor *ex;
    int n_chunks;
    TrainerChunk *chunks;
    int64_t micro;     // images per forward pass
    int64_t max_side;  // the graphs are built for max_side x max_side

    // Validation: detections on the last stage, metrics on world rank 0.
    DetectDecoder *decoder;
    Detections *detections;
    DetectMetrics *metrics;
    float *val_out;

    OptimSchedule schedule;
    TrainProgress at;
    char run_dir[4096];
    int64_t batches_per_epoch;
    int *step_sides;  // (batches_per_epoch) input side of each batch of the current epoch
    int n_step_times;
    double *step_times;     // seconds of each training batch of the run (rank 0), for the summary
    double *compute_times;  // the same without the wait for the batch's data
} Trainer;

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double world_sum(Trainer *t, double value) {
    t->tr->ops->allreduce_sum_f64(t->tr, &value, 1, TRANSPORT_WORLD);
    return value;
}

// A user error found on some ranks only (a stage file that cannot be written, ...): every rank
// learns that one failed, so none goes on alone. Returns whether all succeeded.
static bool all_ranks_ok(Trainer *t, bool ok, Error *err) {
    double failed = world_sum(t, ok ? 0.0 : 1.0);
    if (failed > 0 && ok) error_set(err, "%.0f other rank%s failed (see their messages)", failed, failed == 1 ? "" : "s");
    return failed == 0;
}

// ---- set-up ----------------------------------------------------------------------------------------

static bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// The dataset: generated first (by world rank 0, the others wait) when missing and the experiment has
// a synth: block.
static bool trainer_open_data(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    bool ok = true;
    if (t->lead && !path_exists(cfg->data) && cfg->synth.present) {
        // The dataset folder is the data file's folder for detection (data.yaml inside it).
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", cfg->data);
        if (!t->classify) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = '\0';
        }
        SynthConfig sc = cfg->synth.synth;
        sc.out_dir = dir;
        sc.progress = t->out;
        fprintf(t->out, "%s does not exist: generating the synthetic dataset (synth: block)\n", cfg->data);
        ok = synth_generate(&sc, NULL, err);
    }
    if (!all_ranks_ok(t, ok, err)) return false;
    DatasetTask task = t->classify ? DATASET_TASK_CLASSIFY : DATASET_TASK_DETECT;
    if (!dataset_open(cfg->data, task, &t->dataset, err)) return false;
    int threads = cfg->train.workers > 0 ? (int)cfg->train.workers : 1;
    for (int s = DATASET_SPLIT_TRAIN; s <= DATASET_SPLIT_VAL; s++) {
        if (!dataset_scan(t->dataset, (DatasetSplitId)s, threads, &t->splits[s], err)) return false;
        dataset_split_print_summary(t->splits[s], t->out);
    }
    return true;
}

// The GPUs this process can use (none in a build without CUDA).
static int trainer_gpu_count(void) {
#if YP_HAVE_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

#if YP_HAVE_CUDA
// parallel.transport for a GPU backend under a launcher: NCCL carries the executor's GPU tensors when
// every rank of the node has a GPU of its own (NCCL refuses two ranks on one GPU); otherwise the
// executor goes through host staging over MPI (trainer_build_model). The trainer's own host-memory
// collectives stay on MPI either way.
static bool trainer_open_gpu_transport(Trainer *t, int gpus, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    ConfigTransport want = cfg->parallel.transport;
    bool launched = strcmp(t->tr->ops->name, "mpi") == 0;
    char why[256] = "this yolopipe was built without NCCL";
    bool possible = false;
#if YP_HAVE_NCCL
    if (!launched) snprintf(why, sizeof why, "there is one process (no launcher) and so nothing to transfer");
    else possible = transport_nccl_possible(t->topo->local_size, gpus, why, sizeof why);
#else
    (void)gpus;
#endif
    if (want == CONFIG_TRANSPORT_NCCL && !possible)
        return config_error_at(cfg, "parallel.transport", err, "parallel.transport: nccl, but %s", why);
    if (want == CONFIG_TRANSPORT_MPI || !launched) return true;
    if (!possible) {
        fprintf(t->out, "note: GPU tensors go between ranks over MPI through host memory: %s\n", why);
        return true;
    }
#if YP_HAVE_NCCL
    t->be_tr = transport_nccl_create(t->tr, cuda_backend_stream(t->be));
    t->be_tr->timeout_s = t->tr->timeout_s;
    failure_install(&t->be_tr->topo, t->be_tr);  // an internal error then aborts the NCCL communicators too
#endif
    return true;
}
#endif

// device.backend: auto takes a GPU when there is one. Ranks on one node take GPUs round-robin by
// local rank; several ranks on one GPU work, each with its own stream, but share its time.
static bool trainer_open_backend(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    int gpus = trainer_gpu_count();
    bool cuda = cfg->device.backend == CONFIG_BACKEND_CUDA || (cfg->device.backend == CONFIG_BACKEND_AUTO && gpus > 0);
    if (cuda && gpus == 0)
        return config_error_at(cfg, "device.backend", err, "device.backend: cuda, but %s",
                               YP_HAVE_CUDA ? "this machine has no usable CUDA device"
                                            : "this yolopipe was built without CUDA (no CUDA toolkit was found)");
    ConfigPrecision precision = cfg->device.precision;
    if (precision == CONFIG_PRECISION_TF32 && !cuda)
        return config_error_at(cfg, "device.precision", err, "device.precision: tf32 needs the CUDA backend");
    DType act = config_precision_activation_type(precision);
    if (!cuda) {
        if (cfg->parallel.transport == CONFIG_TRANSPORT_NCCL)
            return config_error_at(cfg, "parallel.transport", err, "parallel.transport: nccl needs the CUDA backend");
        fprintf(t->out, "device: cpu (%d threads per rank), %s\n", omp_get_max_threads(), dtype_name(act));
        if (act != DTYPE_F32)
            fprintf(t->out,
                    "note: device.precision %s on the CPU stores activations in %s but computes in fp32 (slower than "
                    "fp32; it checks mixed precision where there is no GPU)\n",
                    dtype_name(act), dtype_name(act));
        t->be = cpu_backend_create(act);
        return true;
    }
#if YP_HAVE_CUDA
    const Topology *topo = t->topo;
    int device = topo->local_rank % gpus;
    CudaBackendOptions co = {.device = device, .allow_tf32 = precision == CONFIG_PRECISION_TF32, .act = act,
                             .deterministic = cfg->device.deterministic};
    t->be = cuda_backend_create(&co);
    char name[256];
    cuda_device_name(device, name, sizeof name);
    fprintf(t->out, "device: cuda:%d (%s), %s%s\n", device, name, config_precision_names[precision],
            cfg->device.deterministic ? "" : ", fastest cuDNN algorithms (device.deterministic: false)");
    if (topo->local_size > gpus)
        fprintf(t->out, "note: %d ranks per node share %d GPU%s (they take turns on it)\n", topo->local_size, gpus,
                gpus > 1 ? "s" : "");
    return trainer_open_gpu_transport(t, gpus, err);
#else
    return true;
#endif
}

static bool trainer_build_model(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    if (!trainer_open_backend(t, err)) return false;
    ModelOptions mo = {.scale = cfg->scale, .nc = t->dataset->nc};
    if (!model_spec_load(cfg->model, &mo, &t->spec, err)) return false;
    if (t->spec->scale_defaulted)
        fprintf(t->out, "%s: no scale given, using the first one, '%s'\n", cfg->model, t->spec->scale);
    const char *head = t->spec->rows[t->spec->n_rows - 1].module;
    bool head_classifies = !strcmp(head, "Classify");
    if (head_classifies != t->classify)
        return config_error_at(cfg, "task", err, "task is %s but the model's last layer is %s", config_task_names[cfg->task],
                               head);
    if (!experiment_plan_build(cfg, t->spec, t->be->host_memory ? "cpu" : "h100", NULL, &t->ep, err)) return false;
    t->micro = t->ep.micro_batch_images;
    // The graphs hold the largest multi-scale input; smaller steps shrink them (graph_set_input_size).
    int smallest, largest;
    loader_imgsz_range((int)cfg->train.imgsz, cfg->train.multiscale, &smallest, &largest);
    t->max_side = largest > cfg->train.imgsz ? largest : cfg->train.imgsz;
    // A host transport carries backend memory only when the host can address it.
    if (!t->be_tr) t->be_tr = t->be->host_memory ? t->tr : transport_staged_create(t->tr, t->be);
    ExecutorOptions eo = {.cfg = cfg, .spec = t->spec, .ep = &t->ep, .transport = t->be_tr, .be = t->be,
                          .max_side = t->max_side};
    if (!executor_create(&eo, &t->ex, err)) return false;
    t->n_chunks = executor_n_chunks(t->ex);
    t->chunks = yp_calloc((size_t)t->n_chunks, sizeof *t->chunks);
    for (int c = 0; c < t->n_chunks; c++) {
        const Graph *g = executor_chunk(t->ex, c)->graph;
        TrainerChunk *tc = &t->chunks[c];
        tc->live_params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
        tc->live_buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
        tc->ema_params = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
        tc->ema_buffers = yp_malloc((size_t)g->buffer_elems * sizeof(float) + 1);
    }
    const ParallelConfig *pc = &cfg->parallel;
    fprintf(t->out, "%s: %lld parameters, %.1f GFLOPs at %lld; %lld images per forward pass, %lld per step\n",
            t->spec->name, (long long)t->ep.graph->param_elems,
            graph_gflops(t->ep.graph) * (double)t->ep.graph->input.shape.n / (double)t->micro, (long long)cfg->train.imgsz,
            (long long)t->micro, (long long)cfg->train.batch);
    if (t->topo->world_size > 1 || pc->micro_batches > 1) {
        fprintf(t->out, "pipeline: %lld stage%s x %lld replica%s (%d ranks), %s, %lld micro-batches; stages:", (long long)pc->stages,
                pc->stages == 1 ? "" : "s", (long long)pc->replicas, pc->replicas == 1 ? "" : "s", t->topo->world_size,
                sched_kind_name(pc->schedule), (long long)pc->micro_batches);
        for (int k = 0; k < t->ep.plan.n_stages; k++)
            fprintf(t->out, " %d-%d", t->ep.plan.stages[k].first_layer, t->ep.plan.stages[k].last_layer);
        fprintf(t->out, "\n");
    }
    return true;
}

static bool trainer_build_loaders(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    const DatasetSplit *train_split = t->splits[DATASET_SPLIT_TRAIN];
    t->batches_per_epoch = loader_batch_count(train_split->n_samples, cfg->train.batch, true);
    if (t->batches_per_epoch < 1)
        return config_error_at(cfg, "train.batch", err, "train.batch %lld is larger than the %lld training images",
                               (long long)cfg->train.batch, (long long)train_split->n_samples);
    t->step_sides = yp_malloc((size_t)t->batches_per_epoch * sizeof *t->step_sides);
    t->val_options = loader_options_val(t->micro);
    // Stage 0 loads the images (or their recipes, for the backend to render) and the last stage the
    // targets of this replica's share of each batch.
    ConfigRender render = cfg->augment.render;
    bool recipes =
        !t->classify && (render == CONFIG_RENDER_BACKEND || (render == CONFIG_RENDER_AUTO && !t->be->host_memory));
    unsigned parts = (executor_loads_images(t->ex) ? (recipes ? BATCH_PART_RECIPES : BATCH_PART_IMAGES) : 0) |
                     (executor_loads_targets(t->ex) ? BATCH_PART_TARGETS : 0);
    if (!parts) return true;
    LoaderOptions train = loader_options_train(cfg->train.batch, (uint64_t)cfg->train.seed);
    AugmentSettings *aug = &train.aug;
    aug->hsv_h = cfg->augment.hsv_h;
    aug->hsv_s = cfg->augment.hsv_s;
    aug->hsv_v = cfg->augment.hsv_v;
    aug->translate = cfg->augment.translate;
    aug->scale = cfg->augment.scale;
    aug->fliplr = cfg->augment.fliplr;
    aug->mosaic = cfg->augment.mosaic;
    train.n_workers = (int)cfg->train.workers;
    int64_t share = cfg->train.batch / cfg->parallel.replicas;
    train.share = (LoaderShare){.first = t->topo->replica * share, .n = share, .parts = parts};
    t->train_loader = loader_create(train_split, &train);
    return true;
}

static void trainer_build_ema(Trainer *t) {
    for (int c = 0; c < t->n_chunks; c++) {
        const ExecutorChunk *ch = executor_chunk(t->ex, c);
        const Graph *g = ch->graph;
        EmaEntry *entries = yp_malloc((size_t)(g->n_params + 1) * sizeof *entries);
        int n = ema_entries_from_graph(g, ch->layer_begin, ch->layer_end, entries);
        t->chunks[c].ema = ema_create(t->be, entries, n, EMA_DECAY, EMA_TAU);
        free(entries);
    }
}

static void trainer_build_optimizer(Trainer *t) {
    const ExperimentConfig *cfg = t->cfg;
    const TrainConfig *tc = &cfg->train;
    OptimKind kind = tc->optimizer == CONFIG_OPTIMIZER_ADAMW ? OPTIM_ADAMW : OPTIM_SGD;
    double lr0 = tc->lr0, momentum = tc->momentum, warmup_bias_lr = tc->warmup_bias_lr;
    if (tc->optimizer == CONFIG_OPTIMIZER_AUTO) {
        OptimAutoChoice c = optim_auto_choose(t->splits[DATASET_SPLIT_TRAIN]->n_samples, tc->batch, tc->nbs, tc->epochs,
                                              (int)t->spec->nc);
        kind = c.kind;
        lr0 = c.lr0;
        momentum = c.momentum;
        warmup_bias_lr = c.warmup_bias_lr;
    }
    int64_t accumulate = optim_accumulate(tc->nbs, tc->batch);
    double decay = optim_scaled_weight_decay(tc->weight_decay, tc->batch, accumulate, tc->nbs);
    for (int c = 0; c < t->n_chunks; c++) {
        const ExecutorChunk *ch = executor_chunk(t->ex, c);
        const Graph *g = ch->graph;
        OptimParam *params = yp_malloc((size_t)(g->n_params + 1) * sizeof *params);
        int n = optim_params_from_graph(g, ch->layer_begin, ch->layer_end, params);
        t->chunks[c].optimizer = optim_create(t->be, kind, decay, params, n);
        free(params);
    }
    int64_t total_batches = t->batches_per_epoch * tc->epochs;
    t->schedule = (OptimSchedule){
        .kind = kind, .lr0 = lr0, .lrf = tc->lrf, .cos_lr = tc->cos_lr, .epochs = tc->epochs,
        .warmup_iters = optim_schedule_warmup_iters(tc->warmup_epochs, tc->epochs, t->batches_per_epoch),
        .warmup_bias_lr = warmup_bias_lr, .warmup_momentum = tc->warmup_momentum, .momentum = tc->momentum,
        .initial_momentum = momentum, .accumulate = accumulate < total_batches ? accumulate : total_batches};
    fprintf(t->out, "optimizer: %s(lr=%g, momentum=%g), weight decay %g, gradients accumulated over %lld batch%s\n",
            optim_kind_name(kind), lr0, momentum, decay, (long long)t->schedule.accumulate,
            t->schedule.accumulate == 1 ? "" : "es");
}

// <output.dir>/<name>, or <name>2, <name>3, ... when it exists already (as Ultralytics' increment_path);
// chosen by world rank 0 and shared.
static bool trainer_pick_run_dir(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    bool ok = true;
    if (t->lead) {
        snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", cfg->output.dir, cfg->name);
        for (int k = 2; path_exists(t->run_dir); k++)
            snprintf(t->run_dir, sizeof t->run_dir, "%s/%s%d", cfg->output.dir, cfg->name, k);
        ok = fs_mkdir_p(t->run_dir, err);
    }
    if (!all_ranks_ok(t, ok, err)) return false;
    t->tr->ops->broadcast(t->tr, t->run_dir, sizeof t->run_dir, 0, TRANSPORT_WORLD);
    return true;
}

// ---- one optimizer step ------------------------------------------------------------------------------

// fp16 scales the loss (its activations underflow without it); bf16 has float32's range.
static bool trainer_scales_loss(const ExperimentConfig *cfg) { return cfg->device.precision == CONFIG_PRECISION_FP16; }

// Averages the batch norms' running statistics over the replicas (each saw its own micro-batches),
// so that every replica validates and saves the same model.
static void trainer_average_buffers(Trainer *t) {
    int replicas = t->topo->replicas;
    if (replicas == 1) return;
    for (int c = 0; c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        if (!g->buffer_elems) continue;
        float *host = t->chunks[c].live_buffers;
        t->be->ops->download(t->be, host, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
        transport_wait(t->tr, t->tr->ops->iallreduce_sum_f32(t->tr, host, (size_t)g->buffer_elems, TRANSPORT_REPLICAS),
                       "the running-statistics average over the replicas");
        for (int64_t i = 0; i < g->buffer_elems; i++) host[i] /= (float)replicas;
        t->be->ops->upload(t->be, g->buffer_data, host, (size_t)g->buffer_elems * sizeof(float));
    }
}

// Ultralytics' optimizer_step over all stages: unscale (fp16) and clip the whole model's gradient norm
// to 10 (the squared norms of the stages summed over the pipeline, in sumsq, of the gradients as they
// are: scaled), step unless the loss scale says the gradients overflowed, zero the gradients, update
// the EMA (as Ultralytics does after a skipped step too). Every rank sees the same sumsq, so all skip
// together.
static void trainer_optimizer_step(Trainer *t, const OptimHyper *hyper, double sumsq) {
    double scale = t->at.loss_scale.scale;
    bool step = loss_scale_update(&t->at.loss_scale, trainer_scales_loss(t->cfg), isfinite(sumsq));
    // Unscaling by a power of two is exact, so one multiplication does both.
    double factor = optim_clip_factor(sumsq / (scale * scale), OPTIM_CLIP_MAX_NORM) / scale;
    for (int c = 0; c < t->n_chunks; c++) {
        if (step) {
            optim_grads_scale(t->chunks[c].optimizer, factor);
            optim_step(t->chunks[c].optimizer, hyper);
        }
        graph_zero_grads(executor_chunk(t->ex, c)->graph);
    }
    trainer_average_buffers(t);
    for (int c = 0; c < t->n_chunks; c++) ema_update(t->chunks[c].ema);
    t->at.optimizer_steps++;
}

// ---- validation --------------------------------------------------------------------------------------

// Swaps the model's weights with the EMA's on every chunk (validation scores the EMA, as Ultralytics does).
static void trainer_use_ema(Trainer *t, bool use) {
    Backend *be = t->be;
    for (int c = 0; c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        TrainerChunk *tc = &t->chunks[c];
        if (use) {
            be->ops->download(be, tc->live_params, g->param_data, (size_t)g->param_elems * sizeof(float));
            be->ops->download(be, tc->live_buffers, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
            ema_copy_to_graph_layout(tc->ema, g, tc->ema_params, tc->ema_buffers);
            be->ops->upload(be, g->param_data, tc->ema_params, (size_t)g->param_elems * sizeof(float));
            be->ops->upload(be, g->buffer_data, tc->ema_buffers, (size_t)g->buffer_elems * sizeof(float));
        } else {
            be->ops->upload(be, g->param_data, tc->live_params, (size_t)g->param_elems * sizeof(float));
            be->ops->upload(be, g->buffer_data, tc->live_buffers, (size_t)g->buffer_elems * sizeof(float));
        }
    }
}

typedef struct ValResult {
    ExecutorLoss loss;
    const DetectSummary *detect;  // detection; owned by the trainer's metrics
    ClassifyMetrics classify;
    double fitness;
} ValResult;

// What the last stage sends world rank 0 per validation batch: its index, then per image the
// detections (count, then boxes, scores, classes), or the class scores when classifying.
typedef struct ValBlob {
    char *data;
    size_t size, cap;
} ValBlob;

static void blob_put(ValBlob *b, const void *src, size_t n) {
    if (b->size + n > b->cap) {
        b->cap = 2 * (b->size + n) + 4096;
        b->data = yp_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->size, src, n);
    b->size += n;
}

static const void *blob_take(const char **cursor, size_t n) {
    const void *p = *cursor;
    *cursor += n;
    return p;
}

static BatchRequest val_request(const Trainer *t, int64_t b, unsigned parts) {
    int64_t n_val = t->splits[DATASET_SPLIT_VAL]->n_samples, first = b * t->micro;
    return (BatchRequest){.first = first, .n = n_val - first < t->micro ? n_val - first : t->micro,
                          .imgsz = (int)t->cfg->train.imgsz, .parts = parts};
}

// The last stage's share: forward every validation batch of this replica, keep what rank 0 needs.
static bool trainer_validate_batches(Trainer *t, const int64_t *order, ExecutorLoss *loss, ValBlob *blob, Error *err) {
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    int64_t n_batches = loader_batch_count(split->n_samples, t->micro, false), side = t->cfg->train.imgsz;
    bool images = executor_loads_images(t->ex), last = executor_loads_targets(t->ex);
    NmsConfig nms = nms_config_validation();
    nms.conf = (float)t->cfg->val.conf;
    nms.iou = t->cfg->val.iou;
    nms.max_det = t->cfg->val.max_det;
    for (int64_t b = t->topo->replica; b < n_batches; b += t->topo->replicas) {
        Batch batch = {0};
        unsigned parts = (images ? BATCH_PART_IMAGES : 0) | (last ? BATCH_PART_TARGETS : 0);
        BatchRequest req = val_request(t, b, parts);
        if (parts && !loader_build(split, &t->val_options, order, &req, &batch, err)) return false;
        executor_forward(t->ex, req.n, side, batch.images, t->val_out, last ? &batch : NULL, loss);
        if (last) {
            blob_put(blob, &b, sizeof b);
            if (t->classify) {
                blob_put(blob, t->val_out, (size_t)(req.n * t->spec->nc) * sizeof(float));
            } else {
                t->detections->n_images = req.n;
                detect_decoder_nms(t->decoder, t->val_out, req.n, &nms, t->detections);
                const Detections *d = t->detections;
                for (int64_t i = 0; i < req.n; i++) {
                    int64_t k = d->count[i];
                    blob_put(blob, &k, sizeof k);
                    blob_put(blob, d->boxes + i * d->max_det * 4, (size_t)k * 4 * sizeof(float));
                    blob_put(blob, d->scores + i * d->max_det, (size_t)k * sizeof(float));
                    blob_put(blob, d->cls + i * d->max_det, (size_t)k * sizeof(int32_t));
                }
            }
        }
        loader_batch_free(&batch);
    }
    return true;
}

// World rank 0: the metrics of every batch, in order, from the gathered blobs and its own targets.
static bool trainer_score(Trainer *t, const int64_t *order, const char *all, size_t total, ValResult *res, Error *err) {
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    int64_t n_batches = loader_batch_count(split->n_samples, t->micro, false);
    const char **at = yp_calloc((size_t)n_batches, sizeof *at);  // where each batch's record starts
    for (const char *p = all; p < all + total;) {
        int64_t b = *(const int64_t *)blob_take(&p, sizeof(int64_t));
        YP_CHECK(b >= 0 && b < n_batches && !at[b]);
        at[b] = p;
        int64_t n = val_request(t, b, BATCH_PART_TARGETS).n;
        if (t->classify) p += (size_t)(n * t->spec->nc) * sizeof(float);
        else
            for (int64_t i = 0; i < n; i++) {
                int64_t k = *(const int64_t *)blob_take(&p, sizeof(int64_t));
                p += (size_t)k * (6 * sizeof(float));
            }
    }
    bool ok = true;
    if (t->metrics) detect_metrics_reset(t->metrics);
    for (int64_t b = 0; ok && b < n_batches; b++) {
        YP_CHECK(at[b]);
        Batch batch;
        BatchRequest req = val_request(t, b, BATCH_PART_TARGETS);
        if (!(ok = loader_build(split, &t->val_options, order, &req, &batch, err))) break;
        const char *p = at[b];
        if (t->classify) {
            classify_metrics_add(&res->classify, (const float *)p, batch.labels, req.n);
        } else {
            Detections *d = t->detections;
            d->n_images = req.n;
            for (int64_t i = 0; i < req.n; i++) {
                int64_t k = d->count[i] = *(const int64_t *)blob_take(&p, sizeof(int64_t));
                memcpy(d->boxes + i * d->max_det * 4, blob_take(&p, (size_t)k * 4 * sizeof(float)), (size_t)k * 4 * sizeof(float));
                memcpy(d->scores + i * d->max_det, blob_take(&p, (size_t)k * sizeof(float)), (size_t)k * sizeof(float));
                memcpy(d->cls + i * d->max_det, blob_take(&p, (size_t)k * sizeof(int32_t)), (size_t)k * sizeof(int32_t));
            }
            detect_metrics_add_batch(t->metrics, d, batch.targets, batch.n_targets, batch.h, batch.w);
        }
        loader_batch_free(&batch);
    }
    free(at);
    if (ok && t->classify) res->fitness = classify_metrics_fitness(&res->classify);
    else if (ok) {
        res->detect = detect_metrics_finalize(t->metrics);
        res->fitness = res->detect->fitness;
    }
    return ok;
}

// Validation through the pipeline: each replica forwards every replicas-th batch (forward only, EMA
// weights, running statistics), the last stages gather their detections at world rank 0, which scores
// them all. Every rank returns the same fitness.
static bool trainer_validate(Trainer *t, ValResult *res, Error *err) {
    *res = (ValResult){.classify = {.nc = t->spec->nc}};
    const DatasetSplit *split = t->splits[DATASET_SPLIT_VAL];
    if (!t->val_out) {
        int64_t side = t->cfg->train.imgsz;
        if (executor_loads_targets(t->ex))
            t->val_out = yp_malloc((size_t)(t->micro * executor_output_elems(t->ex, side)) * sizeof(float));
        if (!t->classify) {
            const Graph *g = t->ep.graph;
            DetectLevelSize levels[DETECT_LOSS_MAX_LEVELS];
            for (int i = 0; i < g->n_strides; i++)
                levels[i] = (DetectLevelSize){.h = side / g->strides[i], .w = side / g->strides[i], .stride = g->strides[i]};
            t->decoder = detect_decoder_create(levels, g->n_strides, t->spec->nc, t->spec->reg_max);
            t->detections = detections_create(t->micro, t->cfg->val.max_det);
            t->metrics = detect_metrics_create(t->spec->nc);
        }
    }
    int64_t *order = yp_malloc((size_t)(split->n_samples + 1) * sizeof *order);
    loader_epoch_order(0, 0, split->n_samples, false, order);
    ValBlob blob = {0};
    bool ok = trainer_validate_batches(t, order, &res->loss, &blob, err);
    if (!all_ranks_ok(t, ok, err)) {
        free(blob.data);
        free(order);
        return false;
    }
    double loss[6] = {res->loss.box, res->loss.cls, res->loss.dfl, res->loss.ce, res->loss.n, res->loss.instances};
    t->tr->ops->allreduce_sum_f64(t->tr, loss, 6, TRANSPORT_WORLD);
    res->loss = (ExecutorLoss){loss[0], loss[1], loss[2], loss[3], loss[4], loss[5]};
    void *all = NULL;
    size_t *sizes = yp_calloc((size_t)t->topo->world_size, sizeof *sizes);
    t->tr->ops->gather_bytes(t->tr, blob.data, blob.size, &all, sizes);
    if (t->lead) {
        size_t total = 0;
        for (int r = 0; r < t->topo->world_size; r++) total += sizes[r];
        ok = trainer_score(t, order, all, total, res, err);
    }
    ok = all_ranks_ok(t, ok, err);
    t->tr->ops->broadcast(t->tr, &res->fitness, sizeof res->fitness, 0, TRANSPORT_WORLD);
    free(all);
    free(sizes);
    free(blob.data);
    free(order);
    return ok;
}

static void trainer_print_validation(Trainer *t, const ValResult *res) {
    if (!t->lead) return;
    if (t->classify) classify_metrics_print(&res->classify, t->out);
    else detect_summary_print(res->detect, (const char *const *)t->dataset->names, t->out);
}

// ---- results.csv -------------------------------------------------------------------------------------

static void trainer_write_results_row(Trainer *t, int64_t epoch, double seconds, const ExecutorLoss *train,
                                      const ValResult *val, const OptimHyper *hyper, double images_per_s) {
    if (!t->lead) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", t->run_dir);
    bool fresh = !path_exists(path);
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "yolopipe: cannot append to %s: %s\n", path, strerror(errno));
        return;
    }
    double n = train->n ? train->n : 1.0, nv = val->loss.n ? val->loss.n : 1.0;
    if (t->classify) {
        if (fresh)
            fprintf(f, "epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2,"
                       "images_per_s\n");
        fprintf(f, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", (long long)epoch + 1, seconds, train->ce / n,
                classify_metrics_top1(&val->classify), classify_metrics_top5(&val->classify), val->loss.ce / nv,
                hyper->lr[0], hyper->lr[1], hyper->lr[2], images_per_s);
    } else {
        if (fresh)
            fprintf(f, "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
                       "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,"
                       "lr/pg2,images_per_s\n");
        const DetectSummary *d = val->detect;
        fprintf(f, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n",
                (long long)epoch + 1, seconds, train->box / n, train->cls / n, train->dfl / n, d ? d->p : 0,
                d ? d->r : 0, d ? d->map50 : 0, d ? d->map50_95 : 0, val->loss.box / nv, val->loss.cls / nv,
                val->loss.dfl / nv, hyper->lr[0], hyper->lr[1], hyper->lr[2], images_per_s);
    }
    fclose(f);
}

// ---- checkpoints -------------------------------------------------------------------------------------

// Every stage of replica 0 writes its file into a directory world rank 0 began and then commits. The
// gradients accumulated since the last step are summed over the replicas first (what the next step's
// reduction would do), so the checkpoint resumes under any number of replicas.
static bool trainer_save(Trainer *t, const char *which, Error *err) {
    char dir[4200], tmp[4200] = "";
    snprintf(dir, sizeof dir, "%s/weights/%s", t->run_dir, which);
    FsAtomicDir *ad = NULL;
    bool ok = !t->lead || checkpoint_dir_begin(dir, &ad, err);
    if (ad) snprintf(tmp, sizeof tmp, "%s", fs_atomic_dir_path(ad));
    if (!all_ranks_ok(t, ok, err)) return false;
    t->tr->ops->broadcast(t->tr, tmp, sizeof tmp, 0, TRANSPORT_WORLD);
    for (int c = 0; ok && c < t->n_chunks; c++) {
        ExecutorChunk *ch = executor_chunk(t->ex, c);
        Graph *g = ch->graph;
        float *grads = yp_malloc((size_t)g->param_elems * sizeof(float) + 1);
        t->be->ops->download(t->be, grads, g->grad_data, (size_t)g->param_elems * sizeof(float));
        if (t->topo->replicas > 1)
            transport_wait(t->tr, t->tr->ops->iallreduce_sum_f32(t->tr, grads, (size_t)g->param_elems, TRANSPORT_REPLICAS),
                           "the gradient sum over the replicas for a checkpoint");
        CheckpointModel model = {.graph = g, .ema = t->chunks[c].ema, .optimizer = t->chunks[c].optimizer,
                                 .grads = grads};
        if (t->topo->replica == 0) ok = checkpoint_save_stage(tmp, ch->stage, &t->at, &model, err);
        free(grads);
    }
    ok = all_ranks_ok(t, ok, err);
    if (t->lead) {
        int layers[PLAN_MAX_STAGES][2];
        for (int k = 0; k < t->ep.plan.n_stages; k++)
            layers[k][0] = t->ep.plan.stages[k].first_layer, layers[k][1] = t->ep.plan.stages[k].last_layer;
        if (ok) ok = checkpoint_write_manifest(tmp, &t->at, t->cfg, t->ep.plan.n_stages, (const int(*)[2])layers, err);
        if (ok) ok = fs_atomic_dir_commit(ad, err);
        else fs_atomic_dir_abort(ad);
    }
    return all_ranks_ok(t, ok, err);
}

static bool trainer_load(Trainer *t, const char *dir, bool with_optimizer, Error *err) {
    bool ok = true;
    for (int c = 0; ok && c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        CheckpointModel model = {.graph = g, .ema = t->chunks[c].ema,
                                 .optimizer = with_optimizer ? t->chunks[c].optimizer : NULL};
        ok = checkpoint_load(dir, &t->at, &model, err);
        // The saved gradients are the replicas' sum: one replica carries them into the next step.
        if (ok && t->topo->replica > 0) graph_zero_grads(g);
    }
    return all_ranks_ok(t, ok, err);
}

// ---- the loop ----------------------------------------------------------------------------------------

// One training batch on this rank, and the optimizer step when it ends an accumulation.
// *data_wait_s gets the time spent waiting for the loader.
static bool trainer_batch(Trainer *t, int64_t epoch, ExecutorLoss *sums, OptimHyper *hyper, int64_t *instances,
                          double *data_wait_s, Error *err) {
    Batch batch = {0};
    double wait_start = seconds_now();
    if (t->train_loader && !loader_next(t->train_loader, &batch, err)) return false;
    *data_wait_s = seconds_now() - wait_start;
    OptimIteration it = optim_schedule_at(&t->schedule, t->at.iteration, epoch);
    *hyper = it.hyper;
    bool step = t->at.iteration - t->at.last_step_iteration >= it.accumulate;
    bool record = t->cfg->output.trace && t->at.iteration == (t->batches_per_epoch > 2 ? 2 : 0);
    ExecutorBatch eb = {.data = &batch, .side = t->step_sides[t->at.batch], .reduce = step,
                        .loss_scale = (float)t->at.loss_scale.scale};
    ExecutorLoss loss = {0};
    executor_train_batch(t->ex, &eb, record, &loss);
    loader_batch_free(&batch);
    // One collective per batch: the loss parts (from the last stages) and, before a step, the squared
    // gradient norm of every stage (replica 0's: the replicas' gradients are equal after the reduction).
    double v[7] = {loss.box, loss.cls, loss.dfl, loss.ce, loss.n, loss.instances, 0};
    if (step && t->topo->replica == 0)
        for (int c = 0; c < t->n_chunks; c++) v[6] += optim_grad_sumsq(t->chunks[c].optimizer);
    t->tr->ops->allreduce_sum_f64(t->tr, v, 7, TRANSPORT_WORLD);
    sums->box += v[0], sums->cls += v[1], sums->dfl += v[2], sums->ce += v[3], sums->n += v[4];
    *instances = (int64_t)v[5];
    t->at.bn_batches += t->topo->replicas * t->cfg->parallel.micro_batches;
    if (step) {
        trainer_optimizer_step(t, &it.hyper, v[6]);
        t->at.last_step_iteration = t->at.iteration;
    }
    if (record) {
        char path[4300];
        snprintf(path, sizeof path, "%s/trace.json", t->run_dir);
        if (!executor_trace_write(t->ex, path, err)) return false;
        fprintf(t->out, "\ntrace of batch %lld (every rank of replica 0) written to %s\n", (long long)t->at.iteration,
                path);
    }
    return true;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median of values[1..n) (the first batch warms caches, threads and algorithm choices up).
static double trainer_median_after_first(const double *values, int n) {
    double *sorted = yp_malloc((size_t)(n - 1) * sizeof *sorted);
    memcpy(sorted, values + 1, (size_t)(n - 1) * sizeof *sorted);
    qsort(sorted, (size_t)(n - 1), sizeof *sorted, compare_doubles);
    double median = sorted[(n - 1) / 2];
    free(sorted);
    return median;
}

// The measured step time next to the plan's prediction (what README records), and the same without
// the waits for data (what the benchmarks compare: forward, backward, loss and optimizer).
static void trainer_print_step_times(Trainer *t) {
    if (!t->lead || t->n_step_times < 2) return;
    int n = t->n_step_times - 1;
    double batch = trainer_median_after_first(t->step_times, t->n_step_times);
    double compute = trainer_median_after_first(t->compute_times, t->n_step_times);
    fprintf(t->out, "measured batch time: median %.1f ms over %d batches (%.1f images/s); layer times in %s/profile.csv: "
                    "`yolopipe plan EXP --profile %s/profile.csv --set 'parallel.partition=[",
            1e3 * batch, n, (double)t->cfg->train.batch / batch, t->run_dir, t->run_dir);
    for (int k = 0; k < t->ep.plan.n_stages; k++)
        fprintf(t->out, "%s[%d,%d]", k ? "," : "", t->ep.plan.stages[k].first_layer, t->ep.plan.stages[k].last_layer);
    fprintf(t->out, "]'` predicts the step from them\n");
    fprintf(t->out, "measured compute time: median %.1f ms per batch without waiting for data (%.1f images/s)\n", 1e3 * compute,
            (double)t->cfg->train.batch / compute);
}

static bool trainer_write_profile(Trainer *t, Error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/profile.csv", t->run_dir);
    return executor_profile_write(t->ex, path, err);
}

static bool trainer_loop(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    const TrainConfig *tc = &cfg->train;
    double run_start = seconds_now();
    OptimHyper hyper = optim_schedule_at(&t->schedule, t->at.iteration, t->at.epoch).hyper;
    bool stop = false;
    t->step_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->step_times);
    t->compute_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->compute_times);
    while (t->at.epoch < tc->epochs && !stop) {
        int64_t epoch = t->at.epoch;
        bool mosaic = epoch < tc->epochs - tc->close_mosaic;
        if (epoch == tc->epochs - tc->close_mosaic && tc->close_mosaic > 0 && t->at.batch == 0)
            fprintf(t->out, "closing mosaic for the last %lld epochs\n", (long long)tc->close_mosaic);
        // Multi-scale sizes come from the global step, so every rank (and a resumed run) agrees.
        for (int64_t b = 0; b < t->batches_per_epoch; b++)
            t->step_sides[b] = loader_step_imgsz((uint64_t)tc->seed, epoch * t->batches_per_epoch + b, (int)tc->imgsz,
                                                 tc->multiscale);
        if (t->train_loader)
            loader_start_epoch(t->train_loader, &(LoaderEpoch){.epoch = epoch, .first_batch = t->at.batch,
                                                               .mosaic = mosaic, .imgsz = (int)tc->imgsz,
                                                               .imgsz_per_batch = t->step_sides});
        ExecutorLoss sums = {0};
        int64_t skipped_before = t->at.loss_scale.skipped, steps_before = t->at.optimizer_steps;
        double epoch_start = seconds_now();
        int64_t images = 0;
        while (!stop && t->at.batch < t->batches_per_epoch) {
            double batch_start = seconds_now();
            int64_t instances = 0;
            double data_wait_s = 0;
            if (!trainer_batch(t, epoch, &sums, &hyper, &instances, &data_wait_s, err)) return false;
            double batch_s = seconds_now() - batch_start;
            t->step_times[t->n_step_times] = batch_s;
            t->compute_times[t->n_step_times++] = batch_s - data_wait_s;
            stop = tc->max_steps > 0 && t->at.optimizer_steps >= tc->max_steps;
            int side = t->step_sides[t->at.batch];
            t->at.iteration++;
            t->at.batch++;
            images += tc->batch;
            double n = sums.n ? sums.n : 1.0;
            ProgressStep ps = {.epoch = epoch + 1, .epochs = tc->epochs, .step = t->at.batch,
                               .steps = t->batches_per_epoch, .box = sums.box / n, .cls = sums.cls / n,
                               .dfl = sums.dfl / n, .ce = sums.ce / n, .classify = t->classify, .instances = instances,
                               .imgsz = side, .images_per_s = (double)images / (seconds_now() - epoch_start),
                               .lr = hyper.lr[OPTIM_GROUP_WEIGHT]};
            progress_step(&t->progress_line, &ps);
        }
        progress_end_line(&t->progress_line);
        if (t->at.loss_scale.skipped > skipped_before)
            fprintf(t->out, "fp16: %lld of %lld optimizer steps skipped (gradients overflowed); loss scale now %g\n",
                    (long long)(t->at.loss_scale.skipped - skipped_before),
                    (long long)(t->at.optimizer_steps - steps_before), t->at.loss_scale.scale);
        double images_per_s = (double)images / (seconds_now() - epoch_start);
        if (stop && t->at.batch < t->batches_per_epoch) {
            fprintf(t->out, "stopping after %lld optimizer steps (train.max_steps)\n", (long long)t->at.optimizer_steps);
            trainer_print_step_times(t);
            return trainer_write_profile(t, err) && trainer_save(t, "last", err);
        }
        t->at.epoch++;
        t->at.batch = 0;
        bool final = t->at.epoch == tc->epochs || stop;
        ValResult val = {0};
        if (final || (cfg->val.period > 0 && t->at.epoch % cfg->val.period == 0)) {
            trainer_use_ema(t, true);
            bool ok = trainer_validate(t, &val, err);
            trainer_use_ema(t, false);
            if (!ok) return false;
            trainer_print_validation(t, &val);
        }
        trainer_write_results_row(t, epoch, seconds_now() - run_start, &sums, &val, &hyper, images_per_s);
        bool best = val.loss.n && val.fitness > t->at.best_fitness;
        if (best) t->at.best_fitness = val.fitness;
        if (!trainer_save(t, "last", err) || (best && !trainer_save(t, "best", err))) return false;
        if (stop) fprintf(t->out, "stopping after %lld optimizer steps (train.max_steps)\n", (long long)t->at.optimizer_steps);
    }
    trainer_print_step_times(t);
    fprintf(t->out, "results in %s (results.csv, weights/last, weights/best, profile.csv)\n", t->run_dir);
    return trainer_write_profile(t, err);
}

// ---- resume ------------------------------------------------------------------------------------------

static bool trainer_resume(Trainer *t, Error *err) {
    char dir[4200];
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", t->cfg->output.dir, t->cfg->name);
    snprintf(dir, sizeof dir, "%s/weights/last", t->run_dir);
    if (!path_exists(dir))
        return config_error_at(t->cfg, "name", err, "--resume: %s does not exist (nothing to resume for run '%s')", dir,
                               t->cfg->name);
    // Resuming continues the same computation: only keys that do not change it may differ.
    char saved_path[4300];
    snprintf(saved_path, sizeof saved_path, "%s/config.yaml", dir);
    ExperimentConfig *saved = NULL;
    if (!config_load(saved_path, 0, NULL, &saved, err)) return false;
    const char *key = config_resume_mismatch(saved, t->cfg);
    const ParallelConfig *was = &saved->parallel;
    int64_t saved_micro = saved->train.batch / (was->replicas * was->micro_batches);
    config_destroy(saved);
    if (key)
        return config_error_at(t->cfg, key, err, "--resume: %s differs from the run being resumed (%s); resume with "
                               "the same settings (only train.max_steps, train.workers, val.*, output.*, parallel.* and "
                               "device.backend may change)",
                               key, saved_path);
    if (saved_micro != t->micro)
        return config_error_at(t->cfg, "parallel.micro_batches", err,
                               "--resume: micro-batches of %lld images, but the run being resumed used %lld (batch-norm "
                               "statistics depend on it): keep train.batch / (parallel.replicas x parallel.micro_batches) = %lld",
                               (long long)t->micro, (long long)saved_micro, (long long)saved_micro);
    if (!trainer_load(t, dir, true, err)) return false;
    if (t->at.epoch >= t->cfg->train.epochs)
        return config_error_at(t->cfg, "train.epochs", err, "--resume: %s already finished its %lld epochs", t->run_dir,
                               (long long)t->cfg->train.epochs);
    fprintf(t->out, "resuming %s at epoch %lld, batch %lld (%lld optimizer steps done)\n", t->run_dir,
            (long long)t->at.epoch + 1, (long long)t->at.batch, (long long)t->at.optimizer_steps);
    return true;
}

static void trainer_destroy(Trainer *t) {
    loader_destroy(t->train_loader);
    detect_decoder_destroy(t->decoder);
    detections_destroy(t->detections);
    detect_metrics_destroy(t->metrics);
    for (int c = 0; c < t->n_chunks; c++) {
        TrainerChunk *tc = &t->chunks[c];
        optim_destroy(tc->optimizer);
        ema_destroy(tc->ema);
        free(tc->live_params);
        free(tc->live_buffers);
        free(tc->ema_params);
        free(tc->ema_buffers);
    }
    free(t->chunks);
    executor_destroy(t->ex);
    if (t->be_tr && t->be_tr != t->tr) {
        if (strcmp(t->be_tr->ops->name, "nccl") == 0) failure_install(t->topo, t->tr);  // before it goes
        transport_destroy(t->be_tr);
    }
    experiment_plan_clear(&t->ep);
    backend_destroy(t->be);
    model_spec_destroy(t->spec);
    for (int s = 0; s < DATASET_SPLIT_COUNT; s++) dataset_split_destroy(t->splits[s]);
    dataset_destroy(t->dataset);
    free(t->val_out);
    free(t->step_sides);
    free(t->step_times);
    free(t->compute_times);
    if (t->sink) fclose(t->sink);
}

static bool trainer_setup(Trainer *t, const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    *t = (Trainer){.cfg = cfg, .out = opt->out, .classify = cfg->task == CONFIG_TASK_CLASSIFY, .tr = opt->transport,
                   .topo = &opt->transport->topo,
                   .at = {.last_step_iteration = -1, .best_fitness = -1, .seed = cfg->train.seed,
                          .loss_scale = loss_scale_make(trainer_scales_loss(cfg))}};
    t->lead = t->topo->world_rank == 0;
    if (!t->lead) t->out = t->sink = fopen("/dev/null", "w");
    YP_CHECK(t->out);
    progress_init(&t->progress_line, t->out);
    if (!trainer_open_data(t, err) || !trainer_build_model(t, err) || !trainer_build_loaders(t, err)) return false;
    trainer_build_ema(t);
    return true;
}

// Errors every rank meets alike (bad data, a model that does not fit) are reported by world rank 0
// alone; a rank's own failure keeps its message.
static void trainer_quiet_shared_error(const Trainer *t, Error *err, bool shared) {
    if (!t->lead && shared) err->message[0] = '\0';
}

bool trainer_run(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    Trainer t;
    bool ok = trainer_setup(&t, cfg, opt, err);
    if (ok) trainer_build_optimizer(&t);
    ok = ok && (opt->resume ? trainer_resume(&t, err) : trainer_pick_run_dir(&t, err));
    bool shared = !ok;
    if (ok && !opt->resume && t.lead) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.yaml", t.run_dir);
        FILE *f = fopen(path, "w");
        if (!f) ok = error_set(err, "%s: cannot write: %s", path, strerror(errno));
        else {
            config_write_yaml(cfg, f);
            fclose(f);
            fprintf(t.out, "run directory %s\n", t.run_dir);
        }
    }
    ok = ok && trainer_loop(&t, err);
    if (!ok && !shared) shared = strstr(err->message, "other rank") != NULL;
    trainer_quiet_shared_error(&t, err, shared);
    trainer_destroy(&t);
    return ok;
}

bool trainer_validate_checkpoint(const ExperimentConfig *cfg, const char *weights_dir, const TrainerOptions *opt,
                                 Error *err) {
    Trainer t;
    bool ok = trainer_setup(&t, cfg, opt, err) && trainer_load(&t, weights_dir, false, err);
    ValResult val;
    if (ok) {
        trainer_use_ema(&t, true);
        ok = trainer_validate(&t, &val, err);
    }
    if (ok) trainer_print_validation(&t, &val);
    trainer_quiet_shared_error(&t, err, true);
    trainer_destroy(&t);
    return ok;
}
