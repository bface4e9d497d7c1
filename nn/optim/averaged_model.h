#pragma once
// The running average of a module's weights, as torch.optim.swa_utils.AveragedModel: stochastic
// weight averaging (Izmailov et al., 2018) and exponential moving averages (EMA).
//
// PyTorch deep-copies the module; a Lumen module cannot be copied, so the average holds a copy
// of each parameter (and, with use_buffers, each buffer) under the module's state_dict name,
// and writes them back into a module of the same structure (copy_to, swap).
//
// update_parameters(module): the first call copies the module's values; each later call
// applies the average function to every floating tensor, in place:
//   SWA (the default):  avg = avg + (x - avg) / (n + 1)     the mean of every update's x
//   ema_avg_fn(decay):  avg = decay avg + (1 - decay) x
// with n the updates averaged so far. Integer buffers (BatchNorm's num_batches_tracked) take the
// module's value: an average of a counter means nothing (PyTorch truncates the average).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace lumen::optim {

// Updates `averaged` in place from the module's `current` (same shape, dtype and device) after
// `num_averaged` earlier updates (at least 1).
using AverageFn =
    std::function<void(const Tensor& averaged, const Tensor& current, int64_t num_averaged)>;

// torch.optim.swa_utils.get_ema_avg_fn: decay in [0, 1].
AverageFn ema_avg_fn(double decay = 0.999);
// The equally weighted mean (PyTorch's default).
AverageFn swa_avg_fn();

struct AveragedModelOptions {
  // Where the average lives; unset: each tensor on its module tensor's device.
  std::optional<Device> device = std::nullopt;
  // Average the buffers too (BatchNorm's running statistics). PyTorch's default, false, leaves
  // them to update_bn after training.
  bool use_buffers = false;
  AverageFn avg_fn = nullptr;  // null: swa_avg_fn()
};

class AveragedModel {
 public:
  // Copies the module's parameters (and buffers with use_buffers) as the initial average.
  explicit AveragedModel(const nn::Module& module, AveragedModelOptions options = {});

  void update_parameters(const nn::Module& module);
  // Updates so far (PyTorch's n_averaged buffer).
  int64_t n_averaged() const { return n_averaged_; }
  bool use_buffers() const { return options_.use_buffers; }
  // The averaged tensors by state_dict name, in the module's order (parameters, then buffers).
  const nn::NamedTensors& averaged() const { return averaged_; }

  // Writes the average into the module's tensors (in place: optimizers keep seeing them).
  void copy_to(nn::Module& module) const;
  // Exchanges the values of the average and the module's tensors (Lightning's WeightAveraging
  // validates with the average this way and swaps back after).
  void swap(nn::Module& module);
  void to(Device device);

  // Tensors by name (the live average, as state_dicts are) and attr n_averaged.
  State state_dict() const;
  // Module::load_state_dict's checks and copy (nn::load_named: names and shapes, dtype cast,
  // onto the average's devices), and n_averaged.
  void load_state_dict(const State& state);

 private:
  // The module's tensors that the average mirrors, in the same order; checks that the module
  // still has the names, shapes and dtypes the average was made from.
  std::vector<Tensor> matching(const nn::Module& module, const char* what) const;

  AveragedModelOptions options_;
  nn::NamedTensors averaged_;
  int64_t n_averaged_ = 0;
};

}  // namespace lumen::optim
