// The launcher that started this process, as its environment tells: mpirun (Open MPI), srun
// (Slurm) and other PMI launchers set a rank variable in every process they start.
#pragma once

#include <stdbool.h>

// This process's rank as the launcher gave it, or -1 when no launcher started it.
int launcher_rank(void);

// Whether output to file descriptor fd may be redrawn in place (`\r`, ESC[K): a terminal, and no
// launcher started this process. Open MPI gives every rank a pseudo-terminal even when mpirun's own
// output goes to a file, so under a launcher the output is taken for a log.
bool launcher_live_terminal(int fd);
