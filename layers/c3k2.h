// Blocks of YOLO11's C3k2 that other modules reuse (C3k in C3k2 and A2C2f).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/module_net.h"

// Ultralytics' C3k(c1, c2, n, shortcut, g, e, k): C3 with n Bottlenecks of kernels (k, k), e = 1.0.
typedef struct C3kSpec C3kSpec;
struct C3kSpec {
    int64_t c_out, n, groups, k;
    bool shortcut;
    double expansion;  // C3's e: hidden channels int(c_out * e)
    // The inner block on x (hidden channels in and out) at the current prefix ("m.<i>"); NULL:
    // Bottleneck(c_, c_, shortcut, groups, (k, k), e=1.0). C3Ghost's GhostBottleneck.
    NetValue (*block)(ModuleNet *net, Builder *b, NetValue x, const C3kSpec *spec);
};

// Declares C3k (or C3 with spec->block) at `name` (NULL: the current prefix) on x.
NetValue net_c3k(ModuleNet *net, Builder *b, const char *name, NetValue x, const C3kSpec *spec);

