#include "framework/config/experiment_plan.h"

#include <string.h>

#include "schedule/simulate.h"

// Links by device: a shared-memory MPI transfer between CPU ranks of one machine, NVLink 4 between
// H100s of one node (its ~900 GB/s aggregate gives ~150 GB/s to one peer-to-peer stream in practice).
static const PlanDevice plan_devices[] = {
    {"cpu", {5e-6, 5e9}, 0, 0},
    {"h100", {10e-6, 150e9}, 80LL << 30, 0},
};

static bool plan_pick_device(const ExperimentConfig *cfg, const char *name, PlanDevice *out, Error *err) {
    if (!name) name = cfg->device.backend == CONFIG_BACKEND_CUDA ? "h100" : "cpu";
    const CostDevice *cd = cost_device_find(name);
    for (size_t i = 0; i < sizeof plan_devices / sizeof *plan_devices; i++)
        if (cd && !strcmp(plan_devices[i].name, name)) {
            *out = plan_devices[i];
            out->flops_per_s = cd->flops_per_s;
            return true;
        }
    return error_set(err, "--device must be cpu or h100, found '%s'", name);
}

bool experiment_plan_build(const ExperimentConfig *cfg, const ModelSpec *spec, const char *device_name,
                           const char *profile_path, ExperimentPlan *p, Error *err) {
    *p = (ExperimentPlan){0};
    const ParallelConfig *pc = &cfg->parallel;
    if (!plan_pick_device(cfg, device_name, &p->device, err)) return false;
    p->micro_batch_images = cfg->train.batch / (pc->replicas * pc->micro_batches);
    GraphOptions go = {.batch = p->micro_batch_images, .imgsz_h = cfg->train.imgsz, .imgsz_w = cfg->train.imgsz};
    if (!graph_create(spec, &go, &p->graph, err)) return false;
    if (profile_path) {
        if (!cost_profile_load(profile_path, &p->profile, err) ||
            !cost_model_measured(p->graph, p->micro_batch_images, p->profile, &p->cost, err))
            return false;
    } else {
        p->cost = cost_model_estimate(p->graph, p->micro_batch_images, p->device.flops_per_s);
    }
    cost_model_set_activation_type(p->cost, config_precision_activation_type(cfg->device.precision));
    int in_flight[PLAN_MAX_STAGES];
    if (!sched_in_flight(pc->schedule, (int)pc->stages, (int)pc->chunks, (int)pc->micro_batches, in_flight, err))
        return config_error_at(cfg, "parallel.schedule", err, "%s", err->message);
    PartitionOptions po = {.n_ranks = (int)pc->stages, .chunks = (int)pc->chunks, .replicas = (int)pc->replicas,
                           .micro_batches = (int)pc->micro_batches, .link = p->device.link,
                           .reduce_link = p->device.link, .memory_cap_bytes = p->device.memory_bytes,
                           .in_flight = in_flight, .kind = pc->partition.kind,
                           .ranges = (const int64_t(*)[2])pc->partition.ranges, .balance = pc->partition.balance};
    if (!partition_create(p->graph, p->cost, &po, &p->plan, &p->report, err))
        return config_error_at(cfg, pc->partition.kind == PARTITION_KIND_AUTO ? "parallel.stages" : "parallel.partition",
                               err, "%s", err->message);
    if (!sched_build(&p->plan, pc->schedule, &p->schedule, err))
        return config_error_at(cfg, "parallel.schedule", err, "%s", err->message);
    // Every program is proven before anything runs or is timed.
    if (!sched_validate(&p->plan, p->schedule, stderr, err)) yp_fatal("generated schedule failed validation: %s", err->message);
    return true;
}

void experiment_plan_clear(ExperimentPlan *p) {
    sched_destroy(p->schedule);
    partition_plan_clear(&p->plan);
    cost_model_destroy(p->cost);
    cost_profile_destroy(p->profile);
    graph_destroy(p->graph);
    *p = (ExperimentPlan){0};
}

bool experiment_model_load(const ExperimentConfig *cfg, ModelSpec **out, Error *err) {
    ModelOptions mo = {.scale = cfg->scale, .nc = cfg->synth.present ? cfg->synth.synth.n_classes : 0};
    return model_spec_load(cfg->model, &mo, out, err);
}
