// The run's measured record, <run_dir>/measured.json (README "Run directory" documents every field):
// what a measured study point reads from a real run. World rank 0's batch times (each batch ends
// with a world all-reduce, so its batch is the job's), and every rank's peak memory and traffic
// (framework/runtime/executor.h's ExecutorStats), gathered at world rank 0, which writes the file
// atomically.
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "framework/core/fsutil.h"
#include "framework/core/json.h"
#include "framework/train/trainer_internal.h"

// What each rank sends world rank 0: one struct, written by measured_rank_make and read only by
// measured_write.
typedef struct MeasuredRank {
    int32_t pipeline_rank, replica;
    int32_t local_rank, local_size;  // on its host, as the transport found them
    int64_t peak_rss_bytes;
    int64_t param_bytes;  // its stages' parameters (PlanStage.param_bytes summed over its chunks)
    ExecutorStats stats;
} MeasuredRank;

// The process's peak resident set so far (ru_maxrss is in KiB on Linux); 0 when unknown.
static int64_t measured_peak_rss_bytes(void) {
    struct rusage usage;
    return getrusage(RUSAGE_SELF, &usage) == 0 ? (int64_t)usage.ru_maxrss * 1024 : 0;
}

static MeasuredRank measured_rank_make(const Trainer *t) {
    const PipelinePlan *plan = &t->ep.plan;
    int64_t param_bytes = 0;
    for (int c = 0; c < plan->chunks; c++) param_bytes += plan->stages[c * plan->n_ranks + t->topo->pipeline_rank].param_bytes;
    return (MeasuredRank){.pipeline_rank = t->topo->pipeline_rank, .replica = t->topo->replica,
                          .local_rank = t->topo->local_rank, .local_size = t->topo->local_size,
                          .peak_rss_bytes = measured_peak_rss_bytes(), .param_bytes = param_bytes,
                          .stats = executor_stats(t->ex)};
}

static double per(int64_t bytes, int64_t count) { return count > 0 ? (double)bytes / (double)count : 0.0; }

static void measured_write_doubles(FILE *f, const char *key, const double *v, int n) {
    fprintf(f, ",\n  \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_write_number(f, v[i]);
    }
    fputc(']', f);
}

// One field per rank, in world-rank order, from the gathered records.
typedef enum MeasuredRankField {
    MEASURED_PIPELINE_RANK,
    MEASURED_REPLICA,
    MEASURED_LOCAL_RANK,
    MEASURED_LOCAL_SIZE,
    MEASURED_PEAK_RSS,
    MEASURED_PARAM_BYTES,
    MEASURED_PEAK_ACTIVATIONS,
    MEASURED_P2P_PER_BATCH,
    MEASURED_ALLREDUCE_PER_BATCH,
    MEASURED_ALLREDUCE_PER_STEP,
    MEASURED_RANK_FIELD_COUNT
} MeasuredRankField;

static const char *const measured_rank_keys[MEASURED_RANK_FIELD_COUNT] = {
    "pipeline_rank", "replica", "local_rank", "local_size", "peak_rss_bytes", "param_bytes", "peak_activation_bytes", "p2p_bytes_per_batch",
    "allreduce_bytes_per_batch", "allreduce_bytes_per_step"};

static double measured_rank_value(const MeasuredRank *r, MeasuredRankField field) {
    const ExecutorStats *s = &r->stats;
    switch (field) {
    case MEASURED_PIPELINE_RANK: return r->pipeline_rank;
    case MEASURED_REPLICA: return r->replica;
    case MEASURED_LOCAL_RANK: return r->local_rank;
    case MEASURED_LOCAL_SIZE: return r->local_size;
    case MEASURED_PEAK_RSS: return (double)r->peak_rss_bytes;
    case MEASURED_PARAM_BYTES: return (double)r->param_bytes;
    case MEASURED_PEAK_ACTIVATIONS: return (double)s->peak_activation_bytes;
    case MEASURED_P2P_PER_BATCH: return per(s->p2p_bytes, s->batches);
    case MEASURED_ALLREDUCE_PER_BATCH: return per(s->allreduce_bytes, s->batches);
    case MEASURED_ALLREDUCE_PER_STEP: return per(s->allreduce_bytes, s->reducing_batches);
    case MEASURED_RANK_FIELD_COUNT: break;
    }
    yp_fatal("bad measured field");
}

