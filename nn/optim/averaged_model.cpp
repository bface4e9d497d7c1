#include "nn/optim/averaged_model.h"

#include "autograd/grad_mode.h"
#include "tensor/error.h"

namespace lumen::optim {

namespace {

// The tensors an average of `module` mirrors: parameters, then buffers with use_buffers.
nn::NamedTensors mirrored(const nn::Module& module, bool use_buffers) {
  nn::NamedTensors out = module.named_parameters();
  if (use_buffers)
    for (auto& named : module.named_buffers()) out.push_back(std::move(named));
  return out;
}

// `t` on `device` (itself when it is there already): copy_ takes a source on its own device.
Tensor on(Device device, const Tensor& t) { return t.device() == device ? t : t.to(device); }

}  // namespace

AverageFn ema_avg_fn(double decay) {
  LUMEN_CHECK(decay >= 0 && decay <= 1, "ema_avg_fn: decay must be in [0, 1], got ", decay);
  return [decay](const Tensor& averaged, const Tensor& current, int64_t) {
    averaged.mul_(decay).add_(current, 1 - decay);
  };
}

AverageFn swa_avg_fn() {
  // avg + (x - avg) / (n + 1) = avg n / (n + 1) + x / (n + 1)
  return [](const Tensor& averaged, const Tensor& current, int64_t n) {
    const double w = 1.0 / static_cast<double>(n + 1);
    averaged.mul_(1 - w).add_(current, w);
  };
}

AveragedModel::AveragedModel(const nn::Module& module, AveragedModelOptions options)
    : options_(std::move(options)) {
  if (!options_.avg_fn) options_.avg_fn = swa_avg_fn();
  NoGradGuard no_grad;
  for (const auto& [name, t] : mirrored(module, options_.use_buffers))
    averaged_.emplace_back(name, on(options_.device.value_or(t.device()), t.detach().clone()));
}

std::vector<Tensor> AveragedModel::matching(const nn::Module& module, const char* what) const {
  nn::NamedTensors current = mirrored(module, options_.use_buffers);
  LUMEN_CHECK(current.size() == averaged_.size(), "AveragedModel.", what, ": the module has ",
              current.size(), " tensors to average, the average was made from ", averaged_.size(),
              " (a module of another structure?)");
  std::vector<Tensor> out;
  out.reserve(current.size());
  for (size_t i = 0; i < current.size(); ++i) {
    const auto& [name, t] = current[i];
    const auto& [avg_name, avg] = averaged_[i];
    LUMEN_CHECK(name == avg_name, "AveragedModel.", what, ": the module's tensor ", i, " is '",
                name, "', the average's is '", avg_name, "'");
    LUMEN_CHECK(t.shape() == avg.shape() && t.dtype() == avg.dtype(), "AveragedModel.", what, ": '",
                name, "' is ", dtype_name(t.dtype()), " ", shape_str(t.shape()), " in the module, ",
                dtype_name(avg.dtype()), " ", shape_str(avg.shape()), " in the average");
    out.push_back(t.detach());
  }
  return out;
}

void AveragedModel::update_parameters(const nn::Module& module) {
  std::vector<Tensor> current = matching(module, "update_parameters");
  NoGradGuard no_grad;
  for (size_t i = 0; i < current.size(); ++i) {
    const Tensor& avg = averaged_[i].second;
    Tensor x = on(avg.device(), current[i]);
    if (n_averaged_ == 0 || !is_floating(avg.dtype()))
      avg.copy_(x);
    else
      options_.avg_fn(avg, x, n_averaged_);
  }
  ++n_averaged_;
}

void AveragedModel::copy_to(nn::Module& module) const {
  std::vector<Tensor> current = matching(module, "copy_to");
  NoGradGuard no_grad;
  for (size_t i = 0; i < current.size(); ++i)
    current[i].copy_(on(current[i].device(), averaged_[i].second));
}

void AveragedModel::swap(nn::Module& module) {
  std::vector<Tensor> current = matching(module, "swap");
  NoGradGuard no_grad;
  for (size_t i = 0; i < current.size(); ++i) {
    const Tensor& avg = averaged_[i].second;
    Tensor held = on(current[i].device(), avg).clone();
    avg.copy_(on(avg.device(), current[i]));
    current[i].copy_(held);
  }
}

void AveragedModel::to(Device device) {
  options_.device = device;
  for (auto& named : averaged_)
    if (named.second.device() != device) named.second = named.second.to(device);
}

State AveragedModel::state_dict() const {
  State s;
  for (const auto& [name, avg] : averaged_) s.tensors[name] = avg;
  s.attrs["n_averaged"] = n_averaged_;
  return s;
}

void AveragedModel::load_state_dict(const State& state) {
  const int64_t n = state.get_int("n_averaged");
  LUMEN_CHECK(n >= 0, "AveragedModel.load_state_dict: n_averaged ", n, " (expected >= 0)");
  nn::load_named(averaged_, nn::StateDict(state.tensors.begin(), state.tensors.end()));
  n_averaged_ = n;
}

}  // namespace lumen::optim
