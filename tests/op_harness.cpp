#include "tests/op_harness.h"

#include <cmath>

namespace lumen::testing {

std::vector<OpCase>& op_cases() {
  static std::vector<OpCase> cases;
  return cases;
}

namespace {

// Random inputs of a case. Float inputs are `dtype`; with `strided`, each float input of rank
// >= 1 is a non-contiguous view (the transpose of a transposed buffer, or every other element).
std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, bool strided, uint64_t seed,
                                Device device = Device::cpu()) {
  Generator gen(seed);
  std::vector<Tensor> out;
  for (const Input& in : c.inputs) {
    Tensor t;
    switch (in.kind) {
      case Input::Index:
        t = (rand(in.shape, {.dtype = DType::f64}, &gen) * static_cast<double>(in.high))
                .to(DType::i64);
        break;
      case Input::Mask:
        t = rand(in.shape, {.dtype = DType::f64}, &gen) > scalar_tensor(0.5, {DType::f64});
        break;
      case Input::Positive:
        t = (rand(in.shape, {.dtype = DType::f64}, &gen) * 1.5 + 0.5).to(dtype);
        break;
      case Input::Real:
        t = randn(in.shape, {.dtype = DType::f64}, &gen).to(dtype);
        break;
    }
    bool floating = in.kind == Input::Real || in.kind == Input::Positive;
    t = t.to(device);
    if (strided && floating && t.dim() >= 2) {
      // Same values, transposed memory.
      t = t.transpose(0, t.dim() - 1).contiguous().transpose(0, t.dim() - 1);
    } else if (strided && floating && t.dim() == 1) {
      Tensor wide = zeros({t.size(0), 2}, {t.dtype(), device});
      wide.select(1, 0).copy_(t);
      t = wide.select(1, 0);
    }
    t = t.detach();
    if (floating && !in.no_grad) t.requires_grad_(true);
    out.push_back(t);
  }
  return out;
}

class OpHarness : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpHarness, Gradcheck) {
  const OpCase& c = GetParam();
  if (!c.gradcheck) GTEST_SKIP() << c.name << " has no gradient";
  for (bool strided : {false, true}) {
    std::vector<Tensor> inputs = make_inputs(c, DType::f64, strided, 42);
    if (strided) {
      bool any = false;
      for (const Tensor& t : inputs) any |= t.requires_grad() && !t.is_contiguous();
      if (!any) continue;
    }
    autograd::GradcheckResult r = autograd::gradcheck(c.fn, inputs);
    EXPECT_TRUE(r.ok) << c.name << (strided ? " (non-contiguous inputs)" : "") << ": " << r.message;
  }
}

