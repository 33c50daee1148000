// The detection loss on the GPU (cuda_loss.h). The CPU loss (kernels/cpu/cpu_loss.c) runs an image
// per thread; here each stage is one kernel over the whole batch, queued on the backend's stream:
//   decode     (image, anchor): every anchor's predicted box; clears claims and assignment
//   topk       a block per ground truth: the topk largest alignment metrics over all anchors, ties
//              to the lower anchor as the CPU's insertion breaks them (each thread keeps the best of
//              its own anchors, then topk rounds of a block arg-max merge the lists); the candidates
//              among them claim their anchor
//   resolve    (image, anchor): an anchor claimed twice goes to the ground truth of highest overlap
//              (first on ties); the assigned pair's alignment; per ground truth the maxima of
//              overlap and alignment over its positives
//   normalise  (image, anchor): target scores; per block their sum and the foreground count
//   norm       one block: the normaliser and the gradient's factor batch_n / norm
//   class_loss (image, anchor): BCE of every class logit and its gradient; per block the sum
//   box_loss   (image, anchor): CIoU and DFL of positives, the gradient of the 4 reg_max box
//              logits (0 elsewhere); per block the box and dfl sums
//   finish     one block: the sums, into the context's reduce_scratch, then to reduce_host
// Determinism: each sum is per thread in a fixed order, then a fixed shuffle tree per block
// (cuda_block_sum2), then the blocks' partial sums by one block in a fixed order; claims are atomic
// counts and the per-ground-truth maxima atomic maxima, exact in any order. The selection's merge
// is a fixed tree too. So every run gives the same bits.
//
// The ground truths are grouped and converted on the host by the CPU loss's own function
// (detect_loss_targets_group) and uploaded from pinned memory; nothing else crosses PCIe but the
// five result numbers.
//
// pred and dpred are in the backend's activation type: the kernels that touch them are templates on
// it (cuda_act.h), which widen each logit on load; each gradient element is computed in float as
// before, multiplied by grad_scale (fp16 loss scaling) and rounded once when stored.
#include "kernels/cuda/cuda_loss.h"

#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_act.h"
#include "kernels/cuda/cuda_loops.h"
#include "kernels/loss_detect_math.h"

enum {
    TOPK_THREADS = 128,      // threads per ground truth in topk_kernel
    TOPK_MAX_BLOCKS = 65535 * 8,
    LOSS_MAX_IMAGES = 65535, // the per-(image, anchor) kernels have one grid row (gridDim.y) per image
    LOSS_RESULTS = 5,        // box, cls and dfl sums, target score sum, foreground count
};
// topk_kernel's per-thread lists in dynamic shared memory, under the 48 KiB a block gets without
// opting in (its static shared arrays take under 1 KiB).
static_assert(CUDA_DETECT_LOSS_MAX_TOPK * TOPK_THREADS * (sizeof(double) + sizeof(int32_t)) <= 40 * 1024,
              "topk lists exceed the shared memory budget");
static_assert(TOPK_THREADS % 32 == 0 && TOPK_THREADS <= 1024, "block reductions take whole warps");

struct BackendDetectLoss {
    Backend *be;  // borrowed
    cudaStream_t stream;
    DetectLossConfig cfg;
    int64_t n_anchors, n_channels, max_batch, gt_capacity;
    unsigned anchor_blocks;  // gridDim.x of the per-(image, anchor) kernels

    // Device memory, owned.
    double *anchors;     // (3, A) centre x, centre y (grid units), stride
    double *boxes;       // (max_batch, A, 4) predicted boxes, xyxy in grid units
    int32_t *claims;     // (max_batch, A) top-k lists that hold the anchor as a candidate
    int32_t *assigned;   // (max_batch, A) ground truth (index within the image) or -1
    double *score;       // (max_batch, A) the assigned pair's alignment, then its target score
    double *partials;    // (max_batch, anchor_blocks, 3) per-block sums: normalise's two, then box, cls, dfl
    double *totals;      // (3) target score sum, foreground count, gradient factor batch_n / norm
    int64_t *gt_start;   // (max_batch + 1) each image's first ground truth
    DetectLossGt *gts;   // (gt_capacity) grouped by image
    int32_t *gt_image;   // (gt_capacity) image of each ground truth
    double *pos_max;     // (2, gt_capacity) best overlap, best alignment over each ground truth's positives

