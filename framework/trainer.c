#include "framework/trainer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "framework/checkpoint.h"
#include "framework/dataset.h"
#include "framework/ema.h"
#include "framework/fsutil.h"
#include "framework/loader.h"
#include "framework/metrics.h"
#include "framework/nms.h"
#include "framework/optim.h"
#include "framework/optim_schedule.h"
#include "framework/progress.h"
#include "framework/synth.h"
#include "kernels/cpu/cpu_backend.h"
#include "layers/graph.h"
#include "layers/loss.h"

enum { TRAINER_SIDE_STEP = 32, TRAINER_MAX_SIDES = 8192 / TRAINER_SIDE_STEP + 1 };

// Means of the loss parts over the batches of an epoch (or a validation run).
typedef struct LossMeans {
    double box, cls, dfl, ce;
    int64_t n;
} LossMeans;

typedef struct Trainer {
    const ExperimentConfig *cfg;
    FILE *out;
    Progress progress_line;
    bool classify;

    Dataset *dataset;
    DatasetSplit *splits[DATASET_SPLIT_COUNT];  // train and val, scanned
    Loader *train_loader, *val_loader;

    ModelSpec *spec;
    Backend *be;
    Graph *graph;
    int64_t micro;     // images per forward pass
    int64_t n_micro;   // forward passes per batch
    int64_t max_side;  // the graph is built for max_side x max_side

    // Host copies of the network output and its gradient, (micro, C, A).
    float *host_out, *host_dout;
    int64_t out_capacity;
    TargetBox *mb_targets;  // one micro-batch's targets, re-indexed
    int64_t mb_targets_cap;
    DetectLoss *losses[TRAINER_MAX_SIDES];  // one per input side (grid sizes differ)
    DetectDecoder *decoder;                 // validation, at train.imgsz
    Detections *detections;
    DetectMetrics *metrics;

    Optimizer *optimizer;
    OptimSchedule schedule;
    ModelEma *ema;
    float *live_params, *live_buffers;  // the model's own weights while validation uses the EMA's
    float *ema_params, *ema_buffers;    // the EMA's weights in the graph's layout, to upload

    TrainProgress at;
    char run_dir[4096];
    int64_t batches_per_epoch;
    int *step_sides;  // (batches_per_epoch) input side of each batch of the current epoch
} Trainer;

// ---- set-up ----------------------------------------------------------------------------------------

static bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// The dataset: generated first when missing and the experiment has a synth: block.
static bool trainer_open_data(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    if (!path_exists(cfg->data) && cfg->synth.present) {
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
        if (!synth_generate(&sc, NULL, err)) return false;
    }
    DatasetTask task = t->classify ? DATASET_TASK_CLASSIFY : DATASET_TASK_DETECT;
    if (!dataset_open(cfg->data, task, &t->dataset, err)) return false;
    int threads = cfg->train.workers > 0 ? (int)cfg->train.workers : 1;
    for (int s = DATASET_SPLIT_TRAIN; s <= DATASET_SPLIT_VAL; s++) {
        if (!dataset_scan(t->dataset, (DatasetSplitId)s, threads, &t->splits[s], err)) return false;
        dataset_split_print_summary(t->splits[s], t->out);
    }
    return true;
}