// |a - b| <= atol + rtol |b| elementwise, NaN never passing (poisoned memory reads as NaN).
::testing::AssertionResult close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a[i] - b[i]) <= atol + rtol * std::abs(b[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// Forward and backward of one case on the CPU and on CUDA, from the same f32 inputs.
void compare_cpu_cuda(const OpCase& c, bool strided) {
  std::vector<Tensor> cpu_in = make_inputs(c, DType::f32, strided, 7);
  std::vector<Tensor> gpu_in = make_inputs(c, DType::f32, strided, 7, Device::cuda());
  Tensor want = c.fn(cpu_in);
  Tensor got = c.fn(gpu_in);
  EXPECT_TRUE(close(got, want, c.cuda_rtol, c.cuda_atol)) << c.name << " forward";
  if (!c.gradcheck || !want.requires_grad()) return;
  Tensor r = randn(want.shape(), {.dtype = want.dtype()});
  (want * r).sum().backward();
  (got * r.to(Device::cuda())).sum().backward();
  for (size_t i = 0; i < cpu_in.size(); ++i) {
    if (!cpu_in[i].requires_grad()) continue;
    ASSERT_TRUE(gpu_in[i].grad().defined()) << c.name << ": no gradient for input " << i;
    EXPECT_TRUE(close(gpu_in[i].grad(), cpu_in[i].grad(), c.cuda_rtol, c.cuda_atol))
        << c.name << " gradient of input " << i;
  }
}

// Poisoned device allocations (NaN) for the guard's lifetime, whatever leaves the scope.
struct PoisonAllocations {
  PoisonAllocations() { set_poison_allocations(true); }
  ~PoisonAllocations() { set_poison_allocations(false); }
  PoisonAllocations(const PoisonAllocations&) = delete;
  PoisonAllocations& operator=(const PoisonAllocations&) = delete;
};

// Every op has its CUDA kernels (or runs as a composite of ops that have): an op without one
// fails here, as any other error does.
TEST_P(OpHarness, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  const OpCase& c = GetParam();
  PoisonAllocations poison;
  for (bool strided : {false, true}) compare_cpu_cuda(c, strided);
}

// The op on `low` inputs against the same op on the same (rounded) inputs widened to `wide`,
// forward and backward, within `ulps` units of low's rounding eps, relative and scaled by the
// result's largest magnitude (a sum of rounded terms errs by that much in absolute terms, not
// relative to a small total). The `low` run may be on another device; `wide` is on the CPU.
void compare_precisions(const OpCase& c, DType low_dtype, DType wide_dtype, double eps, double ulps,
                        Device low_device = Device::cpu()) {
  std::vector<Tensor> low = make_inputs(c, low_dtype, false, 11, low_device), wide;
  for (const Tensor& t : low) {
    Tensor w =
        t.dtype() == low_dtype ? t.detach().to(Device::cpu()).to(wide_dtype) : t.to(Device::cpu());
    if (t.requires_grad()) w.requires_grad_(true);
    wide.push_back(w);
  }
  Tensor want = c.fn(wide), got = c.fn(low);
  auto tol = [&](const Tensor& ref) {
    double scale = 0.0;
    for (double v : ref.to_vector<double>()) scale = std::max(scale, std::abs(v));
    return ulps * eps * std::max(scale, 1.0);
  };
  EXPECT_TRUE(close(got.to(wide_dtype), want, ulps * eps, tol(want))) << c.name << " forward";
  if (!c.gradcheck || !want.requires_grad()) return;
  Generator gen(5);
  Tensor r = randn(want.shape(), {.dtype = low_dtype}, &gen).to(wide_dtype);
  (want * r).sum().backward();
  (got.to(wide_dtype) * r.to(low_device)).sum().backward();
  for (size_t i = 0; i < low.size(); ++i) {
    if (!low[i].requires_grad()) continue;
    ASSERT_TRUE(low[i].grad().defined()) << c.name << " gradient of input " << i;
    EXPECT_EQ(low[i].grad().dtype(), low_dtype) << c.name << " gradient of input " << i;
    EXPECT_TRUE(
        close(low[i].grad().to(wide_dtype), wide[i].grad(), ulps * eps, tol(wide[i].grad())))
        << c.name << " gradient of input " << i;
  }
}

// f16 and bf16 against f32: within 8 units of the 16-bit type's eps (2^-10 for f16, 2^-7 for
// bf16).
TEST_P(OpHarness, HalfMatchesF32) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    compare_precisions(GetParam(), dtype, DType::f32, dtype == DType::f16 ? 0x1p-10 : 0x1p-7, 8.0);
  }
}

// f16 and bf16 on the GPU (tensor cores with f32 accumulation, the 16-bit kernels) against
// f32 on the CPU, within the same 8 units of the 16-bit eps.
TEST_P(OpHarness, CudaHalfMatchesCpuF32) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  PoisonAllocations poison;
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    compare_precisions(GetParam(), dtype, DType::f32, dtype == DType::f16 ? 0x1p-10 : 0x1p-7, 8.0,
                       Device::cuda());
  }
}

// f32 against f64, within 16 units of 2^-23 (the gradient check runs in f64 only): a coarse
// net for f32-only code such as kernels/simd_math.h, which has its own ulp sweep
// (tests/test_simd_math.cpp).
TEST_P(OpHarness, F32MatchesF64) {
  compare_precisions(GetParam(), DType::f32, DType::f64, 0x1p-23, 16.0);
}

INSTANTIATE_TEST_SUITE_P(Ops, OpHarness, ::testing::ValuesIn(op_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace lumen::testing
