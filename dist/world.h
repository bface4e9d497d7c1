#pragma once
// The communicator over every process of the job. Under a launcher that started several
// processes (launcher_environment.h) it is MPI; a single process needs no MPI at all.
#include <memory>

#include "dist/communicator.h"
#include "dist/launcher_environment.h"

namespace lumen::dist {

// Made on first use with default options and kept until exit.
std::shared_ptr<Communicator> world();
// A new communicator over every process, with its own options and thread. Collective: every
// rank must call it, in the same order relative to other collectives.
std::shared_ptr<Communicator> new_world_communicator(CommunicatorOptions options = {});
// Whether this build has the MPI backend (libopenmpi-dev found at configure time).
bool mpi_available();

}  // namespace lumen::dist
