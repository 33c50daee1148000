// `yolopipe plan EXP.yaml [--set k=v]... [--json] [--trace FILE] [--profile FILE.csv] [--device NAME]`:
// every step of a run but the execution (DESIGN.md's data flow): the model's graph, its costs, the
// partition into stages, each rank's program under the schedule, the validator's proof, and the
// simulated timeline. Needs neither MPI nor a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/cli.h"
#include "framework/config.h"
#include "framework/json.h"
#include "partition/partition.h"
#include "schedule/program.h"
#include "schedule/simulate.h"

// Links by device: a shared-memory MPI transfer between CPU ranks of one machine, NVLink 4 between
// H100s of one node (its ~900 GB/s aggregate gives ~150 GB/s to one peer-to-peer stream in practice).
typedef struct PlanDevice {
    const char *name;
    LinkModel link;
    int64_t memory_bytes;  // per device; 0: no cap
} PlanDevice;

static const PlanDevice plan_devices[] = {
    {"cpu", {5e-6, 5e9}, 0},
    {"h100", {10e-6, 150e9}, 80LL << 30},
};

typedef struct PlanArgs {
    const char *path, *trace, *profile, *device;
    int n_set;
    char **set;
    bool json;
} PlanArgs;

static const char plan_usage[] =
    "usage: yolopipe plan EXP.yaml [--set section.key=value]... [--json] [--trace FILE.json]\n"
    "                     [--profile FILE.csv] [--device cpu|h100]\n"
    "  partition, schedule, validation and simulated timeline of the experiment, without running it\n"
    "  --profile  per-layer times measured by `yolopipe profile` instead of the FLOP estimate\n"
    "  --device   device to plan for (default: cuda experiments h100, others cpu)\n";

static bool plan_parse_args(int argc, char **argv, PlanArgs *a) {
    *a = (PlanArgs){.set = calloc((size_t)argc + 1, sizeof(char *))};
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        bool value = i + 1 < argc;
        if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--set") && value) a->set[a->n_set++] = argv[++i];
        else if (!strcmp(s, "--trace") && value) a->trace = argv[++i];
        else if (!strcmp(s, "--profile") && value) a->profile = argv[++i];
        else if (!strcmp(s, "--device") && value) a->device = argv[++i];
        else if (!strcmp(s, "--help") || !strcmp(s, "-h")) return fputs(plan_usage, stdout), exit(0), false;
        else if (s[0] == '-' || a->path) {
            fprintf(stderr, "yolopipe plan: unexpected argument or missing value: %s\n%s", s, plan_usage);
            return false;
        } else a->path = s;
    }
    if (!a->path) fprintf(stderr, "yolopipe plan: missing EXP.yaml\n%s", plan_usage);
    return a->path != NULL;
}

// Everything plan builds, owned in one place.
typedef struct PlanRun {
    ExperimentConfig *cfg;
    ModelSpec *spec;
    Graph *graph;
    CostProfile *profile;
    CostModel *cost;
    const PlanDevice *device;
    double flops_per_s;
    PipelinePlan plan;
    PartitionReport report;
    Schedule *schedule;
    SchedSim *sim;
} PlanRun;

static void plan_run_destroy(PlanRun *r) {
    sched_sim_destroy(r->sim);
    sched_destroy(r->schedule);
    partition_plan_clear(&r->plan);
    cost_model_destroy(r->cost);
    cost_profile_destroy(r->profile);
    graph_destroy(r->graph);
    model_spec_destroy(r->spec);
    config_destroy(r->cfg);
}

static bool plan_pick_device(PlanRun *r, const char *name, Error *err) {
    if (!name) name = r->cfg->device.backend == CONFIG_BACKEND_CUDA ? "h100" : "cpu";
    for (size_t i = 0; i < sizeof plan_devices / sizeof *plan_devices; i++)
        if (!strcmp(plan_devices[i].name, name)) r->device = &plan_devices[i];
    const CostDevice *cd = cost_device_find(name);
    if (!r->device || !cd) return error_set(err, "yolopipe plan: --device must be cpu or h100, found '%s'", name);
    r->flops_per_s = cd->flops_per_s;
    return true;
}

