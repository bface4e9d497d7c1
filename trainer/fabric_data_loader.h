#pragma once
// A DataLoader as Fabric iterates it (Fabric::setup_dataloaders): each range-for over it is the
// next epoch (Lightning's _FabricDataLoader calls set_epoch the same way), its batches moved to
// Fabric's device, the next one copied while this one trains (trainer/device_prefetcher.h).
//
//   for (int64_t epoch = 0; epoch < 3; ++epoch)
//     for (Batch& b : loader) { ... }
//
// Its state (Stateful, for Fabric::save) is the loader's order and how many batches of the epoch
// the loop has received, so a checkpoint saved inside the loop resumes after the batch just
// trained: the first range-for after Fabric::load finishes that epoch, the next ones go on. A
// checkpoint saved after the epoch's last batch starts the next epoch. "Received" counts the
// batches the range-for handed out: one taken and left untrained (a break at the top of the
// loop) counts as trained. Loading a state inside the range-for ends it. The range-for's
// iterator points at this object: do not move it while iterating.
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>

#include "trainer/data_loader.h"
#include "trainer/device_prefetcher.h"

namespace lumen {

class FabricDataLoader {
 public:
  // `loader` must outlive this object.
  FabricDataLoader(DataLoader& loader, Device device);
  FabricDataLoader(FabricDataLoader&&) noexcept = default;
  FabricDataLoader& operator=(FabricDataLoader&&) noexcept = default;

  int64_t size() const { return loader_->size(); }  // batches per epoch (of this rank's shard)
  DataLoader& loader() const { return *loader_; }
  Device device() const { return device_; }
  // The epoch the last range-for ran (-1 before the first).
  int64_t epoch() const { return loader_->epoch(); }

  class iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    Batch& operator*() const { return *batch_; }
    Batch* operator->() const { return &*batch_; }
    iterator& operator++() {
      owner_->advance(batch_);
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !batch_.has_value(); }

   private:
    friend class FabricDataLoader;
    explicit iterator(FabricDataLoader* owner) : owner_(owner) { owner_->advance(batch_); }
    FabricDataLoader* owner_ = nullptr;
    mutable std::optional<Batch> batch_;
  };
  // Starts the next epoch (or finishes the one a loaded state was inside).
  iterator begin();
  std::default_sentinel_t end() const { return {}; }

  // The loader's state_dict, with batches_consumed = the batches this epoch's loop received.
  State state_dict() const;
  void load_state_dict(const State& state);

 private:
  void advance(std::optional<Batch>& batch);

  DataLoader* loader_;
  Device device_;
  std::unique_ptr<DevicePrefetcher> batches_;
  int64_t received_ = 0;  // batches of the current epoch handed to the loop
  bool resume_ = false;   // a loaded state waits for begin()
};

}  // namespace lumen
