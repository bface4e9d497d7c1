#pragma once
// One harness checks every op: each test file adds OpCase entries with LUMEN_OP_CASES, and
// tests/op_harness.cpp runs on each of them
//   - a numerical gradient check in f64 on the CPU, with contiguous and with non-contiguous
//     inputs (every float input that is not marked no_grad);
//   - CPU vs CUDA in f32 on the same random inputs, forward and backward (skipped without a
//     GPU), with fresh allocations poisoned so unwritten outputs show;
//   - on the CPU, f16 and bf16 against f32, and f32 against f64, on the same rounded inputs,
//     forward and backward, within a few units of the narrower type's rounding.
// A new op is one entry here plus its kernels and its autograd node.
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lumen/lumen.h"

namespace lumen::testing {

struct Input {
  enum Kind { Real, Positive, Index, Mask };
  Shape shape;
  Kind kind = Real;
  int64_t high = 0;      // Index: values in [0, high)
  bool no_grad = false;  // a float input that is not differentiated (e.g. a target)

  static Input real(Shape s) { return {std::move(s), Real}; }
  static Input positive(Shape s) { return {std::move(s), Positive}; }  // in [0.5, 2)
  static Input index(Shape s, int64_t high) { return {std::move(s), Index, high}; }
  static Input mask(Shape s) { return {std::move(s), Mask}; }
  static Input constant(Shape s) { return {std::move(s), Real, 0, true}; }
};

struct OpCase {
  std::string name;  // letters, digits, underscores (it names the test)
  std::vector<Input> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  double cuda_rtol = 1e-5;  // CPU vs CUDA in f32: |a - b| <= atol + rtol |b|
  double cuda_atol = 1e-5;
  bool gradcheck = true;  // false for ops without a gradient
};

std::vector<OpCase>& op_cases();
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

struct OpCaseRegistrar {
  explicit OpCaseRegistrar(std::vector<OpCase> cases) {
    for (auto& c : cases) op_cases().push_back(std::move(c));
  }
};

}  // namespace lumen::testing

// LUMEN_OP_CASES(family) { {"name", {inputs...}, fn}, ... };
#define LUMEN_OP_CASES(family) \
  [[maybe_unused]] static ::lumen::testing::OpCaseRegistrar lumen_op_cases_##family

// Expects `stmt` to throw lumen::Error whose message contains every one of the given strings.
#define EXPECT_THROW_MSG(stmt, ...)                                       \
  do {                                                                    \
    try {                                                                 \
      stmt;                                                               \
      ADD_FAILURE() << "expected lumen::Error from: " #stmt;              \
    } catch (const ::lumen::Error& e) {                                   \
      for (const char* part : {__VA_ARGS__})                              \
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)    \
            << "message \"" << e.what() << "\" lacks \"" << part << "\""; \
    }                                                                     \
  } while (0)
