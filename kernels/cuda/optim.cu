// CUDA optimizer kernels (kernels/optim.h), multi-tensor (kernels/cuda/multi_tensor.cuh): one
// launch updates up to 48 parameters, each element with the math shared with the CPU
// (kernels/optim_update.h).
#include <cmath>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/optim.h"
#include "kernels/optim_update.h"

namespace lumen::kernels {
namespace {

using cuda::TensorLists;

// unscale_grads: g = g * inv_scale in acc_t<T>; raises found_inf where g is not finite.
template <class T>
struct UnscaleBody {
  acc_t<T> inv_scale;
  __device__ bool operator()(const TensorLists<1>& l, int t, int64_t i) const {
    T* g = static_cast<T*>(l.data[0][t]);
    const acc_t<T> v = static_cast<acc_t<T>>(g[i]);
    g[i] = T(v * inv_scale);
    return !isfinite(v);
  }
};

// Groups (param, grad, momentum buffer or nullptr, 16-bit copy or nullptr).
template <class T>
struct SgdBody {
  SgdUpdate<T> update;
  bool low_bf16;
  __device__ bool operator()(const TensorLists<4>& l, int t, int64_t i) const {
    T* buf = static_cast<T*>(l.data[2][t]);
    T& p = static_cast<T*>(l.data[0][t])[i];
    update(p, static_cast<const T*>(l.data[1][t])[i], buf ? buf + i : nullptr);
    if (l.data[3][t]) store_low_copy(l.data[3][t], low_bf16, i, p);
    return false;
  }
};

// Groups (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq or nullptr, 16-bit copy or nullptr).
template <class T>
struct AdamBody {
  AdamUpdate<T> update;
  bool low_bf16;
  __device__ bool operator()(const TensorLists<6>& l, int t, int64_t i) const {
    T* vmax = static_cast<T*>(l.data[4][t]);
    T& p = static_cast<T*>(l.data[0][t])[i];
    update(p, static_cast<const T*>(l.data[1][t])[i], static_cast<T*>(l.data[2][t])[i],
           static_cast<T*>(l.data[3][t])[i], vmax ? vmax + i : nullptr);
    if (l.data[5][t]) store_low_copy(l.data[5][t], low_bf16, i, p);
    return false;
  }
};

// Whether the 16-bit copies of a call are bf16 (they share one dtype; none: either).
bool lows_are_bf16(const std::vector<Tensor>& lows) {
  for (const Tensor& t : lows)
    if (t.defined()) return t.dtype() == DType::bf16;
  return false;
}

// Calls f.template operator()<T>(groups) for each floating dtype T present in `tensors`, with
// that dtype's tensors as one-tensor multi-tensor groups (a launch takes one dtype).
template <class F>
void for_each_dtype(const std::vector<Tensor>& tensors, const char* op, F f) {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    std::vector<std::array<const Tensor*, 1>> same;
    for (const Tensor& t : tensors)
      if (t.dtype() == dt) same.push_back({&t});
    if (same.empty()) continue;
    dispatch_dtype<DTypes::FloatAndHalf>(dt, op,
                                         [&]<class T>() { f.template operator()<T>(same); });
  }
}

void unscale_grads_cuda(const std::vector<Tensor>& grads, double inv_scale,
                        const Tensor& found_inf) {
  LUMEN_CUDA_CHECK(cudaSetDevice(found_inf.device().index));
  // One launch (per 48 gradients) for each dtype present.
  for_each_dtype(grads, "unscale_grads", [&]<class T>(const auto& groups) {
    cuda::launch_multi_tensor<1>(groups, UnscaleBody<T>{static_cast<acc_t<T>>(inv_scale)},
                                 found_inf.data<float>());
  });
}

// norm_power_sum: each block folds its chunk's terms into partial[block] (launches of
// successive dtypes and tensor lists fill successive ranges), then one block combines the
// partials in order: no atomics, the same result on every run.
template <class T>
__global__ void norm_power_kernel(TensorLists<1> lists, NormTerm term, NormCombine combine,
                                  double* partial) {
  double s = 0;
  cuda::for_block_chunk(lists, [&](int t, int64_t i) {
    s = combine(s, term(static_cast<double>(
                       static_cast<acc_t<T>>(static_cast<const T*>(lists.data[0][t])[i]))));
  });
  s = cuda::block_reduce(s, combine);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void combine_partials_kernel(double* out, const double* partial, int64_t n,
                                        NormCombine combine) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s = combine(s, partial[i]);
  s = cuda::block_reduce(s, combine);
  if (threadIdx.x == 0) *out = s;
}

void norm_power_sum_cuda(const Tensor& out, const std::vector<Tensor>& tensors, double p) {
  LUMEN_CUDA_CHECK(cudaSetDevice(out.device().index));
  const NormTerm term{p};
  const NormCombine combine{std::isinf(p)};
  int64_t blocks = 0;
  for (const Tensor& t : tensors) blocks += (t.numel() + cuda::kChunk - 1) / cuda::kChunk;
  if (blocks == 0) {
    LUMEN_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, sizeof(double), 0));
    return;
  }
  Tensor partial = empty({blocks}, {DType::f64, out.device()});
  int64_t done = 0;
  for_each_dtype(tensors, "norm_power_sum", [&]<class T>(const auto& groups) {
    cuda::pack_multi_tensor<1>(groups, [&](const TensorLists<1>& lists, unsigned n) {
      norm_power_kernel<T>
          <<<n, cuda::kBlock>>>(lists, term, combine, partial.data<double>() + done);
      LUMEN_CUDA_CHECK_LAUNCH();
      done += n;
    });
  });
  combine_partials_kernel<<<1, cuda::kBlock>>>(out.data<double>(), partial.data<double>(), done,
                                               combine);
  LUMEN_CUDA_CHECK_LAUNCH();
}

