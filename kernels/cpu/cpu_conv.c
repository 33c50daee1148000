// Convolutions on oneDNN's C API (dnnl.h), float32, plain NCHW activations and OIHW (GOIHW with
// groups) weights: the backend's layout, so no reorders.
//
// Every distinct ConvDesc gets one cache entry holding its three primitives (forward, backward data,
// backward weights) and their memory objects. Layers ask conv_workspace_bytes for each convolution
// when they are created; that is where the entry is made. A shape first seen inside a step (a
// smaller last batch, a multi-scale size: always at most the built size) gets its entry on first use,
// once, and must fit the workspace reserved for the built size.
//
// oneDNN's primitives overwrite their outputs; the slots' "+=" outputs and the bias are this file's:
//   forward          y = conv(x, w), then y += bias (channel_bias_forward)
//   backward data    tmp = conv_bwd_data(dy, w), then dx += tmp
//   backward filter  tmp = conv_bwd_weights(x, dy), then dw += tmp; dbias += Σ dy (channel_bias_backward)
// The bias stays out of the primitives because a ConvDesc does not say whether the layer has one.
//
// Workspace layout of one entry (the same for every pass, so conv_workspace_bytes is their maximum):
// [0, tmp) the float32 temporary (x's or w's size, whichever is larger), then oneDNN's scratchpad
// (dnnl_scratchpad_mode_user), the largest of the three primitives'.
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

#define DNNL_CHECK(expr)                                                                              \
    do {                                                                                              \
        dnnl_status_t dnnl_check_status_ = (expr);                                                    \
        if (dnnl_check_status_ != dnnl_success)                                                       \
            yp_fatal("%s:%d: %s failed: oneDNN status %d", __FILE__, __LINE__, #expr,                 \
                     (int)dnnl_check_status_);                                                        \
    } while (0)

// The passes of one convolution, indexing an entry's primitives.
typedef enum CpuConvPass {
    CPU_CONV_PASS_FORWARD,
    CPU_CONV_PASS_BACKWARD_DATA,
    CPU_CONV_PASS_BACKWARD_WEIGHTS,
    CPU_CONV_PASS_COUNT
} CpuConvPass;

// The memory objects an entry's primitives read and write; their data handles are set per call.
typedef enum CpuConvArg { CPU_CONV_ARG_X, CPU_CONV_ARG_W, CPU_CONV_ARG_Y, CPU_CONV_ARG_SCRATCH, CPU_CONV_ARG_COUNT } CpuConvArg;

typedef struct CpuConvEntry {
    ConvDesc desc;
    dnnl_primitive_t prim[CPU_CONV_PASS_COUNT];  // owned
    // x/dx, w/dw, y/dy share their descriptors across passes; one scratchpad memory per pass (the
    // primitives' scratchpad descriptors differ).
    dnnl_memory_t mem[CPU_CONV_ARG_SCRATCH];      // owned
    dnnl_memory_t scratch[CPU_CONV_PASS_COUNT];   // owned
    size_t tmp_bytes;        // the temporary at the start of the workspace, rounded to a cache line
    size_t workspace_bytes;  // tmp_bytes + the largest scratchpad
} CpuConvEntry;

struct CpuConvCache {
    dnnl_engine_t engine;  // owned; the CPU engine every primitive runs on
    dnnl_stream_t stream;  // owned; in-order, blocking on the CPU runtime
    CpuConvEntry *entries;  // owned; a model has a few hundred shapes at most, so a scan is cheap
    int count, capacity;
};

CpuConvCache *cpu_conv_cache_create(void) {
    CpuConvCache *cache = yp_calloc(1, sizeof *cache);
    DNNL_CHECK(dnnl_engine_create(&cache->engine, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&cache->stream, cache->engine, dnnl_stream_default_flags));
    return cache;
}

void cpu_conv_cache_destroy(CpuConvCache *cache) {
    if (!cache) return;
    for (int i = 0; i < cache->count; i++) {
        CpuConvEntry *e = &cache->entries[i];
        for (int p = 0; p < CPU_CONV_PASS_COUNT; p++) {
            dnnl_primitive_destroy(e->prim[p]);
            dnnl_memory_destroy(e->scratch[p]);
        }
        for (int a = 0; a < CPU_CONV_ARG_SCRATCH; a++) dnnl_memory_destroy(e->mem[a]);
    }
    free(cache->entries);
    dnnl_stream_destroy(cache->stream);
    dnnl_engine_destroy(cache->engine);
    free(cache);
}

static int64_t cpu_conv_out_size(int64_t in, int64_t k, const ConvDesc *d) {
    return (in + 2 * d->pad - d->dilation * (k - 1) - 1) / d->stride + 1;
}

