#pragma once
// LambdaLR, as torch.optim.lr_scheduler.LambdaLR: lr = base_lr * lr_lambda(epoch), with one
// function for every group or one per group. The closed form of any schedule you can write as
// a factor of the epoch (warmup then inverse square root, say). Like PyTorch's, the state holds
// the counters, not the functions: a resumed run builds the scheduler with the same ones.
#include <cstdint>
#include <functional>
#include <vector>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

using LrLambda = std::function<double(int64_t epoch)>;

// One non-empty function per parameter group of `optimizer`, else an error naming `type`.
void check_lr_lambdas(const std::vector<LrLambda>& lambdas, const Optimizer& optimizer,
                      const char* type);

class LambdaLR : public LRScheduler {
 public:
  LambdaLR(Optimizer& optimizer, LrLambda lr_lambda);
  // One function per parameter group.
  LambdaLR(Optimizer& optimizer, std::vector<LrLambda> lr_lambdas);
  void step() override;
  std::string type_name() const override { return "LambdaLR"; }
  // Epoch 0 again: base_lr * lr_lambda(0), as SequentialLR's handover in PyTorch.
  void restart() override;
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  std::vector<LrLambda> lambdas_;
};

}  // namespace lumen::optim
