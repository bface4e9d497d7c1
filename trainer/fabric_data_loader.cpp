#include "trainer/fabric_data_loader.h"

#include <utility>

namespace lumen {

FabricDataLoader::FabricDataLoader(DataLoader& loader, Device device)
    : loader_(&loader), device_(device) {}

FabricDataLoader::iterator FabricDataLoader::begin() {
  batches_.reset();  // joins a batch the previous epoch's loop left on its way
  int64_t epoch = loader_->epoch() + 1, skip = 0;
  // A loaded position inside an epoch finishes it; one before the first epoch (-1) or after an
  // epoch's last batch starts the next.
  if (std::exchange(resume_, false) && loader_->epoch() >= 0 &&
      loader_->batches_consumed() < loader_->size()) {
    epoch = loader_->epoch();
    skip = loader_->batches_consumed();
  }
  loader_->begin_epoch(epoch, skip);
  received_ = skip;
  batches_ = std::make_unique<DevicePrefetcher>(*loader_, device_, loader_->size() - skip);
  return iterator(this);
}

void FabricDataLoader::advance(std::optional<Batch>& batch) {
  if (!batches_) {  // a state was loaded inside the loop: it ends there
    batch.reset();
    return;
  }
  batch = batches_->next();
  if (batch) ++received_;
}

State FabricDataLoader::state_dict() const {
  State s = loader_->state_dict();
  // The prefetcher may have taken one batch more from the loader than the loop has seen.
  if (batches_) s.attrs["batches_consumed"] = received_;
  return s;
}

void FabricDataLoader::load_state_dict(const State& state) {
  batches_.reset();
  loader_->load_state_dict(state);
  resume_ = true;
}

}  // namespace lumen
