#include "framework/eval/scale_boxes.h"

#include <math.h>

static float clampf(float v, float hi) { return v < 0 ? 0 : v > hi ? hi : v; }

void scale_boxes_to_original(int in_w, int in_h, int orig_w, int orig_h, float *boxes, int64_t n) {
    double gain = fmin((double)in_h / orig_h, (double)in_w / orig_w);
    // Python's round: to nearest, ties to even (nearbyint in the default rounding mode).
    double new_h = fmax(nearbyint(orig_h * gain), 1), new_w = fmax(nearbyint(orig_w * gain), 1);
    float gain_x = (float)(new_w / orig_w), gain_y = (float)(new_h / orig_h);
    float pad_x = (float)nearbyint((in_w - new_w) / 2 - 0.1), pad_y = (float)nearbyint((in_h - new_h) / 2 - 0.1);
    for (int64_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        b[0] = clampf((b[0] - pad_x) / gain_x, (float)orig_w);
        b[1] = clampf((b[1] - pad_y) / gain_y, (float)orig_h);
        b[2] = clampf((b[2] - pad_x) / gain_x, (float)orig_w);
        b[3] = clampf((b[3] - pad_y) / gain_y, (float)orig_h);
    }
}