void sgd_step_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                   const std::vector<Tensor>& buffers, const std::vector<Tensor>& lows,
                   SgdStepArgs args) {
  if (params.empty()) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(params[0].device().index));
  const Tensor none;
  std::vector<std::array<const Tensor*, 4>> groups;
  for (size_t i = 0; i < params.size(); ++i)
    groups.push_back({&params[i], &grads[i], args.momentum != 0 ? &buffers[i] : &none,
                      i < lows.size() ? &lows[i] : &none});
  dispatch_dtype<DTypes::Float>(params[0].dtype(), "sgd_step", [&]<class T>() {
    cuda::launch_multi_tensor<4>(groups, SgdBody<T>{SgdUpdate<T>(args), lows_are_bf16(lows)});
  });
}

void adam_step_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                    const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                    const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& lows,
                    AdamStepArgs args) {
  if (params.empty()) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(params[0].device().index));
  const Tensor none;
  std::vector<std::array<const Tensor*, 6>> groups;
  for (size_t i = 0; i < params.size(); ++i)
    groups.push_back({&params[i], &grads[i], &exp_avgs[i], &exp_avg_sqs[i],
                      args.amsgrad ? &max_exp_avg_sqs[i] : &none,
                      i < lows.size() ? &lows[i] : &none});
  dispatch_dtype<DTypes::Float>(params[0].dtype(), "adam_step", [&]<class T>() {
    cuda::launch_multi_tensor<6>(groups, AdamBody<T>{AdamUpdate<T>(args), lows_are_bf16(lows)});
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(norm_power_sum, CUDA, norm_power_sum_cuda);
LUMEN_REGISTER_KERNEL(sgd_step, CUDA, sgd_step_cuda);
LUMEN_REGISTER_KERNEL(adam_step, CUDA, adam_step_cuda);
LUMEN_REGISTER_KERNEL(unscale_grads, CUDA, unscale_grads_cuda);

}  // namespace lumen::kernels
