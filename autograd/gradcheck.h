#pragma once
// Numerical gradient checking: compares the gradients backward() computes with central
// differences of the same function, in f64 on the CPU.
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lumen::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the first mismatch: which input, which element, both values
};

// Checks d<fn(inputs), R>/d inputs for a fixed random R. Inputs must be f64 CPU tensors; those
// with requires_grad are checked (they may be non-contiguous views). The function must be
// deterministic.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opts = {});

}  // namespace lumen::autograd
