// The trainer's private parts, shared by its files (framework/train/trainer*.c); trainer.h is the
// public interface. One Trainer per trainer_run or trainer_validate_checkpoint call, owned by it:
//   trainer_setup.c    data, model, loaders, EMA and optimizer; trainer_destroy
//   trainer_device.c   device.backend and parallel.transport: the backend and the executor's transport
//   trainer.c          the loop: one batch, the optimizer step, the epoch, the entry points
//   trainer_val.c      validation through the pipeline and the records its last stages send rank 0
//   trainer_run_dir.c  the run directory: its name, config.yaml, results.csv, weights/, --resume
//   trainer_measured.c the run's measured record, measured.json
//   trainer_plots.c    the run directory's pictures: labels.jpg, train_batch*.jpg, val_batch*.jpg
//   trainer_curves.c   curves.csv, confusion_matrix.csv and the plotting script that draws them
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "framework/config/config.h"
#include "framework/config/experiment_plan.h"
#include "framework/core/error.h"
#include "framework/core/path.h"
#include "framework/data/dataset.h"
#include "framework/data/loader.h"
#include "framework/eval/metrics.h"
#include "framework/eval/nms.h"
#include "framework/runtime/executor.h"
#include "framework/runtime/transport.h"
#include "framework/train/checkpoint.h"
#include "framework/train/ema.h"
#include "framework/train/optim.h"
#include "framework/train/optim_schedule.h"
#include "framework/train/progress.h"
#include "framework/train/trainer.h"
#include "kernels/backend.h"
#include "layers/model_spec.h"

// Per model chunk on this rank: its optimizer, its EMA, and host copies for swapping the EMA in.
typedef struct TrainerChunk {
    Optimizer *optimizer;
    ModelEma *ema;
    float *live_params, *live_buffers;  // the model's own weights while validation uses the EMA's
    float *ema_params, *ema_buffers;    // the EMA's weights in the graph's layout, to upload
    float *step_buffers;  // (buffer_elems) backend memory, owned: the running statistics as the current
                          // step's accumulation began, for a skipped step whose forward passes broke them
} TrainerChunk;

typedef struct TrainerCurves TrainerCurves;  // trainer_curves.c's state

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

    // Validation: detections on the last stage, metrics on world rank 0; made at the first validation
    // (val_ready), on every rank, and kept for the later ones.
    bool val_ready;
    DetectDecoder *decoder;
    Detections *detections;
    DetectMetrics *metrics;
    float *val_out;  // the head's outputs of one batch; NULL on ranks that do not load the targets

    OptimSchedule schedule;
    TrainProgress at;
    bool loss_finite;  // every batch's loss since the last optimizer step was finite (a NaN loss skips the step)
    int64_t nan_grads[2];  // YOLOPIPE_NAN_GRADS: first and last optimizer step (from 1) given a NaN gradient; 0: none
    char run_dir[PATH_MAX];
    int64_t batches_per_epoch;
    int *step_sides;  // (batches_per_epoch) input side of each batch of the current epoch
    int n_step_times;
    double *step_times;     // seconds of each training batch of the run (rank 0), for the summary
    double *compute_times;  // the same without the wait for the batch's data
    double *program_times;  // the executor's program alone (no loss all-reduce, no optimizer step)
    double *optimizer_times;  // the optimizer step alone (gradient norm, clipping, update, EMA); 0 without one
    bool trace_written;     // <run_dir>/trace.json holds this run's recorded batch
    TrainerCurves *curves;  // world rank 0, made at the first use; owned
} Trainer;

typedef struct ValResult {
    ExecutorLoss loss;
    const DetectSummary *detect;  // detection; owned by the trainer's metrics
    ClassifyMetrics classify;
    double fitness;
} ValResult;

// The loss parts as they travel between ranks: summed over the world by an all-reduce of doubles,
// element by element, so the struct holds doubles only. trainer_loss_wire_write fills one and
// trainer_loss_wire_read takes it apart; nothing else reads the fields.
typedef struct TrainerLossWire {
    double box, cls, dfl, ce;
    double n;          // micro-batches (or validation batches) summed
    double instances;  // ground-truth boxes seen
} TrainerLossWire;
enum { TRAINER_LOSS_WIRE_DOUBLES = 6 };
_Static_assert(sizeof(TrainerLossWire) == TRAINER_LOSS_WIRE_DOUBLES * sizeof(double),
               "TrainerLossWire travels as doubles: no padding");

static inline TrainerLossWire trainer_loss_wire_write(const ExecutorLoss *loss) {
    return (TrainerLossWire){.box = loss->box, .cls = loss->cls, .dfl = loss->dfl, .ce = loss->ce, .n = loss->n,
                             .instances = loss->instances};
}

