// Convolutions on oneDNN's C API (dnnl.h), float32. The backend's tensors are plain NCHW activations
// and OIHW (GOIHW with groups) weights; oneDNN's fast direct convolutions want blocked layouts
// (nChw16c on AVX-512), and on plain ones it falls back to im2col + GEMM. So every primitive is
// created with format_tag_any, oneDNN picks each operand's layout, and an operand whose layout is not
// the backend's goes through a reorder into (inputs) or out of (outputs) a buffer in the workspace.
//
// Every distinct ConvDesc gets one cache entry holding its three passes (forward, backward data,
// backward weights): their primitives, reorders and memory objects. Layers ask conv_workspace_bytes
// for each convolution when they are created; that is where the entry is made. A shape first seen
// inside a step (a smaller last batch, a multi-scale size: always at most the built size) gets its
// entry on first use, once, and must fit the workspace reserved for the built size.
//
// oneDNN's convolutions overwrite their outputs; the slots' "+=" outputs and the bias are this file's:
//   forward          y = conv(x, w), then y += bias (channel_bias_forward)
//   backward data    dx += conv_bwd_data(dy, w): the primitive writes a buffer, a reorder with a sum
//                    post-op adds it to dx (one rounding, as an add)
//   backward filter  dw += conv_bwd_weights(x, dy) the same way; dbias += Σ dy (channel_bias_backward)
// The bias stays out of the primitives because a ConvDesc does not say whether the layer has one.
//
// Workspace of one pass: its operands' buffers, then one scratchpad region (dnnl_scratchpad_mode_user)
// that the pass's convolution and reorders share, since they run one after another.
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

// The passes of one convolution, indexing an entry's passes.
typedef enum CpuConvPass {
    CPU_CONV_PASS_FORWARD,
    CPU_CONV_PASS_BACKWARD_DATA,
    CPU_CONV_PASS_BACKWARD_WEIGHTS,
    CPU_CONV_PASS_COUNT
} CpuConvPass;

// The three operands of a pass, in the order the calls give them: x (or dx), w (or dw), y (or dy).
enum { CPU_CONV_OPERANDS = 3 };

// How a pass treats an operand.
typedef enum CpuConvRole { CPU_CONV_INPUT, CPU_CONV_OUTPUT, CPU_CONV_OUTPUT_ADD } CpuConvRole;

typedef struct CpuConvOperand {
    int arg;                   // DNNL_ARG_* of the convolution
    CpuConvRole role;
    dnnl_memory_t user;        // owned; the backend's layout, its handle set per call
    // The operand in the convolution's layout, in a workspace buffer at offset, and the reorder from
    // (inputs) or to (outputs) user; both NULL when the convolution reads or writes user directly.
    dnnl_memory_t buffer;      // owned
    dnnl_primitive_t reorder;  // owned
    dnnl_memory_t reorder_scratch;  // owned with the reorder
    size_t offset;
} CpuConvOperand;

typedef struct CpuConvPassPrims {
    dnnl_primitive_t conv;   // owned
    dnnl_memory_t scratch;   // owned; the convolution's scratchpad at scratch_offset
    CpuConvOperand operand[CPU_CONV_OPERANDS];
    size_t scratch_offset;   // where the shared scratchpad region starts
    size_t bytes;            // the workspace this pass needs
} CpuConvPassPrims;

