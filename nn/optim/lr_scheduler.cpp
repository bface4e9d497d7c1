#include "nn/optim/lr_scheduler.h"

#include "tensor/error.h"

namespace lumen::optim {

std::span<ParamGroup> LRScheduler::groups() const {
  std::vector<ParamGroup>& all = optimizer_->param_groups();
  LUMEN_CHECK(all.size() >= num_groups_, type_name(), ": the optimizer has ", all.size(),
              " parameter groups, fewer than the ", num_groups_,
              " this scheduler was built with (were its param_groups replaced?)");
  return {all.data(), num_groups_};
}

void LRScheduler::restart() {
  last_epoch_ = 0;
  set_lrs(base_lrs_);
}

void LRScheduler::init_base_lrs() {
  base_lrs_.clear();
  for (ParamGroup& g : groups()) {
    auto it = g.options.find("lr");
    LUMEN_CHECK(it != g.options.end(), type_name(), ": a parameter group has no 'lr' option");
    g.options.emplace("initial_lr", it->second);
    base_lrs_.push_back(g.options.at("initial_lr"));
  }
}

void LRScheduler::set_lrs(const std::vector<double>& lrs) {
  std::span<ParamGroup> managed = groups();
  LUMEN_CHECK(lrs.size() == managed.size(), type_name(), ": ", lrs.size(), " learning rates for ",
              managed.size(), " parameter groups");
  for (size_t g = 0; g < managed.size(); ++g) managed[g].options["lr"] = lrs[g];
  last_lr_ = lrs;
}

State LRScheduler::base_state_dict() const {
  State s;
  s.attrs["type"] = type_name();
  s.attrs["last_epoch"] = last_epoch_;
  s.attrs["step_count"] = step_count_;
  s.attrs["base_lrs"] = base_lrs_;
  s.attrs["last_lr"] = last_lr_;
  return s;
}

void LRScheduler::load_base_state_dict(const State& state) {
  const std::string type = type_name();
  const std::string& saved = state.get_string("type");
  LUMEN_CHECK(saved == type, type, ".load_state_dict: the state is of a ", saved,
              " scheduler, expected ", type);
  const std::vector<double>& base = state.get_doubles("base_lrs");
  const size_t groups = num_groups_;
  LUMEN_CHECK(base.size() == groups, type, ".load_state_dict: the state has ", base.size(),
              " base learning rates, the scheduler manages ", groups, " parameter groups");
  const std::vector<double>& last = state.get_doubles("last_lr");
  LUMEN_CHECK(last.size() == groups, type, ".load_state_dict: the state has ", last.size(),
              " last learning rates, the scheduler manages ", groups, " parameter groups");
  base_lrs_ = base;
  last_lr_ = last;
  last_epoch_ = state.get_int("last_epoch");
  step_count_ = state.get_int("step_count");
}

}  // namespace lumen::optim
