#include "framework/config/experiment_plan.h"

#include <string.h>

#include "schedule/simulate.h"

// Memory passes of the loss over the head's output per micro-batch (an estimate; see the header).
enum { PLAN_LOSS_PASSES = 8 };

ClusterModel experiment_plan_default_cluster(const CostDevice *device) {
    return (ClusterModel){.gpus_per_node = 0, .intra = device->link, .intra_collective = device->collective,
                          .inter = device->nic, .nics_per_node = device->nics_per_node,
                          .host_progress = device->host_progress};
}

const char *experiment_plan_default_device(const ExperimentConfig *cfg) {
    return cfg->device.backend == CONFIG_BACKEND_CUDA ? "h100" : "cpu";
}

static bool plan_pick_device(const ExperimentConfig *cfg, const PlanTarget *target, CostDevice *out, Error *err) {
    if (target->device) {
        const CostDevice *d = target->device;
        if (!(d->flops_per_s > 0) || !(d->memory_bytes_per_s > 0) || d->memory_bytes < 0)
            return error_set(err, "device %s: flops_per_s and memory_bytes_per_s must be positive, memory_bytes 0 or "
                             "more", d->name ? d->name : "(custom)");
        *out = *d;
        if (!out->name) out->name = "custom";
        return true;
    }
    const char *name = target->device_name;
    if (!name) name = experiment_plan_default_device(cfg);
    const CostDevice *d = cost_device_find(name);
    if (!d) return error_set(err, "--device must be %s, found '%s'", cost_device_names, name);
    *out = *d;
    return true;
}

// The step terms and the loader ceiling (experiment_plan.h says where each comes from).
static void plan_step_terms(ExperimentPlan *p, const ExperimentConfig *cfg, const PlanTarget *target) {
    const CostProfile *prof = p->profile;
    PipelinePlan *plan = &p->plan;
    double mem = p->device.memory_bytes_per_s;
    YP_CHECK(mem > 0);
    if (prof && prof->optimizer_s_per_param_byte > 0) {
        plan->optimizer_s_per_byte = prof->optimizer_s_per_param_byte + prof->ema_s_per_param_byte;
        p->optimizer_source = "profile";
    } else {
        // auto is resolved by the trainer from the dataset's size: estimated as AdamW, what runs of up
        // to 10,000 iterations get (SGD's passes would be 14 % fewer).
        plan->optimizer_s_per_byte = cost_optimizer_passes(cfg->train.optimizer != CONFIG_OPTIMIZER_SGD) / mem;
        p->optimizer_source = "estimate";
    }
    if (prof && prof->loss_s_per_image > 0) {
        plan->loss_s = prof->loss_s_per_image * (double)p->micro_batch_images;
        p->loss_source = "profile";
    } else {
        plan->loss_s = PLAN_LOSS_PASSES * (double)p->cost->layers[p->cost->n_layers - 1].output_bytes / mem;
        p->loss_source = "estimate";
    }
    // Without loader threads stage 0 decodes and augments its images itself, at one worker's rate.
    if (cfg->train.workers == 0 && prof && prof->loader_images_per_s_per_worker > 0)
        plan->load_s = (double)p->micro_batch_images / prof->loader_images_per_s_per_worker;
    // Every stage-0 rank runs a loader of train.workers threads; on the default node they all load.
    if (!target->cluster && prof && prof->loader_images_per_s_per_worker > 0)
        plan->cluster.loader_images_per_s = prof->loader_images_per_s_per_worker * (double)cfg->train.workers *
                                            (double)cfg->parallel.replicas;
}

// A cluster the simulator can time: positive links where they are used, NICs when ranks span nodes.
static bool plan_check_cluster(const ClusterModel *c, int64_t world, Error *err) {
    if (c->gpus_per_node < 0)
        return error_set(err, "cluster: gpus_per_node must be 0 or more, found %d", c->gpus_per_node);
    if (!(c->intra.bandwidth_bytes_per_s > 0) || !(c->intra_collective.bandwidth_bytes_per_s > 0) ||
        c->intra.latency_s < 0 || c->intra_collective.latency_s < 0)
        return error_set(err, "cluster: the intra-node links need a positive bandwidth and a latency of 0 or more");
    if (c->gpus_per_node > 0 && world > c->gpus_per_node &&
        (c->nics_per_node < 1 || !(c->inter.bandwidth_bytes_per_s > 0) || c->inter.latency_s < 0))
        return error_set(err, "cluster: %lld ranks span nodes of %d: nics_per_node must be 1 or more and the NIC's "
                              "bandwidth positive", (long long)world, c->gpus_per_node);
    if (c->loader_images_per_s < 0) return error_set(err, "cluster: loader_images_per_s must be 0 or more");
    if (!(c->cores_per_node >= 0) || (c->cores_per_node > 0 && c->threads_per_rank < 1))
        return error_set(err, "cluster: with cores_per_node, threads_per_rank must be 1 or more");
    return true;
}

bool experiment_plan_build(const ExperimentConfig *cfg, const ModelSpec *spec, const PlanTarget *target,
                           ExperimentPlan *p, Error *err) {
    *p = (ExperimentPlan){0};
    const ParallelConfig *pc = &cfg->parallel;
    if (target->cluster && !plan_check_cluster(target->cluster, pc->stages * pc->replicas, err)) return false;
    if (!plan_pick_device(cfg, target, &p->device, err)) return false;
    p->micro_batch_images = cfg->train.batch / (pc->replicas * pc->micro_batches);
    GraphOptions go = {.batch = p->micro_batch_images, .imgsz_h = cfg->train.imgsz, .imgsz_w = cfg->train.imgsz};
    if (!graph_create(spec, &go, &p->graph, err)) return false;
    if (target->profile_path) {
        if (!cost_profile_load(target->profile_path, &p->profile, err) ||
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
                           .cluster = target->cluster ? *target->cluster : experiment_plan_default_cluster(&p->device),
                           .memory_cap_bytes = p->device.memory_bytes,
                           .in_flight = in_flight, .kind = pc->partition.kind,
                           .ranges = (const int64_t(*)[2])pc->partition.ranges, .balance = pc->partition.balance};
    if (!partition_create(p->graph, p->cost, &po, &p->plan, &p->report, err)) {
        ErrorCode code = err->code;  // positioning the message keeps what kind of error it is
        config_error_at(cfg, pc->partition.kind == PARTITION_KIND_AUTO ? "parallel.stages" : "parallel.partition", err,
                        "%s", err->message);
        err->code = code;
        return false;
    }
    p->plan.cluster.rank_order = pc->rank_order;
    p->plan.accumulate = (int)config_accumulate(cfg->train.nbs, cfg->train.batch);
    plan_step_terms(p, cfg, target);
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
