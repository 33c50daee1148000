// The CUDA backend's attention slots (kernels/cuda/cuda_attention.cu) against the CPU backend's, in
// fp32, bf16 and fp16, each against a CPU backend of the same activation type: the same rounded
// inputs go to both (upload_activation), forward's probs and y and backward's dqkv come back with
// download_activation. dqkv starts from the same random prior on both sides, so backward must add
// onto it; outputs start as NaN on the device, so an element never written fails. Shapes: C2PSA's
// Attention at a 20x20 map (key_dim 32 ≠ head_dim 64), YOLO12's area attention (4 areas, head_dim 32)
// and an odd token count with extra qkv channels.
//
// A tensor passes when rel = ||dut − ref||₂ / ||ref − prior||₂ <= tol and max |dut − ref| <= 10 tol ·
// max |ref − prior|. tol: 1e-4 in fp32 (float32 on both sides, different summation orders: cuBLAS
// against OpenBLAS, warp trees against sequential sums; TF32 off); 2e-2 in bf16/fp16, five bf16 units
// (the sides round in the same places, but a float32 value that differs in its last bits rounds to the
// neighbouring 16-bit value near a boundary, and P, dS and y carry that on), as test_backend_compare's
// tol_lowp. YP_COMPARE_CPU_ONLY=1 runs the program without a GPU, the device being a second CPU
// backend, every tolerance 0. Exit status: 0 when all pass, 77 (skipped) without a CUDA device.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#include "tests/unit/gradcheck.h"

typedef struct CompareCase {
    const char *name;
    AttentionArgs shape;
} CompareCase;

static const CompareCase compare_cases[] = {
    {"c2psa-20x20", {.n = 2, .tokens = 400, .areas = 1, .heads = 2, .key_dim = 32, .head_dim = 64, .qkv_c = 256,
                     .head_stride = 128, .q_c0 = 0, .k_c0 = 32, .v_c0 = 64, .scale = 0.17677669f}},
    {"aattn-area4", {.n = 2, .tokens = 256, .areas = 4, .heads = 3, .key_dim = 32, .head_dim = 32, .qkv_c = 288,
                     .head_stride = 96, .q_c0 = 0, .k_c0 = 32, .v_c0 = 64, .scale = 0.17677669f}},
    {"odd-extra", {.n = 1, .tokens = 37, .areas = 1, .heads = 4, .key_dim = 8, .head_dim = 16, .qkv_c = 132,
                   .head_stride = 32, .q_c0 = 0, .k_c0 = 8, .v_c0 = 16, .scale = 0.35355339f}},
};

// One tensor on both sides: host values (rounded to the type), and each side's activations.
typedef struct Pair {
    int64_t n;
    float *host;
    void *mem[2];  // [0] the CPU reference, [1] the device under test
} Pair;

static Pair pair_create(Backend *be[2], int64_t n, float lo, float hi, uint64_t seed) {
    Pair p = {.n = n, .host = malloc((size_t)n * sizeof(float))};
    if (!p.host) abort();
    test_fill_uniform(p.host, n, lo, hi, seed);
    for (int s = 0; s < 2; s++) {
        p.mem[s] = be[s]->ops->alloc(be[s], backend_act_bytes(be[s], n));
        be[s]->ops->upload_activation(be[s], p.mem[s], p.host, (size_t)n);
    }
    return p;
}

static void pair_destroy(Backend *be[2], Pair *p) {
    for (int s = 0; s < 2; s++) be[s]->ops->free(be[s], p->mem[s]);
    free(p->host);
}

