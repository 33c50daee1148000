// Multi-head self-attention blocks for ModuleNet modules: Ultralytics' Attention (C2PSA, PSA,
// YOLO26's C3k2 attn=True) and AAttn (YOLO12's A2C2f area attention) are one structure:
//
//   qkv  = Conv(dim, heads·(2·key_dim + head_dim), 1, act=False)    head h's q, k, v channels lie in
//          [h·stride, (h+1)·stride), stride = 2·key_dim + head_dim, in that order
//   y    = softmax(scale · qᵀk) applied to v, per head (and per area: runs of H·W / areas positions)
//   out  = proj(y + pe(v)),  pe = Conv(c, c, pe_k, 1, pe_k / 2, g=c, act=False), c = heads·head_dim,
//          proj = Conv(c, dim, 1, act=False)
//
// with state-dict names qkv, proj, pe (Ultralytics' declaration order). thop counts the two matmuls
// (its functional rule: output elements times the contracted size) but not the softmax, which
// Layer.uncounted_ops carries for the cost model.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "layers/module_net.h"

typedef struct AttentionSpec {
    int64_t heads, key_dim, head_dim;
    int64_t areas;  // 1: every position attends to every other
    int64_t pe_k;   // the positional depthwise Conv's kernel
    float scale;    // the scores' factor, key_dim^-0.5
} AttentionSpec;

// Ultralytics' Attention(dim, num_heads, attn_ratio): head_dim = dim // heads, key_dim =
// int(head_dim · attn_ratio), pe 3x3. Needs attention_spec_valid (dim divisible by heads, key_dim >= 1).
AttentionSpec attention_spec_mhsa(int64_t dim, int64_t heads, double attn_ratio);
// Ultralytics' AAttn(dim, num_heads, area): key_dim = head_dim = dim // heads, pe 7x7.
AttentionSpec attention_spec_area(int64_t dim, int64_t heads, int64_t area);

// Fails, at the row's arguments, unless a block of `dim` channels can take `spec` the way PyTorch's
// views can (heads·head_dim == dim for Attention, every size at least 1). For parse functions.
bool attention_spec_check(const Layer *layer, const ParseContext *ctx, int64_t dim, const AttentionSpec *spec,
                          Error *err);
// Fails, at the row, when the positions of `in` do not split into spec->areas runs (AAttn's reshape).
bool attention_check_areas(const Layer *layer, Builder *b, Shape in, const AttentionSpec *spec, Error *err);

// Attention (or AAttn) at `name` (NULL: the current prefix) on x (N, dim, H, W) -> (N, dim, H, W).
NetValue net_attention(ModuleNet *net, Builder *b, const char *name, NetValue x, const AttentionSpec *spec);

// The feed-forward pair Sequential(Conv(c, hidden, 1), Conv(hidden, c, 1, act=False)) at `name`
// ("ffn" in PSABlock and PSA, "mlp" in ABlock): "<name>.0", "<name>.1".
NetValue net_attention_ffn(ModuleNet *net, Builder *b, const char *name, NetValue x, int64_t hidden);

// Ultralytics' PSABlock(c, attn_ratio, num_heads, shortcut), c from x:
//   x = x + attn(x) if shortcut else attn(x);  x = x + ffn(x) if shortcut else ffn(x),  ffn hidden 2c.
typedef struct PsaBlockSpec {
    int64_t heads;
    double attn_ratio;
    bool shortcut;
} PsaBlockSpec;
// PSABlock's heads inside C2PSA, PSA and C3k2(attn=True): max(c // 64, 1).
static inline int64_t attention_psa_heads(int64_t c) { return c / 64 > 1 ? c / 64 : 1; }
NetValue net_psa_block(ModuleNet *net, Builder *b, const char *name, NetValue x, const PsaBlockSpec *spec);
