// NCCL all-reduce on one GPU (world size 1), the sanity line of the data-parallel issue: its
// algorithm bandwidth (bytes / time, the host waiting for completion each time). With one
// rank NCCL has nothing to send, so this is its fixed cost per call plus a device copy at
// most. Skips without a GPU; has no benchmark in a build without NCCL.
#include <benchmark/benchmark.h>

#include "lumen/lumen.h"
#if LUMEN_NCCL
#include "dist/local_communicator.h"
#include "dist/nccl_communicator.h"
#endif

using namespace lumen;

namespace {

#if LUMEN_NCCL
void BM_NcclAllReduceOneRank(benchmark::State& state) {
  if (!cuda_is_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  static auto comm =
      std::make_shared<dist::NcclCommunicator>(std::make_shared<dist::LocalCommunicator>(), 0);
  Tensor x = randn({state.range(0)}).to(Device::cuda(0));
  for (auto _ : state) comm->all_reduce(x, dist::ReduceOp::sum);
  state.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 4.0 * static_cast<double>(state.range(0)) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_NcclAllReduceOneRank)->Arg(1 << 20)->Arg(1 << 24)->Arg(1 << 26)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
