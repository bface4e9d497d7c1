#pragma once
// update_bn, as torch.optim.swa_utils.update_bn: recomputes the running statistics of every
// BatchNorm of a model from one pass over a loader. Weights averaged over training (SWA,
// optim::AveragedModel without use_buffers) come with no statistics of their own; this gives
// them the ones their activations have. Each BatchNorm's statistics are reset and accumulated as
// a plain average over the batches (momentum nullopt during the pass, restored after), in
// training mode without gradients; the model's mode is restored after. A model without
// BatchNorms is left alone without a pass.
#include <functional>
#include <optional>

#include "nn/module.h"
#include "trainer/batch.h"
#include "trainer/data_loader.h"

namespace lumen {

// `forward` runs the model on one batch (already on `device` when one is given); PyTorch's
// model(input[0]) is the overload below.
void update_bn(DataLoader& loader, nn::Module& model,
               const std::function<void(const Batch&)>& forward,
               std::optional<Device> device = std::nullopt);
// The model applied to each batch's first tensor.
void update_bn(DataLoader& loader, nn::UnaryModule& model,
               std::optional<Device> device = std::nullopt);

}  // namespace lumen
