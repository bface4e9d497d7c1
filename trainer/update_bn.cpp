#include "trainer/update_bn.h"

#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "nn/batch_norm.h"
#include "tensor/error.h"

namespace lumen {

void update_bn(DataLoader& loader, nn::Module& model,
               const std::function<void(const Batch&)>& forward, std::optional<Device> device) {
  LUMEN_CHECK(forward != nullptr, "update_bn: the forward function is empty");
  std::vector<std::pair<nn::BatchNorm*, std::optional<double>>> momenta;
  for (const auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(m); bn && bn->running_mean.defined()) {
      momenta.emplace_back(bn, bn->momentum);
      bn->reset_running_stats();
      bn->momentum = std::nullopt;
    }
  if (momenta.empty()) return;
  const bool was_training = model.is_training();
  auto restore = [&] {
    for (auto& [bn, momentum] : momenta) bn->momentum = momentum;
    model.train(was_training);
  };
  try {
    model.train();
    NoGradGuard no_grad;
    for (Batch& batch : loader.epoch(0)) {
      if (device)
        for (Tensor& t : batch)
          if (t.defined()) t = t.to(*device);
      forward(batch);
    }
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

void update_bn(DataLoader& loader, nn::UnaryModule& model, std::optional<Device> device) {
  update_bn(
      loader, model,
      [&](const Batch& batch) {
        LUMEN_CHECK(!batch.empty(), "update_bn: a batch has no tensors");
        model.forward(batch[0]);
      },
      device);
}

}  // namespace lumen
