#pragma once
// Dynamic loss scaling for f16 mixed precision, as torch.amp.GradScaler. f16 gradients of
// small magnitude flush to zero; scaling the loss by S scales every gradient by S and lifts
// them into f16's range. Before the optimizer step the gradients are divided by S again, and
// if any is inf or NaN (S was too large) the step is skipped:
//   backward(scale(loss))          gradients are S g
//   step(optimizer)                unscale (g = g / S) and check; step only if all finite
//   update()                       inf seen:  S = S * backoff_factor, good-step count = 0
//                                  otherwise: count += 1; when count == growth_interval,
//                                             S = S * growth_factor (if finite), count = 0
// The unscale and the check of all gradients is one fused kernel (kernels::unscale_grads).
// bf16 has f32's exponent range and needs no scaling (Trainer's "bf16-mixed" uses none).
#include <map>

#include "nn/optim/optimizer.h"

namespace lumen::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;  // disabled: scale() returns the loss, step() just steps
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * S, in f32 (a 16-bit loss is cast up first: S alone may exceed f16's range).
  Tensor scale(const Tensor& loss) const;
  // Divides the optimizer's gradients by S in place and records whether any is inf or NaN.
  // Call it before clipping gradients; at most once per optimizer between update()s.
  void unscale_(Optimizer& optimizer);
  // Unscales (unless unscale_ already did) and steps the optimizer if every gradient is
  // finite. Returns whether it stepped; a skipped step leaves parameters and optimizer state
  // as they were. At most once per optimizer between update()s.
  bool step(Optimizer& optimizer);
  // Whether unscale_ or step recorded an inf check since the last update(): the loops that
  // let several optimizers step on one backward adjust the scale once, when it is due.
  bool update_due() const { return !per_optimizer_.empty(); }
  // Drops what unscale_ and step recorded since the last update(), leaving the scale as it is:
  // for a loop that failed between a step and its update.
  void clear_optimizer_states() { per_optimizer_.clear(); }
  // Whether unscale_ (or step) ran on this optimizer since the last update(): its gradients
  // are unscaled then, and clipping them must not unscale again.
  bool unscaled(const Optimizer& optimizer) const;
  // Adjusts S from the checks since the last update (see above). Needs a step() or unscale_
  // first.
  void update();

  double get_scale() const { return enabled_ ? scale_ : 1.0; }
  bool is_enabled() const { return enabled_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  // Optimizer steps skipped because of inf/NaN gradients since construction (or the loaded
  // state): PyTorch has no such counter; Lumen's Trainer logs it.
  int64_t skipped_steps() const { return skipped_steps_; }
  const GradScalerOptions& options() const { return options_; }

  // attrs: scale, growth_factor, backoff_factor, growth_interval, growth_tracker (PyTorch's
  // keys, without its underscore) and skipped_steps.
  State state_dict() const;
  void load_state_dict(const State& state);

 private:
  enum class Stage { ready, unscaled, stepped };
  struct PerOptimizer {
    Stage stage = Stage::ready;
    bool found_inf = false;
  };

  GradScalerOptions options_;
  bool enabled_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
  std::map<const Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace lumen::optim