static inline ExecutorLoss trainer_loss_wire_read(const TrainerLossWire *wire) {
    return (ExecutorLoss){.box = wire->box, .cls = wire->cls, .dfl = wire->dfl, .ce = wire->ce, .n = wire->n,
                          .instances = wire->instances};
}

static inline bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ---- trainer.c ---------------------------------------------------------------------------------------

// A user error found on some ranks only (a stage file that cannot be written, ...): every rank
// learns that one failed, so none goes on alone. Returns whether all succeeded.
bool trainer_all_ranks_ok(Trainer *t, bool ok, Error *err);

// fp16 scales the loss (its activations underflow without it); bf16 has float32's range.
bool trainer_scales_loss(const ExperimentConfig *cfg);

// The median of values[1..n), n >= 2 (the first batch warms caches, threads and algorithm choices up).
double trainer_median_after_first(const double *values, int n);

// ---- trainer_setup.c ---------------------------------------------------------------------------------

// Fills *t from the experiment: data, backend, model, loaders and EMA (not the optimizer). On failure
// *t holds what was built so far; trainer_destroy frees it either way.
bool trainer_setup(Trainer *t, const ExperimentConfig *cfg, const TrainerOptions *opt, Error *err);
void trainer_build_optimizer(Trainer *t);
void trainer_destroy(Trainer *t);

// ---- trainer_device.c --------------------------------------------------------------------------------

// device.backend: sets t->be and, where NCCL carries the executor's tensors, t->be_tr.
bool trainer_open_backend(Trainer *t, Error *err);

// ---- trainer_val.c -----------------------------------------------------------------------------------

// Swaps the model's weights with the EMA's on every chunk (validation scores the EMA, as Ultralytics does).
void trainer_use_ema(Trainer *t, bool use);
// Validation through the pipeline; every rank returns the same fitness.
bool trainer_validate(Trainer *t, ValResult *res, Error *err);
// World rank 0 prints "<label> validation:" and the table.
void trainer_print_validation(Trainer *t, const char *label, const ValResult *res);

// ---- trainer_run_dir.c -------------------------------------------------------------------------------

bool trainer_pick_run_dir(Trainer *t, Error *err);
// World rank 0 prints what the run directory holds, one line: its files and weights/' checkpoints.
void trainer_print_run_dir(Trainer *t);
bool trainer_write_config(Trainer *t, Error *err);
bool trainer_resume(Trainer *t, Error *err);
void trainer_write_results_row(Trainer *t, int64_t epoch, double seconds, const ExecutorLoss *train,
                               const ValResult *val, const OptimHyper *hyper, double images_per_s,
                               int64_t skipped_steps);
bool trainer_save(Trainer *t, const char *which, Error *err);
// Loads checkpoint `dir` into every chunk: with `resume`, the optimizer state too, and the position
// must be a batch of this run; without, the weights, buffers and EMA only (validation).
bool trainer_load(Trainer *t, const char *dir, bool resume, Error *err);

// ---- trainer_measured.c ------------------------------------------------------------------------------

// Writes <run_dir>/measured.json at world rank 0 from every rank's figures (collective: every rank
// calls it once training has ended); every rank returns whether it was written.
bool trainer_write_measured(Trainer *t, Error *err);

// ---- trainer_plots.c ---------------------------------------------------------------------------------

// World rank 0 with output.plots; each does nothing elsewhere, and a picture it cannot write is a
// warning line. labels.jpg, once per new run (detection).
void trainer_plot_labels(Trainer *t);
// train_batch<i>.jpg for the run's iterations 0..2 (and the first three without mosaic), from the
// batch this rank's loader gave it.
void trainer_plot_train_batch(Trainer *t, const Batch *batch);
// Whether validation batch b is pictured (trainer_score then loads its images too).
bool trainer_plots_val_batch(const Trainer *t, int64_t b);
// val_batch<b>_labels.jpg and _pred.jpg: batch with images and targets (or labels), the detections
// in t->detections (detection) or class_scores (n, nc) logits (classification).
void trainer_plot_val_batch(Trainer *t, int64_t b, const Batch *batch, const float *class_scores);

// ---- trainer_curves.c --------------------------------------------------------------------------------

// Classification on world rank 0: the top-1 confusion matrix, reset, for trainer_score to fill (owned
// by the trainer); NULL elsewhere.
ConfusionMatrix *trainer_curves_classify_matrix(Trainer *t);
// After the validation's results.csv row, on world rank 0 with output.plots: writes curves.csv
// (detection) and confusion_matrix.csv, and starts yolopipe_plot.py run in the background (when the
// previous drawing still runs, this one waits for trainer_curves_finish). Any other rank: nothing.
void trainer_curves_after_validation(Trainer *t, const ValResult *val);
// The end of the run: waits for the drawing, and draws once more when a validation was left waiting.
void trainer_curves_finish(Trainer *t);
void trainer_curves_destroy(Trainer *t);
