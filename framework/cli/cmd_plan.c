// `yolopipe plan EXP.yaml [--set k=v]... [--json] [--trace FILE] [--profile FILE.csv] [--device NAME]`:
// every step of a run but the execution (DESIGN.md's data flow): the model's graph, its costs, the
// partition into stages, each rank's program under the schedule, the validator's proof, and the
// simulated timeline. Needs neither MPI nor a GPU.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/cli/cli.h"
#include "framework/config/config.h"
#include "framework/core/json.h"
#include "framework/config/experiment_plan.h"
#include "partition/placement.h"
#include "schedule/program.h"
#include "schedule/simulate.h"

typedef struct PlanArgs {
    const char *path, *trace, *profile, *device;
    CliList set;
    bool json;
    int64_t gpus_per_node;  // 0: every rank on one node
} PlanArgs;

static const CliOption plan_options[] = {
    CLI_OPTION_SET(PlanArgs, set),
    {.name = "json", .value = CLI_VALUE_FLAG, .offset = offsetof(PlanArgs, json),
     .help = "print one JSON object instead of the tables, for scripts"},
    {.name = "trace", .value = CLI_VALUE_STRING, .offset = offsetof(PlanArgs, trace), .metavar = "FILE.json",
     .help = "write the simulated timeline as a Chrome trace (for ui.perfetto.dev)"},
    {.name = "profile", .value = CLI_VALUE_STRING, .offset = offsetof(PlanArgs, profile), .metavar = "FILE.csv",
     .help = "per-layer times from `yolopipe profile` instead of the FLOP estimate"},
    {.name = "device", .value = CLI_VALUE_STRING, .offset = offsetof(PlanArgs, device), .metavar = "cpu|h100|a100",
     .help = "device to plan for (default: h100 for cuda experiments, else cpu)"},
    {.name = "gpus-per-node", .value = CLI_VALUE_POSITIVE, .offset = offsetof(PlanArgs, gpus_per_node), .metavar = "N",
     .help = "N ranks per node, over the device's NICs (default: all on one node)"},
};

static const CliPositional plan_positionals[] = {{.metavar = "EXP.yaml", .offset = offsetof(PlanArgs, path)}};

const CliCommand cmd_plan_cli = {
    .name = "plan",
    .summary = "partition, schedule and simulated timeline of an experiment",
    .description = "Partition, schedule, validation and simulated timeline of the experiment, without running it\n"
                   "(needs neither MPI nor a GPU).\n",
    .positionals = plan_positionals,
    .n_positionals = 1,
    .options = plan_options,
    .n_options = sizeof plan_options / sizeof *plan_options,
    .run = cmd_plan,
};

// Everything plan builds, owned in one place.
typedef struct PlanRun {
    ExperimentConfig *cfg;
    ModelSpec *spec;
    ExperimentPlan ep;
    SchedSim *sim;
} PlanRun;

static void plan_run_destroy(PlanRun *r) {
    sched_sim_destroy(r->sim);
    experiment_plan_clear(&r->ep);
    model_spec_destroy(r->spec);
    config_destroy(r->cfg);
}

static bool plan_build(PlanRun *r, const PlanArgs *a, Error *err) {
    if (!config_load(a->path, a->set.n, a->set.items, &r->cfg, err)) return false;
    const ExperimentConfig *cfg = r->cfg;
    if (!experiment_model_load(cfg, &r->spec, err)) return false;
    PlanTarget target = {.device_name = a->device, .profile_path = a->profile};
    ClusterModel cluster;
    if (a->gpus_per_node > 0) {
        // The device's node (its links and NICs), gpus_per_node of it per node.
        const char *name = a->device ? a->device : experiment_plan_default_device(cfg);
        const CostDevice *d = cost_device_find(name);
        if (!d) return error_set(err, "yolopipe plan: --device must be %s, found '%s'", cost_device_names, a->device);
        cluster = experiment_plan_default_cluster(d);
        cluster.gpus_per_node = (int)(a->gpus_per_node < INT32_MAX ? a->gpus_per_node : INT32_MAX);
        target.cluster = &cluster;
    }
    if (!experiment_plan_build(cfg, r->spec, &target, &r->ep, err)) {
        if (!strncmp(err->message, "--device", 8)) {
            Error device_err = *err;
            error_set(err, "yolopipe plan: %.900s", device_err.message);
        }
        return false;
    }
    r->sim = sched_simulate(&r->ep.plan, r->ep.schedule);
    return true;
}

