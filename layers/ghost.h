// GhostNet blocks (Ultralytics' GhostConv and GhostBottleneck) and DWConv, as ModuleNet nodes.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/module_net.h"

// GhostConv(c1, c2, k, s, g, act) at `name` (NULL: the current prefix): cv1 = Conv(c1, c2 // 2, k,
// s, g, act), cv2 = Conv(c2 // 2, c2 // 2, 5, 1, g = c2 // 2, act), output cat(cv1, cv2(cv1)) with
// 2 * (c2 // 2) channels. spec.c_out is c2; k, stride, groups and act are read.
NetValue net_ghostconv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec);
// DWConv(c1, c2, k, s, d, act): a Conv with groups gcd(c1, c2). spec.groups is not read.
NetValue net_dwconv(ModuleNet *net, Builder *b, const char *name, NetValue x, ConvBlockSpec spec);
// GhostBottleneck(c1, c2, k, s) at `name`: conv = (GhostConv(c1, c2 // 2), DWConv(k, s, act=False)
// when s == 2 else nn.Identity, GhostConv(c2 // 2, c2, act=False)) plus shortcut = (DWConv(c1, c1,
// k, s, act=False), Conv(c1, c2, act=False)) when s == 2 else nn.Identity (then c1 == c2).
NetValue net_ghost_bottleneck(ModuleNet *net, Builder *b, const char *name, NetValue x, int64_t c2, int64_t k,
                              int64_t s);
