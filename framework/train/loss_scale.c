#include "framework/train/loss_scale.h"

LossScale loss_scale_make(bool enabled) { return (LossScale){.scale = enabled ? LOSS_SCALE_INIT : 1.0}; }

bool loss_scale_update(LossScale *ls, bool enabled, bool grads_finite) {
    if (!grads_finite) {
        ls->skipped++;
        ls->in_a_row++;
        if (enabled) {
            ls->scale *= 0.5;
            ls->good_steps = 0;
        }
        return false;
    }
    ls->in_a_row = 0;
    if (enabled && ++ls->good_steps == LOSS_SCALE_GROWTH_INTERVAL) {
        ls->scale *= 2.0;
        ls->good_steps = 0;
    }
    return true;
}
