#include "framework/train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/config.h"
#include "framework/train/pack_layout.h"

static const char *const kind_names[] = {[OPTIM_SGD] = "SGD", [OPTIM_ADAMW] = "AdamW"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == OPTIM_KIND_COUNT, "one name per optimizer");

static const char *const group_names[] = {[OPTIM_GROUP_WEIGHT] = "weight", [OPTIM_GROUP_BN] = "bn",
                                          [OPTIM_GROUP_BIAS] = "bias"};
_Static_assert(sizeof group_names / sizeof group_names[0] == OPTIM_GROUP_COUNT, "one name per group");
_Static_assert((int)OPTIM_GROUP_COUNT == (int)BACKEND_PARAM_GROUPS, "the backend's step scalars have one entry per group");

// PyTorch's state names per optimizer, one contiguous buffer each.
enum { OPTIM_MAX_STATE_KINDS = 2 };
static const char *const state_suffixes[OPTIM_KIND_COUNT][OPTIM_MAX_STATE_KINDS] = {
    [OPTIM_SGD] = {"momentum_buffer", NULL},
    [OPTIM_ADAMW] = {"exp_avg", "exp_avg_sq"},
};

struct Optimizer {
    Backend *be;  // not owned
    OptimKind kind;
    double weight_decay;
    int n_params;
    OptimParam *params;       // names owned
    PackLayout layout;        // the state buffers' layout: params packed in order
    MultiTensorTable *table;  // the layout's chunks on the backend, owned
    int n_state_kinds;
    float *state[OPTIM_MAX_STATE_KINDS];  // (layout.n_elems) each, backend memory, owned
    OptimState *states;                   // n_state_kinds x n_params views; names owned
    int64_t step_count;
};

const char *optim_kind_name(OptimKind kind) {
    YP_CHECK(kind >= 0 && kind < OPTIM_KIND_COUNT);
    return kind_names[kind];
}

const char *optim_group_name(OptimGroup group) {
    YP_CHECK(group >= 0 && group < OPTIM_GROUP_COUNT);
    return group_names[group];
}

// build_optimizer puts a parameter in the bias group when "bias" occurs anywhere in its full name
// (so batch-norm biases are biases), else in the batch-norm group when its module is a BatchNorm,
// else with the decayed weights. Our names are Ultralytics' state-dict names, so the first test is
// theirs verbatim. A name cannot say whether its module is a BatchNorm; the builder knows, and marks
// exactly batch-norm weights and biases PARAM_NO_DECAY.
OptimGroup optim_group_of(const char *name, unsigned flags) {
    if (strstr(name, "bias")) return OPTIM_GROUP_BIAS;
    if (flags & PARAM_NO_DECAY) return OPTIM_GROUP_BN;
    return OPTIM_GROUP_WEIGHT;
}

int64_t optim_accumulate(int64_t nbs, int64_t batch) { return config_accumulate(nbs, batch); }

double optim_scaled_weight_decay(double weight_decay, int64_t batch, int64_t accumulate, int64_t nbs) {
    return weight_decay * (double)batch * (double)accumulate / (double)nbs;
}

// Python's round(x, 6): the exact binary value rounded to 6 decimals, as printf rounds it.
static double round6(double x) {
    char text[64];
    snprintf(text, sizeof text, "%.6f", x);
    return strtod(text, NULL);
}

OptimAutoChoice optim_auto_choose(int64_t n_images, int64_t batch, int64_t nbs, int64_t epochs, int nc) {
    YP_CHECK(n_images >= 0 && batch > 0 && nbs > 0 && epochs >= 0);
    int64_t per_epoch = batch > nbs ? batch : nbs;
    int64_t iterations = (n_images + per_epoch - 1) / per_epoch * epochs;
    if (iterations > 10000) return (OptimAutoChoice){OPTIM_SGD, 0.01, 0.9, 0.0};
    return (OptimAutoChoice){OPTIM_ADAMW, round6(0.002 * 5 / (4 + nc)), 0.9, 0.0};
}

