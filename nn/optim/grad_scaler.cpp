#include "nn/optim/grad_scaler.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "kernels/optim.h"
#include "nn/functional/elementwise.h"

namespace lumen::optim {

namespace {

void check_options(const GradScalerOptions& o) {
  LUMEN_CHECK(std::isfinite(o.init_scale) && o.init_scale > 0.0,
              "GradScaler: init_scale must be a positive finite number, got ", o.init_scale);
  LUMEN_CHECK(o.growth_factor > 1.0 && std::isfinite(o.growth_factor),
              "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
  LUMEN_CHECK(o.backoff_factor > 0.0 && o.backoff_factor < 1.0,
              "GradScaler: backoff_factor must be in (0, 1), got ", o.backoff_factor);
  LUMEN_CHECK(o.growth_interval >= 1, "GradScaler: growth_interval must be >= 1, got ",
              o.growth_interval);
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions options)
    : options_(options), enabled_(options.enabled), scale_(options.init_scale) {
  check_options(options_);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  LUMEN_CHECK(loss.defined() && is_floating(loss.dtype()),
              "GradScaler.scale: expected a floating loss tensor, got ",
              loss.defined() ? dtype_name(loss.dtype()) : "an undefined tensor");
  if (!enabled_) return loss;
  return (is_16bit_float(loss.dtype()) ? loss.to(DType::f32) : loss) * scale_;
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!enabled_) return;
  auto seen = per_optimizer_.find(&optimizer);
  LUMEN_CHECK(seen == per_optimizer_.end() || seen->second.stage == Stage::ready,
              "GradScaler.unscale_: ",
              seen != per_optimizer_.end() && seen->second.stage == Stage::unscaled
                  ? "already called on this optimizer since the last update()"
                  : "step() was already called on this optimizer; call update() first");
  // Check every gradient before touching any, so a refused call changes nothing.
  std::vector<std::pair<Device, std::vector<Tensor>>> by_device;
  for (const ParamGroup& group : optimizer.param_groups()) {
    for (const Tensor& p : group.params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      LUMEN_CHECK(!is_16bit_float(g.dtype()), "GradScaler.unscale_: a parameter of shape ",
                  ShapeStr{p.shape()}, " has a ", g.dtype(),
                  " gradient; loss scaling needs f32 (or f64) parameters, which autocast casts "
                  "to 16 bits inside each op (keep the module in f32 for mixed precision)");
      auto same = std::find_if(by_device.begin(), by_device.end(),
                               [&](const auto& d) { return d.first == g.device(); });
      if (same == by_device.end()) same = by_device.insert(by_device.end(), {g.device(), {}});
      same->second.push_back(g);
    }
  }
  NoGradGuard no_grad;
  const double inv_scale = 1.0 / scale_;
  bool found = false;
  for (auto& [device, grads] : by_device) {
    Tensor found_inf = zeros({1}, {DType::f32, device});
    // The kernel takes contiguous gradients; a strided one is unscaled through a copy.
    std::vector<Tensor> contiguous;
    std::vector<std::pair<Tensor, Tensor>> strided;
    for (const Tensor& g : grads) {
      if (g.is_contiguous()) {
        contiguous.push_back(g);
      } else {
        strided.emplace_back(g, g.contiguous());
        contiguous.push_back(strided.back().second);
      }
    }
    kernels::unscale_grads(device, contiguous, inv_scale, found_inf);
    for (auto& [g, copy] : strided) g.copy_(copy);
    found |= found_inf.item() != 0.0;
  }
  // Recorded only now: a refused call leaves no inf check behind for update() to act on.
  PerOptimizer& state = per_optimizer_[&optimizer];
  state.found_inf = found;
  state.stage = Stage::unscaled;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!enabled_) {
    optimizer.step();
    return true;
  }
  auto it = per_optimizer_.find(&optimizer);
  LUMEN_CHECK(it == per_optimizer_.end() || it->second.stage != Stage::stepped,
              "GradScaler.step: already called on this optimizer since the last update()");
  if (it == per_optimizer_.end() || it->second.stage == Stage::ready) unscale_(optimizer);
  PerOptimizer& state = per_optimizer_[&optimizer];
  state.stage = Stage::stepped;
  if (state.found_inf) {
    ++skipped_steps_;
    return false;
  }
  optimizer.step();
  return true;
}

bool GradScaler::unscaled(const Optimizer& optimizer) const {
  auto it = per_optimizer_.find(&optimizer);
  return it != per_optimizer_.end() && it->second.stage != Stage::ready;
}

void GradScaler::update() {
  if (!enabled_) return;
  LUMEN_CHECK(!per_optimizer_.empty(),
              "GradScaler.update: no inf checks were recorded since the last update(); call "
              "step(optimizer) (or unscale_) first");
  bool found = false;
  for (const auto& [opt, state] : per_optimizer_) found |= state.found_inf;
  if (found) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    double grown = scale_ * options_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;
    growth_tracker_ = 0;
  }
  per_optimizer_.clear();
}

State GradScaler::state_dict() const {
  State s;
  if (!enabled_) return s;
  s.attrs["scale"] = scale_;
  s.attrs["growth_factor"] = options_.growth_factor;
  s.attrs["backoff_factor"] = options_.backoff_factor;
  s.attrs["growth_interval"] = options_.growth_interval;
  s.attrs["growth_tracker"] = growth_tracker_;
  s.attrs["skipped_steps"] = skipped_steps_;
  return s;
}

void GradScaler::load_state_dict(const State& state) {
  LUMEN_CHECK(enabled_,
              "GradScaler.load_state_dict: this scaler is disabled (enabled = false); "
              "a disabled scaler has no state to load into");
  LUMEN_CHECK(state.has_attr("scale"),
              "GradScaler.load_state_dict: the state has no \"scale\" (it was saved from a "
              "disabled scaler, or is not a GradScaler's)");
  GradScalerOptions o = options_;
  o.init_scale = state.get_double("scale");
  o.growth_factor = state.get_double("growth_factor");
  o.backoff_factor = state.get_double("backoff_factor");
  o.growth_interval = state.get_int("growth_interval");
  check_options(o);
  int64_t tracker = state.get_int("growth_tracker");
  LUMEN_CHECK(tracker >= 0 && tracker < o.growth_interval,
              "GradScaler.load_state_dict: growth_tracker ", tracker,
              " is outside [0, growth_interval = ", o.growth_interval, ")");
  int64_t skipped = state.has_attr("skipped_steps") ? state.get_int("skipped_steps") : 0;
  options_ = o;
  scale_ = o.init_scale;
  growth_tracker_ = tracker;
  skipped_steps_ = skipped;
  per_optimizer_.clear();
}

}  // namespace lumen::optim
