// The optimizer, gradient clipping and EMA on the CUDA backend against the CPU backend
// (BackendOps' multi-tensor slots, kernels/cuda/cuda_optim.cu). The same optimizer over the same
// random parameters and gradients runs on each backend: several clipped SGD or AdamW steps (both of
// lerp's formulas), an explicit gradient scale, and EMA updates in both lerp regimes; then every
// parameter, gradient, state tensor and EMA copy is compared. Tensors sit in one buffer with gaps
// between them that hold a sentinel, so a kernel writing outside its chunks is caught too. Host
// buffers are NaN-filled before every download, so anything left unwritten shows.
// Exits 77 (skipped) when there is no CUDA device.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framework/train/ema.h"
#include "framework/train/optim.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#include "tests/common/assert_close.h"
#include "tests/unit/gradcheck.h"

// Element-wise results, relative to each tensor's largest CPU value: every element gets the same
// float operations in the same order on both backends, so they agree but for the clip factor, whose
// double sums are added in another order within a chunk and may move the factor by an ulp; a few
// ulps over the steps stay far below 1e-6.
static const double tol = 1e-6;
// Squared gradient norms: the same double terms summed in two orders, n·eps ≈ 2e-12 at worst for a
// chunk of 16384.
static const double sumsq_tol = 1e-10;

enum { N_TENSORS = 7, GAP = 37, N_STEPS = 5 };
static const int64_t sizes[N_TENSORS] = {100003, 17, 0, 40000, 1, 16384, 70001};  // chunks of 16384 and their tails
static const char *const names[N_TENSORS] = {"w0", "b1.bias", "empty", "bn3.weight", "b4.bias", "w5", "bn6.weight"};
static const OptimGroup groups[N_TENSORS] = {OPTIM_GROUP_WEIGHT, OPTIM_GROUP_BIAS,   OPTIM_GROUP_WEIGHT, OPTIM_GROUP_BN,
                                             OPTIM_GROUP_BIAS,   OPTIM_GROUP_WEIGHT, OPTIM_GROUP_BN};
enum { N_BUFFER_ELEMS = 5003 };  // stand-in for running statistics: an EMA entry without a gradient
static const float sentinel = 12345.0f;

static int64_t offset_of(int t) {
    int64_t off = GAP;
    for (int i = 0; i < t; i++) off += sizes[i] + GAP;
    return off;
}

static int64_t total_elems(void) { return offset_of(N_TENSORS); }

// One backend's copy of the model and its optimizer and EMA.
typedef struct Side {
    Backend *be;
    float *params, *grads;  // (total_elems()) backend memory, tensors at offset_of(t), gaps hold the sentinel
    float *buffers;         // (N_BUFFER_ELEMS) backend memory
    Optimizer *opt;
    ModelEma *ema;
} Side;

static Backend *cpu, *cuda;

static void upload_tensors(Backend *be, float *dst, const float *host) {
    be->ops->upload(be, dst, host, (size_t)total_elems() * sizeof(float));
}

static Side side_create(Backend *be, OptimKind kind, const float *host_params, const float *host_buffers) {
    Side s = {.be = be};
    int64_t n = total_elems();
    s.params = be->ops->alloc(be, (size_t)n * sizeof(float));
    s.grads = be->ops->alloc(be, (size_t)n * sizeof(float));
    s.buffers = be->ops->alloc(be, N_BUFFER_ELEMS * sizeof(float));
    upload_tensors(be, s.params, host_params);
    be->ops->fill(be, s.grads, sentinel, (size_t)n);
    be->ops->upload(be, s.buffers, host_buffers, N_BUFFER_ELEMS * sizeof(float));
    OptimParam op[N_TENSORS];
    EmaEntry entries[N_TENSORS + 1];
    for (int t = 0; t < N_TENSORS; t++) {
        op[t] = (OptimParam){names[t], s.params + offset_of(t), s.grads + offset_of(t), sizes[t], groups[t]};
        entries[t] = (EmaEntry){names[t], s.params + offset_of(t), sizes[t]};
    }
    entries[N_TENSORS] = (EmaEntry){"running_mean", s.buffers, N_BUFFER_ELEMS};
    s.opt = optim_create(be, kind, 0.05, op, N_TENSORS);
    s.ema = ema_create(be, entries, N_TENSORS + 1, EMA_DECAY, EMA_TAU);
    return s;
}

static void side_destroy(Side *s) {
    optim_destroy(s->opt);
    ema_destroy(s->ema);
    s->be->ops->free(s->be, s->params);
    s->be->ops->free(s->be, s->grads);
    s->be->ops->free(s->be, s->buffers);
}

// Downloads n floats into a NaN-filled host buffer (owned by the caller).
static float *download(Backend *be, const float *src, int64_t n) {
    float *host = malloc((size_t)(n ? n : 1) * sizeof *host);
    for (int64_t i = 0; i < n; i++) host[i] = NAN;
    be->ops->download(be, host, src, (size_t)n * sizeof(float));
    return host;
}

// n floats of a CUDA buffer against the CPU's; with `gaps`, a tensor buffer whose gaps must still
// hold the sentinel.
static void compare_buffers(const char *what, const float *cuda_buf, const float *cpu_buf, int64_t n, bool gaps) {
    float *got = download(cuda, cuda_buf, n), *want = download(cpu, cpu_buf, n);
    assert_close_peak(what, got, want, n, tol);  // a NaN (an unwritten element) fails
    for (int t = 0; gaps && t <= N_TENSORS; t++)
        for (int64_t i = offset_of(t) - GAP; i < offset_of(t); i++)
            if (got[i] != sentinel || want[i] != sentinel) fail_msg("%s: gap element %lld was written", what, (long long)i);
    free(got), free(want);
}