    // Pinned host memory, owned: the ground truths staged for asynchronous upload.
    int64_t *host_gt_start;    // (max_batch + 1)
    DetectLossGt *host_gts;    // (gt_capacity)
    int32_t *host_gt_image;    // (gt_capacity)
};

// ---- device helpers ------------------------------------------------------------------------------

// Side s of an anchor, bin k at x[k * A]: the largest logit and sum of exp(logit - top), so that
// bin k's probability is exp(x_k - top) / sum. The operations of cpu_loss.c's dist_decode, which
// keeps the exponentials where this recomputes them (per-thread arrays would cost local memory).
template <typename T>
static __device__ void side_softmax(const T *x, int64_t A, int64_t R, double *top, double *sum) {
    double t = cuda_act_load(&x[0]), s = 0;
    for (int64_t k = 1; k < R; k++) t = fmax(t, (double)cuda_act_load(&x[k * A]));
    for (int64_t k = 0; k < R; k++) s += exp((double)cuda_act_load(&x[k * A]) - t);
    *top = t;
    *sum = s;
}

template <typename T>
static __device__ double bin_prob(const T *x, int64_t A, int64_t k, double top, double sum) {
    return exp((double)cuda_act_load(&x[k * A]) - top) / sum;
}

// Anchor a's expected distances (left, top, right, bottom; grid units) from x = pred_i + a, with each
// side's softmax top and sum.
template <typename T>
static __device__ void dist_decode(const T *x, int64_t A, int64_t R, double top[4], double sum[4], double dist[4]) {
#pragma unroll  // top, sum and dist stay in registers
    for (int s = 0; s < 4; s++) {
        const T *xs = x + s * R * A;
        side_softmax(xs, A, R, &top[s], &sum[s]);
        double e = 0;
        for (int64_t k = 0; k < R; k++) e += bin_prob(xs, A, k, top[s], sum[s]) * (double)k;
        dist[s] = e;
    }
}

// Maximum of non-negative doubles: their bit patterns order as their values, so an integer
// atomicMax on the bits is exact whatever the order of the updates.
static __device__ void atomic_max_nonnegative(double *address, double value) {
    atomicMax((unsigned long long *)address, (unsigned long long)__double_as_longlong(value));
}

// Whether (m1, a1) ranks before (m2, a2) in a top-k list: larger metric first, then lower anchor.
static __device__ bool topk_before(double m1, int32_t a1, double m2, int32_t a2) {
    return m1 > m2 || (m1 == m2 && a1 < a2);
}

static __device__ void warp_best(double *m, int32_t *a) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const double om = __shfl_down_sync(0xffffffffu, *m, offset);
        const int32_t oa = __shfl_down_sync(0xffffffffu, *a, offset);
        if (topk_before(om, oa, *m, *a)) *m = om, *a = oa;
    }
}

// The first (metric, anchor) of the block in top-k order, given to every thread, by a fixed tree.
// Every thread must call it; its first barrier lets it be called again on the same scratch_* (32
// entries each of shared memory).
static __device__ void block_best(double *m, int32_t *a, double *scratch_m, int32_t *scratch_a) {
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    warp_best(m, a);
    __syncthreads();  // the previous call's readers are done with scratch
    if (lane == 0) scratch_m[warp] = *m, scratch_a[warp] = *a;
    __syncthreads();
    if (warp == 0) {
        double bm = lane < warps ? scratch_m[lane] : -INFINITY;
        int32_t ba = lane < warps ? scratch_a[lane] : INT32_MAX;
        warp_best(&bm, &ba);
        if (lane == 0) scratch_m[0] = bm, scratch_a[0] = ba;
    }
    __syncthreads();
    *m = scratch_m[0];
    *a = scratch_a[0];
}

// ---- kernels -------------------------------------------------------------------------------------
// The per-(image, anchor) kernels run on a grid of (anchor_blocks, batch_n) blocks of CUDA_THREADS:
// blockIdx.y is the image, and a grid-stride loop over blockIdx.x and threadIdx.x the anchors.

