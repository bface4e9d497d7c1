#pragma once
// GradientAccumulationScheduler, as Lightning's: changes accumulate_grad_batches by epoch.
// scheduling {epoch: factor}: from that epoch on, factor batches per optimizer step (epochs
// before the first key use 1). GradientAccumulationScheduler({{0, 8}, {4, 4}, {8, 1}}): 8 for
// epochs 0-3, 4 for 4-7, then 1. Automatic optimization only, with the Trainer's own
// accumulate_grad_batches left at 1.
#include <cstdint>
#include <map>

#include "trainer/callback.h"

namespace lumen {

class GradientAccumulationScheduler : public Callback {
 public:
  explicit GradientAccumulationScheduler(std::map<int64_t, int64_t> scheduling);
  std::string state_key() const override { return "GradientAccumulationScheduler"; }

  // The factor of `epoch`.
  int64_t get_accumulate_grad_batches(int64_t epoch) const;
  bool going_to_accumulate_grad_batches() const;

  void on_train_start(Trainer& trainer, LightningModule& module) override;
  void on_train_epoch_start(Trainer& trainer, LightningModule&) override;

 private:
  std::map<int64_t, int64_t> scheduling_;
};

}  // namespace lumen
