// `yolopipe profile EXP.yaml [--set k=v]... [--out FILE.csv] [--repeats N] [--nc K]`: times each
// layer's training forward and backward for one micro-batch on the CPU backend, and the step's other
// costs (optimizer, EMA, loss, loader: framework/train/step_profile.h), and writes the profile CSV
// (partition/cost.h) that the partitioner takes instead of its FLOP estimate.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "framework/cli/cli.h"
#include "framework/config/config.h"
#include "framework/core/clock.h"
#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/core/sort.h"
#include "framework/config/experiment_data.h"
#include "framework/data/dataset.h"
#include "framework/train/step_profile.h"
#include "kernels/cpu/cpu_backend.h"
#include "layers/graph.h"
#include "partition/cost.h"

typedef struct ProfileArgs {
    const char *path;
    CliList set;
    const char *out;
    int64_t repeats, nc;
} ProfileArgs;

static const CliOption profile_options[] = {
    CLI_OPTION_SET(ProfileArgs, set),
    {.name = "out", .value = CLI_VALUE_STRING, .offset = offsetof(ProfileArgs, out), .metavar = "FILE.csv",
     .help = "where the profile goes (default <output.dir>/<name>/profile.csv)"},
    {.name = "repeats", .value = CLI_VALUE_POSITIVE, .offset = offsetof(ProfileArgs, repeats), .metavar = "N",
     .max = 1000, .help = "timed passes after one warm-up; the median is kept (default 5)"},
    {.name = "nc", .value = CLI_VALUE_POSITIVE, .offset = offsetof(ProfileArgs, nc), .metavar = "K",
     .help = "class count (default: the dataset's, as in training;\nwithout a dataset the model file's)"},
};

static const CliPositional profile_positionals[] = {{.metavar = "EXP.yaml", .offset = offsetof(ProfileArgs, path)}};

const CliCommand cmd_profile_cli = {
    .name = "profile",
    .summary = "per-layer times of one micro-batch, for the planner",
    .description = "Times every layer's training forward and backward for one micro-batch on the CPU\n"
                   "(train.batch / (parallel.replicas x parallel.micro_batches) images of train.imgsz), the\n"
                   "optimizer step and EMA update of the whole model, and, on the experiment's dataset (generated\n"
                   "from its synth: block when missing), the loss of one micro-batch and the training loader's\n"
                   "images/s per thread; writes the profile CSV that `yolopipe plan --profile` takes instead of\n"
                   "its FLOP estimate.\n",
    .positionals = profile_positionals,
    .n_positionals = 1,
    .options = profile_options,
    .n_options = sizeof profile_options / sizeof *profile_options,
    .run = cmd_profile,
};

// One timed training pass, layer by layer: the forward of each layer into times[0, n), the backward
// of each into [n, 2n), and the backward again split into its input pass (B) and weight pass (W,
// run right after each layer's B so that it holds that layer's deferred gradients only), W into
// [2n, 3n) and B + W into [3n, 4n). A layer's backward includes zeroing its output gradient, which
// the executor does before each backward. The input and the output gradient are random; the other
// output gradients start at zero, as in graph_backward.
static void profile_pass(Graph *g, uint64_t seed, double *times) {
    Backend *be = g->be;
    int n = g->n_layers;
    be->ops->fill_uniform(be, g->input.data, (size_t)tensor_elems(&g->input), 0.0f, 1.0f, seed);
    for (int i = 0; i < n; i++) {
        double t0 = clock_monotonic_s();
        graph_forward_layers(g, i, i + 1, true);
        times[i] = clock_monotonic_s() - t0;
    }
    for (int split = 0; split < 2; split++) {
        // The executor zeroes every output gradient before a backward: each layer is charged its own.
        double *zero_s = split ? times + 2 * n : times + n;
        for (int i = 0; i + 1 < n; i++) {
            double t0 = clock_monotonic_s();
            be->ops->zero(be, g->layers[i].dout.data, backend_act_bytes(be, tensor_elems(&g->layers[i].out)));
            zero_s[i] = clock_monotonic_s() - t0;
        }
        zero_s[n - 1] = 0;
        Layer *out = graph_output(g);
        be->ops->fill_uniform(be, out->dout.data, (size_t)tensor_elems(&out->out), -1.0f, 1.0f, seed + 1);
        for (int i = n - 1; i >= 0; i--) {
            double t0 = clock_monotonic_s();
            if (!split) {
                graph_backward_layers(g, i, i + 1);
                times[n + i] += clock_monotonic_s() - t0;
                continue;
            }
            graph_backward_input_layers(g, i, i + 1);
            double t1 = clock_monotonic_s();
            graph_backward_weight(g);
            double t2 = clock_monotonic_s();
            times[3 * n + i] = times[2 * n + i] + (t2 - t0);
            times[2 * n + i] = t2 - t1;
        }
    }
}

