#include "trainer/lightning_module.h"

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

Device LightningModule::device() const {
  const std::vector<Tensor> params = parameters();
  if (!params.empty()) return params.front().device();
  return trainer_ ? trainer_->device() : Device::cpu();
}

Tensor LightningModule::predict_step(const Batch& batch, int64_t batch_idx) {
  (void)batch;
  (void)batch_idx;
  detail::throw_error("Trainer.predict: ", type_name(),
                      " does not override predict_step(batch, batch_idx)");
}

void LightningModule::log(const std::string& name, const Tensor& value, LogOptions options) {
  LUMEN_CHECK(value.defined(), "log('", name, "'): the value is an undefined tensor");
  LUMEN_CHECK(value.numel() == 1, "log('", name,
              "'): expected a scalar tensor (one element), got shape ", ShapeStr{value.shape()},
              "; reduce it first, e.g. .mean()");
  LUMEN_CHECK(trainer_ != nullptr, "log('", name,
              "'): this module is not attached to a Trainer; log() works only inside the hooks "
              "that Trainer.fit/validate/test call");
  trainer_->log_metric(name, value, options);
}

void LightningModule::log(const std::string& name, double value, LogOptions options) {
  LUMEN_CHECK(trainer_ != nullptr, "log('", name,
              "'): this module is not attached to a Trainer; log() works only inside the hooks "
              "that Trainer.fit/validate/test call");
  trainer_->log_metric(name, value, options);
}

}  // namespace lumen