static bool trainer_build_model(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    if (cfg->device.backend == CONFIG_BACKEND_CUDA)
        return config_error_at(cfg, "device.backend", err,
                               "device.backend: cuda is not available yet in this yolopipe; use cpu or auto");
    if (cfg->device.precision != CONFIG_PRECISION_FP32)
        return config_error_at(cfg, "device.precision", err, "device.precision: the CPU backend computes in fp32 only");
    ModelOptions mo = {.scale = cfg->scale, .nc = t->dataset->nc};
    if (!model_spec_load(cfg->model, &mo, &t->spec, err)) return false;
    if (t->spec->scale_defaulted)
        fprintf(t->out, "%s: no scale given, using the first one, '%s'\n", cfg->model, t->spec->scale);
    const char *head = t->spec->rows[t->spec->n_rows - 1].module;
    bool head_classifies = !strcmp(head, "Classify");
    if (head_classifies != t->classify)
        return config_error_at(cfg, "task", err, "task is %s but the model's last layer is %s", config_task_names[cfg->task],
                               head);
    t->micro = cfg->train.batch / cfg->parallel.micro_batches;
    t->n_micro = cfg->parallel.micro_batches;
    // The graph holds the largest multi-scale input; smaller steps shrink it (graph_set_input_size).
    int smallest, largest;
    loader_imgsz_range((int)cfg->train.imgsz, cfg->train.multiscale, &smallest, &largest);
    t->max_side = largest > cfg->train.imgsz ? largest : cfg->train.imgsz;
    t->be = cpu_backend_create();
    GraphOptions go = {.batch = t->micro, .imgsz_h = t->max_side, .imgsz_w = t->max_side, .be = t->be,
                       .seed = (uint64_t)cfg->train.seed};
    if (!graph_create(t->spec, &go, &t->graph, err)) return false;
    Layer *out = graph_output(t->graph);
    t->out_capacity = out->out.capacity;
    t->host_out = yp_malloc((size_t)t->out_capacity * sizeof(float));
    t->host_dout = yp_malloc((size_t)t->out_capacity * sizeof(float));
    t->live_params = yp_malloc((size_t)t->graph->param_elems * sizeof(float));
    t->live_buffers = yp_malloc((size_t)(t->graph->buffer_elems + 1) * sizeof(float));
    t->ema_params = yp_malloc((size_t)t->graph->param_elems * sizeof(float));
    t->ema_buffers = yp_malloc((size_t)(t->graph->buffer_elems + 1) * sizeof(float));
    fprintf(t->out, "%s: %lld parameters, %.1f GFLOPs at %lld; %lld images per forward pass, %lld per step\n",
            t->spec->name, (long long)t->graph->param_elems, graph_gflops(t->graph) *
            (double)(cfg->train.imgsz * cfg->train.imgsz) / (double)(t->max_side * t->max_side),
            (long long)cfg->train.imgsz, (long long)t->micro, (long long)cfg->train.batch);
    return true;
}

// Grid sizes of the Detect levels for a square input of `side`.
static int detect_levels(const Graph *g, int64_t side, DetectLevelSize *levels) {
    for (int i = 0; i < g->n_strides; i++)
        levels[i] = (DetectLevelSize){.h = side / g->strides[i], .w = side / g->strides[i], .stride = g->strides[i]};
    return g->n_strides;
}

static DetectLoss *trainer_loss_for(Trainer *t, int64_t side) {
    DetectLoss **slot = &t->losses[side / TRAINER_SIDE_STEP];
    if (*slot) return *slot;
    DetectLossConfig lc = detect_loss_config_default(t->spec->nc, t->spec->reg_max);
    DetectLevelSize levels[DETECT_LOSS_MAX_LEVELS];
    lc.n_levels = detect_levels(t->graph, side, levels);
    for (int i = 0; i < lc.n_levels; i++)
        lc.levels[i] = (DetectLossLevel){.h = levels[i].h, .w = levels[i].w, .stride = levels[i].stride};
    lc.box_gain = t->cfg->train.box;
    lc.cls_gain = t->cfg->train.cls;
    lc.dfl_gain = t->cfg->train.dfl;
    Error err = {0};
    if (!detect_loss_create(&lc, t->micro, slot, &err)) yp_fatal("detection loss: %s", err.message);
    return *slot;
}

