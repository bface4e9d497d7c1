#include "nn/sequential.h"

#include <optional>
#include <typeinfo>

#include "nn/activation.h"
#include "nn/functional/linalg.h"
#include "nn/linear.h"

namespace lumen::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules) {
  for (const auto& m : modules) push_back(m);
}

Sequential& Sequential::push_back(std::shared_ptr<UnaryModule> module) {
  LUMEN_CHECK(module != nullptr, "Sequential: module ", modules_.size(), " is a null pointer");
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
  return *this;
}

namespace {

// The activation a Linear can run in its own GEMM epilogue when `m` follows it (ReLU, GELU;
// exact types only, so a subclass's own forward is never skipped).
std::optional<functional::Activation> fusable_activation(const UnaryModule& m) {
  if (typeid(m) == typeid(ReLU)) return functional::Activation::ReLU;
  if (typeid(m) == typeid(GELU))
    return static_cast<const GELU&>(m).approximate == "tanh" ? functional::Activation::GELUTanh
                                                             : functional::Activation::GELU;
  return std::nullopt;
}

}  // namespace

// A Linear followed by ReLU or GELU runs as one fused linear (bias and activation in the GEMM's
// epilogue, kernels/linalg.h): the values and gradients of the two modules, one pass fewer.
Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (size_t i = 0; i < modules_.size(); ++i) {
    const UnaryModule& m = *modules_[i];
    if (i + 1 < modules_.size() && typeid(m) == typeid(Linear)) {
      if (auto act = fusable_activation(*modules_[i + 1])) {
        const auto& linear = static_cast<const Linear&>(m);
        y = functional::linear(y, linear.weight, linear.bias, *act);
        ++i;
        continue;
      }
    }
    y = modules_[i]->forward(y);
  }
  return y;
}

std::shared_ptr<UnaryModule> Sequential::ptr(int64_t i) const {
  const int64_t n = static_cast<int64_t>(modules_.size());
  LUMEN_CHECK(i >= -n && i < n, "Sequential: index ", i, " is out of range for ", n, " modules");
  return modules_[static_cast<size_t>(i < 0 ? i + n : i)];
}

}  // namespace lumen::nn