static double mib(int64_t bytes) { return (double)bytes / (1 << 20); }

// Where the step goes, along the critical rank, and what it sends.
static void plan_print_terms(const PlanRun *r) {
    const SchedSim *sim = r->sim;
    const SchedSimTerms *t = &sim->terms;
    const PipelinePlan *plan = &r->ep.plan;
    int world = plan->n_ranks * plan->replicas;
    int nodes = placement_nodes(&plan->cluster, world);
    printf("step terms (rank %d): compute %.2f ms, bubble %.2f, p2p %.2f, all-reduce %.2f, loss %.2f (%s), "
           "optimizer %.2f (%s), loader %.2f; per step %.2f MiB p2p, %.2f MiB all-reduce; %d node%s\n",
           t->critical_rank, 1e3 * t->compute_s, 1e3 * t->bubble_s, 1e3 * t->p2p_s, 1e3 * t->allreduce_s,
           1e3 * t->loss_s, r->ep.loss_source, 1e3 * t->optimizer_s, r->ep.optimizer_source, 1e3 * t->loader_s,
           mib(sim->p2p_bytes), sim->allreduce_bytes / (1 << 20), nodes, nodes == 1 ? "" : "s");
}

static void plan_print_text(const PlanRun *r) {
    const ExperimentConfig *cfg = r->cfg;
    const ParallelConfig *pc = &cfg->parallel;
    printf("%s: %s at %lld, %lld stage%s x %lld replica%s, %s, %lld micro-batches of %lld images; costs from %s\n",
           cfg->name, r->spec->name, (long long)cfg->train.imgsz, (long long)pc->stages, pc->stages == 1 ? "" : "s",
           (long long)pc->replicas, pc->replicas == 1 ? "" : "s", sched_kind_name(pc->schedule),
           (long long)pc->micro_batches, (long long)r->ep.plan.micro_batch_images,
           r->ep.profile ? r->ep.profile->path : r->ep.device.name);
    printf("%5s %5s %9s %11s %8s %11s %9s %10s %10s %10s\n", "stage", "rank", "layers", "params", "GFLOPs",
           "act MiB", "in flight", "recv MiB", "send MiB", "time ms");
    for (int k = 0; k < r->ep.report.n_stages; k++) {
        const PartitionStageReport *s = &r->ep.report.stages[k];
        char layers[24];
        snprintf(layers, sizeof layers, "%d-%d", s->first_layer, s->last_layer);
        printf("%5d %5d %9s %11lld %8.2f %11.1f %9d %10.2f %10.2f %10.2f%s\n", k, k % r->ep.plan.n_ranks, layers,
               (long long)s->params, s->gflops, mib(s->activation_bytes), s->in_flight, mib(s->recv_bytes),
               mib(s->send_bytes), 1e3 * s->time_s, k == r->ep.report.slowest_stage ? "  slowest" : "");
    }
    const SchedSim *sim = r->sim;
    const PipelinePlan *plan = &r->ep.plan;
    printf("schedule %s: step %.2f ms, %.1f images/s (per batch: %lld images", sched_kind_name(pc->schedule),
           1e3 * sim->step_s, sim->images_per_s,
           (long long)(pc->replicas * pc->micro_batches * plan->micro_batch_images));
    if (plan->accumulate > 1)
        printf("; every %d%s batch reduces and steps, the others take %.2f ms", plan->accumulate,
               plan->accumulate == 2 ? "nd" : plan->accumulate == 3 ? "rd" : "th", 1e3 * sim->batch_s);
    printf(")\n");
    plan_print_terms(r);
    printf("%5s %9s %9s %14s %12s\n", "rank", "busy ms", "bubble", "peak act MiB", "sent MiB");
    for (int rank = 0; rank < sim->n_ranks; rank++) {
        int64_t sent = 0;
        for (int d = 0; d < sim->n_ranks; d++) sent += sim->link_bytes[rank * sim->n_ranks + d];
        printf("%5d %9.2f %8.1f%% %14.1f %12.2f\n", rank, 1e3 * sim->busy_s[rank], 100 * sim->bubble[rank],
               mib(sim->peak_activation_bytes[rank]), mib(sent));
    }
    sched_timeline_print(stdout, &r->ep.plan, r->ep.schedule, sim, 100);
}

