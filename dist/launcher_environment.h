#pragma once
// Who started this process, read from the launcher's environment variables: Open MPI's mpirun
// (OMPI_COMM_WORLD_*), SLURM's srun (SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS: only
// inside a job step, so a plain process in an sbatch script stays single), or a PMI launcher
// such as MPICH's Hydra (PMI_RANK, PMI_SIZE). Nothing set: one process, rank 0.
#include <string>

namespace lumen::dist {

struct LauncherEnvironment {
  std::string launcher;  // "openmpi", "slurm", "pmi", or "" (none)
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
};

LauncherEnvironment launcher_environment();

}  // namespace lumen::dist
