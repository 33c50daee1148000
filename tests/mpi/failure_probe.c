// A job that fails on purpose, for tests/mpi/check-failure.sh. Usage (under mpirun):
//   failure_probe MODE STAGES REPLICAS
// Every rank but the failing one waits, with no time limit, for a message that never comes; the
// failing rank is the last one. MODE:
//   timeout     the last rank waits for a message from pipeline rank 0 with a 2 s limit
//   kill        every rank prints "ready WORLD_RANK PID" and waits (the script SIGKILLs one)
//   fatal       the last rank hits an internal error
//   user-error  the last rank finds a user error
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/runtime/failure.h"
#include "framework/runtime/transport.h"

// Waits with no time limit for a message no rank sends.
static void wait_forever(Transport *t) {
    char byte;
    int prev = (t->topo.pipeline_rank + t->topo.pipeline_size - 1) % t->topo.pipeline_size;
    failure_set_activity("step 3, RECV_ACT micro-batch 1 of cut 0 from pipeline rank %d", prev);
    t->timeout_s = 0;
    transport_wait(t, t->ops->irecv(t, &byte, 1, prev, 0), "a message no rank sends");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: failure_probe timeout|kill|fatal|user-error STAGES REPLICAS\n");
        return YP_EXIT_USAGE;
    }
    const char *mode = argv[1];
    Transport *t = NULL;
    Error err = {0};
    if (!transport_mpi_create(atoi(argv[2]), atoi(argv[3]), RANK_ORDER_PIPELINE_FIRST, &t, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return YP_EXIT_USAGE;
    }
    failure_install(&t->topo, t);
    bool last = t->topo.world_rank == t->topo.world_size - 1;
    if (strcmp(mode, "kill") == 0) {
        printf("ready %d %d\n", t->topo.world_rank, (int)getpid());
        fflush(stdout);
    } else if (last && strcmp(mode, "timeout") == 0) {
        char byte;
        t->timeout_s = 2;
        failure_set_activity("step 1, RECV_ACT micro-batch 3 of cut 2 from pipeline rank 0");
        transport_wait(t, t->ops->irecv(t, &byte, 1, 0, 5),
                       "the activation of layer 4 (cut 2) for micro-batch 3 from pipeline rank 0 (world rank 0)");
    } else if (last && strcmp(mode, "fatal") == 0) {
        failure_set_activity("step 5, BWD micro-batch 2 of chunk 0");
        yp_fatal("the probe's internal error");
    } else if (last && strcmp(mode, "user-error") == 0) {
        error_set(&err, "probe.yaml:3:5: a user error only this rank found");
        failure_user_error(&err);
    }
    wait_forever(t);
    transport_destroy(t);
    return 0;
}
