// A point's prediction (experiment_plan_build + sched_simulate, as `yolopipe plan`) and its
// measurement (measured.json).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/experiment_plan.h"
#include "framework/core/fsutil.h"
#include "framework/core/sort.h"
#include "framework/core/yaml_doc.h"
#include "framework/study/study_internal.h"
#include "framework/study/study_point.h"
#include "schedule/simulate.h"

const char *const study_term_names[STUDY_TERM_COUNT] = {"compute", "bubble", "p2p", "allreduce", "optimizer", "loss", "loader"};

// The planner's target for a study's cluster: the named device (or the study's own figures over it),
// its links unless the study gives them, the node size, NICs, loader ceiling and core sharing.
static bool study_target(const StudyConfig *s, CostDevice *dev, ClusterModel *cl, PlanTarget *t, Error *err) {
    const StudyDevice *sd = &s->cluster.device;
    const char *name = sd->name;  // study_config_load names the planner's default when the file does not
    const CostDevice *base = cost_device_find(name);
    if (base) *dev = *base;
    else *dev = (CostDevice){.name = name};
    dev->name = name;
    if (sd->peak_flops > 0) dev->flops_per_s = sd->peak_flops * sd->efficiency;
    if (sd->memory_bytes > 0) dev->memory_bytes = sd->memory_bytes;
    if (sd->memory_bytes_per_s > 0) dev->memory_bytes_per_s = sd->memory_bytes_per_s;
    if (!base && !(dev->flops_per_s > 0 && dev->memory_bytes_per_s > 0))
        return error_set(err, "%s: device %s is not one the planner knows (%s): give its peak_tflops, efficiency and "
                              "memory_tbps", s->path, name, cost_device_names);
    const StudyCluster *c = &s->cluster;
    if (c->intra.bandwidth_bytes_per_s > 0)
        dev->link = dev->collective = (LinkModel){c->intra.latency_s, c->intra.bandwidth_bytes_per_s};
    if (c->inter.bandwidth_bytes_per_s > 0) dev->nic = (LinkModel){c->inter.latency_s, c->inter.bandwidth_bytes_per_s};
    if (!base && !(dev->link.bandwidth_bytes_per_s > 0))
        return error_set(err, "%s: device %s is not one the planner knows: give cluster.intra, the link between two of "
                              "its devices in a node", s->path, name);
    *cl = experiment_plan_default_cluster(dev);
    if (c->present) {
        cl->gpus_per_node = (int)c->gpus_per_node;
        if (c->intra.bandwidth_bytes_per_s > 0)
            cl->intra = cl->intra_collective = (LinkModel){c->intra.latency_s, c->intra.bandwidth_bytes_per_s};
        if (c->inter.bandwidth_bytes_per_s > 0) cl->inter = (LinkModel){c->inter.latency_s, c->inter.bandwidth_bytes_per_s};
        if (c->nics_per_node > 0) cl->nics_per_node = (int)c->nics_per_node;
        cl->loader_images_per_s = c->loader_images_per_s;
        cl->cores_per_node = c->cores_per_node;
        cl->wait_cost = c->wait_cost;
        cl->threads_per_rank = (int)c->threads_per_rank;
    }
    *t = (PlanTarget){.device = dev, .profile_path = sd->profile, .cluster = cl};
    return true;
}

static bool trace_write(const char *path, const PipelinePlan *plan, const Schedule *s, const SchedSim *sim, Error *err) {
    FsAtomicFile *af;
    if (!fs_atomic_file_open(path, &af, err)) return false;
    sched_trace_write(fs_atomic_file_stream(af), plan, s, sim);
    return fs_atomic_file_commit(af, err);
}

