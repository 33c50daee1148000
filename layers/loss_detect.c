// The detection loss as the layers see it: its configuration from a graph (layers/loss.h). The loss
// itself is the backend's (kernels/backend.h detect_loss_* slots).
#include "layers/loss.h"

DetectLossConfig detect_loss_config_for_graph(const Graph *g, int64_t side) {
    DetectLossConfig lc = detect_loss_config_default(g->spec->nc, g->reg_max);
    lc.n_levels = g->n_strides;
    for (int i = 0; i < lc.n_levels; i++)
        lc.levels[i] = (DetectLossLevel){.h = side / g->strides[i], .w = side / g->strides[i], .stride = g->strides[i]};
    return lc;
}
