// Learning-rate, momentum and accumulation schedule, as Ultralytics 8.4's trainer sets them
// (engine/trainer.py: _setup_scheduler, _get_warmup_iterations, the warm-up block of _do_train).
//
// How Ultralytics counts: an epoch has nb batches; batch i of epoch e is iteration ni = i + nb·e,
// counted from 0 over the whole run. Each iteration runs forward and backward and adds to the
// gradients; the optimizer steps (clip, step, zero the gradients, EMA update) at iteration ni
// when ni − last_step_ni >= accumulate (last_step_ni starts at −1), where accumulate is this
// iteration's value below. At the start of epoch e the scheduler sets every group's lr to
// lr0 · lf(e); during warm-up (ni <= nw) each iteration overrides lr, momentum and accumulate.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/train/optim.h"

typedef struct OptimSchedule {
    OptimKind kind;
    double lr0;              // every group's initial lr
    double lrf;              // final lr as a fraction of lr0
    bool cos_lr;             // cosine instead of linear decay
    int64_t epochs;
    int64_t warmup_iters;    // nw: optim_schedule_warmup_iters
    double warmup_bias_lr;   // the bias group's lr at ni = 0
    double warmup_momentum;  // SGD's momentum at ni = 0
    double momentum;         // the trainer's momentum setting: where the SGD warm-up ends
    double initial_momentum; // the optimizer's own (equal to momentum unless `auto` chose it):
                             // SGD's momentum when there is no warm-up, AdamW's beta1 always
    int64_t accumulate;      // nominal accumulation, optim_accumulate capped at nb · epochs
} OptimSchedule;

// nw = round(min(warmup_epochs, max(epochs − 1, 0)) · nb), 0 when that minimum is not positive:
// warm-up never takes the last epoch. Rounds half to even as Python does.
int64_t optim_schedule_warmup_iters(double warmup_epochs, int64_t epochs, int64_t batches_per_epoch);

// lf(epoch): linear (1 − epoch/epochs clamped at 0)·(1 − lrf) + lrf, or cosine
// one_cycle(1, lrf, epochs) = max((1 − cos(epoch·π/epochs))/2, 0)·(lrf − 1) + 1.
double optim_schedule_lr_factor(const OptimSchedule *s, int64_t epoch);

// What iteration ni of epoch `epoch` uses.
typedef struct OptimIteration {
    OptimHyper hyper;    // lr per group and momentum for a step taken at this iteration
    int64_t accumulate;  // step when ni − last_step_ni >= accumulate
} OptimIteration;

// During warm-up (0 < nw, ni <= nw), np.interp(ni, [0, nw], ·): the bias group's lr from
// warmup_bias_lr, the others' from 0, to lr0·lf(epoch); SGD's momentum from warmup_momentum to
// momentum; accumulate max(1, round(interp(ni, [0, nw], [1, accumulate]))). After it: lr0·lf(epoch),
// momentum (initial_momentum when nw = 0), nominal accumulate. AdamW's beta1 is never warmed up:
// Ultralytics only touches groups that have a "momentum" key, and Adam's groups have "betas".
OptimIteration optim_schedule_at(const OptimSchedule *s, int64_t ni, int64_t epoch);