template <typename T>
static __global__ void decode_kernel(int64_t A, int64_t R, int64_t C, const T *pred, const double *anchors,
                                     double *boxes, int32_t *claims, int32_t *assigned) {
    const int64_t i = blockIdx.y;
    const T *pred_i = pred + i * C * A;
    for (int64_t a = cuda_loop_first(); a < A; a += cuda_loop_stride()) {
        double top[4], sum[4], d[4];
        dist_decode(pred_i + a, A, R, top, sum, d);
        detect_loss_box_from_dist(anchors[a], anchors[A + a], d, boxes + 4 * (i * A + a));
        claims[i * A + a] = 0;
        assigned[i * A + a] = -1;
    }
}

// Grid-stride over the batch's ground truths, one block each. Dynamic shared memory: the threads'
// lists, (topk, blockDim.x) metrics then (topk, blockDim.x) anchors, thread t's entry p at p * T + t.
// Thread t walks anchors t, t + T, ... in increasing order and keeps the best topk of them as
// cpu_loss.c's gt_select_topk keeps them over all anchors; the ground truth's best topk over all
// anchors are among those lists, and topk rounds of block_best, each taking the head of one list,
// pop them in order.
template <typename Act>  // T is the block's thread count here
static __global__ void __launch_bounds__(TOPK_THREADS)
    topk_kernel(DetectLossConfig cfg, int64_t A, int64_t n_targets, const Act *pred, const double *anchors,
                const double *boxes, const DetectLossGt *gts, const int32_t *gt_image, const int64_t *gt_start,
                int32_t *claims, int32_t *assigned) {
    extern __shared__ double topk_lists[];
    __shared__ double scratch_m[32];
    __shared__ int32_t scratch_a[32], winners[CUDA_DETECT_LOSS_MAX_TOPK];
    const int64_t K = cfg.topk, T = blockDim.x, t = threadIdx.x, C = 4 * cfg.reg_max + cfg.nc;
    double *list_m = topk_lists;
    int32_t *list_a = (int32_t *)(topk_lists + K * T);
    for (int64_t j = blockIdx.x; j < n_targets; j += gridDim.x) {
        const DetectLossGt g = gts[j];
        if (!g.valid) continue;  // mask_gt removes the whole top-k row (the same for every thread)
        const int64_t i = gt_image[j];
        const Act *logits = pred + (i * C + 4 * cfg.reg_max + g.cls) * A;
        const double *boxes_i = boxes + i * A * 4;
        int64_t n = 0;
        for (int64_t a = t; a < A; a += T) {
            double metric = 0;  // non-candidates count as 0
            const double s = anchors[2 * A + a];
            if (detect_loss_gt_has_candidate(&g, anchors[a], anchors[A + a], s, cfg.eps))
                metric = detect_loss_alignment(cuda_act_load(&logits[a]), detect_loss_overlap(&g, boxes_i + 4 * a, s),
                                               cfg.alpha, cfg.beta);
            if (n == K && !(metric > list_m[(K - 1) * T + t])) continue;
            int64_t p = n < K ? n++ : K - 1;
            for (; p > 0 && list_m[(p - 1) * T + t] < metric; p--) {
                list_m[p * T + t] = list_m[(p - 1) * T + t];
                list_a[p * T + t] = list_a[(p - 1) * T + t];
            }
            list_m[p * T + t] = metric;
            list_a[p * T + t] = (int32_t)a;
        }
        int64_t head = 0;
        for (int64_t r = 0; r < K; r++) {
            double m = head < n ? list_m[head * T + t] : -INFINITY;
            int32_t a = head < n ? list_a[head * T + t] : INT32_MAX;
            block_best(&m, &a, scratch_m, scratch_a);
            if (a != INT32_MAX && a % T == t) head++;  // anchor a is in the list of thread a % T, at its head
            if (t == 0) winners[r] = a;
        }
        __syncthreads();
        if (t < K) {
            const int32_t a = winners[t];
            if (a != INT32_MAX &&
                detect_loss_gt_has_candidate(&g, anchors[a], anchors[A + a], anchors[2 * A + a], cfg.eps)) {
                atomicAdd(&claims[i * A + a], 1);
                // The claimant for an anchor claimed once; resolve_kernel picks among several.
                atomicMax(&assigned[i * A + a], (int32_t)(j - gt_start[i]));
            }
        }
        __syncthreads();  // winners is the next ground truth's
    }
}

