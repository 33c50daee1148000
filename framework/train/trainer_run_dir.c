// The run directory <output.dir>/<name>/: its name, config.yaml, results.csv, the checkpoints under
// weights/, and --resume from weights/last.
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "framework/core/fsutil.h"
#include "framework/core/path.h"
#include "framework/train/trainer_internal.h"
#include "layers/graph.h"

// <output.dir>/<name>, or <name>2, <name>3, ... when it exists already (as Ultralytics' increment_path);
// chosen by world rank 0 and shared.
bool trainer_pick_run_dir(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    bool ok = true;
    if (t->lead) {
        char base[PATH_MAX];
        ok = path_format(base, sizeof base, err, "%s/%s", cfg->output.dir, cfg->name) &&
             path_increment(t->run_dir, sizeof t->run_dir, base, err) && fs_mkdir_p(t->run_dir, err);
    }
    if (!trainer_all_ranks_ok(t, ok, err)) return false;
    t->tr->ops->broadcast(t->tr, t->run_dir, sizeof t->run_dir, 0, TRANSPORT_WORLD);
    return true;
}

// Appends the names in `dir`, sorted and each after `prefix`, to the line on t->out; the top
// folder's weights/ is listed by its checkpoints. Hidden names (atomic writes in progress) are left out.
static void print_entries(Trainer *t, const char *dir, const char *prefix, bool *first) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char child[PATH_MAX];
        Error err = {0};
        if (name[0] == '.') {
        } else if (!*prefix && !strcmp(name, "weights")) {
            if (path_format(child, sizeof child, &err, "%s/%s", dir, name)) print_entries(t, child, "weights/", first);
        } else {
            fprintf(t->out, "%s%s%s", *first ? "" : ", ", prefix, name);
            *first = false;
        }
        free(names[i]);
    }
    free(names);
}

void trainer_print_run_dir(Trainer *t) {
    if (!t->lead) return;
    fprintf(t->out, "run directory %s: ", t->run_dir);
    bool first = true;
    print_entries(t, t->run_dir, "", &first);
    fputc('\n', t->out);
}

// World rank 0 writes the resolved configuration into a new run directory (the other ranks return true).
bool trainer_write_config(Trainer *t, Error *err) {
    if (!t->lead) return true;
    char path[PATH_MAX];
    if (!path_format(path, sizeof path, err, "%s/config.yaml", t->run_dir)) return false;
    FILE *f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    config_write_yaml(t->cfg, f);
    fclose(f);
    fprintf(t->out, "run directory %s\n", t->run_dir);
    return true;
}

// ---- results.csv -------------------------------------------------------------------------------------

void trainer_write_results_row(Trainer *t, int64_t epoch, double seconds, const ExecutorLoss *train,
                               const ValResult *val, const OptimHyper *hyper, double images_per_s,
                               int64_t skipped_steps) {
    if (!t->lead) return;
    char path[PATH_MAX];
    Error err = {0};
    if (!path_format(path, sizeof path, &err, "%s/results.csv", t->run_dir)) {
        fprintf(stderr, "yolopipe: cannot append to results.csv: %s\n", err.message);
        return;
    }
    bool fresh = !path_exists(path);
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "yolopipe: cannot append to %s: %s\n", path, strerror(errno));
        return;
    }
    double n = train->n ? train->n : 1.0, nv = val->loss.n ? val->loss.n : 1.0;
    if (t->classify) {
        if (fresh)
            fprintf(f, "epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2,"
                       "images_per_s,train/skipped_steps\n");
        fprintf(f, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%lld\n", (long long)epoch + 1, seconds,
                train->ce / n, classify_metrics_top1(&val->classify), classify_metrics_top5(&val->classify),
                val->loss.ce / nv, hyper->lr[0], hyper->lr[1], hyper->lr[2], images_per_s, (long long)skipped_steps);
    } else {
        if (fresh)
            fprintf(f, "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
                       "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,"
                       "lr/pg2,images_per_s,train/skipped_steps\n");
        const DetectSummary *d = val->detect;
        fprintf(f, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%lld\n",
                (long long)epoch + 1, seconds, train->box / n, train->cls / n, train->dfl / n, d ? d->p : 0,
                d ? d->r : 0, d ? d->map50 : 0, d ? d->map50_95 : 0, val->loss.box / nv, val->loss.cls / nv,
                val->loss.dfl / nv, hyper->lr[0], hyper->lr[1], hyper->lr[2], images_per_s, (long long)skipped_steps);
    }
    // A full disk or `ulimit -f` shows here; the run goes on (the checkpoints hold its state).
    if ((ferror(f) | fclose(f)) != 0) fprintf(stderr, "yolopipe: cannot append to %s: %s\n", path, strerror(errno));
}

// ---- checkpoints -------------------------------------------------------------------------------------

