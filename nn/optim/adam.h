#pragma once
// Adam, as torch.optim.Adam (Kingma & Ba, with PyTorch's placement of eps). For each
// parameter p with gradient g (negated when maximize), at its step t = 1, 2, ...:
//   g = g + weight_decay * p                     (L2 penalty; AdamW decays p instead)
//   m = beta1 m + (1 - beta1) g                  (computed as lerp(m, g, 1 - beta1))
//   v = beta2 v + (1 - beta2) g^2
//   amsgrad: v_max = max(v_max, v), used in place of v below
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// m, v (and v_max) start at zero.
#include <array>
#include <vector>

#include "nn/optim/optimizer.h"

namespace lumen::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
  bool maximize = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  // Each group's options override `defaults` by name: "lr", "betas0", "betas1", "eps",
  // "weight_decay", "amsgrad" (0 or 1), "maximize" (0 or 1).
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});

  void step() override;
  std::string type_name() const override { return decoupled_ ? "AdamW" : "Adam"; }
  // Per-parameter state (once the parameter has been stepped): "step" (0-d f64, that
  // parameter's step count), "exp_avg", "exp_avg_sq", and "max_exp_avg_sq" with amsgrad.
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 protected:
  void check_group(const ParamGroup& group, size_t index) const override;
  // AdamW: decoupled weight decay (p = p * (1 - lr * weight_decay) before the update).
  Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled_weight_decay);

 private:
  struct ParamState {
    int64_t step = 0;
    Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  bool decoupled_ = false;
  std::vector<ParamState> state_;  // by parameter index
};

}  // namespace lumen::optim
