#include "dist/world.h"

#include "dist/local_communicator.h"
#if LUMEN_MPI
#include "dist/mpi_communicator.h"
#endif

namespace lumen::dist {

bool mpi_available() { return LUMEN_MPI != 0; }

std::shared_ptr<Communicator> new_world_communicator(CommunicatorOptions options) {
  LauncherEnvironment env = launcher_environment();
  if (env.world_size == 1) return std::make_shared<LocalCommunicator>(options);
#if LUMEN_MPI
  return std::make_shared<MpiCommunicator>(options);
#else
  lumen::detail::throw_error(
      "dist: the ", env.launcher, " launcher started ", env.world_size,
      " processes, but this Lumen was built without MPI (install libopenmpi-dev "
      "and reconfigure)");
#endif
}

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> communicator = new_world_communicator();
  return communicator;
}

}  // namespace lumen::dist
