#include "nn/sequential.h"

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

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& m : modules_) y = m->forward(y);
  return y;
}

std::shared_ptr<UnaryModule> Sequential::ptr(int64_t i) const {
  const int64_t n = static_cast<int64_t>(modules_.size());
  LUMEN_CHECK(i >= -n && i < n, "Sequential: index ", i, " is out of range for ", n, " modules");
  return modules_[static_cast<size_t>(i < 0 ? i + n : i)];
}

}  // namespace lumen::nn
