// The training loop (trainer.h): one batch and its share of the optimizer step, the epochs with
// their validation, results row and checkpoints, and the two entry points.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/clock.h"
#include "framework/core/sort.h"
#include "framework/train/loss_scale.h"
#include "framework/train/trainer_internal.h"
#include "layers/graph.h"

static double world_sum(Trainer *t, double value) {
    t->tr->ops->allreduce_sum_f64(t->tr, &value, 1, TRANSPORT_WORLD);
    return value;
}

// A user error found on some ranks only (a stage file that cannot be written, ...): every rank
// learns that one failed, so none goes on alone. Returns whether all succeeded.
bool trainer_all_ranks_ok(Trainer *t, bool ok, Error *err) {
    double failed = world_sum(t, ok ? 0.0 : 1.0);
    if (failed > 0 && ok) {
        error_set(err, "%.0f other rank%s failed (see their messages)", failed, failed == 1 ? "" : "s");
        err->code = ERROR_CODE_PEER_FAILED;
    }
    return failed == 0;
}

// ---- one optimizer step ------------------------------------------------------------------------------

// fp16 scales the loss (its activations underflow without it); bf16 has float32's range.
bool trainer_scales_loss(const ExperimentConfig *cfg) { return cfg->device.precision == CONFIG_PRECISION_FP16; }

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

