#pragma once
// MultiplicativeLR, as torch.optim.lr_scheduler.MultiplicativeLR: each step multiplies the
// group's current lr by lr_lambda(epoch), lr(e) = lr(e-1) * lr_lambda(e) for e > 0 (chainable).
// The state holds the counters; a resumed run builds the scheduler with the same function.
#include <cstdint>
#include <vector>

#include "nn/optim/lambda_lr.h"

namespace lumen::optim {

class MultiplicativeLR : public LRScheduler {
 public:
  MultiplicativeLR(Optimizer& optimizer, LrLambda lr_lambda);
  MultiplicativeLR(Optimizer& optimizer, std::vector<LrLambda> lr_lambdas);  // one per group
  void step() override;
  std::string type_name() const override { return "MultiplicativeLR"; }
  // Epoch 0 again, keeping each group's current lr (PyTorch's epoch-0 value of a chainable
  // scheduler at SequentialLR's handover).
  void restart() override;
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  std::vector<LrLambda> lambdas_;
};

}  // namespace lumen::optim
