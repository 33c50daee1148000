// `yolopipe train EXP.yaml [--set k=v]... [--resume] [--trace]`, and what it shares with
// `yolopipe val`: running an experiment on this process's rank.
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/cli/cli.h"
#include "framework/config/config.h"
#include "framework/core/launcher.h"
#include "framework/runtime/failure.h"
#include "framework/train/trainer.h"

// The job's transport: MPI under a launcher, else one local rank (a pipeline needs a launcher).
static bool open_transport(const ExperimentConfig *cfg, Transport **out, Error *err) {
    const ParallelConfig *pc = &cfg->parallel;
    if (launcher_rank() >= 0) {
        if (!transport_mpi_create((int)pc->stages, (int)pc->replicas, pc->rank_order, out, err))
            return config_error_at(cfg, "parallel.stages", err, "%s", err->message);
    } else if (pc->stages * pc->replicas > 1) {
        return config_error_at(cfg, "parallel.stages", err,
                               "parallel.stages x parallel.replicas = %lld x %lld needs %lld processes: start it with "
                               "mpirun -np %lld yolopipe train ...",
                               (long long)pc->stages, (long long)pc->replicas, (long long)(pc->stages * pc->replicas),
                               (long long)(pc->stages * pc->replicas));
    } else {
        *out = transport_local_create();
    }
    (*out)->timeout_s = (double)pc->recv_timeout;
    return true;
}

// Ranks sharing a node share its cores: unless the user chose (OMP_NUM_THREADS), each rank gets its
// share, so that ranks do not oversubscribe the cores with threads.
static void share_cores(const Topology *topo) {
    if (getenv("OMP_NUM_THREADS") || topo->local_size <= 1) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores > topo->local_size ? (int)(cores / topo->local_size) : 1;
    omp_set_num_threads(threads);
}

// Validation without a launcher runs in one process whatever parallel.* says (a checkpoint loads
// under any partitioning): the experiment is loaded again as one stage, replica and chunk (1f1b), with
// the micro-batches of its replicas in one, so that validation batches keep their size. The overrides
// go after the user's; their texts live in `texts`.
enum { SINGLE_PROCESS_SETS = 6, SINGLE_PROCESS_TEXT = 64 };

static bool load_single_process(const char *path, char **set, int n_set, char (*texts)[SINGLE_PROCESS_TEXT],
                                ExperimentConfig **cfg, Error *err) {
    const ParallelConfig *pc = &(*cfg)->parallel;
    if (pc->stages * pc->replicas * pc->chunks == 1) return true;
    printf("val: validating in one process (the experiment's %lld stages x %lld replicas are for training)\n",
           (long long)pc->stages, (long long)pc->replicas);
    snprintf(texts[0], SINGLE_PROCESS_TEXT, "parallel.micro_batches=%lld", (long long)(pc->micro_batches * pc->replicas));
    snprintf(texts[1], SINGLE_PROCESS_TEXT, "parallel.stages=1");
    snprintf(texts[2], SINGLE_PROCESS_TEXT, "parallel.replicas=1");
    snprintf(texts[3], SINGLE_PROCESS_TEXT, "parallel.chunks=1");
    snprintf(texts[4], SINGLE_PROCESS_TEXT, "parallel.partition=auto");
    snprintf(texts[5], SINGLE_PROCESS_TEXT, "parallel.schedule=1f1b");  // interleaved needs chunks
    for (int i = 0; i < SINGLE_PROCESS_SETS; i++) set[n_set + i] = texts[i];
    config_destroy(*cfg);
    *cfg = NULL;
    return config_load(path, n_set + SINGLE_PROCESS_SETS, set, cfg, err);
}

int cmd_experiment_run(ExperimentArgs *args, bool validate_only) {
    Error err = {0};
    ExperimentConfig *cfg = NULL;
    Transport *tr = NULL;
    // --trace is the override output.trace=true, after the user's.
    char **set = yp_calloc((size_t)args->set.n + 1 + SINGLE_PROCESS_SETS, sizeof *set);
    char single[SINGLE_PROCESS_SETS][SINGLE_PROCESS_TEXT];
    int n_set = args->set.n;
    memcpy(set, args->set.items, (size_t)n_set * sizeof *set);
    if (args->trace) set[n_set++] = "output.trace=true";
    bool ok = config_load(args->path, n_set, set, &cfg, &err);
    if (ok && validate_only && launcher_rank() < 0) ok = load_single_process(args->path, set, n_set, single, &cfg, &err);
    ok = ok && open_transport(cfg, &tr, &err);
    if (ok) {
        failure_install(&tr->topo, tr);
        share_cores(&tr->topo);
        TrainerOptions opt = {.resume = args->resume, .out = stdout, .transport = tr};
        ok = validate_only ? trainer_validate_checkpoint(cfg, args->weights, &opt, &err) : trainer_run(cfg, &opt, &err);
    } else if (launcher_rank() > 0) {
        err.message[0] = '\0';  // every rank found the same: rank 0 says it
    }
    if (!ok && err.message[0]) {
        if (tr && tr->topo.world_rank > 0) fprintf(stderr, "rank %d: %s\n", tr->topo.world_rank, err.message);
        else fprintf(stderr, "%s\n", err.message);
    }
    fflush(stdout);
    transport_destroy(tr);
    config_destroy(cfg);
    free(set);
    free(args->set.items);
    args->set = (CliList){0};
    return ok ? 0 : YP_EXIT_USAGE;
}

static const CliOption train_options[] = {
    CLI_OPTION_SET(ExperimentArgs, set),
    {.name = "resume", .value = CLI_VALUE_FLAG, .offset = offsetof(ExperimentArgs, resume),
     .help = "continue <output.dir>/<name>/weights/last\n(under any stages, replicas or schedule)"},
    {.name = "trace", .value = CLI_VALUE_FLAG, .offset = offsetof(ExperimentArgs, trace),
     .help = "write the measured timeline of the third batch to <run>/trace.json\n(the same as --set output.trace=true)"},
};

static const CliPositional train_positionals[] = {{.metavar = "EXP.yaml", .offset = offsetof(ExperimentArgs, path)}};

const CliCommand cmd_train_cli = {
    .name = "train",
    .summary = "train as an experiment file says (under mpirun for several ranks)",
    .usage_prefix = "[mpirun -np N] ",
    .description = "Trains as the experiment file says (experiments/SCHEMA.md); results in <output.dir>/<name>/.\n"
                   "N = parallel.stages x parallel.replicas processes (one without mpirun).\n",
    .positionals = train_positionals,
    .n_positionals = 1,
    .options = train_options,
    .n_options = sizeof train_options / sizeof *train_options,
    .run = cmd_train,
};

int cmd_train(int argc, char **argv) {
    ExperimentArgs args = {0};
    int rc = cli_parse(&cmd_train_cli, argc, argv, &args);
    if (rc != CLI_PARSED) return rc;
    return cmd_experiment_run(&args, false);
}