static void cpu_conv_check(const ConvDesc *d) {
    YP_CHECK(d->n >= 0 && d->c_in > 0 && d->c_out > 0 && d->groups > 0);
    YP_CHECK(d->c_in % d->groups == 0 && d->c_out % d->groups == 0);
    YP_CHECK(d->kh > 0 && d->kw > 0 && d->stride > 0 && d->pad >= 0 && d->dilation > 0);
    YP_CHECK(d->h_out > 0 && d->h_out == cpu_conv_out_size(d->h_in, d->kh, d));
    YP_CHECK(d->w_out > 0 && d->w_out == cpu_conv_out_size(d->w_in, d->kw, d));
}

// ConvDesc is all int64_t, so memcmp compares exactly its fields.
static bool cpu_conv_desc_equal(const ConvDesc *a, const ConvDesc *b) { return !memcmp(a, b, sizeof *a); }

// The three memory descriptors of d in the backend's layout.
static void cpu_conv_memory_descs(const ConvDesc *d, dnnl_memory_desc_t *x, dnnl_memory_desc_t *w,
                                  dnnl_memory_desc_t *y) {
    const dnnl_dims_t x_dims = {d->n, d->c_in, d->h_in, d->w_in};
    const dnnl_dims_t y_dims = {d->n, d->c_out, d->h_out, d->w_out};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(x, 4, x_dims, dnnl_f32, dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(y, 4, y_dims, dnnl_f32, dnnl_nchw));
    if (d->groups == 1) {
        const dnnl_dims_t w_dims = {d->c_out, d->c_in, d->kh, d->kw};
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(w, 4, w_dims, dnnl_f32, dnnl_oihw));
    } else {
        // (G, C_out / G, C_in / G, KH, KW): the same bytes as (C_out, C_in / G, KH, KW).
        const dnnl_dims_t w_dims = {d->groups, d->c_out / d->groups, d->c_in / d->groups, d->kh, d->kw};
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(w, 5, w_dims, dnnl_f32, dnnl_goihw));
    }
}

// Makes the primitive of one pass from its operation descriptor (hint: the forward primitive
// descriptor that the backward passes need), its scratchpad memory, and returns the scratchpad's
// size.
static size_t cpu_conv_make_pass(CpuConvCache *cache, CpuConvEntry *e, CpuConvPass pass,
                                 const dnnl_convolution_desc_t *op, const_dnnl_primitive_attr_t attr,
                                 const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd_out) {
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, op, attr, cache->engine, hint));
    DNNL_CHECK(dnnl_primitive_create(&e->prim[pass], pd));
    const dnnl_memory_desc_t *scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    YP_CHECK(scratch_md);
    DNNL_CHECK(dnnl_memory_create(&e->scratch[pass], scratch_md, cache->engine, DNNL_MEMORY_NONE));
    const size_t n_bytes = dnnl_memory_desc_get_size(scratch_md);
    if (pd_out) *pd_out = pd;
    else DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    return n_bytes;
}

