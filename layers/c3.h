// C3's constructor rules, shared by the modules that take C3's arguments (C2, C3Ghost).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/layer.h"

typedef struct C3Config {
    int64_t c1, c2, n, g;
    bool shortcut;
    double e;
} C3Config;

// Reads [c2, shortcut=True, g=1, e=0.5] with n = the row's repeats into a C3Config (layer->config),
// c2 scaled by width and the hidden channels int(c2 * e) checked.
bool c3_parse(Layer *layer, const ParseContext *ctx, Error *err);
