// `yolopipe train EXP.yaml [--set k=v]... [--resume]`, and what it shares with `yolopipe val`: the
// experiment's arguments and running it on this process's rank.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/cli/cli.h"
#include "framework/config/config.h"
#include "framework/runtime/failure.h"
#include "framework/train/trainer.h"

bool cmd_experiment_args_parse(const char *command, const char *usage, int argc, char **argv, bool allow_resume,
                               bool allow_weights, ExperimentArgs *args) {
    *args = (ExperimentArgs){.set = calloc((size_t)argc + 1, sizeof(char *))};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--set") && i + 1 < argc) {
            args->set[args->n_set++] = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            args->set[args->n_set++] = argv[i] + 6;
        } else if (allow_resume && !strcmp(a, "--resume")) {
            args->resume = true;
        } else if (allow_resume && !strcmp(a, "--trace")) {
            args->trace = true;
        } else if (allow_weights && !strcmp(a, "--weights") && i + 1 < argc) {
            args->weights = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "yolopipe %s: unknown option or missing value: %s\n%s", command, a, usage);
            return false;
        } else if (!args->path) {
            args->path = a;
        } else {
            fprintf(stderr, "yolopipe %s: one experiment file expected, found a second: %s\n%s", command, a, usage);
            return false;
        }
    }
    if (!args->path) {
        fprintf(stderr, "yolopipe %s: missing EXP.yaml\n%s", command, usage);
        return false;
    }
    if (allow_weights && !args->weights) {
        fprintf(stderr, "yolopipe %s: missing --weights DIR\n%s", command, usage);
        return false;
    }
    return true;
}

// The rank a launcher gave this process (mpirun, srun and other PMI launchers set these), or -1
// when started without one.
static int launcher_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v) return atoi(v);
    }
    return -1;
}

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

int cmd_experiment_run(const ExperimentArgs *args, bool validate_only) {
    Error err = {0};
    ExperimentConfig *cfg = NULL;
    Transport *tr = NULL;
    int n_set = args->n_set;
    if (args->trace) args->set[n_set++] = "output.trace=true";
    bool ok = config_load(args->path, n_set, args->set, &cfg, &err) && open_transport(cfg, &tr, &err);
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
    free(args->set);
    return ok ? 0 : YP_EXIT_USAGE;
}

int cmd_train(int argc, char **argv) {
    static const char usage[] =
        "usage: [mpirun -np N] yolopipe train EXP.yaml [--set section.key=value]... [--resume] [--trace]\n"
        "  trains as the experiment file says (experiments/SCHEMA.md); results in <output.dir>/<name>/\n"
        "  N = parallel.stages x parallel.replicas processes (one without mpirun)\n"
        "  --resume continues <output.dir>/<name>/weights/last (under any stages, replicas or schedule)\n"
        "  --trace  writes the measured timeline of the third batch to <run>/trace.json (output.trace)\n";
    ExperimentArgs args;
    if (!cmd_experiment_args_parse("train", usage, argc, argv, true, false, &args)) return YP_EXIT_USAGE;
    return cmd_experiment_run(&args, false);
}
