// Reading a row's constructor arguments the way Python would bind them: positional, with the
// module's defaults, each checked for type and range with the position of the offending value.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "framework/core/error.h"
#include "layers/builder.h"
#include "layers/layer.h"

// Fails unless the row has between min and max arguments. `signature` is the YAML-visible
// parameter list, e.g. "[c2, k=1, s=1, p=None, g=1, d=1, act=True]".
bool module_args_count(const Layer *layer, const ParseContext *ctx, int min, int max, const char *signature,
                       Error *err);

enum { MODULE_ARG_INT_MAX = 1 << 20 };

// Argument k as an integer in [min, MODULE_ARG_INT_MAX], or `fallback` when the row has fewer arguments.
bool module_arg_int(const Layer *layer, const ParseContext *ctx, int k, const char *name, int64_t fallback,
                    int64_t min, int64_t *out, Error *err);
// Like module_arg_int, but None (or absence) gives -1.
bool module_arg_int_or_none(const Layer *layer, const ParseContext *ctx, int k, const char *name, int64_t min,
                            int64_t *out, Error *err);
// Argument k (which the row has) as a list of min_len to max_len integers, each in
// [min, MODULE_ARG_INT_MAX], into out[0..*n_out); max_len is at most MODEL_MAX_LIST.
bool module_arg_int_list(const Layer *layer, const ParseContext *ctx, int k, const char *name, int min_len, int max_len,
                         int64_t min, int64_t *out, int *n_out, Error *err);
bool module_arg_bool(const Layer *layer, const ParseContext *ctx, int k, const char *name, bool fallback, bool *out,
                     Error *err);
bool module_arg_number(const Layer *layer, const ParseContext *ctx, int k, const char *name, double fallback,
                       double *out, Error *err);

// Ultralytics' output channels for a module that scales by width: ceil(min(c2, max_channels) * width / 8) * 8.
int64_t module_scale_channels(const ModelSpec *spec, int64_t c2);

// The hidden channels int(c2 * e) of C2f and C3 into *out. Fails, at the row's arguments, unless
// they are at least 1, divisible by g and at most 2^30 (an `e` such as 1e300 must not reach the
// conversion to an integer).
bool module_hidden_channels(const Layer *layer, const ParseContext *ctx, int64_t c2, double e, int64_t g,
                            int64_t *out, Error *err);

// Fails, at the row's kernel argument, when a k x k kernel with `dilation` does not fit an input of
// `in`'s size padded by `pad` on each side (the convolution would have no output).
bool module_check_kernel_fits(const Layer *layer, Builder *b, Shape in, int64_t k, int64_t pad, int64_t dilation,
                              Error *err);

// Fails when the row's repeats is not 1 (for modules Ultralytics does not stack).
bool module_require_single(const Layer *layer, const ParseContext *ctx, Error *err);
// Fails unless the layer has exactly `n` inputs.
bool module_require_inputs(const Layer *layer, const ParseContext *ctx, int n, Error *err);

// Sets layer->args_text as Ultralytics prints a module's constructor arguments: the resolved
// leading values (e.g. c1, c2), then the row's arguments from index `first_written` on.
void module_set_args_text(Layer *layer, int n_values, const int64_t *values, int first_written);
