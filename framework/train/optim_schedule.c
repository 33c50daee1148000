#include "framework/train/optim_schedule.h"

#include <math.h>

#include "framework/core/error.h"

int64_t optim_schedule_warmup_iters(double warmup_epochs, int64_t epochs, int64_t batches_per_epoch) {
    double last = epochs > 1 ? (double)(epochs - 1) : 0.0;
    double w = warmup_epochs < last ? warmup_epochs : last;
    return w > 0 ? (int64_t)nearbyint(w * (double)batches_per_epoch) : 0;  // half to even, as Python's round
}

double optim_schedule_lr_factor(const OptimSchedule *s, int64_t epoch) {
    YP_CHECK(s->epochs > 0);
    double x = (double)epoch, e = (double)s->epochs;
    if (s->cos_lr) {
        double ramp = (1 - cos(x * M_PI / e)) / 2;
        return (ramp > 0 ? ramp : 0) * (s->lrf - 1.0) + 1.0;  // one_cycle(1, lrf, epochs)
    }
    double left = 1 - x / e;
    return (left > 0 ? left : 0) * (1.0 - s->lrf) + s->lrf;
}

// np.interp(x, [0, nw], [y0, y1]) for 0 <= x <= nw, with numpy's arithmetic: the end points exactly,
// slope · x + y0 between them.
static double interp(int64_t x, int64_t nw, double y0, double y1) {
    if (x == nw) return y1;
    if (x == 0) return y0;
    double slope = (y1 - y0) / (double)nw;
    return slope * (double)x + y0;
}

OptimIteration optim_schedule_at(const OptimSchedule *s, int64_t ni, int64_t epoch) {
    YP_CHECK(ni >= 0 && s->accumulate >= 1);
    const int64_t nw = s->warmup_iters;
    const double target = s->lr0 * optim_schedule_lr_factor(s, epoch);  // LambdaLR: initial_lr · lf(epoch)
    OptimIteration it = {.accumulate = s->accumulate};
    for (int g = 0; g < OPTIM_GROUP_COUNT; g++) it.hyper.lr[g] = target;
    it.hyper.momentum = s->kind == OPTIM_SGD && nw > 0 ? s->momentum : s->initial_momentum;
    if (nw > 0 && ni <= nw) {
        int64_t acc = (int64_t)nearbyint(interp(ni, nw, 1.0, (double)s->accumulate));
        it.accumulate = acc > 1 ? acc : 1;
        for (int g = 0; g < OPTIM_GROUP_COUNT; g++)
            it.hyper.lr[g] = interp(ni, nw, g == OPTIM_GROUP_BIAS ? s->warmup_bias_lr : 0.0, target);
        if (s->kind == OPTIM_SGD) it.hyper.momentum = interp(ni, nw, s->warmup_momentum, s->momentum);
    }
    return it;
}
