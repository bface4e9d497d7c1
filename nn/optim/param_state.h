#pragma once
// What the optimizers share about one parameter's update: its gradient in the layout the
// update needs, checks on its state tensors, loading those from a State, and whether the
// fused kernel (kernels/optim.h) takes it.
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/autocast_mode.h"
#include "nn/optim/optimizer.h"

namespace lumen::optim {

// All parameters of `opt` in index order (the order that names their state).
std::vector<Tensor> all_params(const Optimizer& opt);

// `grad` of `param`, on its device (else an error naming `type`), cast to its dtype and
// contiguous, as the update kernels take it.
Tensor gradient_for(const Tensor& param, const Tensor& grad, const char* type);

// Throws when a live state tensor no longer matches its parameter's shape (the parameter
// was replaced in param_groups()).
void check_state_shape(const Tensor& param, const Tensor& state, const char* type,
                       const char* name);

// A fresh contiguous copy of `group`'s tensor `name` (parameter `index`'s state) on the
// parameter's device in the parameter's dtype, as torch casts loaded state; errors name the
// parameter and the shapes when it is missing or of another shape.
Tensor load_state_tensor(const Tensor& param, const State& group, const std::string& name,
                         size_t index, const char* type);

// Whether `kernel` has an implementation on the parameter's device and the parameter is
// contiguous f32 or f64 (its state tensors are allocated contiguous to match).
template <class Kernel>
bool fused_kernel_applies(const Kernel& kernel, const Tensor& param) {
  return kernel.has(param.device().type) && param.is_contiguous() &&
         (param.dtype() == DType::f32 || param.dtype() == DType::f64);
}

// Parameters the fused kernels take, batched so that one kernel call (one launch on CUDA)
// updates all that share a device, a dtype, a per-parameter key (SGD: whether the momentum
// buffer starts now; Adam: the step count) and the dtype of autocast's 16-bit copy of the
// parameter, if it has a current one (autograd/autocast_mode.h). Each batch holds the parameter,
// its tensors (gradient, then state) and last that copy (undefined without one), in the
// optimizer's order. After the kernels ran, finish() counts the write in every parameter's
// version and marks the copies written with it current.
struct FusedBatches {
  using Key = std::tuple<int, int, int, int64_t, int>;  // device type, index, dtype, key, copy
  std::map<Key, std::vector<std::vector<Tensor>>> batches;

  void add(const Tensor& param, int64_t key, std::vector<Tensor> tensors) {
    Tensor low = autocast::current_weight_copy(param);
    const int low_dtype = low.defined() ? static_cast<int>(low.dtype()) : -1;
    tensors.insert(tensors.begin(), param);
    tensors.push_back(low);
    batches[{param.device().type, param.device().index, static_cast<int>(param.dtype()), key,
             low_dtype}]
        .push_back(std::move(tensors));
  }
  // Calls f(device, key, lists) per batch, lists[k] holding tensor k of every parameter
  // (lists[0]: the parameters; the last list: the 16-bit copies), then finish().
  template <class F>
  void run(F f) const {
    for (const auto& [key, rows] : batches) {
      std::vector<std::vector<Tensor>> lists(rows.front().size());
      for (const auto& row : rows)
        for (size_t k = 0; k < row.size(); ++k) lists[k].push_back(row[k]);
      f(rows.front().front().device(), std::get<3>(key), lists);
    }
    finish();
  }

 private:
  void finish() const {
    for (const auto& [key, rows] : batches)
      for (const auto& row : rows) {
        row.front().bump_version();
        if (row.back().defined()) autocast::weight_copy_updated(row.front());
      }
  }
};

}  // namespace lumen::optim
