// Attention (AttentionArgs, kernels/backend.h) on OpenBLAS. Each (image, area, head) is one item; its
// q, k and v are strided views of qkv (key_dim or head_dim channels by Na tokens, leading dimension
// T), and its slice of y or dqkv is one too, so the products read and write them in place:
//   forward   S = scale · Qᵀ K (Na, Na) into the item's probs; P = softmax of S's rows, in place;
//             Y (head_dim, Na) = V · Pᵀ
//   backward  dV += dY · P;  dP = dYᵀ · V (the thread's rows in the workspace);
//             dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place;  dQ += scale · K · dSᵀ;  dK += scale · Q · dS
// OpenMP hands out whole items. They write disjoint views (attention_args_check keeps every head's
// channels apart) and each item's arithmetic does not depend on the thread that runs it, so results
// do not depend on the thread count.
#include <omp.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

// One item's views: element offsets into qkv (q, k, v), into y or dy, dqkv (the same as qkv's) and
// probs.
typedef struct CpuAttentionItem {
    int64_t q, k, v, y, p;
} CpuAttentionItem;

static int64_t cpu_attention_items(const AttentionArgs *a) { return a->n * a->areas * a->heads; }

// Item `index` in (image, area, head) order, which is probs' order.
static CpuAttentionItem cpu_attention_item(const AttentionArgs *a, int64_t index) {
    const int64_t na = attention_area_tokens(a), t = a->tokens;
    const int64_t h = index % a->heads, area = index / a->heads % a->areas, img = index / (a->heads * a->areas);
    const int64_t head_c0 = img * a->qkv_c + h * a->head_stride, token0 = area * na;
    return (CpuAttentionItem){
        .q = (head_c0 + a->q_c0) * t + token0,
        .k = (head_c0 + a->k_c0) * t + token0,
        .v = (head_c0 + a->v_c0) * t + token0,
        .y = ((img * a->heads + h) * a->head_dim) * t + token0,
        .p = index * na * na,
    };
}

// The rows of the items that backward's threads hold at once (one Na x Na block each).
static size_t cpu_attention_block_bytes(const AttentionArgs *a) {
    const int64_t na = attention_area_tokens(a);
    return (size_t)(na * na) * sizeof(float);
}

size_t cpu_attention_rows_bytes(const AttentionArgs *a) {
    attention_args_check(a);
    const int64_t items = cpu_attention_items(a), threads = omp_get_max_threads();
    return (size_t)(items < threads ? items : threads) * cpu_attention_block_bytes(a);
}

size_t cpu_attention_workspace_bytes(Backend *be, const AttentionArgs *a) {
    (void)be;
    return cpu_attention_rows_bytes(a);
}

// Softmax of each of the `rows` rows of p (rows, cols), in place: max-subtracted, each value divided
// by its row's sum (one rounding), then rounded to `operand`.
static void cpu_attention_softmax(float *p, int64_t rows, int64_t cols, DType operand) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = p + i * cols;
        float max = row[0];
        for (int64_t j = 1; j < cols; j++) max = row[j] > max ? row[j] : max;
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            row[j] = expf(row[j] - max);
            sum += row[j];
        }
        for (int64_t j = 0; j < cols; j++) row[j] = dtype_round(operand, row[j] / sum);
    }
}

// dP (rows, cols) of P becomes dS = P ⊙ (dP − rowsum(dP ⊙ P)), rounded to `operand`.
static void cpu_attention_softmax_backward(const float *p, float *dp, int64_t rows, int64_t cols, DType operand) {
    for (int64_t i = 0; i < rows; i++) {
        const float *prow = p + i * cols;
        float *drow = dp + i * cols;
        float dot = 0.0f;
        for (int64_t j = 0; j < cols; j++) dot += drow[j] * prow[j];
        for (int64_t j = 0; j < cols; j++) drow[j] = dtype_round(operand, prow[j] * (drow[j] - dot));
    }
}

void cpu_attention_forward_rounded(Backend *be, const AttentionArgs *a, DType operand) {
    (void)be;
    attention_args_check(a);
    const int64_t items = cpu_attention_items(a), na = attention_area_tokens(a), t = a->tokens;
    const float *qkv = a->qkv;
    float *probs = a->probs, *y = a->y;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
    for (int64_t index = 0; index < items; index++) {
        const CpuAttentionItem it = cpu_attention_item(a, index);
        float *p = probs + it.p;
        cpu_sgemm(true, false, na, na, a->key_dim, a->scale, qkv + it.q, t, qkv + it.k, t, 0.0f, p, na);
        cpu_attention_softmax(p, na, na, operand);
        cpu_sgemm(false, true, a->head_dim, na, na, 1.0f, qkv + it.v, t, p, na, 0.0f, y + it.y, t);
    }
}

void cpu_attention_backward_rounded(Backend *be, const AttentionArgs *a, DType operand, float *work,
                                    size_t work_bytes) {
    (void)be;
    attention_args_check(a);
    const int64_t items = cpu_attention_items(a), na = attention_area_tokens(a), t = a->tokens;
    if (items == 0) return;
    // At most as many threads as the workspace has blocks (attention_workspace_bytes sized it for
    // the thread count at creation; a team grown since then runs on fewer threads, not out of bounds).
    const int64_t fit = (int64_t)(work_bytes / cpu_attention_block_bytes(a)), threads = omp_get_max_threads();
    YP_CHECK(fit >= 1);
    int64_t slots = fit < items ? fit : items;
    slots = slots < threads ? slots : threads;
    const float *qkv = a->qkv, *probs = a->probs, *dy = a->dy;
    float *dqkv = a->dqkv;
#pragma omp parallel for num_threads((int)slots) schedule(dynamic, 1)
    for (int64_t index = 0; index < items; index++) {
        const CpuAttentionItem it = cpu_attention_item(a, index);
        const float *p = probs + it.p;
        float *ds = work + (int64_t)omp_get_thread_num() * na * na;
        cpu_sgemm(false, false, a->head_dim, na, na, 1.0f, dy + it.y, t, p, na, 1.0f, dqkv + it.v, t);
        cpu_sgemm(true, false, na, na, a->head_dim, 1.0f, dy + it.y, t, qkv + it.v, t, 0.0f, ds, na);
        cpu_attention_softmax_backward(p, ds, na, na, operand);
        cpu_sgemm(false, true, a->key_dim, na, na, a->scale, qkv + it.k, t, ds, na, 1.0f, dqkv + it.q, t);
        cpu_sgemm(false, false, a->key_dim, na, na, a->scale, qkv + it.q, t, ds, na, 1.0f, dqkv + it.k, t);
    }
}

void cpu_attention_forward(Backend *be, const AttentionArgs *a) { cpu_attention_forward_rounded(be, a, DTYPE_F32); }

void cpu_attention_backward(Backend *be, const AttentionArgs *a) {
    attention_args_check(a);
    const CpuContext *ctx = be->ctx;
    float *work = cpu_workspace_get(be, cpu_attention_block_bytes(a));
    cpu_attention_backward_rounded(be, a, DTYPE_F32, work, ctx->workspace_bytes);
}
