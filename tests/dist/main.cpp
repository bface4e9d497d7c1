// The tests that need several processes: run under a launcher, e.g.
//   mpirun -np 2 build/lumen_dist_tests
// (ctest does, as dist_mpi_2_ranks). Every rank runs every test; the job fails if any rank does.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist/world.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = lumen::dist::world();
  if (world->world_size() < 2) {
    std::fprintf(stderr, "lumen_dist_tests: world size %d; run it with mpirun -np 2\n",
                 world->world_size());
    return 1;
  }
  // Rank 0 prints the test log; the others print only their failures (gtest's default
  // printer stays on rank 0).
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  world->barrier();
  return failed;
}