// Steps of `kind` with AdamW's beta1 (SGD's momentum) `momentum`, the same on both backends.
static void run(OptimKind kind, double momentum) {
    int64_t n = total_elems();
    float *host = malloc((size_t)n * sizeof *host), *host_buffers = malloc(N_BUFFER_ELEMS * sizeof *host_buffers);
    for (int64_t i = 0; i < n; i++) host[i] = sentinel;
    for (int t = 0; t < N_TENSORS; t++) test_fill_uniform(host + offset_of(t), sizes[t], -1, 1, 10 + (uint64_t)t);
    test_fill_uniform(host_buffers, N_BUFFER_ELEMS, 0, 2, 20);
    Side c = side_create(cuda, kind, host, host_buffers), h = side_create(cpu, kind, host, host_buffers);
    Side *sides[2] = {&c, &h};
    double sumsq[2] = {0}, norm[2];
    for (int step = 0; step < N_STEPS; step++) {
        // Gradients growing with the step: the later steps are clipped, the first ones not.
        for (int t = 0; t < N_TENSORS; t++)
            test_fill_uniform(host + offset_of(t), sizes[t], -0.02f * (float)(step + 1), 0.02f * (float)(step + 1),
                              100 + 10 * (uint64_t)step + (uint64_t)t);
        test_fill_uniform(host_buffers, N_BUFFER_ELEMS, 0, 2, 200 + (uint64_t)step);
        OptimHyper hyper = {.lr = {0.01 + 0.002 * step, 0.003, 0.08 - 0.01 * step}, .momentum = momentum};
        for (int k = 0; k < 2; k++) {
            Side *s = sides[k];
            upload_tensors(s->be, s->grads, host);
            s->be->ops->upload(s->be, s->buffers, host_buffers, N_BUFFER_ELEMS * sizeof(float));
            sumsq[k] = optim_grad_sumsq(s->opt);
            if (step == 1) optim_grads_scale(s->opt, 0.37);
            norm[k] = optim_clip_grad_norm(s->opt, OPTIM_CLIP_MAX_NORM);
            optim_step(s->opt, &hyper);
            if (step == 3) ema_set_updates(s->ema, 3000);  // from lerp's large-weight formula to its small-weight one
            ema_update(s->ema);
        }
        assert_close_named("squared gradient norm", sumsq[0], sumsq[1], 0.0, sumsq_tol);
        assert_close_named("gradient norm", norm[0], norm[1], 0.0, sumsq_tol);
    }
    assert_true(optim_clip_factor(sumsq[1], OPTIM_CLIP_MAX_NORM) < 1.0);  // the last step was clipped

    compare_buffers("parameters", c.params, h.params, n, true);
    compare_buffers("gradients", c.grads, h.grads, n, true);
    compare_buffers("running statistics", c.buffers, h.buffers, N_BUFFER_ELEMS, false);
    assert_int_equal(optim_state_count(c.opt), optim_state_count(h.opt));
    for (int i = 0; i < optim_state_count(h.opt); i++) {
        const OptimState *s = optim_state_get(h.opt, i);
        float *got = malloc((size_t)(s->n_elems + 1) * sizeof *got), *want = malloc((size_t)(s->n_elems + 1) * sizeof *want);
        for (int64_t j = 0; j < s->n_elems; j++) got[j] = want[j] = NAN;
        optim_state_download(c.opt, i, got);
        optim_state_download(h.opt, i, want);
        assert_close_peak(s->name, got, want, s->n_elems, tol);
        free(got), free(want);
    }
    for (int i = 0; i < ema_count(h.ema); i++) {
        int64_t n_elems;
        const float *got = ema_get(c.ema, i, &n_elems), *want = ema_get(h.ema, i, &n_elems);
        char what[96];
        snprintf(what, sizeof what, "EMA %s", ema_name(h.ema, i));
        compare_buffers(what, got, want, n_elems, false);
    }
    side_destroy(&c);
    side_destroy(&h);
    free(host), free(host_buffers);
}

static void test_sgd(void **state) {
    (void)state;
    run(OPTIM_SGD, 0.937);
}

// beta1 0.937: exp_avg's lerp weight 0.063 takes lerp's small-weight formula.
static void test_adamw(void **state) {
    (void)state;
    run(OPTIM_ADAMW, 0.937);
}

// beta1 0.3: weight 0.7, lerp's other formula.
static void test_adamw_large_lerp_weight(void **state) {
    (void)state;
    run(OPTIM_ADAMW, 0.3);
}

// An optimizer and an EMA over nothing (a stage without parameters) launch no kernel.
static void test_empty(void **state) {
    (void)state;
    for (OptimKind kind = 0; kind < OPTIM_KIND_COUNT; kind++) {
        Optimizer *opt = optim_create(cuda, kind, 0.05, NULL, 0);
        assert_true(optim_clip_grad_norm(opt, OPTIM_CLIP_MAX_NORM) == 0.0);
        optim_step(opt, &(OptimHyper){.lr = {0.1, 0.1, 0.1}, .momentum = 0.9});
        optim_destroy(opt);
    }
    ModelEma *ema = ema_create(cuda, NULL, 0, EMA_DECAY, EMA_TAU);
    ema_update(ema);
    ema_destroy(ema);
    cuda->ops->synchronize(cuda);
}

static int setup(void **state) {
    (void)state;
    cpu = cpu_backend_create(DTYPE_F32);
    cuda = cuda_backend_create(&(CudaBackendOptions){.act = DTYPE_F32, .deterministic = true});
    return 0;
}

static int teardown(void **state) {
    (void)state;
    backend_destroy(cuda);
    backend_destroy(cpu);
    return 0;
}

int main(void) {
    if (cuda_device_count() == 0) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adamw_large_lerp_weight),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
