// The step's costs besides the layers (step_profile.h), each timed the way the trainer runs it:
//   optimizer  trainer.c's optimizer step on the whole model: the gradient norm, the clipping
//              scale, the update of the experiment's optimizer (SGD or AdamW, with its weight
//              decay), zeroing the gradients. The gradients are refilled with uniform(-1, 1) before
//              each run (outside the timing), so the norm is above 10 and clipping's pass runs: an
//              upper bound for steps whose norm is below it, where the trainer skips that pass.
//   ema        one ema_update over the parameters and running statistics.
//   loss       executor.c's loss of one micro-batch on the last stage: detection through the
//              backend's detect_loss_compute (assigner, loss and gradient) on the graph's output with
//              the targets of the epoch's first micro-batch; classification downloads the logits,
//              computes the cross-entropy and its gradient on the host and uploads it.
//   loader     the training loader as the trainer configures it (augment: section, mosaic while
//              close_mosaic has not closed it), with one worker thread building one replica's share
//              of each batch as stage 0 requests it (pixels); the consumer takes batches at once, so
//              each wait is one batch's build time. A batch's build time varies with the images it
//              draws (a mosaic tiles four), so the loader is timed over at least
//              STEP_PROFILE_LOADER_BATCHES batches, more than `repeats` usually asks.
#include "framework/train/step_profile.h"

#include <stdlib.h>

#include "framework/config/experiment_data.h"
#include "framework/core/clock.h"
#include "framework/core/sort.h"
#include "framework/data/loader.h"
#include "framework/train/ema.h"
#include "framework/train/optim.h"
#include "framework/train/trainer.h"
#include "layers/loss.h"

// One cost to time: prepare (untimed) then run, repeats + 1 times; the first run warms up.
typedef struct StepTimed {
    void (*prepare)(void *ctx, int run);  // may be NULL
    void (*run)(void *ctx);
    void *ctx;
} StepTimed;

static double step_time_median(const StepTimed *t, int repeats) {
    double *times = yp_malloc((size_t)repeats * sizeof *times);
    for (int r = 0; r <= repeats; r++) {
        if (t->prepare) t->prepare(t->ctx, r);
        double t0 = clock_monotonic_s();
        t->run(t->ctx);
        if (r > 0) times[r - 1] = clock_monotonic_s() - t0;
    }
    double median = sort_median(times, repeats);
    free(times);
    return median;
}

// ---- optimizer and EMA ---------------------------------------------------------------------------

typedef struct OptimizerRun {
    Graph *g;
    Optimizer *opt;
    OptimHyper hyper;
} OptimizerRun;

static void optimizer_prepare(void *ctx, int run) {
    OptimizerRun *o = ctx;
    o->g->be->ops->fill_uniform(o->g->be, o->g->grad_data, (size_t)o->g->param_elems, -1.0f, 1.0f, 100 + (uint64_t)run);
}

static void optimizer_run(void *ctx) {
    OptimizerRun *o = ctx;
    optim_grads_scale(o->opt, optim_clip_factor(optim_grad_sumsq(o->opt), OPTIM_CLIP_MAX_NORM));
    optim_step(o->opt, &o->hyper);
    graph_zero_grads(o->g);
}

static void ema_run(void *ctx) { ema_update(ctx); }

static void step_profile_optimizer(const StepProfileInput *in, StepProfileReport *report) {
    Graph *g = in->graph;
    TrainerOptimizerChoice choice =
        trainer_optimizer_choice(in->cfg, in->train ? in->train->n_samples : 0, g->spec->nc);
    OptimParam *params = yp_malloc((size_t)(g->n_params + 1) * sizeof *params);
    int n = optim_params_from_graph(g, 0, g->n_layers, params);
    OptimizerRun o = {.g = g, .opt = optim_create(g->be, choice.kind, choice.weight_decay, params, n),
                      .hyper = {.lr = {choice.lr0, choice.lr0, choice.lr0}, .momentum = choice.momentum}};
    report->optimizer = choice.kind;
    report->optimizer_s =
        step_time_median(&(StepTimed){.prepare = optimizer_prepare, .run = optimizer_run, .ctx = &o}, in->repeats);
    optim_destroy(o.opt);
    free(params);

    EmaEntry *entries = yp_malloc((size_t)(g->n_params + 1) * sizeof *entries);
    n = ema_entries_from_graph(g, 0, g->n_layers, entries);
    ModelEma *ema = ema_create(g->be, entries, n, EMA_DECAY, EMA_TAU);
    report->ema_s = step_time_median(&(StepTimed){.run = ema_run, .ctx = ema}, in->repeats);
    ema_destroy(ema);
    free(entries);
}

// ---- loss ----------------------------------------------------------------------------------------

typedef struct LossRun {
    Graph *g;
    const Batch *targets;         // the micro-batch's targets (detection) or labels (classification)
    BackendDetectLoss *detect;    // detection; NULL for classification
    float *host_out, *host_dout;  // classification: (micro, nc)
} LossRun;

static void loss_run(void *ctx) {
    LossRun *l = ctx;
    Backend *be = l->g->be;
    Layer *out = graph_output(l->g);
    int64_t n = l->g->input.shape.n;
    if (l->detect) {
        be->ops->detect_loss_compute(be, l->detect, n, out->out.data, l->targets->targets, l->targets->n_targets, 1.0f,
                                     out->dout.data, NULL);
        return;
    }
    size_t n_out = (size_t)tensor_elems(&out->out);
    be->ops->download_activation(be, l->host_out, out->out.data, n_out);
    classify_loss_compute(n, l->g->spec->nc, l->host_out, l->targets->labels, l->host_dout);
    be->ops->upload_activation(be, out->dout.data, l->host_dout, n_out);
}

