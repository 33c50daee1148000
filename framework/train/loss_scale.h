// Dynamic loss scaling for fp16 training, as torch.amp.GradScaler does it (Ultralytics trains with
// AMP and its defaults): the loss gradient is multiplied by the scale so that small gradients do not
// flush to zero in float16 activations; an optimizer step whose gradients overflowed (a non-finite
// norm) is skipped and the scale halved; after `growth_interval` good steps in a row it doubles.
// Powers of two keep scaling and unscaling exact. In every precision (scaling on or off) a step whose
// gradients are not finite is skipped and counted here, over the run and in a row, so that the
// trainer can report the skips and stop a run that keeps producing them (train.max_skipped_steps).
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum { LOSS_SCALE_GROWTH_INTERVAL = 2000 };  // GradScaler's growth_interval
#define LOSS_SCALE_INIT 65536.0              // GradScaler's init_scale, 2^16

typedef struct LossScale {
    double scale;        // 1 when loss scaling is off
    int64_t good_steps;  // finite steps since the scale last changed (GradScaler's growth tracker)
    int64_t skipped;     // steps skipped over the run (non-finite gradients, in every precision)
    int64_t in_a_row;    // steps skipped since the last step taken
} LossScale;

// The starting state: LOSS_SCALE_INIT when enabled (fp16), else a fixed 1.
LossScale loss_scale_make(bool enabled);

// After the gradients of a step are known: returns whether the optimizer may step (the gradients
// are finite), counts a skipped step, and with scaling on updates the scale (backoff 0.5 on
// overflow, growth 2 after LOSS_SCALE_GROWTH_INTERVAL finite steps). With scaling off the scale stays 1.
bool loss_scale_update(LossScale *ls, bool enabled, bool grads_finite);
