// DataLoader batches per second over a Fashion-MNIST-sized TensorDataset (60,000 x 784 f32
// images and i64 labels, batch 128, shuffled): gathered in one index_select per tensor
// (Dataset::get_batch, what default_collate gets) against collating 128 row views a batch (what
// a custom collate gets). Same data, same order, same thread, one run.
#include <benchmark/benchmark.h>

#include "lumen/lumen.h"

using namespace lumen;

namespace {

std::shared_ptr<TensorDataset> fashion_sized() {
  static auto ds = std::make_shared<TensorDataset>(
      std::vector<Tensor>{randn({60000, 1, 28, 28}), zeros({60000}, {.dtype = DType::i64})});
  return ds;
}

void run_epoch_batches(benchmark::State& state, bool gathered) {
  DataLoaderOptions o{.batch_size = 128, .shuffle = true, .seed = 1};
  if (!gathered) o.collate = [](const std::vector<Batch>& e) { return default_collate(e); };
  DataLoader loader(fashion_sized(), o);
  int64_t epoch = 0;
  loader.begin_epoch(epoch);
  for (auto _ : state) {
    std::optional<Batch> b = loader.next();
    if (!b) {
      loader.begin_epoch(++epoch);
      b = loader.next();
    }
    benchmark::DoNotOptimize(b->front().data_ptr());
  }
  state.counters["batches/s"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_LoaderGathered(benchmark::State& state) { run_epoch_batches(state, true); }
BENCHMARK(BM_LoaderGathered)->UseRealTime();

void BM_LoaderCollatedExamples(benchmark::State& state) { run_epoch_batches(state, false); }
BENCHMARK(BM_LoaderCollatedExamples)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