static void plan_print_json(const PlanRun *r) {
    const SchedSim *sim = r->sim;
    printf("{\"experiment\": ");
    json_write_string(stdout, r->cfg->name);
    printf(", \"world_size\": %lld", (long long)(r->cfg->parallel.stages * r->cfg->parallel.replicas));
    printf(", \"model\": ");
    json_write_string(stdout, r->spec->name);
    printf(", \"stages\": [");
    for (int k = 0; k < r->ep.report.n_stages; k++) {
        const PartitionStageReport *s = &r->ep.report.stages[k];
        printf("%s{\"stage\": %d, \"rank\": %d, \"layers\": [%d, %d], \"params\": %lld, \"gflops\": %.6f, "
               "\"activation_bytes\": %lld, \"in_flight\": %d, \"memory_bytes\": %lld, \"recv_bytes\": %lld, "
               "\"send_bytes\": %lld, \"time_s\": %.9g}",
               k ? ", " : "", k, k % r->ep.plan.n_ranks, s->first_layer, s->last_layer, (long long)s->params, s->gflops,
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
    const SchedSimTerms *t = &sim->terms;
    const PipelinePlan *plan = &r->ep.plan;
    printf("], \"accumulate\": %d, \"batch_time_s\": %.9g, \"mean_batch_time_s\": %.9g, \"loader_floor_s\": %.9g, "
           "\"p2p_bytes\": %lld, \"allreduce_bytes\": %.0f, \"terms\": {\"critical_rank\": %d, \"compute_s\": %.9g, "
           "\"bubble_s\": %.9g, \"p2p_s\": %.9g, \"allreduce_s\": %.9g, \"loss_s\": %.9g, \"optimizer_s\": %.9g, "
           "\"loader_s\": %.9g}, \"loss_source\": \"%s\", \"optimizer_source\": \"%s\"}",
           plan->accumulate, sim->batch_s, sim->mean_batch_s, sim->loader_floor_s, (long long)sim->p2p_bytes,
           sim->allreduce_bytes, t->critical_rank, t->compute_s, t->bubble_s, t->p2p_s, t->allreduce_s, t->loss_s,
           t->optimizer_s, t->loader_s, r->ep.loss_source, r->ep.optimizer_source);
    const ClusterModel *c = &plan->cluster;
    printf(", \"cluster\": {\"gpus_per_node\": %d, \"nodes\": %d, \"nics_per_node\": %d, \"intra_bytes_per_s\": %.6g, "
           "\"intra_collective_bytes_per_s\": %.6g, \"inter_bytes_per_s\": %.6g, \"loader_images_per_s\": %.6g, "
           "\"cores_per_node\": %g, \"threads_per_rank\": %d}}\n",
           c->gpus_per_node, placement_nodes(c, plan->n_ranks * plan->replicas), c->nics_per_node,
           c->intra.bandwidth_bytes_per_s, c->intra_collective.bandwidth_bytes_per_s, c->inter.bandwidth_bytes_per_s,
           c->loader_images_per_s, c->cores_per_node, c->threads_per_rank);
}

int cmd_plan(int argc, char **argv) {
    PlanArgs args = {0};
    int rc = cli_parse(&cmd_plan_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
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
                sched_trace_write(f, &run.ep.plan, run.ep.schedule, run.sim);
                fclose(f);
                if (!args.json) printf("trace written to %s (open it in https://ui.perfetto.dev)\n", args.trace);
            }
        }
    }
    if (!ok) fprintf(stderr, "%s\n", err.message);
    plan_run_destroy(&run);
    free(args.set.items);
    return ok ? 0 : YP_EXIT_USAGE;
}