enum { PROFILE_PASS_TIMES = 4 };  // per layer: forward, backward, W, B + W

// Times the graph: one warm-up pass, then the median of `repeats` passes per layer. The W share is
// the median of W / (B + W), applied to the (unsplit) backward time.
static CostProfile *profile_measure(Graph *g, int64_t micro, int64_t imgsz, int repeats) {
    int n = g->n_layers;
    size_t per_pass = PROFILE_PASS_TIMES * (size_t)n;
    double *times = yp_malloc((size_t)repeats * per_pass * sizeof *times);
    double *one = yp_malloc((size_t)repeats * sizeof *one);
    profile_pass(g, 1, times);
    for (int r = 0; r < repeats; r++) profile_pass(g, 2 + 2 * (uint64_t)r, times + (size_t)r * per_pass);
    CostProfile *p = cost_profile_create(n, micro, imgsz);
    for (int i = 0; i < n; i++) {
        snprintf(p->rows[i].module, sizeof p->rows[i].module, "%s", g->layers[i].row->module);
        for (int r = 0; r < repeats; r++) one[r] = times[(size_t)r * per_pass + (size_t)i];
        p->rows[i].fwd_s = sort_median(one, repeats);
        for (int r = 0; r < repeats; r++) one[r] = times[(size_t)r * per_pass + (size_t)(n + i)];
        p->rows[i].bwd_s = sort_median(one, repeats);
        for (int r = 0; r < repeats; r++) {
            const double *t = times + (size_t)r * per_pass;
            one[r] = t[3 * n + i] > 0 ? t[2 * n + i] / t[3 * n + i] : 0.0;
        }
        p->rows[i].bwd_weight_s = sort_median(one, repeats) * p->rows[i].bwd_s;
    }
    free(one);
    free(times);
    return p;
}

static void profile_print(const Graph *g, const CostProfile *p) {
    printf("%3s  %-12s %10s %10s %10s %10s\n", "", "module", "fwd ms", "bwd ms", "GFLOPs", "GFLOP/s");
    double fwd = 0, bwd = 0, flops = 0;
    for (int i = 0; i < p->n_layers; i++) {
        const CostProfileRow *r = &p->rows[i];
        double layer_flops = 2.0 * g->layers[i].ops * (double)p->batch;  // forward; backward about twice
        double t = r->fwd_s + r->bwd_s;
        printf("%3d  %-12s %10.3f %10.3f %10.3f %10.1f\n", i, r->module, 1e3 * r->fwd_s, 1e3 * r->bwd_s, layer_flops / 1e9,
               t > 0 ? 3.0 * layer_flops / t / 1e9 : 0.0);
        fwd += r->fwd_s;
        bwd += r->bwd_s;
        flops += layer_flops;
    }
    printf("%s: %lld images of %lldx%lld per micro-batch: forward %.1f ms, backward %.1f ms, %.1f GFLOP/s "
           "(forward + backward counted as 3x forward FLOPs)\n",
           g->spec->name, (long long)p->batch, (long long)p->imgsz, (long long)p->imgsz, 1e3 * fwd, 1e3 * bwd,
           fwd + bwd > 0 ? 3.0 * flops / (fwd + bwd) / 1e9 : 0.0);
}

// The step lines, with the figures they were computed from.
static void profile_print_steps(const ExperimentConfig *cfg, const CostProfile *p, const StepProfileReport *r,
                                const char *path) {
    double mb = (double)r->param_bytes / 1e6;
    printf("optimizer step (%s, clipping included): %.2f ms for %.1f MB of parameters (%.3g s per byte)\n",
           optim_kind_name(r->optimizer), 1e3 * r->optimizer_s, mb, p->optimizer_s_per_param_byte);
    printf("EMA update: %.2f ms (%.3g s per parameter byte)\n", 1e3 * r->ema_s, p->ema_s_per_param_byte);
    if (r->loss_images)
        printf("loss, forward and backward: %.2f ms per micro-batch of %lld images with %lld boxes "
               "(%.3g s per image)\n",
               1e3 * r->loss_s, (long long)r->loss_images, (long long)r->loss_targets, p->loss_s_per_image);
    else if (r->loader_images)
        printf("loss: not measured (the loss of reg_max 1 boxes is not implemented yet); plan estimates it\n");
    if (r->loader_images) {
        printf("loader: %.1f images/s per worker thread (%lld images of %lld px per batch, mosaic %g)\n",
               p->loader_images_per_s_per_worker, (long long)r->loader_images, (long long)cfg->train.imgsz,
               cfg->augment.mosaic);
    }
    printf("wrote %s\n", path);
}

