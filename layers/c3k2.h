// Blocks of YOLO11's C3k2 that other modules reuse (C3k in C3k2 and A2C2f).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/module_net.h"

typedef struct C3kSpec C3kSpec;
// One block of C3's m at the current prefix ("m.<i>"), c_out(spec) * e channels in and out.
typedef NetValue (*C3kInnerFn)(ModuleNet *net, Builder *b, NetValue x, const C3kSpec *spec);

// Ultralytics' C3k(c1, c2, n, shortcut, g, e, k): C3 with n Bottlenecks of kernels (k, k), e = 1.0;
// with `inner`, C3 with n of those blocks instead (YOLOv9's RepCSP: RepBottlenecks).
struct C3kSpec {
    int64_t c_out, n, groups, k;
    bool shortcut;
    double expansion;  // C3's e: hidden channels int(c_out * e)
    C3kInnerFn inner;  // NULL: Bottleneck(c, c, shortcut, groups, (k, k), e=1.0)
};

// Declares C3k at `name` (NULL: the current prefix) on x.
NetValue net_c3k(ModuleNet *net, Builder *b, const char *name, NetValue x, const C3kSpec *spec);

