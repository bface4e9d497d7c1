#pragma once
// Sequential: a chain of unary modules applied in order, as torch.nn.Sequential. Children are
// named "0", "1", ... so state_dict keys read "0.weight", "2.running_mean" as PyTorch's.
//   Sequential mlp{std::make_shared<Linear>(784, 256), std::make_shared<ReLU>(),
//                  std::make_shared<Linear>(256, 10)};
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/error.h"

namespace lumen::nn {

class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules);

  // Appends a module named by its position; returns this Sequential for chaining.
  Sequential& push_back(std::shared_ptr<UnaryModule> module);
  Sequential& add(std::shared_ptr<UnaryModule> module) { return push_back(std::move(module)); }

  // Each module's output is the next one's input; an empty Sequential returns x.
  Tensor forward(const Tensor& x) override;

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // The i-th module; negative i counts from the end, as in Python.
  UnaryModule& operator[](int64_t i) const { return *ptr(i); }
  std::shared_ptr<UnaryModule> ptr(int64_t i) const;
  // The i-th module as its concrete type: seq.at<Linear>(0).weight. Throws if it is another.
  template <class M>
  M& at(int64_t i) const {
    auto m = std::dynamic_pointer_cast<M>(ptr(i));
    LUMEN_CHECK(m != nullptr, "Sequential: module ", i, " is a ", ptr(i)->type_name(),
                ", not the type asked for");
    return *m;
  }
  const std::vector<std::shared_ptr<UnaryModule>>& modules() const { return modules_; }

  std::string type_name() const override { return "Sequential"; }

 private:
  std::vector<std::shared_ptr<UnaryModule>> modules_;
};

}  // namespace lumen::nn