// The running statistics as a step's accumulation begins (the loop's start, each step's end): a skipped
// step takes back what its forward passes made non-finite.
static void trainer_keep_buffers(Trainer *t) {
    for (int c = 0; c < t->n_chunks; c++) {
        const Graph *g = executor_chunk(t->ex, c)->graph;
        t->be->ops->copy(t->be, t->chunks[c].step_buffers, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
    }
}

// A forward pass that overflowed (a NaN loss) leaves NaN in the running statistics, and from there in
// the EMA's after the next step taken and in every checkpoint (which then no longer loads). On a
// skipped step, each chunk whose statistics are not all finite gets back those of the step's start;
// finite ones stay as PyTorch leaves them (an fp16 overflow in the backward pass, say).
static void trainer_restore_broken_buffers(Trainer *t) {
    for (int c = 0; c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        float *host = t->chunks[c].live_buffers;
        t->be->ops->download(t->be, host, g->buffer_data, (size_t)g->buffer_elems * sizeof(float));
        int64_t i = 0;
        while (i < g->buffer_elems && isfinite(host[i])) i++;
        if (i < g->buffer_elems)
            t->be->ops->copy(t->be, g->buffer_data, t->chunks[c].step_buffers, (size_t)g->buffer_elems * sizeof(float));
    }
}

// Before the checkpoints at an epoch's end (or a stop), the replicas' state since the last step goes
// where a resumed run finds it: the gradients accumulated since then summed into replica 0 (the
// others zeroed; the next step's reduction adds them as it would have) and the running statistics
// averaged. An uninterrupted run does the same, so that it computes what a resumed one does, bit
// for bit. Once per epoch end, not per checkpoint: averaging equal values again is not exact.
static void trainer_gather_replicas(Trainer *t) {
    for (int c = 0; t->topo->replicas > 1 && c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        size_t bytes = (size_t)g->param_elems * sizeof(float);
        float *grads = yp_malloc(bytes + 1);
        t->be->ops->download(t->be, grads, g->grad_data, bytes);
        transport_wait(t->tr, t->tr->ops->iallreduce_sum_f32(t->tr, grads, (size_t)g->param_elems, TRANSPORT_REPLICAS),
                       "the gradient sum over the replicas for a checkpoint");
        if (t->topo->replica == 0) t->be->ops->upload(t->be, g->grad_data, grads, bytes);
        else graph_zero_grads(g);
        free(grads);
    }
    trainer_average_buffers(t);
    trainer_keep_buffers(t);  // what a skipped step restores: a resumed run keeps them at its start too
}

// Whether the run has skipped train.max_skipped_steps steps in a row: every rank counts the same.
static bool trainer_diverged(const Trainer *t) { return t->at.loss_scale.in_a_row >= t->cfg->train.max_skipped_steps; }

// Ultralytics' optimizer_step over all stages: unscale (fp16) and clip the whole model's gradient norm
// to 10 (the squared norms of the stages summed over the pipeline, in sumsq, of the gradients as they
// are: scaled), step, zero the gradients, update the EMA. In every precision a step whose global norm
// is not finite (or after a batch whose loss was not) is skipped: parameters, optimizer state and EMA
// stay as they were, running statistics that went non-finite return to the step's start (fp16 also
// halves its loss scale). Every rank sees the same sumsq and losses (all-reduced over the world), so
// all skip together. Fails after train.max_skipped_steps in a row.
static bool trainer_optimizer_step(Trainer *t, const OptimHyper *hyper, double sumsq, Error *err) {
    double scale = t->at.loss_scale.scale;
    bool step = loss_scale_update(&t->at.loss_scale, trainer_scales_loss(t->cfg), isfinite(sumsq) && t->loss_finite);
    t->loss_finite = true;
    // Unscaling by a power of two is exact, so one multiplication does both.
    double factor = optim_clip_factor(sumsq / (scale * scale), OPTIM_CLIP_MAX_NORM) / scale;
    for (int c = 0; c < t->n_chunks; c++) {
        if (step) {
            optim_grads_scale(t->chunks[c].optimizer, factor);
            optim_step(t->chunks[c].optimizer, hyper);
        }
        graph_zero_grads(executor_chunk(t->ex, c)->graph);
    }
    if (!step) trainer_restore_broken_buffers(t);
    trainer_average_buffers(t);
    trainer_keep_buffers(t);
    for (int c = 0; step && c < t->n_chunks; c++) ema_update(t->chunks[c].ema);
    t->at.optimizer_steps++;
    if (!trainer_diverged(t)) return true;
    return config_error_at(t->cfg, "train.max_skipped_steps", err,
                           "%lld optimizer steps in a row skipped, the last at epoch %lld batch %lld: the gradient "
                           "norm or the loss was not finite (train.max_skipped_steps is %lld); training diverged: "
                           "lower train.lr0 or check the data",
                           (long long)t->at.loss_scale.in_a_row, (long long)t->at.epoch + 1, (long long)t->at.batch + 1,
                           (long long)t->cfg->train.max_skipped_steps);
}

// YOLOPIPE_NAN_GRADS=FIRST[-LAST], a test hook (experiments/SCHEMA.md): optimizer steps FIRST to LAST
// (counted from 1 over the run) get a NaN in the first trainable gradient of the last pipeline stage's
// ranks, as an overflow in the loss there would give. The other stages' gradients stay finite: only
// the global norm tells them to skip.
static bool trainer_read_nan_hook(Trainer *t, Error *err) {
    const char *text = getenv("YOLOPIPE_NAN_GRADS");
    if (!text) return true;
    char *end;
    errno = 0;
    long long first = strtoll(text, &end, 10), last = first;
    if (*end == '-') last = strtoll(end + 1, &end, 10);
    if (errno || end == text || *end || first < 1 || last < first)
        return error_set(err, "YOLOPIPE_NAN_GRADS: expected an optimizer step or a range FIRST-LAST (steps from 1), "
                              "found '%.40s'", text);
    t->nan_grads[0] = first, t->nan_grads[1] = last;
    fprintf(t->out, "YOLOPIPE_NAN_GRADS: optimizer steps %lld to %lld get a NaN gradient on the last stage\n", first,
            last);
    return true;
}

static void trainer_poison_grads(Trainer *t) {
    int64_t n = t->at.optimizer_steps + 1;
    if (!t->nan_grads[0] || n < t->nan_grads[0] || n > t->nan_grads[1] ||
        t->topo->pipeline_rank != t->topo->pipeline_size - 1)
        return;
    const float nan = NAN;
    for (int c = 0; c < t->n_chunks; c++) {
        const ExecutorChunk *ch = executor_chunk(t->ex, c);
        const Graph *g = ch->graph;
        for (int i = 0; i < g->n_params; i++) {
            const ParamInfo *p = &g->params[i];
            if (p->layer < ch->layer_begin || p->layer >= ch->layer_end || (p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)))
                continue;
            t->be->ops->upload(t->be, g->grad_data + p->offset, &nan, sizeof nan);
            break;
        }
    }
}

// ---- the loop ----------------------------------------------------------------------------------------

// What each rank adds into the one all-reduce of a training batch (doubles, summed element by
// element): its loss parts and its share of the squared gradient norm. batch_wire_write fills one and
// batch_wire_read takes it apart.
typedef struct BatchWire {
    TrainerLossWire loss;
    double grad_sumsq;
} BatchWire;
enum { BATCH_WIRE_DOUBLES = TRAINER_LOSS_WIRE_DOUBLES + 1 };
_Static_assert(sizeof(BatchWire) == BATCH_WIRE_DOUBLES * sizeof(double), "BatchWire travels as doubles: no padding");
_Static_assert(sizeof(BatchWire) == PLAN_BATCH_REDUCE_BYTES, "the simulator's loss all-reduce is this one");