int optim_params_from_graph(const Graph *g, int layer_begin, int layer_end, OptimParam *params) {
    YP_CHECK(g->param_data && g->grad_data);
    int n = 0;
    for (int i = 0; i < g->n_params; i++) {
        const ParamInfo *p = &g->params[i];
        if ((p->flags & (PARAM_BUFFER | PARAM_NO_GRAD)) || p->layer < layer_begin || p->layer >= layer_end) continue;
        params[n++] = (OptimParam){.name = p->name,
                                   .value = g->param_data + p->offset,
                                   .grad = g->grad_data + p->offset,
                                   .n_elems = p->n_elems,
                                   .group = optim_group_of(p->name, p->flags)};
    }
    return n;
}

Optimizer *optim_create(Backend *be, OptimKind kind, double weight_decay, const OptimParam *params, int n_params) {
    YP_CHECK(kind >= 0 && kind < OPTIM_KIND_COUNT && n_params >= 0);
    Optimizer *opt = yp_calloc(1, sizeof *opt);
    opt->be = be;
    opt->kind = kind;
    opt->weight_decay = weight_decay;
    opt->n_params = n_params;
    opt->params = yp_malloc((size_t)(n_params ? n_params : 1) * sizeof *opt->params);
    int64_t *sizes = yp_malloc((size_t)(n_params ? n_params : 1) * sizeof *sizes);
    for (int i = 0; i < n_params; i++) {
        YP_CHECK(params[i].group >= 0 && params[i].group < OPTIM_GROUP_COUNT);
        YP_CHECK(params[i].n_elems == 0 || (params[i].value && params[i].grad));
        opt->params[i] = params[i];
        opt->params[i].name = yp_strdup(params[i].name);
        sizes[i] = params[i].n_elems;
    }
    opt->layout = pack_layout_make(sizes, n_params);
    free(sizes);
    const PackLayout *l = &opt->layout;
    MultiTensorChunk *chunks = yp_malloc((size_t)(l->n_chunks ? l->n_chunks : 1) * sizeof *chunks);
    for (int c = 0; c < l->n_chunks; c++) {
        const OptimParam *p = &opt->params[l->chunks[c].entry];
        chunks[c] = (MultiTensorChunk){.tensor = p->value, .grad = p->grad, .state_offset = l->offset[l->chunks[c].entry],
                                       .begin = l->chunks[c].begin, .end = l->chunks[c].end, .group = p->group};
    }
    opt->table = be->ops->multi_tensor_prepare(be, chunks, l->n_chunks);
    free(chunks);

    opt->n_state_kinds = state_suffixes[kind][1] ? 2 : 1;
    opt->states = yp_malloc((size_t)(opt->n_state_kinds * (n_params ? n_params : 1)) * sizeof *opt->states);
    for (int k = 0; k < opt->n_state_kinds; k++) {
        opt->state[k] = be->ops->alloc(be, (size_t)l->n_elems * sizeof(float));
        be->ops->fill(be, opt->state[k], 0.0f, (size_t)l->n_elems);
        for (int i = 0; i < n_params; i++) {
            size_t len = strlen(opt->params[i].name) + strlen(state_suffixes[kind][k]) + 2;
            char *name = yp_malloc(len);
            snprintf(name, len, "%s.%s", opt->params[i].name, state_suffixes[kind][k]);
            opt->states[k * n_params + i] =
                (OptimState){.name = name, .data = opt->state[k] + opt->layout.offset[i], .n_elems = params[i].n_elems};
        }
    }
    return opt;
}

void optim_destroy(Optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) free((char *)opt->params[i].name);
    for (int i = 0; i < opt->n_state_kinds * opt->n_params; i++) free((char *)opt->states[i].name);
    for (int k = 0; k < opt->n_state_kinds; k++) opt->be->ops->free(opt->be, opt->state[k]);
    opt->be->ops->multi_tensor_release(opt->be, opt->table);
    free(opt->states);
    pack_layout_free(&opt->layout);
    free(opt->params);
    free(opt);
}

// ---- clipping ----------------------------------------------------------------------------------

double optim_grad_sumsq(Optimizer *opt) { return opt->be->ops->grad_sumsq(opt->be, opt->table); }

double optim_clip_factor(double total_sumsq, double max_norm) {
    double coef = max_norm / (sqrt(total_sumsq) + 1e-6);
    return coef > 1.0 ? 1.0 : coef;  // a NaN stays NaN, as torch.clamp leaves it
}

