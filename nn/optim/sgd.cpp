#include "nn/optim/sgd.h"

#include "autograd/grad_mode.h"
#include "kernels/optim.h"
#include "nn/functional/elementwise.h"
#include "nn/optim/param_state.h"

namespace lumen::optim {
namespace {

std::map<std::string, double> defaults_of(const SGDOptions& o) {
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0},
          {"maximize", o.maximize ? 1.0 : 0.0}};
}

// torch.optim.SGD's checks, per group.
void check_options(const ParamGroup& g, size_t gi) {
  const double lr = g.options.at("lr"), momentum = g.options.at("momentum");
  const double dampening = g.options.at("dampening"), wd = g.options.at("weight_decay");
  LUMEN_CHECK(lr >= 0, "SGD: invalid learning rate ", lr, " in group ", gi, " (expected >= 0)");
  LUMEN_CHECK(momentum >= 0, "SGD: invalid momentum value ", momentum, " in group ", gi,
              " (expected >= 0)");
  LUMEN_CHECK(wd >= 0, "SGD: invalid weight_decay value ", wd, " in group ", gi,
              " (expected >= 0)");
  if (g.options.at("nesterov") != 0)
    LUMEN_CHECK(momentum > 0 && dampening == 0, "SGD: Nesterov momentum requires a momentum ",
                "and zero dampening (group ", gi, " has momentum ", momentum, ", dampening ",
                dampening, ")");
}

// The same update from tensor ops, for parameters the fused kernel does not take
// (non-contiguous, 16-bit, or on a device without the kernel).
void sgd_step_ops(const Tensor& p, const Tensor& grad, Tensor& buf, const kernels::SgdStepArgs& a) {
  Tensor d = a.maximize ? neg(grad) : grad;
  if (a.weight_decay != 0) d = d + p * a.weight_decay;
  if (a.momentum != 0) {
    if (a.first) {
      buf = d.clone();
    } else {
      buf.mul_(a.momentum).add_(d, 1.0 - a.dampening);
    }
    d = a.nesterov ? d + buf * a.momentum : buf;
  }
  p.add_(d, -a.lr);
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults) {
  init_groups(std::move(groups), defaults_of(defaults));
  momentum_buffers_.resize(static_cast<size_t>(num_params()));
}

void SGD::step() {
  NoGradGuard no_grad;
  momentum_buffers_.resize(static_cast<size_t>(num_params()));
  size_t index = 0;
  for (const ParamGroup& group : groups_) {
    kernels::SgdStepArgs args;
    args.lr = group.options.at("lr");
    args.momentum = group.options.at("momentum");
    args.dampening = group.options.at("dampening");
    args.weight_decay = group.options.at("weight_decay");
    args.nesterov = group.options.at("nesterov") != 0;
    args.maximize = group.options.at("maximize") != 0;
    FusedBatches fused;  // key: whether the momentum buffer starts now
    for (const Tensor& p : group.params) {
      Tensor& buf = momentum_buffers_[index++];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      grad = gradient_for(p, grad, "SGD");
      args.first = !buf.defined();
      if (args.momentum != 0 && !args.first) check_state_shape(p, buf, "SGD", "momentum_buffer");
      if (fused_kernel_applies(kernels::sgd_step, p)) {
        if (args.momentum != 0 && args.first) buf = empty_like(p);
        fused.add(p, args.first, {grad, buf});
      } else {
        sgd_step_ops(p, grad, buf, args);
      }
    }
    fused.run([&](Device device, int64_t first, const std::vector<std::vector<Tensor>>& l) {
      args.first = first != 0;
      kernels::sgd_step(device, l[0], l[1], l[2], l[3], args);
    });
  }
  ++step_count_;
}

State SGD::state_dict() const {
  State s = base_state_dict();
  for (size_t i = 0; i < momentum_buffers_.size(); ++i)
    if (momentum_buffers_[i].defined())
      s.groups[std::to_string(i)].tensors["momentum_buffer"] = momentum_buffers_[i];
  return s;
}

void SGD::load_state_dict(const State& state) {
  // All checks pass before anything changes: a failed load leaves the optimizer as it was.
  std::vector<ParamGroup> saved_groups = groups_;
  const int64_t saved_step = step_count_;
  try {
    load_base_state_dict(state);
    for (size_t g = 0; g < groups_.size(); ++g) check_options(groups_[g], g);
    std::vector<Tensor> params = all_params(*this);
    std::vector<Tensor> buffers(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = state.groups.find(std::to_string(i));
      if (it == state.groups.end()) continue;
      buffers[i] = load_state_tensor(params[i], it->second, "momentum_buffer", i, "SGD");
    }
    momentum_buffers_ = std::move(buffers);
  } catch (...) {
    groups_ = std::move(saved_groups);
    step_count_ = saved_step;
    throw;
  }
}

void SGD::check_group(const ParamGroup& group, size_t index) const { check_options(group, index); }

}  // namespace lumen::optim