typedef struct CpuConvEntry {
    ConvDesc desc;
    CpuConvPassPrims pass[CPU_CONV_PASS_COUNT];
    size_t workspace_bytes;  // the largest pass's
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
        for (int p = 0; p < CPU_CONV_PASS_COUNT; p++) {
            CpuConvPassPrims *pass = &cache->entries[i].pass[p];
            dnnl_primitive_destroy(pass->conv);
            dnnl_memory_destroy(pass->scratch);
            for (int o = 0; o < CPU_CONV_OPERANDS; o++) {
                CpuConvOperand *op = &pass->operand[o];
                dnnl_memory_destroy(op->user);
                dnnl_memory_destroy(op->buffer);
                dnnl_primitive_destroy(op->reorder);
                dnnl_memory_destroy(op->reorder_scratch);
            }
        }
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

// The memory descriptors of x, w and y: in the backend's layout, or (any) with the layout left to oneDNN.
static void cpu_conv_memory_descs(const ConvDesc *d, bool any, dnnl_memory_desc_t md[CPU_CONV_OPERANDS]) {
    const dnnl_dims_t x_dims = {d->n, d->c_in, d->h_in, d->w_in};
    const dnnl_dims_t y_dims = {d->n, d->c_out, d->h_out, d->w_out};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md[0], 4, x_dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md[2], 4, y_dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
    if (d->groups == 1) {
        const dnnl_dims_t w_dims = {d->c_out, d->c_in, d->kh, d->kw};
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md[1], 4, w_dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw));
    } else {
        // (G, C_out / G, C_in / G, KH, KW): the same bytes as (C_out, C_in / G, KH, KW).
        const dnnl_dims_t w_dims = {d->groups, d->c_out / d->groups, d->c_in / d->groups, d->kh, d->kw};
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md[1], 5, w_dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_goihw));
    }
}

static size_t cpu_conv_round_up(size_t n_bytes) { return (n_bytes + 63) / 64 * 64; }  // a cache line

// The scratchpad size of pd (made with dnnl_scratchpad_mode_user) and its memory object, data unset.
static size_t cpu_conv_scratchpad(CpuConvCache *cache, const_dnnl_primitive_desc_t pd, dnnl_memory_t *mem) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    YP_CHECK(md);
    DNNL_CHECK(dnnl_memory_create(mem, md, cache->engine, DNNL_MEMORY_NONE));
    return dnnl_memory_desc_get_size(md);
}

// Sets up operand op of a pass whose convolution wants layout conv_md, the backend's being user_md:
// its memory objects and, where the layouts differ or the output adds, its buffer (at *offset, which
// it advances) and reorder. Returns the reorder's scratchpad size.
static size_t cpu_conv_operand_make(CpuConvCache *cache, CpuConvOperand *op, int arg, CpuConvRole role,
                                    const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *conv_md,
                                    const_dnnl_primitive_attr_t attr, size_t *offset) {
    op->arg = arg;
    op->role = role;
    DNNL_CHECK(dnnl_memory_create(&op->user, user_md, cache->engine, DNNL_MEMORY_NONE));
    if (role != CPU_CONV_OUTPUT_ADD && dnnl_memory_desc_equal(user_md, conv_md)) return 0;
    DNNL_CHECK(dnnl_memory_create(&op->buffer, conv_md, cache->engine, DNNL_MEMORY_NONE));
    op->offset = *offset;
    *offset += cpu_conv_round_up(dnnl_memory_desc_get_size(conv_md));

    dnnl_primitive_attr_t reorder_attr;
    DNNL_CHECK(dnnl_primitive_attr_clone(&reorder_attr, attr));
    if (role == CPU_CONV_OUTPUT_ADD) {  // user += buffer
        dnnl_post_ops_t sum;
        DNNL_CHECK(dnnl_post_ops_create(&sum));
        DNNL_CHECK(dnnl_post_ops_append_sum(sum, 1.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(reorder_attr, sum));
        DNNL_CHECK(dnnl_post_ops_destroy(sum));
    }
    const bool input = role == CPU_CONV_INPUT;
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, input ? user_md : conv_md, cache->engine,
                                                  input ? conv_md : user_md, cache->engine, reorder_attr));
    DNNL_CHECK(dnnl_primitive_create(&op->reorder, pd));
    const size_t scratch = cpu_conv_scratchpad(cache, pd, &op->reorder_scratch);
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(reorder_attr));
    return scratch;
}

