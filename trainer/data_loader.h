#pragma once
// DataLoader, as torch.utils.data.DataLoader: batches of a Dataset in a seeded order, loaded
// by worker threads ahead of the consumer so loading overlaps compute.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "nn/state.h"
#include "trainer/dataset.h"

namespace lumen {

// Stacks field i of every example into b[i] with a new leading batch dim.
Batch default_collate(const std::vector<Batch>& examples);

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;
  int num_workers = 0;      // 0 loads in the consumer's thread; N threads load ahead otherwise
  int prefetch_factor = 2;  // batches each worker keeps ready
  // The shuffle order of epoch e is a permutation drawn from Philox keyed by (seed, e): it
  // depends on nothing else, so a resumed run sees the same order. Unset: the seed of the
  // default generator when the loader is made (what seed_everything sets).
  std::optional<uint64_t> seed;
  std::function<Batch(const std::vector<Batch>&)> collate = default_collate;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t size() const;  // batches per epoch
  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return options_; }

  // Starts epoch `epoch` (fixing its order), skipping its first `skip_batches` batches
  // without loading them (mid-epoch resume). Restarting abandons the previous epoch.
  void begin_epoch(int64_t epoch, int64_t skip_batches = 0);
  // The next batch of the current epoch, or nullopt at its end. Worker exceptions are
  // rethrown here, in order.
  std::optional<Batch> next();
  int64_t epoch() const { return epoch_; }
  int64_t batches_consumed() const { return consumed_; }

  // attrs: seed, epoch, batches_consumed (the data order part of a checkpoint's /rng).
  State state_dict() const;
  void load_state_dict(const State& state);  // the next begin_epoch uses the loaded seed

 private:
  struct Workers;
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  uint64_t seed_ = 0;
  int64_t epoch_ = -1;
  int64_t consumed_ = 0;
  std::unique_ptr<Workers> workers_;
};

}  // namespace lumen
