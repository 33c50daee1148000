// The launcher that started this process, as its environment tells: mpirun (Open MPI), srun
// (Slurm) and other PMI launchers set a rank variable in every process they start.
#pragma once

// This process's rank as the launcher gave it, or -1 when no launcher started it.
int launcher_rank(void);