template <typename T>
static __global__ void resolve_kernel(DetectLossConfig cfg, int64_t A, const T *pred, const double *anchors,
                                      const double *boxes, const DetectLossGt *gts, const int64_t *gt_start,
                                      const int32_t *claims, int32_t *assigned, double *score, double *pos_overlap,
                                      double *pos_align) {
    const int64_t i = blockIdx.y, C = 4 * cfg.reg_max + cfg.nc, g0 = gt_start[i], n_gt = gt_start[i + 1] - g0;
    const T *pred_i = pred + i * C * A;
    for (int64_t a = cuda_loop_first(); a < A; a += cuda_loop_stride()) {
        const int64_t ia = i * A + a;
        const double ax = anchors[a], ay = anchors[A + a], s = anchors[2 * A + a], *box = boxes + 4 * ia;
        int32_t g = assigned[ia];
        if (claims[ia] >= 2) {  // select_highest_overlaps, over all of the image's ground truths
            double best = -1;
            for (int64_t k = 0; k < n_gt; k++) {
                const DetectLossGt *gk = &gts[g0 + k];
                double overlap =
                    detect_loss_gt_has_candidate(gk, ax, ay, s, cfg.eps) ? detect_loss_overlap(gk, box, s) : 0;
                if (overlap > best) best = overlap, g = (int32_t)k;
            }
        }
        double metric = 0;
        if (g >= 0 && detect_loss_gt_has_candidate(&gts[g0 + g], ax, ay, s, cfg.eps)) {
            const DetectLossGt *gg = &gts[g0 + g];
            double overlap = detect_loss_overlap(gg, box, s);
            metric = detect_loss_alignment(cuda_act_load(&pred_i[(4 * cfg.reg_max + gg->cls) * A + a]), overlap,
                                           cfg.alpha, cfg.beta);
            atomic_max_nonnegative(&pos_overlap[g0 + g], overlap);
            atomic_max_nonnegative(&pos_align[g0 + g], metric);
        }
        assigned[ia] = g;
        score[ia] = metric;  // normalised once every maximum is known
    }
}

static __global__ void normalise_kernel(int64_t A, double eps, const int64_t *gt_start, const int32_t *assigned,
                                        const double *pos_overlap, const double *pos_align, double *score,
                                        double *partials) {
    __shared__ double scratch[64];
    const int64_t i = blockIdx.y, g0 = gt_start[i];
    double sum = 0, n_fg = 0;
    for (int64_t a = cuda_loop_first(); a < A; a += cuda_loop_stride()) {
        const int64_t ia = i * A + a, g = assigned[ia];
        if (g < 0) continue;
        score[ia] = detect_loss_target_score(score[ia], pos_overlap[g0 + g], pos_align[g0 + g], eps);
        sum += score[ia];
        n_fg += 1;
    }
    cuda_block_sum2(&sum, &n_fg, scratch);
    if (threadIdx.x == 0) {
        double *p = partials + 3 * (i * gridDim.x + blockIdx.x);
        p[0] = sum;
        p[1] = n_fg;
    }
}

// One block: normalise_kernel's partial sums, in block order.
static __global__ void norm_kernel(int64_t n_partials, int64_t batch_n, const double *partials, double *totals) {
    __shared__ double scratch[64];
    double sum = 0, n_fg = 0;
    for (int64_t p = threadIdx.x; p < n_partials; p += blockDim.x) {
        sum += partials[3 * p];
        n_fg += partials[3 * p + 1];
    }
    cuda_block_sum2(&sum, &n_fg, scratch);
    if (threadIdx.x == 0) {
        totals[0] = sum;
        totals[1] = n_fg;
        totals[2] = (double)batch_n / detect_loss_norm(sum);
    }
}

