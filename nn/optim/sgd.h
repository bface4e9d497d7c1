#pragma once
// Stochastic gradient descent with momentum, as torch.optim.SGD. For each parameter p with
// gradient g (negated when maximize):
//   d = g + weight_decay * p
//   momentum != 0:  b = d on the first step, else b = momentum * b + (1 - dampening) * d
//                   d = nesterov ? d + momentum * b : b
//   p = p - lr * d
#include <vector>

#include "nn/optim/optimizer.h"

namespace lumen::optim {

struct SGDOptions {
  double lr = 1e-3;  // PyTorch's default since 2.2
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool maximize = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  // Each group's options override `defaults` by name: "lr", "momentum", "dampening",
  // "weight_decay", "nesterov" (0 or 1), "maximize" (0 or 1).
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions defaults = {});

  void step() override;
  std::string type_name() const override { return "SGD"; }
  // Per-parameter state: "momentum_buffer" (once a step with momentum has run).
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 protected:
  void check_group(const ParamGroup& group, size_t index) const override;

 private:
  std::vector<Tensor> momentum_buffers_;  // by parameter index; undefined before the first step
};

}  // namespace lumen::optim