static bool plan_build(PlanRun *r, const PlanArgs *a, Error *err) {
    if (!config_load(a->path, a->n_set, a->set, &r->cfg, err) || !plan_pick_device(r, a->device, err)) return false;
    const ExperimentConfig *cfg = r->cfg;
    const ParallelConfig *pc = &cfg->parallel;
    // The class count only sizes the head: the synth: block's, else the model file's.
    ModelOptions mo = {.scale = cfg->scale, .nc = cfg->synth.present ? cfg->synth.synth.n_classes : 0};
    if (!model_spec_load(cfg->model, &mo, &r->spec, err)) return false;
    int64_t micro = cfg->train.batch / (pc->replicas * pc->micro_batches);
    GraphOptions go = {.batch = micro, .imgsz_h = cfg->train.imgsz, .imgsz_w = cfg->train.imgsz};
    if (!graph_create(r->spec, &go, &r->graph, err)) return false;
    if (a->profile) {
        if (!cost_profile_load(a->profile, &r->profile, err) ||
            !cost_model_measured(r->graph, micro, r->profile, &r->cost, err))
            return false;
    } else {
        r->cost = cost_model_estimate(r->graph, micro, r->flops_per_s);
    }
    int in_flight[PLAN_MAX_STAGES];
    if (!sched_in_flight(pc->schedule, (int)pc->stages, (int)pc->chunks, (int)pc->micro_batches, in_flight, err))
        return config_error_at(cfg, "parallel.schedule", err, "%s", err->message);
    PartitionOptions po = {.n_ranks = (int)pc->stages, .chunks = (int)pc->chunks, .replicas = (int)pc->replicas,
                           .micro_batches = (int)pc->micro_batches, .link = r->device->link,
                           .reduce_link = r->device->link, .memory_cap_bytes = r->device->memory_bytes,
                           .in_flight = in_flight, .kind = pc->partition.kind,
                           .ranges = (const int64_t(*)[2])pc->partition.ranges, .balance = pc->partition.balance};
    if (!partition_create(r->graph, r->cost, &po, &r->plan, &r->report, err))
        return config_error_at(cfg, pc->partition.kind == PARTITION_KIND_AUTO ? "parallel.stages" : "parallel.partition",
                               err, "%s", err->message);
    if (!sched_build(&r->plan, pc->schedule, &r->schedule, err))
        return config_error_at(cfg, "parallel.schedule", err, "%s", err->message);
    // Every program is proven before anything is timed (as before any training run).
    if (!sched_validate(&r->plan, r->schedule, stderr, err)) yp_fatal("generated schedule failed validation: %s", err->message);
    r->sim = sched_simulate(&r->plan, r->schedule);
    return true;
}

static double mib(int64_t bytes) { return (double)bytes / (1 << 20); }

static void plan_print_text(const PlanRun *r) {
    const ExperimentConfig *cfg = r->cfg;
    const ParallelConfig *pc = &cfg->parallel;
    printf("%s: %s at %lld, %lld stage%s x %lld replica%s, %s, %lld micro-batches of %lld images; costs from %s\n",
           cfg->name, r->spec->name, (long long)cfg->train.imgsz, (long long)pc->stages, pc->stages == 1 ? "" : "s",
           (long long)pc->replicas, pc->replicas == 1 ? "" : "s", sched_kind_name(pc->schedule),
           (long long)pc->micro_batches, (long long)r->plan.micro_batch_images,
           r->profile ? r->profile->path : r->device->name);
    printf("%5s %5s %9s %11s %8s %11s %9s %10s %10s %10s\n", "stage", "rank", "layers", "params", "GFLOPs",
           "act MiB", "in flight", "recv MiB", "send MiB", "time ms");
    for (int k = 0; k < r->report.n_stages; k++) {
        const PartitionStageReport *s = &r->report.stages[k];
        char layers[24];
        snprintf(layers, sizeof layers, "%d-%d", s->first_layer, s->last_layer);
        printf("%5d %5d %9s %11lld %8.2f %11.1f %9d %10.2f %10.2f %10.2f%s\n", k, k % r->plan.n_ranks, layers,
               (long long)s->params, s->gflops, mib(s->activation_bytes), s->in_flight, mib(s->recv_bytes),
               mib(s->send_bytes), 1e3 * s->time_s, k == r->report.slowest_stage ? "  slowest" : "");
    }
    const SchedSim *sim = r->sim;
    printf("schedule %s: step %.2f ms, %.1f images/s (per step: %lld images)\n", sched_kind_name(pc->schedule),
           1e3 * sim->step_s, sim->images_per_s,
           (long long)(pc->replicas * pc->micro_batches * r->plan.micro_batch_images));
    printf("%5s %9s %9s %14s %12s\n", "rank", "busy ms", "bubble", "peak act MiB", "sent MiB");
    for (int rank = 0; rank < sim->n_ranks; rank++) {
        int64_t sent = 0;
        for (int d = 0; d < sim->n_ranks; d++) sent += sim->link_bytes[rank * sim->n_ranks + d];
        printf("%5d %9.2f %8.1f%% %14.1f %12.2f\n", rank, 1e3 * sim->busy_s[rank], 100 * sim->bubble[rank],
               mib(sim->peak_activation_bytes[rank]), mib(sent));
    }
    sched_timeline_print(stdout, &r->plan, r->schedule, sim, 100);
}