// The evaluation, cpu_loss.c's image_evaluate, in two kernels over (image, anchor) that fill the
// same per-block partial sums [box, cls, dfl]: the class terms, and the box terms, which need many
// more registers. Both read the gradient's factor batch_n / norm from totals.

// The BCE of each of the anchor's nc class logits against its target score (one-hot class times
// score); with dpred, their gradient times grad_scale.
template <typename T>
static __global__ void class_loss_kernel(DetectLossConfig cfg, int64_t A, const T *pred, const DetectLossGt *gts,
                                         const int64_t *gt_start, const int32_t *assigned, const double *score,
                                         const double *totals, float grad_scale, T *dpred, double *partials) {
    __shared__ double scratch[64];
    const int64_t i = blockIdx.y, C = 4 * cfg.reg_max + cfg.nc, first = 4 * cfg.reg_max * A, g0 = gt_start[i];
    const T *x = pred + i * C * A + first;
    T *dx = dpred ? dpred + i * C * A + first : NULL;
    const float cls_scale = (float)(cfg.cls_gain * totals[2]);
    double cls_sum = 0, none = 0;
    for (int64_t a = cuda_loop_first(); a < A; a += cuda_loop_stride()) {
        const int64_t ia = i * A + a, cls = assigned[ia] >= 0 ? gts[g0 + assigned[ia]].cls : -1;
        const float target_score = (float)score[ia];
        for (int64_t c = 0; c < cfg.nc; c++) {
            const float target = c == cls ? target_score : 0.0f;
            float grad;
            cls_sum += (double)detect_loss_bce(cuda_act_load(&x[c * A + a]), target, cls_scale, dx ? &grad : NULL);
            if (dx) cuda_act_store(&dx[c * A + a], grad * grad_scale);
        }
    }
    cuda_block_sum2(&cls_sum, &none, scratch);
    if (threadIdx.x == 0) partials[3 * (i * gridDim.x + blockIdx.x) + 1] = cls_sum;
}

// The CIoU and DFL terms of positive anchors, weighted by their target score; with dpred, the
// gradient of the 4 reg_max box-distribution logits times grad_scale (0 for the other anchors).
template <typename T>
static __global__ void box_loss_kernel(DetectLossConfig cfg, int64_t A, const T *pred, const double *anchors,
                                       const DetectLossGt *gts, const int64_t *gt_start, const int32_t *assigned,
                                       const double *score, const double *totals, float grad_scale, T *dpred,
                                       double *partials) {
    __shared__ double scratch[64];
    const int64_t i = blockIdx.y, R = cfg.reg_max, C = 4 * R + cfg.nc, g0 = gt_start[i];
    const T *pred_i = pred + i * C * A;
    T *dpred_i = dpred ? dpred + i * C * A : NULL;
    const double box_scale = cfg.box_gain * totals[2], dfl_scale = cfg.dfl_gain * totals[2];
    double box_sum = 0, dfl_sum = 0;
    for (int64_t a = cuda_loop_first(); a < A; a += cuda_loop_stride()) {
        const int64_t ia = i * A + a;
        if (assigned[ia] < 0) {
            if (dpred_i)
                for (int64_t k = 0; k < 4 * R; k++) cuda_act_store(&dpred_i[k * A + a], 0.0f);
            continue;
        }
        const DetectLossGt *g = &gts[g0 + assigned[ia]];
        const double w = score[ia];
        double top[4], sum[4], d[4];
        dist_decode(pred_i + a, A, R, top, sum, d);
        const DetectLossBoxTerm bt = detect_loss_box_term(anchors[a], anchors[A + a], anchors[2 * A + a], d, g, w);
        box_sum += bt.term;
        double ce_sum = 0;
#pragma unroll
        for (int side = 0; side < 4; side++) {
            const T *x = pred_i + side * R * A + a;
            const DetectLossDflBins bins = detect_loss_dfl_bins(bt.target[side], R);
            const double log_sum = log(sum[side]);  // log_softmax = (x - top) - log(sum)
            ce_sum += detect_loss_dfl_ce(((double)cuda_act_load(&x[bins.lo * A]) - top[side]) - log_sum,
                                         ((double)cuda_act_load(&x[(bins.lo + 1) * A]) - top[side]) - log_sum, bins);
            if (!dpred_i) continue;
            const double g_box = box_scale * bt.d_dist[side], g_dfl = dfl_scale * w / 4;
            for (int64_t k = 0; k < R; k++) {
                const float grad =
                    detect_loss_bin_grad(bin_prob(x, A, k, top[side], sum[side]), k, d[side], bins, g_box, g_dfl);
                cuda_act_store(&dpred_i[(side * R + k) * A + a], grad * grad_scale);
            }
        }
        dfl_sum += ce_sum / 4 * w;
    }
    cuda_block_sum2(&box_sum, &dfl_sum, scratch);
    if (threadIdx.x == 0) {
        double *p = partials + 3 * (i * gridDim.x + blockIdx.x);
        p[0] = box_sum;
        p[2] = dfl_sum;
    }
}

