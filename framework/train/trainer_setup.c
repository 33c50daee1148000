// The trainer's set-up: the dataset (generated first when the experiment has a synth: block), the
// model and its executor, the loaders, the EMA and the optimizer; and trainer_destroy.
#include <stdlib.h>
#include <string.h>

#include "framework/config/experiment_data.h"
#include "framework/runtime/failure.h"
#include "framework/train/loss_scale.h"
#include "framework/train/trainer_internal.h"
#include "layers/graph.h"
#include "layers/layer.h"

// The dataset: generated first (by world rank 0, the others wait) when missing and the experiment has
// a synth: block.
static bool trainer_open_data(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    bool ok = !t->lead || experiment_data_generate(cfg, t->out, err);  // the others wait for ok
    if (!trainer_all_ranks_ok(t, ok, err)) return false;
    if (!experiment_data_open(cfg, &t->dataset, err)) return false;
    int threads = cfg->train.workers > 0 ? (int)cfg->train.workers : 1;
    for (int s = DATASET_SPLIT_TRAIN; s <= DATASET_SPLIT_VAL; s++) {
        if (!dataset_scan(t->dataset, (DatasetSplitId)s, threads, &t->splits[s], err)) return false;
        dataset_split_print_summary(t->splits[s], t->out);
    }
    return true;
}

static bool trainer_build_model(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    if (!trainer_open_backend(t, err)) return false;
    ModelOptions mo = {.scale = cfg->scale, .nc = t->dataset->nc};
    if (!model_spec_load(cfg->model, &mo, &t->spec, err)) return false;
    if (t->spec->scale_defaulted)
        fprintf(t->out, "%s: no scale given, using the first one, '%s'\n", cfg->model, t->spec->scale);
    const char *head = t->spec->rows[t->spec->n_rows - 1].module;
    bool head_classifies = layer_kind_find(head) == LAYER_KIND_CLASSIFY;
    if (head_classifies != t->classify)
        return config_error_at(cfg, "task", err, "task is %s but the model's last layer is %s", config_task_names[cfg->task],
                               head);
    PlanTarget target = {.device_name = t->be->host_memory ? "cpu" : "h100"};
    if (!experiment_plan_build(cfg, t->spec, &target, &t->ep, err)) return false;
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
        tc->step_buffers = t->be->ops->alloc(t->be, (size_t)g->buffer_elems * sizeof(float) + 1);
    }
    const ParallelConfig *pc = &cfg->parallel;
    // One decimal as Ultralytics prints, but two significant digits below 1 (a classifier at 64 px
    // is 0.034 GFLOPs, not 0.0).
    const double gflops = graph_gflops(t->ep.graph) * (double)t->ep.graph->input.shape.n / (double)t->micro;
    char gflops_text[32];
    snprintf(gflops_text, sizeof gflops_text, gflops >= 1 ? "%.1f" : "%.2g", gflops);
    fprintf(t->out, "%s: %lld parameters, %s GFLOPs at %lld; %lld images per forward pass, %lld per step\n",
            t->spec->name, (long long)t->ep.graph->param_elems, gflops_text, (long long)cfg->train.imgsz,
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
    LoaderOptions train = experiment_train_loader_options(cfg);
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

TrainerOptimizerChoice trainer_optimizer_choice(const ExperimentConfig *cfg, int64_t n_train_images, int64_t nc) {
    const TrainConfig *tc = &cfg->train;
    TrainerOptimizerChoice c = {.kind = tc->optimizer == CONFIG_OPTIMIZER_ADAMW ? OPTIM_ADAMW : OPTIM_SGD,
                                .lr0 = tc->lr0, .momentum = tc->momentum, .warmup_bias_lr = tc->warmup_bias_lr,
                                .accumulate = optim_accumulate(tc->nbs, tc->batch)};
    if (tc->optimizer == CONFIG_OPTIMIZER_AUTO) {
        OptimAutoChoice a = optim_auto_choose(n_train_images, tc->batch, tc->nbs, tc->epochs, (int)nc);
        c.kind = a.kind;
        c.lr0 = a.lr0;
        c.momentum = a.momentum;
        c.warmup_bias_lr = a.warmup_bias_lr;
    }
    c.weight_decay = optim_scaled_weight_decay(tc->weight_decay, tc->batch, c.accumulate, tc->nbs);
    return c;
}

void trainer_build_optimizer(Trainer *t) {
    const ExperimentConfig *cfg = t->cfg;
    const TrainConfig *tc = &cfg->train;
    TrainerOptimizerChoice choice =
        trainer_optimizer_choice(cfg, t->splits[DATASET_SPLIT_TRAIN]->n_samples, t->spec->nc);
    OptimKind kind = choice.kind;
    double lr0 = choice.lr0, momentum = choice.momentum, warmup_bias_lr = choice.warmup_bias_lr;
    int64_t accumulate = choice.accumulate;
    double decay = choice.weight_decay;
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

bool trainer_setup(Trainer *t, const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    *t = (Trainer){.cfg = cfg, .out = opt->out, .classify = cfg->task == CONFIG_TASK_CLASSIFY, .tr = opt->transport,
                   .topo = &opt->transport->topo,
                   .at = {.last_step_iteration = -1, .best_fitness = -1, .seed = cfg->train.seed,
                          .loss_scale = loss_scale_make(trainer_scales_loss(cfg))},
                   .loss_finite = true};
    t->lead = t->topo->world_rank == 0;
    if (!t->lead) t->out = t->sink = fopen("/dev/null", "w");
    YP_CHECK(t->out);
    progress_init(&t->progress_line, t->out);
    if (!trainer_open_data(t, err) || !trainer_build_model(t, err) || !trainer_build_loaders(t, err)) return false;
    trainer_build_ema(t);
    return true;
}

void trainer_destroy(Trainer *t) {
    trainer_curves_destroy(t);
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
        t->be->ops->free(t->be, tc->step_buffers);
    }
    free(t->chunks);
    executor_destroy(t->ex);
    if (t->be_tr && t->be_tr != t->tr) {
        if (t->be_tr->ops->kind == TRANSPORT_KIND_NCCL) failure_install(t->topo, t->tr);  // before it goes
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
    free(t->program_times);
    free(t->optimizer_times);
    if (t->sink) fclose(t->sink);
}
