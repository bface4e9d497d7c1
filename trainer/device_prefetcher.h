#pragma once
// Batches of a DataLoader delivered on the training device, the next one already on its way:
// while batch i trains, batch i + 1 is loaded and copied to the GPU on the copy stream
// (prefetch_to), so the host-to-device copy overlaps the step's kernels instead of preceding
// them. Pageable host tensors are first copied into pinned blocks (otherwise CUDA would make the
// host wait for the step in flight before staging the copy). On the CPU there is nothing to
// overlap, and batches are taken one at a time.
#include <cstdint>
#include <exception>
#include <optional>

#include "trainer/data_loader.h"

namespace lumen {

class DevicePrefetcher {
 public:
  // Takes at most `limit` batches from `loader` (whose epoch has begun), moved to `device`.
  // `lookahead` (default: on a GPU) keeps one batch ahead.
  DevicePrefetcher(DataLoader& loader, Device device, int64_t limit,
                   std::optional<bool> lookahead = std::nullopt);
  // Joins a batch still on its way (a loop that stops early, an exception), so its device
  // blocks go back to the pool, and its host blocks to the loader, only after its copies.
  ~DevicePrefetcher();
  DevicePrefetcher(const DevicePrefetcher&) = delete;
  DevicePrefetcher& operator=(const DevicePrefetcher&) = delete;

  // The next batch, its tensors on the device and ready for any kernel queued from now on; or
  // nullopt at the end (of the epoch or the limit). An error loading a batch is rethrown by the
  // call that would have returned that batch; the call after it returns the following one, as
  // DataLoader::next does.
  std::optional<Batch> next();

 private:
  struct Ahead {
    Batch host;                  // kept alive until the copies from it are joined
    std::optional<Batch> batch;  // on the device; nullopt at the end
    std::exception_ptr error;
  };
  Ahead fetch();  // takes the following batch from the loader and starts its copies

  DataLoader& loader_;
  Device device_;
  int64_t limit_, taken_ = 0;
  bool lookahead_;
  std::optional<Ahead> ahead_;
};

}  // namespace lumen
