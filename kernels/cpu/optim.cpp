// CPU fused optimizer updates (kernels/optim.h): one threaded pass over contiguous memory.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/optim.h"
#include "kernels/optim_update.h"

namespace lumen::kernels {
namespace {

constexpr int64_t kGrain = 16384;

// Writes the 16-bit copy of p[begin, end) just updated (still in cache), if there is one.
template <class T>
void store_low_chunk(const Tensor& low, const T* p, int64_t begin, int64_t end) {
  if (!low.defined()) return;
  if constexpr (std::is_same_v<T, float>) {
    if (low.dtype() == DType::bf16)
      narrow_n(p + begin, low.data<BFloat16>() + begin, end - begin);
    else
      narrow_n(p + begin, low.data<Half>() + begin, end - begin);
  } else {
    void* lo = low.data_ptr();
    const bool bf16 = low.dtype() == DType::bf16;
    for (int64_t i = begin; i < end; ++i) store_low_copy(lo, bf16, i, p[i]);
  }
}

const Tensor& low_copy(const std::vector<Tensor>& lows, size_t i) {
  static const Tensor none;
  return i < lows.size() ? lows[i] : none;
}

// The loops below take the update by value and the arrays as __restrict parameters, and test the
// optional array once outside the loop: the update's scalars then stay in registers, its flags
// are loop-invariant, and the compiler vectorises the loop (with the update as a member of a
// captured object and possibly aliasing pointers it ran one element at a time, about 4x slower).
template <class T>
void sgd_range(const SgdUpdate<T> u, T* __restrict p, const T* __restrict g, T* __restrict buf,
               int64_t n) {
  if (buf)
    for (int64_t i = 0; i < n; ++i) u(p[i], g[i], buf + i);
  else
    for (int64_t i = 0; i < n; ++i) u(p[i], g[i], nullptr);
}

template <class T>
void adam_range(const AdamUpdate<T> u, T* __restrict p, const T* __restrict g, T* __restrict m,
                T* __restrict v, T* __restrict vmax, int64_t n) {
  if (vmax)
    for (int64_t i = 0; i < n; ++i) u(p[i], g[i], m[i], v[i], vmax + i);
  else
    for (int64_t i = 0; i < n; ++i) u(p[i], g[i], m[i], v[i], nullptr);
}

template <class T>
void sgd_step_typed(const Tensor& param, const Tensor& grad, const Tensor& buffer,
                    const Tensor& low, const SgdStepArgs& a) {
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* buf = a.momentum != 0 ? buffer.data<T>() : nullptr;
  const SgdUpdate<T> update(a);
  cpu::parallel_for(param.numel(), kGrain, [&](int64_t begin, int64_t end) {
    sgd_range(update, p + begin, g + begin, buf ? buf + begin : nullptr, end - begin);
    store_low_chunk(low, p, begin, end);
  });
}

void sgd_step_cpu(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& buffers, const std::vector<Tensor>& lows,
                  SgdStepArgs args) {
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_dtype<DTypes::Float>(params[i].dtype(), "sgd_step", [&]<class T>() {
      sgd_step_typed<T>(params[i], grads[i], args.momentum != 0 ? buffers[i] : Tensor(),
                        low_copy(lows, i), args);
    });
  }
}

template <class T>
void adam_step_typed(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                     const Tensor& exp_avg_sq, const Tensor& max_exp_avg_sq, const Tensor& low,
                     const AdamStepArgs& a) {
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* m = exp_avg.data<T>();
  T* v = exp_avg_sq.data<T>();
  T* vmax = a.amsgrad ? max_exp_avg_sq.data<T>() : nullptr;
  const AdamUpdate<T> update(a);
  cpu::parallel_for(param.numel(), kGrain, [&](int64_t begin, int64_t end) {
    adam_range(update, p + begin, g + begin, m + begin, v + begin, vmax ? vmax + begin : nullptr,
               end - begin);
    store_low_chunk(low, p, begin, end);
  });
}

void adam_step_cpu(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                   const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                   const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& lows,
                   AdamStepArgs args) {
  for (size_t i = 0; i < params.size(); ++i) {
    dispatch_dtype<DTypes::Float>(params[i].dtype(), "adam_step", [&]<class T>() {
      adam_step_typed<T>(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i],
                         args.amsgrad ? max_exp_avg_sqs[i] : Tensor(), low_copy(lows, i), args);
    });
  }
}

// g *= inv over n elements; returns whether any was inf or NaN. For f32 the test is on the bits
// (exponent all ones), an OR of integers that vectorises with the multiply; std::isfinite kept
// the loop scalar.
template <class T>
bool unscale_range(T* __restrict g, acc_t<T> inv, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad |= (float_bits(g[i]) & 0x7f800000u) == 0x7f800000u;
      g[i] = g[i] * inv;
    }
    return bad != 0;
  } else {
    bool bad = false;
    for (int64_t i = 0; i < n; ++i) {
      acc_t<T> v = static_cast<acc_t<T>>(g[i]);
      bad |= !std::isfinite(v);
      g[i] = T(v * inv);
    }
    return bad;
  }
}

void unscale_grads_cpu(const std::vector<Tensor>& grads, double inv_scale,
                       const Tensor& found_inf) {
  std::atomic<bool> bad{false};
  for (const Tensor& grad : grads) {
    dispatch_dtype<DTypes::FloatAndHalf>(grad.dtype(), "unscale_grads", [&]<class T>() {
      T* g = grad.data<T>();
      const acc_t<T> inv = static_cast<acc_t<T>>(inv_scale);
      cpu::parallel_for(grad.numel(), kGrain, [&](int64_t begin, int64_t end) {
        if (unscale_range(g + begin, inv, end - begin)) bad.store(true, std::memory_order_relaxed);
      });
    });
  }
  if (bad.load()) *found_inf.data<float>() = 1.0f;
}

// Fixed chunks of kGrain elements, each summed in order, the chunks then combined in order:
// the same result for any number of threads.
void norm_power_sum_cpu(const Tensor& out, const std::vector<Tensor>& tensors, double p) {
  const NormTerm term{p};
  const NormCombine combine{std::isinf(p)};
  double total = 0;
  for (const Tensor& t : tensors) {
    dispatch_dtype<DTypes::FloatAndHalf>(t.dtype(), "norm_power_sum", [&]<class T>() {
      const T* x = t.data<T>();
      const int64_t n = t.numel(), chunks = (n + kGrain - 1) / kGrain;
      std::vector<double> part(chunks, 0.0);
      cpu::parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
        for (int64_t c = cb; c < ce; ++c) {
          double s = 0;
          for (int64_t i = c * kGrain; i < std::min(n, (c + 1) * kGrain); ++i)
            s = combine(s, term(static_cast<double>(static_cast<acc_t<T>>(x[i]))));
          part[c] = s;
        }
      });
      for (double s : part) total = combine(total, s);
    });
  }
  *out.data<double>() = total;
}

}  // namespace

LUMEN_REGISTER_KERNEL(norm_power_sum, CPU, norm_power_sum_cpu);
LUMEN_REGISTER_KERNEL(sgd_step, CPU, sgd_step_cpu);
LUMEN_REGISTER_KERNEL(adam_step, CPU, adam_step_cpu);
LUMEN_REGISTER_KERNEL(unscale_grads, CPU, unscale_grads_cpu);

}  // namespace lumen::kernels
