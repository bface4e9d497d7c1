#include "nn/optim/lambda_lr.h"

namespace lumen::optim {

LambdaLR::LambdaLR(Optimizer& optimizer, LrLambda lr_lambda)
    : LambdaLR(optimizer, std::vector<LrLambda>(optimizer.param_groups().size(), lr_lambda)) {}

LambdaLR::LambdaLR(Optimizer& optimizer, std::vector<LrLambda> lr_lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lr_lambdas)) {
  LUMEN_CHECK(lambdas_.size() == optimizer.param_groups().size(), "LambdaLR: got ", lambdas_.size(),
              " lr_lambdas for ", optimizer.param_groups().size(), " parameter groups");
  for (size_t g = 0; g < lambdas_.size(); ++g)
    LUMEN_CHECK(lambdas_[g] != nullptr, "LambdaLR: lr_lambda ", g, " is empty");
  init_base_lrs();
  step();
}

void LambdaLR::step() {
  ++last_epoch_;
  ++step_count_;
  std::vector<double> lrs;
  for (size_t g = 0; g < base_lrs_.size(); ++g)
    lrs.push_back(base_lrs_[g] * lambdas_[g](last_epoch_));
  set_lrs(lrs);
}

State LambdaLR::state_dict() const { return base_state_dict(); }

void LambdaLR::load_state_dict(const State& state) { load_base_state_dict(state); }

}  // namespace lumen::optim