// One block: the evaluation's partial sums in block order, and the totals, into out (LOSS_RESULTS).
static __global__ void finish_kernel(int64_t n_partials, const double *partials, const double *totals, double *out) {
    __shared__ double scratch[64];
    double box = 0, cls = 0, dfl = 0, none = 0;
    for (int64_t p = threadIdx.x; p < n_partials; p += blockDim.x) {
        box += partials[3 * p];
        cls += partials[3 * p + 1];
        dfl += partials[3 * p + 2];
    }
    cuda_block_sum2(&box, &cls, scratch);
    cuda_block_sum2(&dfl, &none, scratch);
    if (threadIdx.x == 0) {
        out[0] = box;
        out[1] = cls;
        out[2] = dfl;
        out[3] = totals[0];
        out[4] = totals[1];
    }
}

// ---- host side -----------------------------------------------------------------------------------

static void *loss_alloc(BackendDetectLoss *L, size_t n_bytes) { return L->be->ops->alloc(L->be, n_bytes); }

static void loss_free_targets(BackendDetectLoss *L) {
    Backend *be = L->be;
    be->ops->free(be, L->gts);
    be->ops->free(be, L->gt_image);
    be->ops->free(be, L->pos_max);
    if (L->host_gts) CUDA_CHECK(cudaFreeHost(L->host_gts));
    if (L->host_gt_image) CUDA_CHECK(cudaFreeHost(L->host_gt_image));
}

bool cuda_detect_loss_create(Backend *be, const DetectLossConfig *cfg, int64_t max_batch, int64_t max_targets,
                             BackendDetectLoss **out, Error *err) {
    *out = NULL;
    YP_CHECK(strcmp(be->name, "cuda") == 0 && max_targets >= 0);
    int64_t A = 0;
    if (!detect_loss_config_check(cfg, max_batch, &A, err)) return false;
    if (cfg->topk > CUDA_DETECT_LOSS_MAX_TOPK)
        return error_set(err, "detect loss: topk %lld: the CUDA loss keeps at most %d candidates per ground truth",
                         (long long)cfg->topk, CUDA_DETECT_LOSS_MAX_TOPK);
    if (max_batch > LOSS_MAX_IMAGES)
        return error_set(err, "detect loss: %lld images per micro-batch: the CUDA loss takes at most %d",
                         (long long)max_batch, LOSS_MAX_IMAGES);
    BackendDetectLoss *L = (BackendDetectLoss *)yp_calloc(1, sizeof *L);
    L->be = be;
    L->stream = cuda_ctx(be)->stream;
    L->cfg = *cfg;
    L->n_anchors = A;
    L->n_channels = 4 * cfg->reg_max + cfg->nc;
    L->max_batch = max_batch;
    L->anchor_blocks = cuda_blocks((size_t)A);
    const size_t per_batch = (size_t)(max_batch * A);
    L->anchors = (double *)loss_alloc(L, 3 * (size_t)A * sizeof(double));
    L->boxes = (double *)loss_alloc(L, 4 * per_batch * sizeof(double));
    L->claims = (int32_t *)loss_alloc(L, per_batch * sizeof(int32_t));
    L->assigned = (int32_t *)loss_alloc(L, per_batch * sizeof(int32_t));
    L->score = (double *)loss_alloc(L, per_batch * sizeof(double));
    L->partials = (double *)loss_alloc(L, 3 * (size_t)max_batch * L->anchor_blocks * sizeof(double));
    L->totals = (double *)loss_alloc(L, 3 * sizeof(double));
    L->gt_start = (int64_t *)loss_alloc(L, (size_t)(max_batch + 1) * sizeof(int64_t));
    CUDA_CHECK(cudaMallocHost((void **)&L->host_gt_start, (size_t)(max_batch + 1) * sizeof(int64_t)));

    double *grid = (double *)yp_malloc(3 * (size_t)A * sizeof *grid);
    detect_loss_anchor_grid(cfg, grid, grid + A, grid + 2 * A);
    CUDA_CHECK(cudaMemcpyAsync(L->anchors, grid, 3 * (size_t)A * sizeof *grid, cudaMemcpyHostToDevice, L->stream));
    CUDA_CHECK(cudaStreamSynchronize(L->stream));  // before grid is freed
    free(grid);
    cuda_detect_loss_reserve(be, L, max_targets);
    *out = L;
    return true;
}

