#include "nn/optim/adam.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "kernels/optim.h"
#include "nn/functional/elementwise.h"
#include "nn/optim/param_state.h"

namespace lumen::optim {
namespace {

std::map<std::string, double> defaults_of(const AdamOptions& o) {
  return {{"lr", o.lr},
          {"betas0", o.betas[0]},
          {"betas1", o.betas[1]},
          {"eps", o.eps},
          {"weight_decay", o.weight_decay},
          {"amsgrad", o.amsgrad ? 1.0 : 0.0},
          {"maximize", o.maximize ? 1.0 : 0.0}};
}

// torch.optim.Adam's checks, except that eps must be > 0 (eps = 0 divides 0 by 0 for any
// parameter whose gradient has been zero so far).
void check_options(const ParamGroup& g, size_t gi, const std::string& type) {
  const double lr = g.options.at("lr"), eps = g.options.at("eps");
  const double wd = g.options.at("weight_decay");
  LUMEN_CHECK(lr >= 0, type, ": invalid learning rate ", lr, " in group ", gi, " (expected >= 0)");
  LUMEN_CHECK(eps > 0, type, ": invalid epsilon value ", eps, " in group ", gi, " (expected > 0)");
  for (int i = 0; i < 2; ++i) {
    const double beta = g.options.at(i == 0 ? "betas0" : "betas1");
    LUMEN_CHECK(beta >= 0 && beta < 1, type, ": invalid beta parameter at index ", i, ": ", beta,
                " in group ", gi, " (expected 0 <= beta < 1)");
  }
  LUMEN_CHECK(wd >= 0, type, ": invalid weight_decay value ", wd, " in group ", gi,
              " (expected >= 0)");
}

// The same update from tensor ops, for parameters the fused kernel does not take
// (non-contiguous, 16-bit, or on a device without the kernel).
void adam_step_ops(const Tensor& p, const Tensor& grad, const Tensor& m, const Tensor& v,
                   const Tensor& vmax, const kernels::AdamStepArgs& a) {
  Tensor g = a.maximize ? neg(grad) : grad;
  if (a.weight_decay != 0) {
    if (a.decoupled_weight_decay)
      p.mul_(1.0 - a.lr * a.weight_decay);
    else
      g = g + p * a.weight_decay;
  }
  m.add_(g - m, 1.0 - a.beta1);
  v.mul_(a.beta2).add_(g * g, 1.0 - a.beta2);
  Tensor v_hat = v;
  if (a.amsgrad) {
    vmax.copy_(maximum(vmax, v));
    v_hat = vmax;
  }
  Tensor denom = sqrt(v_hat) / a.bias_correction2_sqrt + a.eps;
  p.add_(m / denom, -a.step_size);
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults)
    : Adam(std::move(groups), defaults, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled_weight_decay)
    : decoupled_(decoupled_weight_decay) {
  init_groups(std::move(groups), defaults_of(defaults));
  state_.resize(static_cast<size_t>(num_params()));
}

void Adam::step() {
  NoGradGuard no_grad;
  const std::string type = type_name();
  state_.resize(static_cast<size_t>(num_params()));
  size_t index = 0;
  for (const ParamGroup& group : groups_) {
    kernels::AdamStepArgs args;
    args.lr = group.options.at("lr");
    args.beta1 = group.options.at("betas0");
    args.beta2 = group.options.at("betas1");
    args.eps = group.options.at("eps");
    args.weight_decay = group.options.at("weight_decay");
    args.amsgrad = group.options.at("amsgrad") != 0;
    args.maximize = group.options.at("maximize") != 0;
    args.decoupled_weight_decay = decoupled_;
    // The bias corrections of step t (in f64, as torch).
    auto set_step = [&](int64_t step) {
      const double t = static_cast<double>(step);
      args.step_size = args.lr / (1.0 - std::pow(args.beta1, t));
      args.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(args.beta2, t));
    };
    FusedBatches fused;  // key: the step count
    for (const Tensor& p : group.params) {
      ParamState& st = state_[index++];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      grad = gradient_for(p, grad, type.c_str());
      if (!st.exp_avg.defined()) {
        st.exp_avg = zeros(p.shape(), {p.dtype(), p.device()});
        st.exp_avg_sq = zeros(p.shape(), {p.dtype(), p.device()});
      }
      check_state_shape(p, st.exp_avg, type.c_str(), "exp_avg");
      check_state_shape(p, st.exp_avg_sq, type.c_str(), "exp_avg_sq");
      if (args.amsgrad) {
        if (!st.max_exp_avg_sq.defined())
          st.max_exp_avg_sq = zeros(p.shape(), {p.dtype(), p.device()});
        check_state_shape(p, st.max_exp_avg_sq, type.c_str(), "max_exp_avg_sq");
      }
      ++st.step;
      if (fused_kernel_applies(kernels::adam_step, p)) {
        fused.add(p, st.step, {grad, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq});
      } else {
        set_step(st.step);
        adam_step_ops(p, grad, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, args);
      }
    }
    fused.run([&](Device device, int64_t step, const std::vector<std::vector<Tensor>>& l) {
      set_step(step);
      kernels::adam_step(device, l[0], l[1], l[2], l[3], l[4], l[5], args);
    });
  }
  ++step_count_;
}

State Adam::state_dict() const {
  State s = base_state_dict();
  for (size_t i = 0; i < state_.size(); ++i) {
    const ParamState& st = state_[i];
    if (!st.exp_avg.defined()) continue;
    State& g = s.groups[std::to_string(i)];
    g.tensors["step"] = scalar_tensor(static_cast<double>(st.step), {.dtype = DType::f64});
    g.tensors["exp_avg"] = st.exp_avg;
    g.tensors["exp_avg_sq"] = st.exp_avg_sq;
    if (st.max_exp_avg_sq.defined()) g.tensors["max_exp_avg_sq"] = st.max_exp_avg_sq;
  }
  return s;
}

void Adam::load_state_dict(const State& state) {
  const std::string type = type_name();
  // All checks pass before anything changes: a failed load leaves the optimizer as it was.
  std::vector<ParamGroup> saved_groups = groups_;
  const int64_t saved_step = step_count_;
  try {
    load_base_state_dict(state);
    for (size_t g = 0; g < groups_.size(); ++g) check_options(groups_[g], g, type);
    std::vector<ParamState> loaded(static_cast<size_t>(num_params()));
    size_t index = 0;
    for (const ParamGroup& group : groups_) {
      const bool amsgrad = group.options.at("amsgrad") != 0;
      for (const Tensor& p : group.params) {
        const size_t i = index++;
        auto it = state.groups.find(std::to_string(i));
        if (it == state.groups.end()) continue;
        const State& ps = it->second;
        ParamState& st = loaded[i];
        LUMEN_CHECK(ps.has_tensor("step") && ps.tensor("step").numel() == 1, type,
                    ".load_state_dict: parameter ", i, " has no one-element state tensor 'step'");
        const double t = ps.tensor("step").item();
        LUMEN_CHECK(t >= 1 && t == std::floor(t), type, ".load_state_dict: parameter ", i,
                    " has step ", t, " (expected a whole number >= 1)");
        st.step = static_cast<int64_t>(t);
        st.exp_avg = load_state_tensor(p, ps, "exp_avg", i, type.c_str());
        st.exp_avg_sq = load_state_tensor(p, ps, "exp_avg_sq", i, type.c_str());
        if (amsgrad || ps.has_tensor("max_exp_avg_sq"))
          st.max_exp_avg_sq = load_state_tensor(p, ps, "max_exp_avg_sq", i, type.c_str());
      }
    }
    state_ = std::move(loaded);
  } catch (...) {
    groups_ = std::move(saved_groups);
    step_count_ = saved_step;
    throw;
  }
}

void Adam::check_group(const ParamGroup& group, size_t index) const {
  check_options(group, index, type_name());
}

}  // namespace lumen::optim