void optim_grads_scale(Optimizer *opt, double factor) {
    if (factor == 1.0) return;
    opt->be->ops->grads_scale(opt->be, opt->table, (float)factor);
}

double optim_clip_grad_norm(Optimizer *opt, double max_norm) {
    double sumsq = optim_grad_sumsq(opt);
    optim_grads_scale(opt, optim_clip_factor(sumsq, max_norm));
    return sqrt(sumsq);
}

// ---- the update --------------------------------------------------------------------------------

// Scalars of one AdamW step, rounded to float where PyTorch passes them to float kernels; the
// element-wise update is the backend's (BackendOps.optim_adamw_step).
static AdamwStepScalars adamw_scalars(const OptimHyper *hyper, const double *wd, int64_t step) {
    double t = (double)step, beta1 = hyper->momentum;
    double bias_correction1 = 1 - pow(beta1, t);
    double bias_correction2 = 1 - pow(OPTIM_ADAMW_BETA2, t);
    AdamwStepScalars s = {
        .lerp_w = (float)(1 - beta1),
        .beta2 = (float)OPTIM_ADAMW_BETA2,
        .one_minus_beta2 = (float)(1 - OPTIM_ADAMW_BETA2),
        .bias_correction2_sqrt = (float)pow(bias_correction2, 0.5),  // Python's bias_correction2**0.5
        .eps = (float)OPTIM_ADAMW_EPS,
    };
    for (int g = 0; g < OPTIM_GROUP_COUNT; g++) {
        s.decay[g] = (float)(1 - hyper->lr[g] * wd[g]);
        s.neg_step_size[g] = (float)-(hyper->lr[g] / bias_correction1);
    }
    return s;
}

void optim_step(Optimizer *opt, const OptimHyper *hyper) {
    Backend *be = opt->be;
    const int64_t step = opt->step_count + 1;
    // Per group: weight decay applies to the weight group only (build_optimizer's groups).
    const double wd[OPTIM_GROUP_COUNT] = {[OPTIM_GROUP_WEIGHT] = opt->weight_decay};
    if (opt->kind == OPTIM_SGD) {
        SgdStepScalars s = {.momentum = (float)hyper->momentum};
        for (int g = 0; g < OPTIM_GROUP_COUNT; g++) {
            s.lr[g] = (float)hyper->lr[g];
            s.weight_decay[g] = (float)wd[g];
        }
        be->ops->optim_sgd_step(be, opt->table, opt->state[0], s);
    } else {
        be->ops->optim_adamw_step(be, opt->table, opt->state[0], opt->state[1], adamw_scalars(hyper, wd, step));
    }
    opt->step_count = step;
}

OptimKind optim_kind(const Optimizer *opt) { return opt->kind; }

int64_t optim_step_count(const Optimizer *opt) { return opt->step_count; }

void optim_set_step_count(Optimizer *opt, int64_t steps) {
    YP_CHECK(steps >= 0);
    opt->step_count = steps;
}

int optim_state_count(const Optimizer *opt) { return opt->n_state_kinds * opt->n_params; }

int64_t optim_state_elems(const Optimizer *opt) { return opt->n_state_kinds * opt->layout.n_elems; }

const OptimState *optim_state_get(const Optimizer *opt, int index) {
    YP_CHECK(index >= 0 && index < optim_state_count(opt));
    return &opt->states[index];
}

const OptimState *optim_state_find(const Optimizer *opt, const char *name) {
    for (int i = 0; i < optim_state_count(opt); i++)
        if (!strcmp(opt->states[i].name, name)) return &opt->states[i];
    return NULL;
}

void optim_state_download(const Optimizer *opt, int index, float *host) {
    const OptimState *s = optim_state_get(opt, index);
    opt->be->ops->download(opt->be, host, s->data, (size_t)s->n_elems * sizeof(float));
}

void optim_state_upload(Optimizer *opt, int index, const float *host) {
    const OptimState *s = optim_state_get(opt, index);
    opt->be->ops->upload(opt->be, s->data, host, (size_t)s->n_elems * sizeof(float));
}