// Makes one pass from its operation descriptor (hint: the forward primitive descriptor that the
// backward passes need); returns its primitive descriptor when pd_out is given.
static void cpu_conv_pass_make(CpuConvCache *cache, CpuConvPassPrims *pass, const dnnl_convolution_desc_t *op_desc,
                               const int args[CPU_CONV_OPERANDS], const CpuConvRole roles[CPU_CONV_OPERANDS],
                               const dnnl_memory_desc_t user_md[CPU_CONV_OPERANDS], const_dnnl_primitive_attr_t attr,
                               const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd_out) {
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, op_desc, attr, cache->engine, hint));
    DNNL_CHECK(dnnl_primitive_create(&pass->conv, pd));
    size_t scratch = cpu_conv_scratchpad(cache, pd, &pass->scratch), offset = 0;
    for (int o = 0; o < CPU_CONV_OPERANDS; o++) {
        const dnnl_memory_desc_t *conv_md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args[o]);
        YP_CHECK(conv_md);
        const size_t reorder_scratch =
            cpu_conv_operand_make(cache, &pass->operand[o], args[o], roles[o], &user_md[o], conv_md, attr, &offset);
        if (reorder_scratch > scratch) scratch = reorder_scratch;
    }
    pass->scratch_offset = offset;
    pass->bytes = offset + scratch;
    if (pd_out) *pd_out = pd;
    else DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
}

