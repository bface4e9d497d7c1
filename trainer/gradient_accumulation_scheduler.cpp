#include "trainer/gradient_accumulation_scheduler.h"

#include <iterator>

#include "tensor/error.h"
#include "trainer/lightning_module.h"
#include "trainer/trainer.h"

namespace lumen {

GradientAccumulationScheduler::GradientAccumulationScheduler(std::map<int64_t, int64_t> scheduling)
    : scheduling_(std::move(scheduling)) {
  LUMEN_CHECK(!scheduling_.empty(),
              "GradientAccumulationScheduler: scheduling is empty; give {epoch: factor} pairs");
  for (const auto& [epoch, factor] : scheduling_) {
    LUMEN_CHECK(epoch >= 0, "GradientAccumulationScheduler: epochs must be >= 0, got ", epoch);
    LUMEN_CHECK(factor >= 1, "GradientAccumulationScheduler: the factor of epoch ", epoch,
                " must be >= 1, got ", factor);
  }
  scheduling_.emplace(0, 1);  // no effect when epoch 0 has a factor already
}

int64_t GradientAccumulationScheduler::get_accumulate_grad_batches(int64_t epoch) const {
  auto it = scheduling_.upper_bound(epoch);  // the first key after epoch
  return std::prev(it)->second;              // key 0 exists, so there is one at or before
}

bool GradientAccumulationScheduler::going_to_accumulate_grad_batches() const {
  for (const auto& [epoch, factor] : scheduling_)
    if (factor > 1) return true;
  return false;
}

void GradientAccumulationScheduler::on_train_start(Trainer& trainer, LightningModule& module) {
  LUMEN_CHECK(module.automatic_optimization,
              "GradientAccumulationScheduler: gradient accumulation is not supported for manual "
              "optimization; remove the callback or switch to automatic optimization");
  LUMEN_CHECK(trainer.options().accumulate_grad_batches == 1,
              "GradientAccumulationScheduler: the Trainer has accumulate_grad_batches = ",
              trainer.options().accumulate_grad_batches,
              " as well; set the factors in the scheduler only");
  // A fit resumed in the middle of an epoch skips its epoch-start hooks: the factor is set here
  // too.
  trainer.set_accumulate_grad_batches(get_accumulate_grad_batches(trainer.current_epoch()));
}

void GradientAccumulationScheduler::on_train_epoch_start(Trainer& trainer, LightningModule&) {
  trainer.set_accumulate_grad_batches(get_accumulate_grad_batches(trainer.current_epoch()));
}

}  // namespace lumen
