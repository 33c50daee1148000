#include "framework/core/launcher.h"

#include <stdlib.h>
#include <unistd.h>

int launcher_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v) return atoi(v);
    }
    return -1;
}

bool launcher_live_terminal(int fd) { return launcher_rank() < 0 && isatty(fd); }
