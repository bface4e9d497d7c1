#include "nn/optim/lambda_lr.h"

namespace lumen::optim {

void check_lr_lambdas(const std::vector<LrLambda>& lambdas, const Optimizer& optimizer,
                      const char* type) {
  LUMEN_CHECK(lambdas.size() == optimizer.param_groups().size(), type, ": got ", lambdas.size(),
              " lr_lambdas for ", optimizer.param_groups().size(), " parameter groups");
  for (size_t g = 0; g < lambdas.size(); ++g)
    LUMEN_CHECK(lambdas[g] != nullptr, type, ": lr_lambda ", g, " is empty");
}

LambdaLR::LambdaLR(Optimizer& optimizer, LrLambda lr_lambda)
    : LambdaLR(optimizer, std::vector<LrLambda>(optimizer.param_groups().size(), lr_lambda)) {}

LambdaLR::LambdaLR(Optimizer& optimizer, std::vector<LrLambda> lr_lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lr_lambdas)) {
  check_lr_lambdas(lambdas_, optimizer, "LambdaLR");
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

void LambdaLR::restart() {
  last_epoch_ = 0;
  std::vector<double> lrs;
  for (size_t g = 0; g < base_lrs_.size(); ++g) lrs.push_back(base_lrs_[g] * lambdas_[g](0));
  set_lrs(lrs);
}

State LambdaLR::state_dict() const { return base_state_dict(); }

void LambdaLR::load_state_dict(const State& state) { load_base_state_dict(state); }

}  // namespace lumen::optim
