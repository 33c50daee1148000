// The trainer's set-up: the dataset (generated first when the experiment has a synth: block), the
// model and its executor, the loaders, the EMA and the optimizer; and trainer_destroy.
#include <stdlib.h>
#include <string.h>

#include "framework/data/synth.h"
#include "framework/runtime/failure.h"
#include "framework/train/loss_scale.h"
#include "framework/train/trainer_internal.h"
#include "layers/graph.h"
#include "layers/layer.h"

// The dataset: generated first (by world rank 0, the others wait) when missing and the experiment has
// a synth: block.
static bool trainer_open_data(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    bool ok = true;
    if (t->lead && !path_exists(cfg->data) && cfg->synth.present) {
        // The dataset folder is the data file's folder for detection (data.yaml inside it).
        char dir[PATH_MAX];
        ok = path_format(dir, sizeof dir, err, "%s", cfg->data);  // the others wait for ok below
        if (ok && !t->classify) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = '\0';
        }
        SynthConfig sc = cfg->synth.synth;
        sc.out_dir = dir;
        sc.progress = t->out;
        if (ok) fprintf(t->out, "%s does not exist: generating the synthetic dataset (synth: block)\n", cfg->data);
        ok = ok && synth_generate(&sc, NULL, err);
    }
    if (!trainer_all_ranks_ok(t, ok, err)) return false;
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

void trainer_build_optimizer(Trainer *t) {
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

bool trainer_setup(Trainer *t, const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
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

void trainer_destroy(Trainer *t) {
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
    if (t->sink) fclose(t->sink);
}
