#include "nn/optim/linear_warmup.h"

namespace lumen::optim {
namespace {

void check_options(int64_t warmup_steps, const LinearWarmupOptions& o, const char* where) {
  LUMEN_CHECK(warmup_steps > 0, where, ": warmup_steps must be positive, got ", warmup_steps);
  LUMEN_CHECK(o.start_factor > 0 && o.start_factor <= 1, where,
              ": start_factor must be in (0, 1], got ", o.start_factor);
  LUMEN_CHECK(o.end_factor >= 0 && o.end_factor <= 1, where, ": end_factor must be in [0, 1], got ",
              o.end_factor);
}

}  // namespace

LinearWarmup::LinearWarmup(Optimizer& optimizer, int64_t warmup_steps, LinearWarmupOptions options,
                           std::shared_ptr<LRScheduler> after)
    : LRScheduler(optimizer),
      warmup_steps_(warmup_steps),
      options_(options),
      after_(std::move(after)) {
  check_options(warmup_steps_, options_, "LinearWarmup");
  if (after_) {
    LUMEN_CHECK(&after_->optimizer() == &optimizer, "LinearWarmup: the scheduler to hand over ",
                "to (", after_->type_name(), ") belongs to another optimizer");
    LUMEN_CHECK(!after_->needs_metric(), "LinearWarmup: cannot hand over to ", after_->type_name(),
                ", which follows a metric; step it yourself after the ", "warmup");
  }
  init_base_lrs();
  // Undo the initial step of `after`: the warmup starts from each group's initial_lr.
  for (ParamGroup& g : optimizer.param_groups()) g.options["lr"] = g.options.at("initial_lr");
  step();
}

void LinearWarmup::step() {
  ++last_epoch_;
  ++step_count_;
  if (after_ && last_epoch_ >= warmup_steps_) {
    if (last_epoch_ == warmup_steps_)
      after_->restart();
    else
      after_->step();
    last_lr_ = after_->get_last_lr();
    return;
  }
  const double start = options_.start_factor, end = options_.end_factor;
  const double w = static_cast<double>(warmup_steps_), e = static_cast<double>(last_epoch_);
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) {
    if (last_epoch_ == 0)
      lrs.push_back(g.lr() * start);
    else if (last_epoch_ > warmup_steps_)
      lrs.push_back(g.lr());
    else
      lrs.push_back(g.lr() * (1.0 + (end - start) / (w * start + (e - 1) * (end - start))));
  }
  set_lrs(lrs);
}

void LinearWarmup::restart() {
  last_epoch_ = 0;
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(base * options_.start_factor);
  set_lrs(lrs);
}

State LinearWarmup::state_dict() const {
  State s = base_state_dict();
  s.attrs["warmup_steps"] = warmup_steps_;
  s.attrs["start_factor"] = options_.start_factor;
  s.attrs["end_factor"] = options_.end_factor;
  if (after_) s.groups["after"] = after_->state_dict();
  return s;
}

void LinearWarmup::load_state_dict(const State& state) {
  const int64_t warmup_steps = state.get_int("warmup_steps");
  LinearWarmupOptions o{state.get_double("start_factor"), state.get_double("end_factor")};
  check_options(warmup_steps, o, "LinearWarmup.load_state_dict");
  LUMEN_CHECK(state.has_group("after") == (after_ != nullptr), "LinearWarmup.load_state_dict: ",
              state.has_group("after") ? "the state has a scheduler after the warmup, this one "
                                         "has none"
                                       : "the state has no scheduler after the warmup, this one "
                                         "has ",
              after_ ? after_->type_name() : "");
  load_base_state_dict(state);
  warmup_steps_ = warmup_steps;
  options_ = o;
  if (after_) after_->load_state_dict(state.group("after"));
}

}  // namespace lumen::optim