static bool step_profile_loss(const StepProfileInput *in, const int64_t *order, bool mosaic, StepProfileReport *report,
                              Error *err) {
    const ExperimentConfig *cfg = in->cfg;
    Graph *g = in->graph;
    // The loss of reg_max 1 boxes (L1 on the distances, no DFL) is not implemented yet: loss_images
    // stays 0 and plan estimates the loss.
    if (cfg->task == CONFIG_TASK_DETECT && g->reg_max < 2) return true;
    int64_t micro = g->input.shape.n;
    LoaderOptions lo = experiment_train_loader_options(cfg);
    BatchRequest req = {.epoch = 0, .first = 0, .n = micro, .imgsz = (int)cfg->train.imgsz, .mosaic = mosaic,
                        .parts = BATCH_PART_TARGETS};
    Batch batch = {0};
    if (!loader_build(in->train, &lo, order, &req, &batch, err)) return false;
    LossRun l = {.g = g, .targets = &batch};
    bool ok = true;
    if (cfg->task == CONFIG_TASK_DETECT) {
        DetectLossConfig lc = detect_loss_config_for_graph(g, cfg->train.imgsz);
        lc.box_gain = cfg->train.box;
        lc.cls_gain = cfg->train.cls;
        lc.dfl_gain = cfg->train.dfl;
        ok = g->be->ops->detect_loss_create(g->be, &lc, micro, batch.n_targets, &l.detect, err);
    } else {
        size_t n_out = (size_t)tensor_elems(&graph_output(g)->out);
        l.host_out = yp_malloc(n_out * sizeof *l.host_out);
        l.host_dout = yp_malloc(n_out * sizeof *l.host_dout);
    }
    if (ok) {
        report->loss_s = step_time_median(&(StepTimed){.run = loss_run, .ctx = &l}, in->repeats);
        report->loss_images = micro;
        report->loss_targets = batch.n_targets;
    }
    g->be->ops->detect_loss_destroy(g->be, l.detect);
    free(l.host_out);
    free(l.host_dout);
    loader_batch_free(&batch);
    return ok;
}

// ---- loader --------------------------------------------------------------------------------------

enum { STEP_PROFILE_LOADER_BATCHES = 16 };

static bool step_profile_loader(const StepProfileInput *in, StepProfileReport *report, Error *err) {
    const ExperimentConfig *cfg = in->cfg;
    const TrainConfig *tc = &cfg->train;
    LoaderOptions lo = experiment_train_loader_options(cfg);
    lo.n_workers = 1;
    lo.share = (LoaderShare){.first = 0, .n = tc->batch / cfg->parallel.replicas, .parts = BATCH_PART_IMAGES};
    Loader *ld = loader_create(in->train, &lo);
    int64_t per_epoch = loader_batches(ld);
    int n = in->repeats > STEP_PROFILE_LOADER_BATCHES ? in->repeats : STEP_PROFILE_LOADER_BATCHES;
    double *waits = yp_malloc((size_t)n * sizeof *waits);
    bool ok = true;
    for (int k = 0; ok && k <= n; k++) {
        if (k % per_epoch == 0) {
            int64_t epoch = k / per_epoch;
            loader_start_epoch(ld, &(LoaderEpoch){.epoch = epoch, .mosaic = epoch < tc->epochs - tc->close_mosaic,
                                                   .imgsz = (int)tc->imgsz});
        }
        Batch b = {0};
        double t0 = clock_monotonic_s();
        ok = loader_next(ld, &b, err);
        if (ok && k > 0) waits[k - 1] = clock_monotonic_s() - t0;
        loader_batch_free(&b);
    }
    if (ok) {
        report->loader_batch_s = sort_median(waits, n);
        report->loader_images = lo.share.n;
    }
    free(waits);
    loader_destroy(ld);
    return ok;
}

bool step_profile_measure(const StepProfileInput *in, CostProfile *p, StepProfileReport *report, Error *err) {
    const ExperimentConfig *cfg = in->cfg;
    const Graph *g = in->graph;
    YP_CHECK(in->repeats >= 1 && g->be && g->be->host_memory);
    *report = (StepProfileReport){.param_bytes = g->param_elems * (int64_t)sizeof(float)};
    step_profile_optimizer(in, report);
    p->optimizer_s_per_param_byte = report->optimizer_s / (double)report->param_bytes;
    p->ema_s_per_param_byte = report->ema_s / (double)report->param_bytes;
    if (!in->train) return true;
    if (in->train->nc > g->spec->nc)
        return error_set(err, "%s: the dataset has %d classes but the model %s has %lld (--nc %d)", cfg->data,
                         in->train->nc, g->spec->name, (long long)g->spec->nc, in->train->nc);
    if (loader_batch_count(in->train->n_samples, cfg->train.batch, true) < 1)
        return config_error_at(cfg, "train.batch", err, "train.batch %lld is larger than the %lld training images",
                               (long long)cfg->train.batch, (long long)in->train->n_samples);
    int64_t *order = yp_malloc((size_t)in->train->n_samples * sizeof *order);
    loader_epoch_order((uint64_t)cfg->train.seed, 0, in->train->n_samples, true, order);
    bool mosaic = 0 < cfg->train.epochs - cfg->train.close_mosaic;
    bool ok = step_profile_loss(in, order, mosaic, report, err) && step_profile_loader(in, report, err);
    free(order);
    if (!ok) return false;
    p->loss_s_per_image = report->loss_images ? report->loss_s / (double)report->loss_images : 0.0;
    p->loader_images_per_s_per_worker =
        report->loader_batch_s > 0 ? (double)report->loader_images / report->loader_batch_s : 0;
    return true;
}