static void plan_print_json(const PlanRun *r) {
    const SchedSim *sim = r->sim;
    printf("{\"experiment\": ");
    json_write_string(stdout, r->cfg->name);
    printf(", \"model\": ");
    json_write_string(stdout, r->spec->name);
    printf(", \"stages\": [");
    for (int k = 0; k < r->report.n_stages; k++) {
        const PartitionStageReport *s = &r->report.stages[k];
        printf("%s{\"stage\": %d, \"rank\": %d, \"layers\": [%d, %d], \"params\": %lld, \"gflops\": %.6f, "
               "\"activation_bytes\": %lld, \"in_flight\": %d, \"memory_bytes\": %lld, \"recv_bytes\": %lld, "
               "\"send_bytes\": %lld, \"time_s\": %.9g}",
               k ? ", " : "", k, k % r->plan.n_ranks, s->first_layer, s->last_layer, (long long)s->params, s->gflops,
               (long long)s->activation_bytes, s->in_flight, (long long)s->memory_bytes, (long long)s->recv_bytes,
               (long long)s->send_bytes, s->time_s);
    }
    double mean_bubble = 0;
    for (int rank = 0; rank < sim->n_ranks; rank++) mean_bubble += sim->bubble[rank] / sim->n_ranks;
    printf("], \"schedule\": {\"name\": \"%s\", \"step_time_s\": %.9g, \"images_per_s\": %.6g, "
           "\"bubble_fraction\": %.9g, \"bubble_fraction_per_rank\": [",
           sched_kind_name(r->cfg->parallel.schedule), sim->step_s, sim->images_per_s, mean_bubble);
    for (int rank = 0; rank < sim->n_ranks; rank++) printf("%s%.9g", rank ? ", " : "", sim->bubble[rank]);
    printf("], \"peak_activation_bytes\": [");
    for (int rank = 0; rank < sim->n_ranks; rank++)
        printf("%s%lld", rank ? ", " : "", (long long)sim->peak_activation_bytes[rank]);
    printf("]}}\n");
}

int cmd_plan(int argc, char **argv) {
    PlanArgs args;
    if (!plan_parse_args(argc, argv, &args)) return free(args.set), YP_EXIT_USAGE;
    PlanRun run = {0};
    Error err = {0};
    bool ok = plan_build(&run, &args, &err);
    if (ok) {
        if (args.json) plan_print_json(&run);
        else plan_print_text(&run);
        if (args.trace) {
            FILE *f = fopen(args.trace, "w");
            if (!f) ok = error_set(&err, "%s: cannot write the trace", args.trace);
            else {
                sched_trace_write(f, &run.plan, run.schedule, run.sim);
                fclose(f);
                if (!args.json) printf("trace written to %s (open it in https://ui.perfetto.dev)\n", args.trace);
            }
        }
    }
    if (!ok) fprintf(stderr, "%s\n", err.message);
    plan_run_destroy(&run);
    free(args.set);
    return ok ? 0 : YP_EXIT_USAGE;
}