static BatchWire batch_wire_write(const ExecutorLoss *loss, double grad_sumsq) {
    return (BatchWire){.loss = trainer_loss_wire_write(loss), .grad_sumsq = grad_sumsq};
}

static void batch_wire_read(const BatchWire *wire, ExecutorLoss *loss, double *grad_sumsq) {
    *loss = trainer_loss_wire_read(&wire->loss);
    *grad_sumsq = wire->grad_sumsq;
}

// One training batch on this rank, and the optimizer step when it ends an accumulation.
// *data_wait_s gets the time spent waiting for the loader.
static bool trainer_batch(Trainer *t, int64_t epoch, ExecutorLoss *sums, OptimHyper *hyper, int64_t *instances,
                          double *data_wait_s, double *program_s, double *optimizer_s, Error *err) {
    Batch batch = {0};
    double wait_start = clock_monotonic_s();
    if (t->train_loader && !loader_next(t->train_loader, &batch, err)) return false;
    *data_wait_s = clock_monotonic_s() - wait_start;
    trainer_plot_train_batch(t, &batch);
    OptimIteration it = optim_schedule_at(&t->schedule, t->at.iteration, epoch);
    *hyper = it.hyper;
    bool step = t->at.iteration - t->at.last_step_iteration >= it.accumulate;
    bool record = t->cfg->output.trace && t->at.iteration == (t->batches_per_epoch > 2 ? 2 : 0);
    ExecutorBatch eb = {.data = &batch, .side = t->step_sides[t->at.batch], .reduce = step,
                        .loss_scale = (float)t->at.loss_scale.scale};
    ExecutorLoss loss = {0};
    double program_start = clock_monotonic_s();
    executor_train_batch(t->ex, &eb, record, &loss);
    *program_s = clock_monotonic_s() - program_start;
    loader_batch_free(&batch);
    // One collective per batch: the loss parts (from the last stages) and, before a step, the squared
    // gradient norm of every stage (replica 0's: the replicas' gradients are equal after the reduction).
    double sumsq = 0, norm_start = clock_monotonic_s();
    if (step) trainer_poison_grads(t);
    if (step && t->topo->replica == 0)
        for (int c = 0; c < t->n_chunks; c++) sumsq += optim_grad_sumsq(t->chunks[c].optimizer);
    *optimizer_s = clock_monotonic_s() - norm_start;
    BatchWire wire = batch_wire_write(&loss, sumsq);
    t->tr->ops->allreduce_sum_f64(t->tr, (double *)&wire, BATCH_WIRE_DOUBLES, TRANSPORT_WORLD);
    ExecutorLoss all;
    batch_wire_read(&wire, &all, &sumsq);
    sums->box += all.box, sums->cls += all.cls, sums->dfl += all.dfl, sums->ce += all.ce, sums->n += all.n;
    *instances = (int64_t)all.instances;
    t->loss_finite = t->loss_finite && isfinite(all.box + all.cls + all.dfl + all.ce);
    t->at.bn_batches += t->topo->replicas * t->cfg->parallel.micro_batches;
    if (step) {
        t->at.last_step_iteration = t->at.iteration;
        double step_start = clock_monotonic_s();
        if (!trainer_optimizer_step(t, &it.hyper, sumsq, err)) return false;
        *optimizer_s += clock_monotonic_s() - step_start;
    }
    if (record) {
        char path[PATH_MAX];
        if (!path_format(path, sizeof path, err, "%s/trace.json", t->run_dir) ||
            !executor_trace_write(t->ex, path, err))
            return false;
        t->trace_written = true;
        fprintf(t->out, "\ntrace of batch %lld (every rank of replica 0) written to %s\n", (long long)t->at.iteration,
                path);
    }
    return true;
}

double trainer_median_after_first(const double *values, int n) {
    double *rest = yp_malloc((size_t)(n - 1) * sizeof *rest);
    memcpy(rest, values + 1, (size_t)(n - 1) * sizeof *rest);
    double median = sort_median(rest, n - 1);
    free(rest);
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
    char path[PATH_MAX];
    return path_format(path, sizeof path, err, "%s/profile.csv", t->run_dir) &&
           executor_profile_write(t->ex, path, err);
}