bool study_point_simulate(const StudyConfig *s, const StudyPoint *p, const StudyCosts *costs, StudyPrediction *out,
                          Error *err) {
    *out = (StudyPrediction){0};
    ExperimentConfig *cfg = NULL;
    ModelSpec *spec = NULL;
    ExperimentPlan ep = {0};
    CostDevice dev;
    ClusterModel cluster;
    PlanTarget target;
    bool ok = study_point_config_load(s, p, &cfg, err) &&
              experiment_model_load(cfg, &spec, err) && study_target(s, &dev, &cluster, &target, err);
    if (ok && costs->profile) target.profile_path = costs->profile;
    if (ok && costs->cores_per_node > 0) cluster.cores_per_node = costs->cores_per_node;
    if (ok && costs->wait_cost >= 0) cluster.wait_cost = costs->wait_cost;
    ok = ok && experiment_plan_build(cfg, spec, &target, &ep, err);
    if (ok) {
        SchedSim *sim = sched_simulate(&ep.plan, ep.schedule);
        const PipelinePlan *plan = &ep.plan;
        out->step_s = sim->mean_batch_s;
        out->images_per_s = sim->images_per_s;
        out->train_epochs = cfg->train.epochs;
        out->images_per_step = (int64_t)plan->replicas * plan->micro_batches * plan->micro_batch_images;
        for (int r = 0; r < sim->n_ranks; r++) {
            out->bubble += sim->bubble[r] / sim->n_ranks;
            if (sim->peak_activation_bytes[r] > out->peak_activation_bytes)
                out->peak_activation_bytes = sim->peak_activation_bytes[r];
        }
        out->p2p_bytes = sim->p2p_bytes;
        out->allreduce_bytes = (int64_t)sim->allreduce_bytes;
        for (int k = 0; k < ep.report.n_stages; k++)
            if (ep.report.stages[k].memory_bytes > out->memory_bytes) out->memory_bytes = ep.report.stages[k].memory_bytes;
        out->memory_per_gpu = ep.device.memory_bytes;
        size_t n = (size_t)snprintf(out->partition, sizeof out->partition, "[");
        for (int k = 0; k < plan->n_stages && n < sizeof out->partition; k++)
            n += (size_t)snprintf(out->partition + n, sizeof out->partition - n, "%s[%d, %d]", k ? ", " : "",
                                  plan->stages[k].first_layer, plan->stages[k].last_layer);
        if (n < sizeof out->partition) snprintf(out->partition + n, sizeof out->partition - n, "]");
        const SchedSimTerms *t = &sim->terms;
        double *terms = out->terms_s;
        terms[STUDY_TERM_COMPUTE] = t->compute_s;
        terms[STUDY_TERM_BUBBLE] = t->bubble_s;
        terms[STUDY_TERM_P2P] = t->p2p_s;
        terms[STUDY_TERM_ALLREDUCE] = t->allreduce_s;
        terms[STUDY_TERM_OPTIMIZER] = t->optimizer_s;
        terms[STUDY_TERM_LOSS] = t->loss_s;
        terms[STUDY_TERM_LOADER] = t->loader_s;
        if (costs->trace) ok = trace_write(costs->trace, plan, ep.schedule, sim, err);
        sched_sim_destroy(sim);
    }
    experiment_plan_clear(&ep);
    model_spec_destroy(spec);
    config_destroy(cfg);
    return ok;
}

// The largest entry of a list of integers at `key`, or -1 when absent.
static int64_t list_max(YamlDoc *doc, const yaml_node_t *root, const char *key) {
    const yaml_node_t *list = yaml_map_get(doc, root, key);
    if (!list || list->type != YAML_SEQUENCE_NODE) return -1;
    int64_t best = -1;
    for (int i = 0; i < yaml_seq_len(list); i++) {
        const char *t = yaml_node_text(yaml_seq_at(doc, list, i));
        int64_t v = t ? strtoll(t, NULL, 10) : -1;
        if (v > best) best = v;
    }
    return best;
}

bool study_point_read_measured(const char *path, int64_t warmup, StudyMeasurement *out, Error *err) {
    *out = (StudyMeasurement){0};
    YamlDoc *doc = NULL;  // JSON is YAML's flow style: the YAML reader takes it with positions
    if (!yaml_doc_load(path, &doc, err)) return false;
    yaml_node_t *root = yaml_doc_root(doc);
    const yaml_node_t *batches = root && root->type == YAML_MAPPING_NODE ? yaml_map_get(doc, root, "batch_s") : NULL;
    const yaml_node_t *images = root && root->type == YAML_MAPPING_NODE ? yaml_map_get(doc, root, "images_per_batch") : NULL;
    bool ok = batches && batches->type == YAML_SEQUENCE_NODE && images;
    if (!ok) {
        yaml_doc_destroy(doc);
        return error_set(err, "%s: no batch_s list or images_per_batch (not a measured.json of this version?)", path);
    }
    int n = yaml_seq_len(batches);
    int skip = warmup < 1 ? 1 : (int)warmup;
    if (skip >= n) skip = n > 1 ? 1 : 0;  // a short run: keep what there is past the first batch
    double *times = yp_malloc((size_t)(n + 1) * sizeof *times);
    int m = 0;
    for (int i = skip; ok && i < n; i++)
        ok = yaml_node_number(doc, yaml_seq_at(doc, batches, i), "batch_s", &times[m++], err);
    // Rank 0's optimizer step per batch (0 where a batch only accumulates); absent in older records.
    const yaml_node_t *steps = yaml_map_get(doc, root, "optimizer_s");
    int n_listed = steps && steps->type == YAML_SEQUENCE_NODE ? yaml_seq_len(steps) : 0;
    double *optimizer = yp_malloc((size_t)(n + 1) * sizeof *optimizer);
    int n_steps = 0;
    for (int i = skip; ok && i < n && i < n_listed; i++) {
        double v = 0;
        ok = yaml_node_number(doc, yaml_seq_at(doc, steps, i), "optimizer_s", &v, err);
        if (v > 0) optimizer[n_steps++] = v;
    }
    double per_batch = 0;
    ok = ok && yaml_node_number(doc, images, "images_per_batch", &per_batch, err);
    if (ok && m == 0) ok = error_set(err, "%s: no batch was timed", path);
    if (ok) {
        out->step_s = sort_median(times, m);
        out->n_timed = m;
        out->images_per_s = out->step_s > 0 ? per_batch / out->step_s : 0;
        out->peak_activation_bytes = list_max(doc, root, "peak_activation_bytes");
        out->peak_rss_bytes = list_max(doc, root, "peak_rss_bytes");
        out->param_bytes = list_max(doc, root, "param_bytes");
        out->optimizer_s = n_steps ? sort_median(optimizer, n_steps) : 0;
    }
    free(optimizer);
    free(times);
    yaml_doc_destroy(doc);
    return ok;
}