static void measured_write(Trainer *t, FILE *f, const MeasuredRank *ranks, bool trace) {
    const PipelinePlan *plan = &t->ep.plan;
    int n = t->n_step_times, world = t->topo->world_size;
    double images = (double)t->cfg->train.batch;
    double median_batch = n >= 2 ? trainer_median_after_first(t->step_times, n) : NAN;
    double median_compute = n >= 2 ? trainer_median_after_first(t->compute_times, n) : NAN;
    fputs("{\n  \"name\": ", f);
    json_write_string(f, t->cfg->name);
    fputs(",\n  \"schedule\": ", f);
    json_write_string(f, sched_kind_name(t->cfg->parallel.schedule));
    fprintf(f, ",\n  \"world_size\": %d,\n  \"stages\": %d,\n  \"chunks\": %d,\n  \"replicas\": %d,\n"
               "  \"micro_batches\": %d,\n  \"micro_batch_images\": %lld,\n  \"images_per_batch\": %lld,\n"
               "  \"imgsz\": %lld,\n  \"batches\": %d,\n  \"optimizer_steps\": %lld",
            world, plan->n_ranks, plan->chunks, plan->replicas, plan->micro_batches,
            (long long)plan->micro_batch_images, (long long)t->cfg->train.batch, (long long)t->cfg->train.imgsz, n,
            (long long)t->at.optimizer_steps);
    measured_write_doubles(f, "batch_s", t->step_times, n);
    measured_write_doubles(f, "compute_s", t->compute_times, n);
    measured_write_doubles(f, "program_s", t->program_times, n);
    measured_write_doubles(f, "optimizer_s", t->optimizer_times, n);
    fputs(",\n  \"median_batch_s_after_first\": ", f);
    json_write_number(f, median_batch);
    fputs(",\n  \"median_compute_s_after_first\": ", f);
    json_write_number(f, median_compute);
    fputs(",\n  \"images_per_s\": ", f);
    json_write_number(f, images / median_batch);
    double *values = yp_malloc((size_t)world * sizeof *values);
    for (int k = 0; k < MEASURED_RANK_FIELD_COUNT; k++) {
        for (int r = 0; r < world; r++) values[r] = measured_rank_value(&ranks[r], (MeasuredRankField)k);
        measured_write_doubles(f, measured_rank_keys[k], values, world);
    }
    free(values);
    // Each rank's host, as its transport gathered them at start-up (null where unknown).
    fputs(",\n  \"host\": [", f);
    for (int r = 0; r < world; r++) {
        const char *host = topology_host(t->topo, r);
        if (r) fputs(", ", f);
        if (host) json_write_string(f, host);
        else fputs("null", f);
    }
    fputc(']', f);
    fputs(",\n  \"trace\": ", f);
    char path[PATH_MAX];
    Error err = {0};
    if (trace && path_format(path, sizeof path, &err, "%s/trace.json", t->run_dir)) json_write_string(f, path);
    else fputs("null", f);
    fputs("\n}\n", f);
}

bool trainer_write_measured(Trainer *t, Error *err) {
    MeasuredRank mine = measured_rank_make(t);
    void *all = NULL;
    int world = t->topo->world_size;
    size_t *sizes = t->lead ? yp_malloc((size_t)world * sizeof *sizes) : NULL;
    t->tr->ops->gather_bytes(t->tr, &mine, sizeof mine, &all, sizes);
    bool ok = true;
    if (t->lead) {
        for (int r = 0; r < world; r++) YP_CHECK(sizes[r] == sizeof mine);
        char path[PATH_MAX];
        FsAtomicFile *af = NULL;
        ok = path_format(path, sizeof path, err, "%s/measured.json", t->run_dir) && fs_atomic_file_open(path, &af, err);
        if (ok) {
            measured_write(t, fs_atomic_file_stream(af), all, t->trace_written);
            ok = fs_atomic_file_commit(af, err);
        }
    }
    free(all);
    free(sizes);
    return trainer_all_ranks_ok(t, ok, err);
}