void cuda_detect_loss_destroy(Backend *be, BackendDetectLoss *loss) {
    if (!loss) return;
    YP_CHECK(be == loss->be);
    CUDA_CHECK(cudaStreamSynchronize(loss->stream));  // kernels still queued use the buffers
    loss_free_targets(loss);
    be->ops->free(be, loss->anchors);
    be->ops->free(be, loss->boxes);
    be->ops->free(be, loss->claims);
    be->ops->free(be, loss->assigned);
    be->ops->free(be, loss->score);
    be->ops->free(be, loss->partials);
    be->ops->free(be, loss->totals);
    be->ops->free(be, loss->gt_start);
    CUDA_CHECK(cudaFreeHost(loss->host_gt_start));
    free(loss);
}

void cuda_detect_loss_reserve(Backend *be, BackendDetectLoss *loss, int64_t max_targets) {
    YP_CHECK(be == loss->be && max_targets >= 0);
    if (loss->gts && max_targets <= loss->gt_capacity) return;
    // At least double, so that a run whose batches slowly grow reallocates a few times only.
    int64_t cap = max_targets > 2 * loss->gt_capacity ? max_targets : 2 * loss->gt_capacity;
    CUDA_CHECK(cudaStreamSynchronize(loss->stream));  // queued kernels may read the old arrays
    loss_free_targets(loss);
    loss->gt_capacity = cap;
    size_t n = (size_t)(cap > 0 ? cap : 1);
    loss->gts = (DetectLossGt *)loss_alloc(loss, n * sizeof(DetectLossGt));
    loss->gt_image = (int32_t *)loss_alloc(loss, n * sizeof(int32_t));
    loss->pos_max = (double *)loss_alloc(loss, 2 * n * sizeof(double));
    CUDA_CHECK(cudaMallocHost((void **)&loss->host_gts, n * sizeof(DetectLossGt)));
    CUDA_CHECK(cudaMallocHost((void **)&loss->host_gt_image, n * sizeof(int32_t)));
}

