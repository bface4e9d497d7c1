// CPU fused optimizer updates (kernels/optim.h): one threaded pass over contiguous memory.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/optim.h"

namespace lumen::kernels {
namespace {

constexpr int64_t kGrain = 16384;

template <class T>
void sgd_step_typed(const Tensor& param, const Tensor& grad, const Tensor& buffer,
                    const SgdStepArgs& a) {
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* buf = a.momentum != 0 ? buffer.data<T>() : nullptr;
  const T lr = T(a.lr), wd = T(a.weight_decay), mom = T(a.momentum);
  const T one_minus_damp = T(1.0 - a.dampening);
  const bool has_wd = a.weight_decay != 0;
  cpu::parallel_for(param.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T d = a.maximize ? -g[i] : g[i];
      if (has_wd) d = d + wd * p[i];
      if (buf) {
        T b = a.first ? d : buf[i] * mom + one_minus_damp * d;
        buf[i] = b;
        d = a.nesterov ? d + mom * b : b;
      }
      p[i] = p[i] + (-lr) * d;
    }
  });
}

void sgd_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& buffer, SgdStepArgs args) {
  dispatch_dtype<DTypes::Float>(param.dtype(), "sgd_step",
                                [&]<class T>() { sgd_step_typed<T>(param, grad, buffer, args); });
}

// PyTorch's CPU lerp: self + w (end - self) for |w| < 0.5, else end - (end - self)(1 - w),
// which keeps lerp(a, b, 1) == b exactly.
template <class T>
T lerp(T self, T end, T w) {
  return std::abs(w) < T(0.5) ? self + w * (end - self) : end - (end - self) * (T(1) - w);
}

template <class T>
void adam_step_typed(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                     const Tensor& exp_avg_sq, const Tensor& max_exp_avg_sq,
                     const AdamStepArgs& a) {
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* m = exp_avg.data<T>();
  T* v = exp_avg_sq.data<T>();
  T* vmax = a.amsgrad ? max_exp_avg_sq.data<T>() : nullptr;
  const T wd = T(a.weight_decay), decay = T(1.0 - a.lr * a.weight_decay);
  const T w1 = T(1.0 - a.beta1), b2 = T(a.beta2), w2 = T(1.0 - a.beta2);
  const T eps = T(a.eps), bc2_sqrt = T(a.bias_correction2_sqrt), neg_step = T(-a.step_size);
  const bool has_wd = a.weight_decay != 0, decoupled = a.decoupled_weight_decay;
  cpu::parallel_for(param.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T gi = a.maximize ? -g[i] : g[i];
      T pi = p[i];
      if (has_wd) {
        if (decoupled)
          pi = pi * decay;
        else
          gi = gi + wd * pi;
      }
      T mi = lerp(m[i], gi, w1);
      T vi = v[i] * b2;
      vi = vi + w2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      if (vmax) {
        vi = std::max(vmax[i], vi);
        vmax[i] = vi;
      }
      T denom = std::sqrt(vi) / bc2_sqrt + eps;
      p[i] = pi + neg_step * (mi / denom);
    }
  });
}

void adam_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                   const Tensor& exp_avg_sq, const Tensor& max_exp_avg_sq, AdamStepArgs args) {
  dispatch_dtype<DTypes::Float>(param.dtype(), "adam_step", [&]<class T>() {
    adam_step_typed<T>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, args);
  });
}

void unscale_grads_cpu(const std::vector<Tensor>& grads, double inv_scale,
                       const Tensor& found_inf) {
  std::atomic<bool> bad{false};
  for (const Tensor& grad : grads) {
    dispatch_dtype<DTypes::FloatAndHalf>(grad.dtype(), "unscale_grads", [&]<class T>() {
      T* g = grad.data<T>();
      const acc_t<T> inv = static_cast<acc_t<T>>(inv_scale);
      cpu::parallel_for(grad.numel(), kGrain, [&](int64_t begin, int64_t end) {
        bool chunk_bad = false;
        for (int64_t i = begin; i < end; ++i) {
          acc_t<T> v = static_cast<acc_t<T>>(g[i]);
          chunk_bad |= !std::isfinite(v);
          g[i] = T(v * inv);
        }
        if (chunk_bad) bad.store(true, std::memory_order_relaxed);
      });
    });
  }
  if (bad.load()) *found_inf.data<float>() = 1.0f;
}

}  // namespace

LUMEN_REGISTER_KERNEL(sgd_step, CPU, sgd_step_cpu);
LUMEN_REGISTER_KERNEL(adam_step, CPU, adam_step_cpu);
LUMEN_REGISTER_KERNEL(unscale_grads, CPU, unscale_grads_cpu);

}  // namespace lumen::kernels
