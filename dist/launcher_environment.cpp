#include "dist/launcher_environment.h"

#include <cstdlib>

#include "tensor/error.h"

namespace lumen::dist {

namespace {

// The integer in environment variable `name`, or `fallback` when unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  LUMEN_CHECK(*end == '\0' && x >= 0 && x < (1L << 30), "dist: environment variable ", name, "='",
              v, "' is not a rank or size (a non-negative integer)");
  return static_cast<int>(x);
}

bool env_set(const char* name) { return std::getenv(name) != nullptr; }

}  // namespace

LauncherEnvironment launcher_environment() {
  LauncherEnvironment env;
  if (env_set("OMPI_COMM_WORLD_SIZE")) {
    env.launcher = "openmpi";
    env.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    env.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    env.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (env_set("SLURM_STEP_NUM_TASKS") && env_set("SLURM_PROCID")) {
    env.launcher = "slurm";
    env.world_size = env_int("SLURM_STEP_NUM_TASKS", 1);
    env.rank = env_int("SLURM_PROCID", 0);
    env.local_rank = env_int("SLURM_LOCALID", 0);
  } else if (env_set("PMI_SIZE")) {
    env.launcher = "pmi";
    env.world_size = env_int("PMI_SIZE", 1);
    env.rank = env_int("PMI_RANK", 0);
    env.local_rank = env_int("MPI_LOCALRANKID", 0);
  }
  LUMEN_CHECK(env.world_size >= 1 && env.rank < env.world_size, "dist: the ", env.launcher,
              " launcher's environment says rank ", env.rank, " of world size ", env.world_size);
  return env;
}

}  // namespace lumen::dist