double cuda_detect_loss_compute(Backend *be, BackendDetectLoss *loss, int64_t batch_n, const void *pred,
                                const TargetBox *targets, int64_t n_targets, float grad_scale, void *dpred,
                                DetectLossParts *parts) {
    YP_CHECK(be == loss->be && batch_n >= 1 && batch_n <= loss->max_batch && n_targets >= 0);
    YP_CHECK(n_targets <= loss->gt_capacity);  // cuda_detect_loss_reserve made room before the step
    CudaContext *ctx = cuda_ctx(loss->be);
    const cudaStream_t stream = loss->stream;
    const DetectLossConfig cfg = loss->cfg;
    const int64_t A = loss->n_anchors, n_partials = batch_n * loss->anchor_blocks;
    static_assert((int)LOSS_RESULTS <= (int)CUDA_REDUCE_SCRATCH, "results go through reduce_scratch");

    // The previous call waited for its uploads, so the staging buffers are free to overwrite.
    detect_loss_targets_group(&cfg, batch_n, targets, n_targets, loss->host_gts, loss->host_gt_start);
    for (int64_t i = 0; i < batch_n; i++)
        for (int64_t j = loss->host_gt_start[i]; j < loss->host_gt_start[i + 1]; j++)
            loss->host_gt_image[j] = (int32_t)i;
    CUDA_CHECK(cudaMemcpyAsync(loss->gt_start, loss->host_gt_start, (size_t)(batch_n + 1) * sizeof(int64_t),
                               cudaMemcpyHostToDevice, stream));
    double *pos_overlap = loss->pos_max, *pos_align = loss->pos_max + loss->gt_capacity;
    if (n_targets > 0) {
        CUDA_CHECK(cudaMemcpyAsync(loss->gts, loss->host_gts, (size_t)n_targets * sizeof(DetectLossGt),
                                   cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(loss->gt_image, loss->host_gt_image, (size_t)n_targets * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream));
        // All bits 0 is +0.0, the maxima's starting value.
        CUDA_CHECK(cudaMemsetAsync(loss->pos_max, 0, 2 * (size_t)loss->gt_capacity * sizeof(double), stream));
    }

    const dim3 grid(loss->anchor_blocks, (unsigned)batch_n);
    cuda_act_dispatch(loss->be->act, [&](auto tag) {
        using T = CudaAct<decltype(tag)>;
        const T *p = (const T *)pred;
        decode_kernel<<<grid, CUDA_THREADS, 0, stream>>>(A, cfg.reg_max, loss->n_channels, p, loss->anchors,
                                                         loss->boxes, loss->claims, loss->assigned);
        CUDA_CHECK_LAUNCH();
        if (n_targets > 0) {
            const int64_t max_blocks = TOPK_MAX_BLOCKS;
            const unsigned blocks = (unsigned)(n_targets < max_blocks ? n_targets : max_blocks);
            const size_t lists = (size_t)cfg.topk * TOPK_THREADS * (sizeof(double) + sizeof(int32_t));
            topk_kernel<<<blocks, TOPK_THREADS, lists, stream>>>(cfg, A, n_targets, p, loss->anchors, loss->boxes,
                                                                 loss->gts, loss->gt_image, loss->gt_start,
                                                                 loss->claims, loss->assigned);
            CUDA_CHECK_LAUNCH();
        }
        resolve_kernel<<<grid, CUDA_THREADS, 0, stream>>>(cfg, A, p, loss->anchors, loss->boxes, loss->gts,
                                                          loss->gt_start, loss->claims, loss->assigned, loss->score,
                                                          pos_overlap, pos_align);
        CUDA_CHECK_LAUNCH();
        normalise_kernel<<<grid, CUDA_THREADS, 0, stream>>>(A, cfg.eps, loss->gt_start, loss->assigned, pos_overlap,
                                                            pos_align, loss->score, loss->partials);
        CUDA_CHECK_LAUNCH();
        norm_kernel<<<1, CUDA_THREADS, 0, stream>>>(n_partials, batch_n, loss->partials, loss->totals);
        CUDA_CHECK_LAUNCH();
        class_loss_kernel<<<grid, CUDA_THREADS, 0, stream>>>(cfg, A, p, loss->gts, loss->gt_start, loss->assigned,
                                                             loss->score, loss->totals, grad_scale, (T *)dpred,
                                                             loss->partials);
        CUDA_CHECK_LAUNCH();
        box_loss_kernel<<<grid, CUDA_THREADS, 0, stream>>>(cfg, A, p, loss->anchors, loss->gts, loss->gt_start,
                                                           loss->assigned, loss->score, loss->totals, grad_scale,
                                                           (T *)dpred, loss->partials);
        CUDA_CHECK_LAUNCH();
    });
    finish_kernel<<<1, CUDA_THREADS, 0, stream>>>(n_partials, loss->partials, loss->totals, ctx->reduce_scratch);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(ctx->reduce_host, ctx->reduce_scratch, LOSS_RESULTS * sizeof(double),
                               cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));

    const double *r = ctx->reduce_host;
    const double sums[3] = {r[0], r[1], r[2]};
    return detect_loss_total(&cfg, batch_n, sums, detect_loss_norm(r[3]), (int64_t)r[4], n_targets, parts);
}