// Fills e's passes for d (n > 0).
static void cpu_conv_entry_make(CpuConvCache *cache, CpuConvEntry *e, const ConvDesc *d) {
    memset(e, 0, sizeof *e);
    e->desc = *d;
    dnnl_memory_desc_t user_md[CPU_CONV_OPERANDS], any_md[CPU_CONV_OPERANDS];
    cpu_conv_memory_descs(d, false, user_md);
    cpu_conv_memory_descs(d, true, any_md);

    // oneDNN counts dilation from 0 (PyTorch's 1 is its 0); padding is symmetric.
    const dnnl_dims_t strides = {d->stride, d->stride}, dilates = {d->dilation - 1, d->dilation - 1};
    const dnnl_dims_t pad = {d->pad, d->pad};
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    dnnl_convolution_desc_t fwd, bwd_data, bwd_weights;
    DNNL_CHECK(dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct,
                                                          &any_md[0], &any_md[1], NULL, &any_md[2], strides,
                                                          dilates, pad, pad));
    DNNL_CHECK(dnnl_dilated_convolution_backward_data_desc_init(&bwd_data, dnnl_convolution_direct, &any_md[0],
                                                                &any_md[1], &any_md[2], strides, dilates, pad, pad));
    DNNL_CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&bwd_weights, dnnl_convolution_direct,
                                                                   &any_md[0], &any_md[1], NULL, &any_md[2], strides,
                                                                   dilates, pad, pad));
    static const int args[CPU_CONV_PASS_COUNT][CPU_CONV_OPERANDS] = {
        [CPU_CONV_PASS_FORWARD] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        [CPU_CONV_PASS_BACKWARD_DATA] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST},
        [CPU_CONV_PASS_BACKWARD_WEIGHTS] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST},
    };
    static const CpuConvRole roles[CPU_CONV_PASS_COUNT][CPU_CONV_OPERANDS] = {
        [CPU_CONV_PASS_FORWARD] = {CPU_CONV_INPUT, CPU_CONV_INPUT, CPU_CONV_OUTPUT},
        [CPU_CONV_PASS_BACKWARD_DATA] = {CPU_CONV_OUTPUT_ADD, CPU_CONV_INPUT, CPU_CONV_INPUT},
        [CPU_CONV_PASS_BACKWARD_WEIGHTS] = {CPU_CONV_INPUT, CPU_CONV_OUTPUT_ADD, CPU_CONV_INPUT},
    };
    const dnnl_convolution_desc_t *descs[CPU_CONV_PASS_COUNT] = {&fwd, &bwd_data, &bwd_weights};
    dnnl_primitive_desc_t fwd_pd;
    for (int p = 0; p < CPU_CONV_PASS_COUNT; p++) {
        cpu_conv_pass_make(cache, &e->pass[p], descs[p], args[p], roles[p], user_md, attr,
                           p == CPU_CONV_PASS_FORWARD ? NULL : fwd_pd, p == CPU_CONV_PASS_FORWARD ? &fwd_pd : NULL);
        if (e->pass[p].bytes > e->workspace_bytes) e->workspace_bytes = e->pass[p].bytes;
    }
    DNNL_CHECK(dnnl_primitive_desc_destroy(fwd_pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
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

// Runs reorder from src to dst with its scratchpad at scratch.
static void cpu_conv_reorder(CpuConvCache *cache, dnnl_primitive_t reorder, dnnl_memory_t scratch_mem, void *scratch,
                             dnnl_memory_t src, dnnl_memory_t dst) {
    DNNL_CHECK(dnnl_memory_set_data_handle(scratch_mem, scratch));
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}, {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    DNNL_CHECK(dnnl_primitive_execute(reorder, cache->stream, 3, args));
}

// Runs pass p of e with its three operands (x or dx, w or dw, y or dy) at the given addresses:
// inputs reordered into their buffers, the convolution, outputs reordered (or added) out of theirs.
static void cpu_conv_run(Backend *be, const ConvDesc *d, CpuConvPass p, const void *x, const void *w, const void *y) {
    CpuContext *ctx = be->ctx;
    CpuConvCache *cache = ctx->conv;
    CpuConvEntry *e = cpu_conv_entry(be, d);
    CpuConvPassPrims *pass = &e->pass[p];
    char *workspace = (char *)cpu_workspace_get(be, e->workspace_bytes), *scratch = workspace + pass->scratch_offset;
    const void *addr[CPU_CONV_OPERANDS] = {x, w, y};
    dnnl_exec_arg_t args[CPU_CONV_OPERANDS + 1];
    for (int o = 0; o < CPU_CONV_OPERANDS; o++) {
        CpuConvOperand *op = &pass->operand[o];
        DNNL_CHECK(dnnl_memory_set_data_handle(op->user, (void *)addr[o]));
        if (op->buffer) DNNL_CHECK(dnnl_memory_set_data_handle(op->buffer, workspace + op->offset));
        if (op->buffer && op->role == CPU_CONV_INPUT)
            cpu_conv_reorder(cache, op->reorder, op->reorder_scratch, scratch, op->user, op->buffer);
        args[o] = (dnnl_exec_arg_t){op->arg, op->buffer ? op->buffer : op->user};
    }
    DNNL_CHECK(dnnl_memory_set_data_handle(pass->scratch, scratch));
    args[CPU_CONV_OPERANDS] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pass->scratch};
    DNNL_CHECK(dnnl_primitive_execute(pass->conv, cache->stream, CPU_CONV_OPERANDS + 1, args));
    for (int o = 0; o < CPU_CONV_OPERANDS; o++) {
        CpuConvOperand *op = &pass->operand[o];
        if (op->buffer && op->role != CPU_CONV_INPUT)
            cpu_conv_reorder(cache, op->reorder, op->reorder_scratch, scratch, op->buffer, op->user);
    }
    DNNL_CHECK(dnnl_stream_wait(cache->stream));
}

void cpu_conv2d_forward(Backend *be, const ConvDesc *d, const void *x, const float *w, const float *bias, void *y) {
    if (!d->n) return;
    cpu_conv_run(be, d, CPU_CONV_PASS_FORWARD, x, w, y);
    if (bias) cpu_channel_bias_forward(be, d->n, d->c_out, d->h_out * d->w_out, bias, y);
}

void cpu_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy, const float *w, void *dx) {
    if (!d->n) return;
    cpu_conv_run(be, d, CPU_CONV_PASS_BACKWARD_DATA, dx, w, dy);
}

void cpu_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x, const void *dy, float *dw,
                                float *dbias) {
    if (!d->n) return;
    cpu_conv_run(be, d, CPU_CONV_PASS_BACKWARD_WEIGHTS, x, dw, dy);
    if (dbias) cpu_channel_bias_backward(be, d->n, d->c_out, d->h_out * d->w_out, dy, dbias);
}