// Compares the two sides of p (contributions on top of `prior`, NULL: 0); prints one line.
static bool pair_check(Backend *be[2], const char *what, const Pair *p, const float *prior, double tol) {
    float *got[2];
    for (int s = 0; s < 2; s++) {
        got[s] = malloc((size_t)p->n * sizeof(float));
        if (!got[s]) abort();
        be[s]->ops->download_activation(be[s], got[s], p->mem[s], (size_t)p->n);
    }
    double diff2 = 0.0, ref2 = 0.0, maxabs = 0.0, peak = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < p->n; i++) {
        const double contribution = (double)got[0][i] - (prior ? prior[i] : 0.0f), d = (double)got[1][i] - got[0][i];
        if (!isfinite(got[0][i]) || !isfinite(got[1][i])) bad++;
        diff2 += d * d;
        ref2 += contribution * contribution;
        maxabs = fmax(maxabs, fabs(d));
        peak = fmax(peak, fabs(contribution));
    }
    const double rel = ref2 > 0.0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    const bool pass = bad == 0 && rel <= tol && maxabs <= 10.0 * tol * peak;
    printf("%s %-32s rel %.3g maxabs %.3g peak %.3g non-finite %lld tol %g\n", pass ? "ok  " : "FAIL", what, rel,
           maxabs, peak, (long long)bad, tol);
    free(got[0]);
    free(got[1]);
    return pass;
}

static bool compare_case(Backend *be[2], DType act, const CompareCase *cc, double tol, uint64_t seed) {
    AttentionArgs args[2] = {cc->shape, cc->shape};
    const int64_t n_qkv = (int64_t)attention_qkv_elems(&cc->shape), n_y = (int64_t)attention_y_elems(&cc->shape);
    const int64_t n_p = (int64_t)attention_probs_elems(&cc->shape);
    Pair qkv = pair_create(be, n_qkv, -1.5f, 1.5f, seed), dy = pair_create(be, n_y, -1.0f, 1.0f, seed + 1);
    Pair dqkv = pair_create(be, n_qkv, -1.0f, 1.0f, seed + 2);
    Pair probs = pair_create(be, n_p, NAN, NAN, 0), y = pair_create(be, n_y, NAN, NAN, 0);
    float *prior = malloc((size_t)n_qkv * sizeof(float));
    if (!prior) abort();
    be[0]->ops->download_activation(be[0], prior, dqkv.mem[0], (size_t)n_qkv);  // the prior as rounded
    for (int s = 0; s < 2; s++) {
        args[s].qkv = qkv.mem[s], args[s].probs = probs.mem[s], args[s].y = y.mem[s];
        args[s].dy = dy.mem[s], args[s].dqkv = dqkv.mem[s];
        be[s]->ops->reserve_workspace(be[s], be[s]->ops->attention_workspace_bytes(be[s], &args[s]));
        be[s]->ops->attention_forward(be[s], &args[s]);
        be[s]->ops->attention_backward(be[s], &args[s]);
        be[s]->ops->synchronize(be[s]);
    }
    char what[96];
    bool ok = true;
    snprintf(what, sizeof what, "%s %s probs", dtype_name(act), cc->name);
    ok &= pair_check(be, what, &probs, NULL, tol);
    snprintf(what, sizeof what, "%s %s y", dtype_name(act), cc->name);
    ok &= pair_check(be, what, &y, NULL, tol);
    snprintf(what, sizeof what, "%s %s dqkv", dtype_name(act), cc->name);
    ok &= pair_check(be, what, &dqkv, prior, tol);
    free(prior);
    Pair *pairs[] = {&qkv, &dy, &dqkv, &probs, &y};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) pair_destroy(be, pairs[i]);
    return ok;
}

int main(void) {
    const char *cpu_only_env = getenv("YP_COMPARE_CPU_ONLY");
    const bool cpu_only = cpu_only_env && !strcmp(cpu_only_env, "1");
    if (!cpu_only && cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    static const DType types[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16};
    int failed = 0;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const DType act = types[t];
        Backend *be[2] = {cpu_backend_create(act), NULL};
        be[1] = cpu_only ? cpu_backend_create(act)
                         : cuda_backend_create(&(CudaBackendOptions){.device = 0, .allow_tf32 = false, .act = act});
        const double tol = cpu_only ? 0.0 : act == DTYPE_F32 ? 1e-4 : 2e-2;
        for (int s = 0; s < 2; s++) be[s]->ops->reserve_activations(be[s], 1 << 20);
        for (size_t c = 0; c < sizeof compare_cases / sizeof *compare_cases; c++)
            failed += !compare_case(be, act, &compare_cases[c], tol, 1000 * (uint64_t)(t + 1) + 10 * (uint64_t)c);
        backend_destroy(be[0]);
        backend_destroy(be[1]);
    }
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