// The training split when the experiment's data is there (generated from its synth: block when
// missing), else NULL with a notice: the loss and loader lines are then left out.
static bool profile_open_data(const ExperimentConfig *cfg, Dataset **ds, DatasetSplit **split, Error *err) {
    *ds = NULL;
    *split = NULL;
    if (!experiment_data_generate(cfg, stderr, err)) return false;
    struct stat st;
    if (stat(cfg->data, &st) != 0) {
        fprintf(stderr, "yolopipe profile: %s does not exist and the experiment has no synth: block: "
                        "no loss and loader timings\n", cfg->data);
        return true;
    }
    int threads = cfg->train.workers > 0 ? (int)cfg->train.workers : 1;
    return experiment_data_open(cfg, ds, err) && dataset_scan(*ds, DATASET_SPLIT_TRAIN, threads, split, err);
}

static bool profile_write(const CostProfile *p, const char *path, Error *err) {
    FsAtomicFile *f = NULL;
    if (!fs_atomic_file_open(path, &f, err)) return false;
    cost_profile_write(p, fs_atomic_file_stream(f));
    return fs_atomic_file_commit(f, err);
}

static bool profile_run(const ProfileArgs *args, const ExperimentConfig *cfg, Error *err) {
    if (cfg->device.backend == CONFIG_BACKEND_CUDA)
        return config_error_at(cfg, "device.backend", err, "device.backend: profile runs on the cpu backend only; use cpu or auto");
    int64_t micro = cfg->train.batch / (cfg->parallel.replicas * cfg->parallel.micro_batches);
    char out_path[PATH_MAX];
    if (args->out) {
        if (!path_format(out_path, sizeof out_path, err, "%s", args->out)) return false;
    } else {
        char run_dir[PATH_MAX];
        if (!path_format(run_dir, sizeof run_dir, err, "%s/%s", cfg->output.dir, cfg->name) ||
            !path_format(out_path, sizeof out_path, err, "%s/profile.csv", run_dir) || !fs_mkdir_p(run_dir, err))
            return false;
    }
    ModelSpec *spec = NULL;
    Graph *g = NULL;
    Backend *be = NULL;
    Dataset *ds = NULL;
    DatasetSplit *split = NULL;
    bool ok = profile_open_data(cfg, &ds, &split, err);
    int64_t nc = args->nc ? args->nc : ds ? ds->nc : 0;
    ok = ok && model_spec_load(cfg->model, &(ModelOptions){.scale = cfg->scale, .nc = nc}, &spec, err);
    if (ok && spec->scale_defaulted)
        fprintf(stderr, "yolopipe: %s: no scale given, using the first one, '%s'\n", cfg->model, spec->scale);
    if (ok) {
        be = cpu_backend_create(DTYPE_F32);
        GraphOptions go = {.batch = micro, .imgsz_h = cfg->train.imgsz, .imgsz_w = cfg->train.imgsz, .be = be,
                           .seed = (uint64_t)cfg->train.seed, .split_backward = true};
        ok = graph_create(spec, &go, &g, err);
    }
    if (ok) {
        CostProfile *p = profile_measure(g, micro, cfg->train.imgsz, (int)args->repeats);
        StepProfileReport report;
        StepProfileInput in = {.cfg = cfg, .graph = g, .train = split, .repeats = (int)args->repeats};
        ok = step_profile_measure(&in, p, &report, err) && profile_write(p, out_path, err);
        if (ok) {
            profile_print(g, p);
            profile_print_steps(cfg, p, &report, out_path);
        }
        cost_profile_destroy(p);
    }
    dataset_split_destroy(split);
    dataset_destroy(ds);
    graph_destroy(g);
    backend_destroy(be);
    model_spec_destroy(spec);
    return ok;
}

int cmd_profile(int argc, char **argv) {
    ProfileArgs args = {.repeats = 5};
    int rc = cli_parse(&cmd_profile_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    Error err = {0};
    ExperimentConfig *cfg = NULL;
    bool ok = config_load(args.path, args.set.n, args.set.items, &cfg, &err) && profile_run(&args, cfg, &err);
    if (!ok) fprintf(stderr, "%s\n", err.message);
    config_destroy(cfg);
    free(args.set.items);
    return ok ? 0 : YP_EXIT_USAGE;
}