// The run's end: the measured step times and records, then, as Ultralytics does, weights/best
// validated again (labelled with its epoch) and a summary: the best epoch's metrics, the time the
// loop took and what the run directory holds.
static bool trainer_finish(Trainer *t, double run_start, Error *err) {
    trainer_print_step_times(t);
    if (!trainer_write_profile(t, err) || !trainer_write_measured(t, err)) return false;
    double seconds = clock_monotonic_s() - run_start;
    char best_dir[PATH_MAX], label[PATH_MAX + 64], metrics[160] = "no validation";
    if (t->at.best_fitness >= 0) {
        if (!path_format(best_dir, sizeof best_dir, err, "%s/weights/best", t->run_dir)) return false;
        TrainProgress run_at = t->at;  // loading best reads its position into t->at
        ValResult val;
        bool ok = trainer_load(t, best_dir, false, err);
        int64_t best_epoch = t->at.epoch;
        t->at = run_at;
        trainer_use_ema(t, true);
        if (!ok || !trainer_validate(t, &val, err)) return false;
        snprintf(label, sizeof label, "%s (best, epoch %lld/%lld)", best_dir, (long long)best_epoch,
                 (long long)t->cfg->train.epochs);
        trainer_print_validation(t, label, &val);
        if (!t->lead) {  // world rank 0 alone scored them
        } else if (t->classify)
            snprintf(metrics, sizeof metrics, "best epoch %lld: top-1 %.3f, top-5 %.3f", (long long)best_epoch,
                     classify_metrics_top1(&val.classify), classify_metrics_top5(&val.classify));
        else
            snprintf(metrics, sizeof metrics, "best epoch %lld: P %.3f, R %.3f, mAP50 %.3f, mAP50-95 %.3f",
                     (long long)best_epoch, val.detect->p, val.detect->r, val.detect->map50, val.detect->map50_95);
    }
    fprintf(t->out, "done: %lld epochs, %lld optimizer steps in %.1f s; %s\n", (long long)t->at.epoch,
            (long long)t->at.optimizer_steps, seconds, metrics);
    trainer_print_run_dir(t);
    return true;
}

static bool trainer_loop(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    const TrainConfig *tc = &cfg->train;
    double run_start = clock_monotonic_s();
    OptimHyper hyper = optim_schedule_at(&t->schedule, t->at.iteration, t->at.epoch).hyper;
    bool stop = false;
    trainer_keep_buffers(t);
    t->step_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->step_times);
    t->compute_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->compute_times);
    t->program_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->program_times);
    t->optimizer_times = yp_malloc((size_t)(t->batches_per_epoch * tc->epochs + 1) * sizeof *t->optimizer_times);
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
        double epoch_start = clock_monotonic_s();
        int64_t images = 0;
        while (!stop && t->at.batch < t->batches_per_epoch) {
            double batch_start = clock_monotonic_s();
            int64_t instances = 0;
            double data_wait_s = 0, program_s = 0, optimizer_s = 0;
            if (!trainer_batch(t, epoch, &sums, &hyper, &instances, &data_wait_s, &program_s, &optimizer_s, err)) {
                progress_end_line(&t->progress_line);
                return false;
            }
            double batch_s = clock_monotonic_s() - batch_start;
            t->step_times[t->n_step_times] = batch_s;
            t->program_times[t->n_step_times] = program_s;
            t->optimizer_times[t->n_step_times] = optimizer_s;
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
                               .imgsz = side, .images_per_s = (double)images / (clock_monotonic_s() - epoch_start),
                               .lr = hyper.lr[OPTIM_GROUP_WEIGHT],
                               .skipped = t->at.loss_scale.skipped - skipped_before};
            progress_step(&t->progress_line, &ps);
        }
        progress_end_line(&t->progress_line);
        int64_t skipped = t->at.loss_scale.skipped - skipped_before;
        if (skipped && trainer_scales_loss(cfg))
            fprintf(t->out, "fp16: %lld of %lld optimizer steps skipped (gradients overflowed); loss scale now %g\n",
                    (long long)skipped, (long long)(t->at.optimizer_steps - steps_before), t->at.loss_scale.scale);
        else if (skipped)
            fprintf(t->out, "%s: %lld of %lld optimizer steps skipped (the gradient norm or the loss was not finite); "
                            "parameters, EMA and optimizer state kept\n",
                    config_precision_names[cfg->device.precision], (long long)skipped,
                    (long long)(t->at.optimizer_steps - steps_before));
        double images_per_s = (double)images / (clock_monotonic_s() - epoch_start);
        if (stop && t->at.batch < t->batches_per_epoch) {
            fprintf(t->out, "stopping after %lld optimizer steps (train.max_steps)\n", (long long)t->at.optimizer_steps);
            trainer_gather_replicas(t);
            return trainer_save(t, "last", err) && trainer_finish(t, run_start, err);
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
            char label[64];
            snprintf(label, sizeof label, "epoch %lld/%lld", (long long)t->at.epoch, (long long)tc->epochs);
            trainer_print_validation(t, label, &val);
        }
        trainer_write_results_row(t, epoch, clock_monotonic_s() - run_start, &sums, &val, &hyper, images_per_s, skipped);
        trainer_curves_after_validation(t, &val);
        bool best = val.loss.n && val.fitness > t->at.best_fitness;
        if (best) t->at.best_fitness = val.fitness;
        trainer_gather_replicas(t);
        if (!trainer_save(t, "last", err) || (best && !trainer_save(t, "best", err))) return false;
        if (stop) fprintf(t->out, "stopping after %lld optimizer steps (train.max_steps)\n", (long long)t->at.optimizer_steps);
    }
    return trainer_finish(t, run_start, err);
}