static bool trainer_build_loaders(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
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
    LoaderOptions val = loader_options_val(t->micro);
    val.n_workers = (int)cfg->train.workers;
    t->train_loader = loader_create(t->splits[DATASET_SPLIT_TRAIN], &train);
    t->val_loader = loader_create(t->splits[DATASET_SPLIT_VAL], &val);
    t->batches_per_epoch = loader_batches(t->train_loader);
    if (t->batches_per_epoch < 1)
        return config_error_at(cfg, "train.batch", err, "train.batch %lld is larger than the %lld training images",
                               (long long)cfg->train.batch, (long long)t->splits[DATASET_SPLIT_TRAIN]->n_samples);
    t->step_sides = yp_malloc((size_t)t->batches_per_epoch * sizeof *t->step_sides);
    return true;
}

static void trainer_build_ema(Trainer *t) {
    Graph *g = t->graph;
    EmaEntry *entries = yp_malloc((size_t)g->n_params * sizeof *entries);
    t->ema = ema_create(entries, ema_entries_from_graph(g, 0, g->n_layers, entries), EMA_DECAY, EMA_TAU);
    free(entries);
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
    Graph *g = t->graph;
    OptimParam *params = yp_malloc((size_t)g->n_params * sizeof *params);
    int n = optim_params_from_graph(g, 0, g->n_layers, params);
    t->optimizer = optim_create(kind, decay, params, n);
    free(params);
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

// <output.dir>/<name>, or <name>2, <name>3, ... when it exists already (as Ultralytics' increment_path).
static bool trainer_pick_run_dir(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", cfg->output.dir, cfg->name);
    for (int k = 2; path_exists(t->run_dir); k++)
        snprintf(t->run_dir, sizeof t->run_dir, "%s/%s%d", cfg->output.dir, cfg->name, k);
    return fs_mkdir_p(t->run_dir, err);
}

// ---- one batch ---------------------------------------------------------------------------------------

// The targets of images [first, first + n) of a batch, re-indexed from 0.
static int64_t micro_targets(Trainer *t, const Batch *batch, int64_t first, int64_t n) {
    if (t->mb_targets_cap < batch->n_targets) {
        t->mb_targets_cap = batch->n_targets;
        t->mb_targets = yp_realloc(t->mb_targets, (size_t)t->mb_targets_cap * sizeof *t->mb_targets);
    }
    int64_t k = 0;
    for (int i = 0; i < batch->n_targets; i++) {
        TargetBox b = batch->targets[i];
        if (b.image < first || b.image >= first + n) continue;
        b.image -= (int32_t)first;
        t->mb_targets[k++] = b;
    }
    return k;
}

// Forward (and, when training, backward) of images [first, first + n) of the batch; adds the loss
// parts to sums. Returns the ground-truth boxes seen.
static int64_t trainer_pass(Trainer *t, const Batch *batch, int64_t first, int64_t n, bool train, LossMeans *sums) {
    Graph *g = t->graph;
    Backend *be = t->be;
    Error err = {0};
    if (!graph_set_input_size(g, n, batch->h, batch->w, &err)) yp_fatal("%s", err.message);
    int64_t image_elems = 3 * batch->h * batch->w;
    be->ops->upload(be, g->input.data, batch->images + first * image_elems, (size_t)(n * image_elems));
    graph_forward(g, train);
    Layer *out = graph_output(g);
    int64_t n_out = tensor_elems(&out->out);
    be->ops->download(be, t->host_out, out->out.data, (size_t)n_out);
    float *dout = train ? t->host_dout : NULL;
    int64_t instances = 0;
    if (t->classify) {
        sums->ce += classify_loss_compute(n, t->spec->nc, t->host_out, batch->labels + first, dout);
    } else {
        int64_t n_targets = micro_targets(t, batch, first, n);
        DetectLossParts parts;
        detect_loss_compute(trainer_loss_for(t, batch->h), n, t->host_out, t->mb_targets, n_targets, dout, &parts);
        sums->box += parts.box;
        sums->cls += parts.cls;
        sums->dfl += parts.dfl;
        instances = parts.n_instances;
    }
    sums->n++;
    if (train) {
        be->ops->upload(be, out->dout.data, t->host_dout, (size_t)n_out);
        graph_backward(g);
        t->at.bn_batches++;
    }
    return instances;
}

// Ultralytics' optimizer_step: clip the gradient norm to 10, step, zero the gradients, update the EMA.
static void trainer_optimizer_step(Trainer *t, const OptimHyper *hyper) {
    optim_clip_grad_norm(t->optimizer, OPTIM_CLIP_MAX_NORM);
    optim_step(t->optimizer, hyper);
    graph_zero_grads(t->graph);
    ema_update(t->ema);
    t->at.optimizer_steps++;
}

// ---- validation --------------------------------------------------------------------------------------

// Swaps the model's weights with the EMA's (validation scores the EMA, as Ultralytics does).
static void trainer_use_ema(Trainer *t, bool use) {
    Graph *g = t->graph;
    Backend *be = t->be;
    if (use) {
        be->ops->download(be, t->live_params, g->param_data, (size_t)g->param_elems);
        be->ops->download(be, t->live_buffers, g->buffer_data, (size_t)g->buffer_elems);
        ema_copy_to_graph_layout(t->ema, g, t->ema_params, t->ema_buffers);
        be->ops->upload(be, g->param_data, t->ema_params, (size_t)g->param_elems);
        be->ops->upload(be, g->buffer_data, t->ema_buffers, (size_t)g->buffer_elems);
    } else {
        be->ops->upload(be, g->param_data, t->live_params, (size_t)g->param_elems);
        be->ops->upload(be, g->buffer_data, t->live_buffers, (size_t)g->buffer_elems);
    }
}

typedef struct ValResult {
    LossMeans loss;
    const DetectSummary *detect;  // detection; owned by the trainer's metrics
    ClassifyMetrics classify;
    double fitness;
} ValResult;

static bool error_copy(Error *dst, const Error *src) {
    *dst = *src;
    return false;
}

static bool trainer_validate(Trainer *t, ValResult *res, Error *out_err) {
    *res = (ValResult){.classify = {.nc = t->spec->nc}};
    if (!t->classify && !t->decoder) {
        DetectLevelSize levels[DETECT_LOSS_MAX_LEVELS];
        int n_levels = detect_levels(t->graph, t->cfg->train.imgsz, levels);
        t->decoder = detect_decoder_create(levels, n_levels, t->spec->nc, t->spec->reg_max);
        t->detections = detections_create(t->micro, t->cfg->val.max_det);
        t->metrics = detect_metrics_create(t->spec->nc);
    }
    NmsConfig nms = nms_config_validation();
    nms.conf = (float)t->cfg->val.conf;
    nms.iou = t->cfg->val.iou;
    nms.max_det = t->cfg->val.max_det;
    if (t->metrics) detect_metrics_reset(t->metrics);
    loader_start_epoch(t->val_loader, &(LoaderEpoch){.imgsz = (int)t->cfg->train.imgsz});
    for (int64_t b = 0; b < loader_batches(t->val_loader); b++) {
        Batch batch;
        Error err = {0};
        if (!loader_next(t->val_loader, &batch, &err)) return error_copy(out_err, &err);
        trainer_pass(t, &batch, 0, batch.n, false, &res->loss);
        if (t->classify) {
            classify_metrics_add(&res->classify, t->host_out, batch.labels, batch.n);
        } else {
            t->detections->n_images = batch.n;
            detect_decoder_nms(t->decoder, t->host_out, batch.n, &nms, t->detections);
            detect_metrics_add_batch(t->metrics, t->detections, batch.targets, batch.n_targets, batch.h, batch.w);
        }
        loader_batch_free(&batch);
    }
    if (t->classify) {
        res->fitness = classify_metrics_fitness(&res->classify);
    } else {
        res->detect = detect_metrics_finalize(t->metrics);
        res->fitness = res->detect->fitness;
    }
    return true;
}

static void trainer_print_validation(Trainer *t, const ValResult *res) {
    if (t->classify) classify_metrics_print(&res->classify, t->out);
    else detect_summary_print(res->detect, (const char *const *)t->dataset->names, t->out);
}

// ---- results.csv -------------------------------------------------------------------------------------

static void trainer_write_results_row(Trainer *t, int64_t epoch, double seconds, const LossMeans *train,
                                      const ValResult *val, const OptimHyper *hyper, double images_per_s) {
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", t->run_dir);
    bool fresh = !path_exists(path);
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "yolopipe: cannot append to %s: %s\n", path, strerror(errno));
        return;
    }
    double n = train->n ? (double)train->n : 1.0, nv = val->loss.n ? (double)val->loss.n : 1.0;
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