// Every stage of replica 0 writes its file into a directory world rank 0 began and then commits.
// Replica 0 holds the replicas' gradient sum and averaged running statistics by then
// (trainer_gather_replicas), so the checkpoint resumes under any number of replicas.
bool trainer_save(Trainer *t, const char *which, Error *err) {
    char dir[PATH_MAX], tmp[PATH_MAX] = "";  // tmp travels to every rank: the same size everywhere
    FsAtomicDir *ad = NULL;
    bool ok = !t->lead || (path_format(dir, sizeof dir, err, "%s/weights/%s", t->run_dir, which) &&
                           checkpoint_dir_begin(dir, &ad, err));
    if (ad && !(ok = path_format(tmp, sizeof tmp, err, "%s", fs_atomic_dir_path(ad)))) {
        fs_atomic_dir_abort(ad);
        ad = NULL;
    }
    if (!trainer_all_ranks_ok(t, ok, err)) return false;
    t->tr->ops->broadcast(t->tr, tmp, sizeof tmp, 0, TRANSPORT_WORLD);
    for (int c = 0; ok && c < t->n_chunks; c++) {
        ExecutorChunk *ch = executor_chunk(t->ex, c);
        CheckpointModel model = {.graph = ch->graph, .ema = t->chunks[c].ema, .optimizer = t->chunks[c].optimizer};
        if (t->topo->replica == 0) ok = checkpoint_save_stage(tmp, ch->stage, &t->at, &model, err);
    }
    ok = trainer_all_ranks_ok(t, ok, err);
    if (t->lead) {
        int layers[PLAN_MAX_STAGES][2];
        for (int k = 0; k < t->ep.plan.n_stages; k++)
            layers[k][0] = t->ep.plan.stages[k].first_layer, layers[k][1] = t->ep.plan.stages[k].last_layer;
        if (ok) ok = checkpoint_write_manifest(tmp, &t->at, t->cfg, t->ep.plan.n_stages, (const int(*)[2])layers, err);
        if (ok) ok = fs_atomic_dir_commit(ad, err);
        else fs_atomic_dir_abort(ad);
    }
    return trainer_all_ranks_ok(t, ok, err);
}

bool trainer_load(Trainer *t, const char *dir, bool resume, Error *err) {
    const TrainConfig *tc = &t->cfg->train;
    CheckpointResume position = {.epochs = tc->epochs, .batches_per_epoch = t->batches_per_epoch,
                                 .passes_per_batch = tc->batch / t->micro, .seed = tc->seed,
                                 .loss_scaling = trainer_scales_loss(t->cfg)};
    bool ok = true;
    for (int c = 0; ok && c < t->n_chunks; c++) {
        Graph *g = executor_chunk(t->ex, c)->graph;
        CheckpointModel model = {.graph = g, .ema = t->chunks[c].ema, .optimizer = resume ? t->chunks[c].optimizer : NULL};
        ok = checkpoint_load(dir, resume ? &position : NULL, &t->at, &model, err);
        // The saved gradients are the replicas' sum: one replica carries them into the next step.
        if (ok && t->topo->replica > 0) graph_zero_grads(g);
    }
    return trainer_all_ranks_ok(t, ok, err);
}

// ---- resume ------------------------------------------------------------------------------------------

bool trainer_resume(Trainer *t, Error *err) {
    char dir[PATH_MAX];
    if (!path_format(t->run_dir, sizeof t->run_dir, err, "%s/%s", t->cfg->output.dir, t->cfg->name) ||
        !path_format(dir, sizeof dir, err, "%s/weights/last", t->run_dir))
        return false;
    if (!path_exists(dir))
        return config_error_at(t->cfg, "name", err, "--resume: %s does not exist (nothing to resume for run '%s')", dir,
                               t->cfg->name);
    // Resuming continues the same computation: only keys that do not change it may differ.
    char saved_path[PATH_MAX];
    ExperimentConfig *saved = NULL;
    if (!path_format(saved_path, sizeof saved_path, err, "%s/config.yaml", dir) ||
        !config_load(saved_path, 0, NULL, &saved, err))
        return false;
    const char *key = config_resume_mismatch(saved, t->cfg);
    const ParallelConfig *was = &saved->parallel;
    int64_t saved_micro = saved->train.batch / (was->replicas * was->micro_batches);
    config_destroy(saved);
    if (key)
        return config_error_at(t->cfg, key, err, "--resume: %s differs from the run being resumed (%s); resume with "
                               "the same settings (only train.max_steps, train.workers, val.*, output.*, parallel.* and "
                               "device.backend may change)",
                               key, saved_path);
    if (saved_micro != t->micro)
        return config_error_at(t->cfg, "parallel.micro_batches", err,
                               "--resume: micro-batches of %lld images, but the run being resumed used %lld (batch-norm "
                               "statistics depend on it): keep train.batch / (parallel.replicas x parallel.micro_batches) = %lld",
                               (long long)t->micro, (long long)saved_micro, (long long)saved_micro);
    if (!trainer_load(t, dir, true, err)) return false;
    if (t->at.epoch >= t->cfg->train.epochs)
        return config_error_at(t->cfg, "train.epochs", err, "--resume: %s already finished its %lld epochs", t->run_dir,
                               (long long)t->cfg->train.epochs);
    fprintf(t->out, "resuming %s at epoch %lld, batch %lld (%lld optimizer steps done)\n", t->run_dir,
            (long long)t->at.epoch + 1, (long long)t->at.batch, (long long)t->at.optimizer_steps);
    return true;
}
