#pragma once
// DataLoader, as torch.utils.data.DataLoader: batches of a Dataset in a seeded order, loaded
// by worker threads ahead of the consumer so loading overlaps compute.
#include <cstdint>
#include <functional>
#include <iterator>
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
  std::optional<uint64_t> seed = std::nullopt;
  // Called by the worker threads, several at once, under NoGradGuard: must be thread-safe.
  std::function<Batch(const std::vector<Batch>&)> collate = default_collate;
  // Batches in page-locked memory (Tensor::pin_memory), which a GPU copies from
  // asynchronously. Ignored where no GPU is present, as PyTorch's DataLoader does.
  bool pin_memory = false;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t size() const;  // batches per epoch (of this rank's shard when distributed)

  // Makes this loader one of `num_replicas` shards, as torch's DistributedSampler: each epoch's
  // order (shuffled or not) is padded by repeating its start to a multiple of num_replicas,
  // and this loader takes positions rank, rank + num_replicas, ... So every rank has the
  // same number of batches, and the shards together cover the data once per epoch (a few
  // examples twice when the size is not a multiple). The DDP strategy calls it (on a copy in the
  // Trainer, on the user's loader in Fabric::setup_dataloaders). `seed` replaces the shuffle
  // seed: the shards only partition the data if every rank shuffles with the same one (both
  // pass rank 0's).
  void distribute(int64_t rank, int64_t num_replicas, std::optional<uint64_t> seed = std::nullopt);
  int64_t num_replicas() const { return num_replicas_; }
  int64_t rank() const { return rank_; }
  // Examples per epoch: the dataset's size, or the shard's when distributed.
  int64_t num_examples() const;
  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return options_; }

  // Starts epoch `epoch` (fixing its order), skipping its first `skip_batches` batches
  // without loading them (mid-epoch resume). Restarting abandons the previous epoch.
  void begin_epoch(int64_t epoch, int64_t skip_batches = 0);
  // The next batch of the current epoch, or nullopt at its end. Exceptions from
  // Dataset::get or collate (in a worker or not) are rethrown here, for their batch, which
  // then counts as consumed: the next call returns the batch after it.
  std::optional<Batch> next();
  int64_t epoch() const { return epoch_; }
  int64_t batches_consumed() const { return consumed_; }
  uint64_t seed() const { return seed_; }

  // One epoch as a range: `for (Batch& b : loader.epoch(3)) ...` calls begin_epoch(3) and
  // then next() until the end.
  class EpochRange;
  EpochRange epoch(int64_t epoch, int64_t skip_batches = 0);

  // attrs: seed, epoch, batches_consumed (the data order part of a checkpoint's /rng).
  State state_dict() const;
  // Abandons the current epoch; resume with begin_epoch(epoch(), batches_consumed()), which
  // uses the loaded seed.
  void load_state_dict(const State& state);

 private:
  struct Workers;
  // How batches are made of examples.
  struct Collation {
    std::function<Batch(const std::vector<Batch>&)> collate;
    bool by_default = false;  // collate is default_collate: Dataset::get_batch may stand in
    bool pin = false;         // pin the batches' CPU tensors
  };
  static Batch load_batch(const Dataset& dataset, const std::vector<int64_t>* order, int64_t k,
                          int64_t batch_size, const Collation& collation);
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  Collation collation_;
  uint64_t seed_ = 0;
  int64_t num_replicas_ = 1, rank_ = 0;
  int64_t epoch_ = -1;
  int64_t consumed_ = 0;
  std::unique_ptr<Workers> workers_;
  bool active_ = false;  // an epoch has begun (next() may be called)
  // The epoch's order of example indices; null when neither shuffled nor distributed (the
  // identity).
  std::shared_ptr<const std::vector<int64_t>> order_;
};

class DataLoader::EpochRange {
 public:
  class iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(DataLoader* loader) : loader_(loader), batch_(loader->next()) {}
    Batch& operator*() const { return *batch_; }
    Batch* operator->() const { return &*batch_; }
    iterator& operator++() {
      batch_ = loader_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !batch_.has_value(); }

   private:
    DataLoader* loader_ = nullptr;
    mutable std::optional<Batch> batch_;
  };
  explicit EpochRange(DataLoader* loader) : loader_(loader) {}
  iterator begin() { return iterator(loader_); }
  std::default_sentinel_t end() { return {}; }

 private:
  DataLoader* loader_;
};

}  // namespace lumen