// Fills e's primitives and memory objects for d (n > 0).
static void cpu_conv_entry_make(CpuConvCache *cache, CpuConvEntry *e, const ConvDesc *d) {
    memset(e, 0, sizeof *e);
    e->desc = *d;
    dnnl_memory_desc_t x_md, w_md, y_md;
    cpu_conv_memory_descs(d, &x_md, &w_md, &y_md);
    const dnnl_memory_desc_t *mds[CPU_CONV_ARG_SCRATCH] = {&x_md, &w_md, &y_md};
    for (int a = 0; a < CPU_CONV_ARG_SCRATCH; a++)
        DNNL_CHECK(dnnl_memory_create(&e->mem[a], mds[a], cache->engine, DNNL_MEMORY_NONE));

    // oneDNN counts dilation from 0 (PyTorch's 1 is its 0); padding is symmetric.
    const dnnl_dims_t strides = {d->stride, d->stride}, dilates = {d->dilation - 1, d->dilation - 1};
    const dnnl_dims_t pad = {d->pad, d->pad};
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    dnnl_convolution_desc_t fwd, bwd_data, bwd_weights;
    DNNL_CHECK(dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct,
                                                          &x_md, &w_md, NULL, &y_md, strides, dilates, pad, pad));
    DNNL_CHECK(dnnl_dilated_convolution_backward_data_desc_init(&bwd_data, dnnl_convolution_direct, &x_md, &w_md,
                                                                &y_md, strides, dilates, pad, pad));
    DNNL_CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&bwd_weights, dnnl_convolution_direct, &x_md,
                                                                   &w_md, NULL, &y_md, strides, dilates, pad, pad));
    dnnl_primitive_desc_t fwd_pd;
    size_t scratch = cpu_conv_make_pass(cache, e, CPU_CONV_PASS_FORWARD, &fwd, attr, NULL, &fwd_pd);
    size_t data = cpu_conv_make_pass(cache, e, CPU_CONV_PASS_BACKWARD_DATA, &bwd_data, attr, fwd_pd, NULL);
    size_t weights = cpu_conv_make_pass(cache, e, CPU_CONV_PASS_BACKWARD_WEIGHTS, &bwd_weights, attr, fwd_pd, NULL);
    DNNL_CHECK(dnnl_primitive_desc_destroy(fwd_pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    if (data > scratch) scratch = data;
    if (weights > scratch) scratch = weights;

    const size_t x_elems = conv_desc_x_elems(d), w_elems = conv_desc_w_elems(d);
    const size_t tmp_elems = x_elems > w_elems ? x_elems : w_elems;
    // The scratchpad starts on a cache line, as cpu_alloc's buffers do.
    e->tmp_bytes = (tmp_elems * sizeof(float) + 63) / 64 * 64;
    e->workspace_bytes = e->tmp_bytes + scratch;
}

// The cache entry of d (n > 0), made on first use.
static CpuConvEntry *cpu_conv_entry(Backend *be, const ConvDesc *d) {
    CpuContext *ctx = be->ctx;
    CpuConvCache *cache = ctx->conv;
    cpu_conv_check(d);
    for (int i = 0; i < cache->count; i++)
        if (cpu_conv_desc_equal(&cache->entries[i].desc, d)) return &cache->entries[i];
    if (cache->count == cache->capacity) {
        cache->capacity = cache->capacity ? 2 * cache->capacity : 64;
        cache->entries = yp_realloc(cache->entries, (size_t)cache->capacity * sizeof(CpuConvEntry));
    }
    CpuConvEntry *e = &cache->entries[cache->count++];
    cpu_conv_entry_make(cache, e, d);
    return e;
}

size_t cpu_conv_workspace_bytes(Backend *be, const ConvDesc *d) {
    cpu_conv_check(d);
    return d->n ? cpu_conv_entry(be, d)->workspace_bytes : 0;
}

// Runs one pass of e with the three operands (x or dx, w or dw, y or dy) at the given addresses and
// the scratchpad from the workspace.
static void cpu_conv_execute(Backend *be, CpuConvEntry *e, CpuConvPass pass, const void *x, const void *w,
                             const void *y) {
    CpuContext *ctx = be->ctx;
    char *workspace = (char *)cpu_workspace_get(be, e->workspace_bytes);
    void *handles[CPU_CONV_ARG_SCRATCH] = {(void *)x, (void *)w, (void *)y};
    for (int a = 0; a < CPU_CONV_ARG_SCRATCH; a++) DNNL_CHECK(dnnl_memory_set_data_handle(e->mem[a], handles[a]));
    DNNL_CHECK(dnnl_memory_set_data_handle(e->scratch[pass], workspace + e->tmp_bytes));
    static const int arg_ids[CPU_CONV_PASS_COUNT][CPU_CONV_ARG_SCRATCH] = {
        [CPU_CONV_PASS_FORWARD] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        [CPU_CONV_PASS_BACKWARD_DATA] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST},
        [CPU_CONV_PASS_BACKWARD_WEIGHTS] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST},
    };
    dnnl_exec_arg_t args[CPU_CONV_ARG_COUNT];
    for (int a = 0; a < CPU_CONV_ARG_SCRATCH; a++) args[a] = (dnnl_exec_arg_t){arg_ids[pass][a], e->mem[a]};
    args[CPU_CONV_ARG_SCRATCH] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch[pass]};
    DNNL_CHECK(dnnl_primitive_execute(e->prim[pass], ctx->conv->stream, CPU_CONV_ARG_COUNT, args));
    DNNL_CHECK(dnnl_stream_wait(ctx->conv->stream));
}

// The float32 temporary at the start of e's workspace.
static float *cpu_conv_tmp(Backend *be, const CpuConvEntry *e) { return cpu_workspace_get(be, e->workspace_bytes); }

void cpu_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w, const float *bias, void *y) {
    if (!d->n) return;
    cpu_conv_execute(be, cpu_conv_entry(be, d), CPU_CONV_PASS_FORWARD, x, w, y);
    if (bias) cpu_channel_bias_forward(be, d->n, d->c_out, d->h_out * d->w_out, bias, y);
}

void cpu_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w, void *dx) {
    if (!d->n) return;
    CpuConvEntry *e = cpu_conv_entry(be, d);
    float *tmp = cpu_conv_tmp(be, e);  // (N, C_in, H_in, W_in)
    cpu_conv_execute(be, e, CPU_CONV_PASS_BACKWARD_DATA, tmp, w, dy);
    cpu_accumulate(be, tmp, dx, conv_desc_x_elems(d));
}

void cpu_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy, float *dw,
                                float *dbias) {
    if (!d->n) return;
    CpuConvEntry *e = cpu_conv_entry(be, d);
    float *tmp = cpu_conv_tmp(be, e);  // (C_out, C_in / G, KH, KW)
    cpu_conv_execute(be, e, CPU_CONV_PASS_BACKWARD_WEIGHTS, x, tmp, dy);
    cpu_accumulate(be, tmp, dw, conv_desc_w_elems(d));
    if (dbias) cpu_channel_bias_backward(be, d->n, d->c_out, d->h_out * d->w_out, dy, dbias);
}
