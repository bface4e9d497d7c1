// CUDA optimizer kernels. unscale_grads is multi-tensor: one launch covers many tensors, whose
// pointers and sizes travel in the kernel's arguments (a TensorList of up to kMaxTensors; more
// tensors take more launches). The tensors are laid end to end as one flat range [0, total); block
// b owns elements [b chunk, (b + 1) chunk) of it, which may span several tensors.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/optim.h"
#include "kernels/optim_update.h"

namespace lumen::kernels {
namespace {

constexpr int kMaxTensors = 64;  // 64 pointers + 64 ends: 1 KiB of the 4 KiB argument space
constexpr int64_t kChunk = 64 * cuda::kBlock;

struct TensorList {
  void* data[kMaxTensors];
  int64_t end[kMaxTensors];  // end[t] = numel of tensors 0..t (prefix sums)
  int count;
};

// unscale_grads (kernels/optim.h): g = g * inv_scale, found_inf = 1 if any g is not finite.
// Each thread keeps its own flag; the block ORs them and one thread writes found_inf, so
// blocks without a bad value never touch it (and any that do all write the same 1).
template <class T>
__global__ void unscale_grads_kernel(TensorList list, float inv_scale, float* found_inf) {
  const int64_t begin = blockIdx.x * kChunk;
  const int64_t stop = min(begin + kChunk, list.end[list.count - 1]);
  bool bad = false;
  int t = 0;
  while (list.end[t] <= begin) ++t;
  for (; t < list.count; ++t) {
    const int64_t first = t == 0 ? 0 : list.end[t - 1];
    if (first >= stop) break;
    T* g = static_cast<T*>(list.data[t]);
    const int64_t lo = max(begin, first), hi = min(stop, list.end[t]);
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      float v = static_cast<float>(g[i - first]);
      bad |= !isfinite(v);
      g[i - first] = T(v * inv_scale);
    }
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1.0f;
}

template <class T>
void launch_unscale(const std::vector<const Tensor*>& grads, double inv_scale, float* found_inf) {
  for (size_t first = 0; first < grads.size(); first += kMaxTensors) {
    TensorList list{};
    int64_t total = 0;
    for (size_t i = first; i < std::min(grads.size(), first + kMaxTensors); ++i) {
      if (grads[i]->numel() == 0) continue;
      total += grads[i]->numel();
      list.data[list.count] = grads[i]->data_ptr();
      list.end[list.count] = total;
      ++list.count;
    }
    if (total == 0) continue;
    auto blocks = static_cast<unsigned>((total + kChunk - 1) / kChunk);
    unscale_grads_kernel<T>
        <<<blocks, cuda::kBlock>>>(list, static_cast<float>(inv_scale), found_inf);
    LUMEN_CUDA_CHECK_LAUNCH();
  }
}

void unscale_grads_cuda(const std::vector<Tensor>& grads, double inv_scale,
                        const Tensor& found_inf) {
  // Checked before any launch, so a refused call leaves every gradient as it was.
  for (const Tensor& g : grads)
    LUMEN_CHECK(g.dtype() != DType::f64, "unscale_grads (CUDA): f64 gradients are not supported ",
                "on CUDA; got one of shape ", ShapeStr{g.shape()});
  LUMEN_CUDA_CHECK(cudaSetDevice(found_inf.device().index));
  // One launch (per kMaxTensors) for each dtype present.
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    std::vector<const Tensor*> same;
    for (const Tensor& g : grads)
      if (g.dtype() == dt) same.push_back(&g);
    if (same.empty()) continue;
    dispatch_dtype<DTypes::FloatAndHalf>(dt, "unscale_grads", [&]<class T>() {
      launch_unscale<T>(same, inv_scale, found_inf.data<float>());
    });
  }
}

// SGD and Adam, one parameter per launch: every thread updates its elements with the math
// shared with the CPU (kernels/optim_update.h).
template <class T>
__global__ void sgd_step_kernel(int64_t n, T* p, const T* g, T* buf, SgdUpdate<T> update) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    update(p[i], g[i], buf ? buf + i : nullptr);
}

template <class T>
__global__ void adam_step_kernel(int64_t n, T* p, const T* g, T* m, T* v, T* vmax,
                                 AdamUpdate<T> update) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    update(p[i], g[i], m[i], v[i], vmax ? vmax + i : nullptr);
}

void sgd_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& buffer,
                   SgdStepArgs args) {
  const int64_t n = param.numel();
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(param.device().index));
  dispatch_dtype<DTypes::Float>(param.dtype(), "sgd_step", [&]<class T>() {
    T* buf = args.momentum != 0 ? buffer.data<T>() : nullptr;
    sgd_step_kernel<T><<<cuda::blocks_for(n), cuda::kBlock>>>(n, param.data<T>(), grad.data<T>(),
                                                              buf, SgdUpdate<T>(args));
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

void adam_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                    const Tensor& exp_avg_sq, const Tensor& max_exp_avg_sq, AdamStepArgs args) {
  const int64_t n = param.numel();
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(param.device().index));
  dispatch_dtype<DTypes::Float>(param.dtype(), "adam_step", [&]<class T>() {
    T* vmax = args.amsgrad ? max_exp_avg_sq.data<T>() : nullptr;
    adam_step_kernel<T><<<cuda::blocks_for(n), cuda::kBlock>>>(
        n, param.data<T>(), grad.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(), vmax,
        AdamUpdate<T>(args));
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(sgd_step, CUDA, sgd_step_cuda);
LUMEN_REGISTER_KERNEL(adam_step, CUDA, adam_step_cuda);
LUMEN_REGISTER_KERNEL(unscale_grads, CUDA, unscale_grads_cuda);

}  // namespace lumen::kernels