// Errors every rank meets alike (bad data, a model that does not fit) are reported by world rank 0
// alone; a rank's own failure keeps its message.
static void trainer_quiet_shared_error(const Trainer *t, Error *err, bool shared) {
    if (!t->lead && shared) err->message[0] = '\0';
}

// Until issue 18 runs the one-to-one branches and their loss, training an end-to-end head would
// leave them untouched: refused before any data or memory, on every rank alike (the lead says it).
// A model file that does not load is left to trainer_setup, which reports it in its usual order.
static bool trainer_check_trainable(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    ModelSpec *spec = NULL;
    Error load_err = {0};
    // nc does not matter here; 1 keeps a file that leaves it to the dataset loadable.
    if (!model_spec_load(cfg->model, &(ModelOptions){.scale = cfg->scale, .nc = 1}, &spec, &load_err)) return true;
    int row = model_spec_end2end_row(spec), last = spec->n_rows - 1;
    bool ok = row < 0 || model_spec_error_at(spec, spec->rows[row].module_node, err,
                                             "end-to-end heads (end2end: True / v10Detect) cannot be trained yet; "
                                             "info, plan and profile work");
    // The detection loss has DFL only; reg_max 1 boxes need the L1 distance loss (issue 18).
    if (ok && spec->reg_max < 2 && layer_kind_find(spec->rows[last].module) == LAYER_KIND_DETECT)
        ok = model_spec_error_at(spec, spec->rows[last].module_node, err,
                                 "Detect with reg_max 1 (no DFL) cannot be trained yet: its box loss is not "
                                 "implemented; info, plan and profile work");
    model_spec_destroy(spec);
    if (!ok && opt->transport->topo.world_rank > 0) err->message[0] = '\0';
    return ok;
}

bool trainer_run(const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err) {
    if (!trainer_check_trainable(cfg, opt, err)) return false;
    Trainer t;
    bool ok = trainer_setup(&t, cfg, opt, err);
    if (ok) trainer_build_optimizer(&t);
    ok = ok && trainer_read_nan_hook(&t, err) && (opt->resume ? trainer_resume(&t, err) : trainer_pick_run_dir(&t, err));
    bool shared = !ok;
    if (ok && !opt->resume) ok = trainer_write_config(&t, err);
    if (ok && !opt->resume) trainer_plot_labels(&t);
    ok = ok && trainer_loop(&t, err);
    trainer_curves_finish(&t);
    if (!ok && !shared) shared = err->code == ERROR_CODE_PEER_FAILED || trainer_diverged(&t);
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
    if (ok) {
        char label[PATH_MAX + 64];
        // A checkpoint at an epoch's end has done at.epoch epochs; one from a stop is inside epoch at.epoch + 1.
        if (t.at.batch)
            snprintf(label, sizeof label, "%s (epoch %lld/%lld, batch %lld)", weights_dir, (long long)t.at.epoch + 1,
                     (long long)cfg->train.epochs, (long long)t.at.batch);
        else
            snprintf(label, sizeof label, "%s (epoch %lld/%lld)", weights_dir, (long long)t.at.epoch,
                     (long long)cfg->train.epochs);
        trainer_print_validation(&t, label, &val);
    }
    trainer_quiet_shared_error(&t, err, true);
    trainer_destroy(&t);
    return ok;
}