// ---- the loop ----------------------------------------------------------------------------------------

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool trainer_save(Trainer *t, const char *which, Error *err) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/weights/%s", t->run_dir, which);
    CheckpointModel model = {.graph = t->graph, .ema = t->ema, .optimizer = t->optimizer};
    return checkpoint_save(dir, &t->at, t->cfg, &model, err);
}

static bool trainer_loop(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    const TrainConfig *tc = &cfg->train;
    double run_start = seconds_now();
    OptimHyper hyper = optim_schedule_at(&t->schedule, t->at.iteration, t->at.epoch).hyper;
    bool stop = false;
    while (t->at.epoch < tc->epochs && !stop) {
        int64_t epoch = t->at.epoch;
        bool mosaic = epoch < tc->epochs - tc->close_mosaic;
        if (epoch == tc->epochs - tc->close_mosaic && tc->close_mosaic > 0 && t->at.batch == 0)
            fprintf(t->out, "closing mosaic for the last %lld epochs\n", (long long)tc->close_mosaic);
        // Multi-scale sizes come from the global step, so every rank (and a resumed run) agrees.
        for (int64_t b = 0; b < t->batches_per_epoch; b++)
            t->step_sides[b] = loader_step_imgsz((uint64_t)tc->seed, epoch * t->batches_per_epoch + b, (int)tc->imgsz,
                                                 tc->multiscale);
        loader_start_epoch(t->train_loader, &(LoaderEpoch){.epoch = epoch, .first_batch = t->at.batch,
                                                           .mosaic = mosaic, .imgsz = (int)tc->imgsz,
                                                           .imgsz_per_batch = t->step_sides});
        LossMeans sums = {0};
        double epoch_start = seconds_now();
        int64_t images = 0;
        while (!stop && t->at.batch < t->batches_per_epoch) {
            Batch owned;
            if (!loader_next(t->train_loader, &owned, err)) return false;
            const Batch *batch = &owned;
            OptimIteration it = optim_schedule_at(&t->schedule, t->at.iteration, epoch);
            hyper = it.hyper;
            int64_t instances = 0;
            for (int64_t m = 0; m < t->n_micro; m++)
                instances += trainer_pass(t, batch, m * t->micro, t->micro, true, &sums);
            if (t->at.iteration - t->at.last_step_iteration >= it.accumulate) {
                trainer_optimizer_step(t, &it.hyper);
                t->at.last_step_iteration = t->at.iteration;
                stop = tc->max_steps > 0 && t->at.optimizer_steps >= tc->max_steps;
            }
            t->at.iteration++;
            t->at.batch++;
            images += batch->n;
            double n = sums.n ? (double)sums.n : 1.0;
            ProgressStep ps = {.epoch = epoch + 1, .epochs = tc->epochs, .step = t->at.batch,
                               .steps = t->batches_per_epoch, .box = sums.box / n, .cls = sums.cls / n,
                               .dfl = sums.dfl / n, .ce = sums.ce / n, .classify = t->classify, .instances = instances,
                               .imgsz = batch->h, .images_per_s = (double)images / (seconds_now() - epoch_start),
                               .lr = hyper.lr[OPTIM_GROUP_WEIGHT]};
            progress_step(&t->progress_line, &ps);
            loader_batch_free(&owned);
        }
        progress_end_line(&t->progress_line);
        double images_per_s = (double)images / (seconds_now() - epoch_start);
        if (stop && t->at.batch < t->batches_per_epoch) {
            fprintf(t->out, "stopping after %lld optimizer steps (train.max_steps)\n", (long long)t->at.optimizer_steps);
            return trainer_save(t, "last", err);
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
    fprintf(t->out, "results in %s (results.csv, weights/last, weights/best)\n", t->run_dir);
    return true;
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
    config_destroy(saved);
    if (key)
        return config_error_at(t->cfg, key, err, "--resume: %s differs from the run being resumed (%s); resume with "
                               "the same settings (only train.max_steps, train.workers, val.* and output.* may change)",
                               key, saved_path);
    CheckpointModel model = {.graph = t->graph, .ema = t->ema, .optimizer = t->optimizer};
    if (!checkpoint_load(dir, &t->at, &model, err)) return false;
    if (t->at.epoch >= t->cfg->train.epochs)
        return config_error_at(t->cfg, "train.epochs", err, "--resume: %s already finished its %lld epochs", t->run_dir,
                               (long long)t->cfg->train.epochs);
    fprintf(t->out, "resuming %s at epoch %lld, batch %lld (%lld optimizer steps done)\n", t->run_dir,
            (long long)t->at.epoch + 1, (long long)t->at.batch, (long long)t->at.optimizer_steps);
    return true;
}

static void trainer_destroy(Trainer *t) {
    loader_destroy(t->train_loader);
    loader_destroy(t->val_loader);
    for (int i = 0; i < TRAINER_MAX_SIDES; i++) detect_loss_destroy(t->losses[i]);
    detect_decoder_destroy(t->decoder);
    detections_destroy(t->detections);
    detect_metrics_destroy(t->metrics);
    optim_destroy(t->optimizer);
    ema_destroy(t->ema);
    graph_destroy(t->graph);
    backend_destroy(t->be);
    model_spec_destroy(t->spec);
    for (int s = 0; s < DATASET_SPLIT_COUNT; s++) dataset_split_destroy(t->splits[s]);
    dataset_destroy(t->dataset);
    free(t->host_out);
    free(t->host_dout);
    free(t->mb_targets);
    free(t->live_params);
    free(t->live_buffers);
    free(t->ema_params);
    free(t->ema_buffers);
    free(t->step_sides);
}

static bool trainer_setup(Trainer *t, const ExperimentConfig *cfg, FILE *out, Error *err) {
    *t = (Trainer){.cfg = cfg, .out = out, .classify = cfg->task == CONFIG_TASK_CLASSIFY,
                   .at = {.last_step_iteration = -1, .best_fitness = -1, .seed = cfg->train.seed}};
    progress_init(&t->progress_line, out);
    if (!trainer_open_data(t, err) || !trainer_build_model(t, err) || !trainer_build_loaders(t, err)) return false;
    trainer_build_ema(t);
    return true;
}

bool trainer_run(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    Trainer t;
    bool ok = trainer_setup(&t, cfg, opt->out, err);
    if (ok) trainer_build_optimizer(&t);
    ok = ok && (opt->resume ? trainer_resume(&t, err) : trainer_pick_run_dir(&t, err));
    if (ok && !opt->resume) {
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
    trainer_destroy(&t);
    return ok;
}

bool trainer_validate_checkpoint(const ExperimentConfig *cfg, const char *weights_dir, FILE *out, Error *err) {
    Trainer t;
    bool ok = trainer_setup(&t, cfg, out, err);
    if (ok) {
        CheckpointModel model = {.graph = t.graph, .ema = t.ema};
        ok = checkpoint_load(weights_dir, &t.at, &model, err);
    }
    ValResult val;
    if (ok) {
        trainer_use_ema(&t, true);
        ok = trainer_validate(&t, &val, err);
    }
    if (ok) trainer_print_validation(&t, &val);
    trainer_destroy(&t);
    return ok;
}
