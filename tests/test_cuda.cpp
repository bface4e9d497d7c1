// CUDA backend checks beyond the per-op harness. Without a GPU only the first test runs: a
// CUDA build must keep working on the CPU and say clearly that no device is there.
#include <cmath>
#include <functional>
#include <memory>

#include "kernels/index.h"
#include "kernels/optim.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

TEST(Cuda, AbsentDeviceGivesAClearError) {
  if (cuda_is_available()) GTEST_SKIP() << "a CUDA device is present";
  Tensor x = ones({3});
  EXPECT_THROW_MSG(x.to(Device::cuda()), "cuda:0");
  EXPECT_EQ((x + x).sum().item(), 6.0);  // the CPU path is unaffected
}

TEST(Cuda, RoundTripKeepsValuesAndLayout) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({5, 7}, {.dtype = DType::f64});
  Tensor g = x.to(Device::cuda());
  EXPECT_EQ(g.device(), Device::cuda(0));
  EXPECT_EQ(g.to(Device::cpu()).to_vector<double>(), x.to_vector<double>());
  // A transposed (non-contiguous) source arrives with the same values.
  EXPECT_EQ(x.t().to(Device::cuda()).to_vector<double>(), x.t().contiguous().to_vector<double>());
  // Casts on the device match casts on the host.
  EXPECT_EQ(g.to(DType::f16).to_vector<float>(), x.to(DType::f16).to_vector<float>());
  EXPECT_EQ(g.to(DType::bf16).to_vector<float>(), x.to(DType::bf16).to_vector<float>());
}

// The mixed-precision casts (packed kernel: whole 16-byte packs plus a tail) match the CPU's
// rounding in every direction, for lengths that leave a tail and for one too short for a pack;
// the strided path (a transposed source) too.
TEST(CudaKernels, CastsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  const DType types[] = {DType::f32, DType::f16, DType::bf16};
  for (int64_t n : {int64_t{1027}, int64_t{3}}) {
    Tensor base = randn({n}) * 100.0;
    for (DType from : types) {
      Tensor src = base.to(from);
      for (DType to : types) {
        set_poison_allocations(true);
        Tensor got = src.to(Device::cuda()).to(to);
        set_poison_allocations(false);
        EXPECT_EQ(got.to_vector<double>(), src.to(to).to_vector<double>())
            << dtype_name(from) << " -> " << dtype_name(to) << ", n = " << n;
      }
    }
  }
  Tensor w = randn({1000}) * 400.0;  // wraps into u8 the same way (through i64)
  for (DType to : {DType::u8, DType::i32, DType::i64})
    EXPECT_EQ(w.to(Device::cuda()).to(to).to_vector<int64_t>(), w.to(to).to_vector<int64_t>())
        << dtype_name(to);
  Tensor m = randn({33, 17});
  EXPECT_EQ(m.t().to(Device::cuda()).to(DType::f16).to_vector<double>(),
            m.t().to(DType::f16).to_vector<double>());
}

// Dropout on the device keeps the elements the CPU keeps (same Philox numbers), with and
// without a residual, and its backward recomputes the same mask.
TEST(CudaKernels, DropoutMatchesTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  namespace F = nn::functional;
  Tensor x = randn({37, 29}), r = randn({37, 29});
  for (DType dt : {DType::f32, DType::f16}) {
    Generator a(8), b(8);
    Tensor xc = x.to(dt).requires_grad_(true),
           xg = x.to(dt).to(Device::cuda()).requires_grad_(true);
    Tensor yc = F::dropout_add(xc, r.to(dt), 0.3, true, &a);
    Tensor yg = F::dropout_add(xg, r.to(dt).to(Device::cuda()), 0.3, true, &b);
    std::vector<double> got = yg.to_vector<double>(), want = yc.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-2 * (1 + std::abs(want[i]))) << dtype_name(dt) << " " << i;
    yc.sum().backward();
    yg.sum().backward();
    EXPECT_EQ(xg.grad().to_vector<double>(), xc.grad().to_vector<double>()) << dtype_name(dt);
  }
}

// Cross entropy under autocast on the device (16-bit logits read directly, f32 loss) matches
// the CPU's, forward and backward; and the fused linear epilogues in 16 bits (cuBLASLt) match
// the CPU's unfused ops within 16-bit rounding.
TEST(CudaKernels, SixteenBitFusedOpsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  namespace F = nn::functional;
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor logits = (randn({64, 10}) * 3.0).to(dt), target = (rand({64}) * 10.0).to(DType::i64);
    Tensor a = logits.detach().requires_grad_(true);
    Tensor b = logits.to(Device::cuda()).detach().requires_grad_(true);
    Tensor la, lb;
    {
      AutocastGuard autocast(dt);
      la = F::cross_entropy(a, target);
      lb = F::cross_entropy(b, target.to(Device::cuda()));
    }
    EXPECT_EQ(lb.dtype(), DType::f32);
    EXPECT_NEAR(lb.item(), la.item(), 1e-5 * (1 + std::abs(la.item())));
    la.backward();
    lb.backward();
    std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
    for (size_t i = 0; i < ga.size(); ++i) ASSERT_NEAR(gb[i], ga[i], 1e-2 * std::abs(ga[i]) + 1e-6);

    // Layer norm under autocast: 16-bit input, f32 output, weight and gradients.
    Tensor h = (randn({7, 300}) * 2.0).to(dt), nw = randn({300}), nb = randn({300});
    Tensor hc = h.detach().requires_grad_(true),
           hg = h.to(Device::cuda()).detach().requires_grad_(true);
    Tensor yc, yg;
    {
      AutocastGuard autocast(dt);
      yc = F::layer_norm(hc, {300}, nw, nb);
      yg = F::layer_norm(hg, {300}, nw.to(Device::cuda()), nb.to(Device::cuda()));
    }
    EXPECT_EQ(yg.dtype(), DType::f32);
    std::vector<double> yv = yg.to_vector<double>(), yw = yc.to_vector<double>();
    for (size_t i = 0; i < yv.size(); ++i) ASSERT_NEAR(yv[i], yw[i], 1e-4 * (1 + std::abs(yw[i])));
    yc.sum().backward();
    yg.sum().backward();
    std::vector<double> gv = hg.grad().to_vector<double>(), gw = hc.grad().to_vector<double>();
    for (size_t i = 0; i < gv.size(); ++i) ASSERT_NEAR(gv[i], gw[i], 1e-2 * (1 + std::abs(gw[i])));

    const double eps = dt == DType::f16 ? 0x1p-10 : 0x1p-7;
    Tensor x = randn({33, 24}).to(dt), w = randn({16, 24}).to(dt), bias = randn({16}).to(dt);
    for (F::Activation act : {F::Activation::ReLU, F::Activation::GELUTanh, F::Activation::GELU}) {
      Tensor got =
          F::linear(x.to(Device::cuda()), w.to(Device::cuda()), bias.to(Device::cuda()), act);
      Tensor z = F::linear(x.to(DType::f32), w.to(DType::f32), bias.to(DType::f32));
      Tensor want = act == F::Activation::ReLU
                        ? relu(z)
                        : gelu(z, act == F::Activation::GELU ? "none" : "tanh");
      std::vector<double> g = got.to_vector<double>(), e = want.to_vector<double>();
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_NEAR(g[i], e[i], 16 * eps * (1 + std::abs(e[i]))) << dtype_name(dt) << " " << i;
    }
  }
}

// Training-mode batch norm on CUDA (cuDNN for f32 and f64, Lumen's kernels for 16-bit x):
// output, saved statistics (through the gradients) and running statistics as on the CPU, with
// and without weight and bias, for [N, C], [N, C, L] and [N, C, H, W] inputs.
TEST(CudaKernels, BatchNormTrainingMatchesTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  namespace F = nn::functional;
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    const double tol = dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 1e-4 : 2e-2;
    for (const Shape& shape : {Shape{37, 5}, Shape{6, 3, 41}, Shape{4, 7, 9, 11}}) {
      for (bool affine : {true, false}) {
        const int64_t c = shape[1];
        Tensor x = (randn(shape) * 3.0 + 1.5).to(dt), dy = randn(shape).to(dt);
        Tensor w = affine ? (randn({c}) + 1.0).to(dt) : Tensor(),
               b = affine ? randn({c}).to(dt) : Tensor();
        Tensor rm = randn({c}).to(dt), rv = (rand({c}) + 0.5).to(dt);
        Tensor rm_g = rm.to(Device::cuda()), rv_g = rv.to(Device::cuda());
        Tensor xc = x.detach().requires_grad_(true),
               xg = x.to(Device::cuda()).detach().requires_grad_(true);
        Tensor wc = affine ? w.detach().requires_grad_(true) : Tensor(),
               wg = affine ? w.to(Device::cuda()).detach().requires_grad_(true) : Tensor();
        Tensor yc = F::batch_norm(xc, rm, rv, wc, b, true, 0.3, 1e-3);
        Tensor yg = F::batch_norm(xg, rm_g, rv_g, wg, affine ? b.to(Device::cuda()) : Tensor(),
                                  true, 0.3, 1e-3);
        (yc * dy).sum().backward();
        (yg * dy.to(Device::cuda())).sum().backward();
        const std::string what =
            std::string(dtype_name(dt)) + " " + shape_str(shape) + (affine ? " affine" : " plain");
        auto near = [&](const Tensor& got, const Tensor& want, const char* name) {
          std::vector<double> g = got.to_vector<double>(), e = want.to_vector<double>();
          ASSERT_EQ(g.size(), e.size());
          for (size_t i = 0; i < g.size(); ++i)
            ASSERT_NEAR(g[i], e[i], tol * (1 + std::abs(e[i]))) << what << " " << name << " " << i;
        };
        near(yg, yc, "y");
        near(rm_g, rm, "running_mean");
        near(rv_g, rv, "running_var");
        near(xg.grad(), xc.grad(), "grad x");
        if (affine) near(wg.grad(), wc.grad(), "grad weight");
      }
    }
  }
}

// An index tensor copied from the host answers host_values from its host copy (no wait for
// the device) until either side is written; then it is read back from the device.
TEST(Cuda, HostValuesOfCopiedIndicesComeFromTheHost) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor host = from_vector<int64_t>({3, 1, 4, 1, 5});
  Tensor dev = host.to(Device::cuda());
  EXPECT_EQ(host_values(dev).data_ptr(), host.data_ptr());
  EXPECT_EQ(kept_host_copy(dev).data_ptr(), host.data_ptr());
  dev.fill_(2.0);  // written on the device: the host copy is stale
  EXPECT_EQ(host_values(dev).to_vector<int64_t>(), std::vector<int64_t>(5, 2));
  Tensor dev2 = prefetch_to(host, Device::cuda());
  join_prefetches(Device::cuda());
  EXPECT_EQ(host_values(dev2).data_ptr(), host.data_ptr());
  host.fill_(7.0);  // the source changed after the copy: the device still holds 3 1 4 1 5
  EXPECT_EQ(host_values(dev2).to_vector<int64_t>(), (std::vector<int64_t>{3, 1, 4, 1, 5}));
  // Contiguous views (reshape, a slice of rows) keep the matching view of the host copy; a
  // transposed one does not; a write through the base makes every view's copy stale.
  Tensor grid = from_vector<int64_t>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor g = grid.to(Device::cuda());
  Tensor flat = g.reshape({-1}), row = g.select(0, 1);
  ASSERT_TRUE(kept_host_copy(flat).defined());
  EXPECT_EQ(kept_host_copy(flat).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  ASSERT_TRUE(kept_host_copy(row).defined());
  EXPECT_EQ(kept_host_copy(row).to_vector<int64_t>(), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_FALSE(kept_host_copy(g.t()).defined());
  g.fill_(9.0);
  EXPECT_FALSE(kept_host_copy(flat).defined());
  EXPECT_EQ(host_values(row).to_vector<int64_t>(), std::vector<int64_t>(3, 9));
  // Float tensors keep no host copy.
  Tensor f = ones({4}).to(Device::cuda());
  EXPECT_FALSE(f.impl()->host_copy.defined());
}

TEST(Cuda, RandomNumbersMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::f32, DType::f64}) {
    Generator a(11), b(11);
    // Box-Muller's log, sin and cos are CUDA's on the device and glibc's on the host, which
    // differ in the last bit for some inputs (a review emulating CUDA's libdevice on the CPU found
    // 139 of these 1001 f64 values off, by at most 2.7e-16 relative): equal once rounded to f32,
    // within a few f64 ulp otherwise.
    const std::vector<double> gpu =
        randn({1001}, {.dtype = dt, .device = Device::cuda()}, &a).to_vector<double>();
    const std::vector<double> cpu = randn({1001}, {.dtype = dt}, &b).to_vector<double>();
    ASSERT_EQ(gpu.size(), cpu.size());
    if (dt == DType::f32)
      EXPECT_EQ(gpu, cpu);
    else
      for (size_t i = 0; i < gpu.size(); ++i)
        ASSERT_NEAR(gpu[i], cpu[i], 1e-14 * (1 + std::abs(cpu[i]))) << "element " << i;
    EXPECT_EQ(rand({1001}, {.dtype = dt, .device = Device::cuda()}, &a).to_vector<double>(),
              rand({1001}, {.dtype = dt}, &b).to_vector<double>());
  }
}

TEST(Cuda, OutOfMemorySaysHowMuch) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW_MSG(empty({int64_t{1} << 50}, {.dtype = DType::u8, .device = Device::cuda()}),
                   "out of memory", "1125899906842624 bytes", "free");
  EXPECT_THROW(empty({int64_t{1} << 50}, {.dtype = DType::u8, .device = Device::cuda()}),
               OutOfMemoryError);
}

TEST(Cuda, MemoryStatsCountAllocationsAndThePoolKeepsFreedMemory) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  const Device dev = Device::cuda();
  reset_peak_memory_stats(dev);
  const MemoryStats before = memory_stats(dev);
  const int64_t bytes = int64_t{64} << 20;
  {
    Tensor t = empty({bytes}, {.dtype = DType::u8, .device = dev});
    EXPECT_EQ(memory_stats(dev).allocated, before.allocated + bytes);
  }
  // The free is stream-ordered: let the stream reach it. The small tensor stays alive while the
  // stats are read, so its own free cannot be pending in the pool's count.
  Tensor small = ones({1}, {.device = dev});
  small.item();
  const MemoryStats after = memory_stats(dev);
  EXPECT_EQ(after.allocated, before.allocated + int64_t(small.element_size()));
  EXPECT_EQ(after.peak_allocated, before.allocated + bytes);
  // The pool keeps what was freed, less what the small tensor's block may take of it (the pool
  // counts whole blocks in use; 2 MiB is its granularity on current GPUs).
  EXPECT_GE(after.reserved, before.allocated + bytes - (int64_t{2} << 20));
}

TEST(Cuda, MixedDevicesAreRefused) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW_MSG(ones({2}) + ones({2}, {.device = Device::cuda()}), "add", "cpu", "cuda:0");
}

}  // namespace
}  // namespace lumen::testing

namespace lumen::testing {
namespace {

namespace F = nn::functional;

// Forward and backward of f on one input, on the CPU and on CUDA, within tol.
void expect_cuda_matches_cpu(const std::function<Tensor(const Tensor&)>& f, const Tensor& x_cpu,
                             double tol, const std::string& what) {
  Tensor a = x_cpu.detach().requires_grad_(true);
  Tensor b = x_cpu.detach().to(Device::cuda()).requires_grad_(true);
  Tensor ya = f(a), yb = f(b);
  std::vector<double> va = ya.to_vector<double>(), vb = yb.to_vector<double>();
  ASSERT_EQ(va.size(), vb.size()) << what;
  for (size_t i = 0; i < va.size(); ++i)
    ASSERT_NEAR(vb[i], va[i], tol * (1 + std::abs(va[i]))) << what << " forward, element " << i;
  Generator gen(3);
  Tensor r = randn(ya.shape(), {.dtype = ya.dtype()}, &gen);
  (ya * r).sum().backward();
  (yb * r.to(Device::cuda())).sum().backward();
  std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  for (size_t i = 0; i < ga.size(); ++i)
    ASSERT_NEAR(gb[i], ga[i], tol * (1 + std::abs(ga[i]))) << what << " backward, element " << i;
}

// Rows longer than a warp's share (1024) take the block-per-row kernels.
TEST(CudaKernels, LongRowsTakeTheBlockPath) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  set_poison_allocations(true);
  Generator gen(21);
  Tensor x = randn({3, 3000}, {}, &gen);
  Tensor target = from_vector(std::vector<double>{5, 2999, 0}, {3}).to(DType::i64);
  expect_cuda_matches_cpu([](const Tensor& t) { return softmax(t, 1); }, x, 1e-5, "softmax");
  expect_cuda_matches_cpu([](const Tensor& t) { return log_softmax(t, 1); }, x, 1e-5,
                          "log_softmax");
  expect_cuda_matches_cpu([](const Tensor& t) { return F::layer_norm(t, {3000}); }, x, 1e-4,
                          "layer_norm");
  expect_cuda_matches_cpu(
      [&](const Tensor& t) {
        return F::cross_entropy(t, target.to(t.device()), {.label_smoothing = 0.1});
      },
      x, 1e-5, "cross_entropy");
  // A softmax over a dim that is not the last (rows `inner` apart).
  expect_cuda_matches_cpu(
      [](const Tensor& t) {
        return softmax(t.view({3, 30, 100}), 1);
      },
      x, 1e-5, "softmax over dim 1");
  set_poison_allocations(false);
}

// Ties take the first index and NaN wins, as on the CPU, whatever thread finds them.
// Softmax and cross entropy over dim 1 of [N, C, H, W]: many rows `H W` apart take a thread
// per row (cuda::row_mode); forward and backward as on the CPU.
TEST(CudaKernels, InterleavedRowsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  namespace F = nn::functional;
  Tensor x = randn({16, 5, 64, 64}) * 3.0, dy = randn({16, 5, 64, 64});  // 65536 rows
  Tensor target = (rand({16, 64, 64}) * 5.0).to(DType::i64);
  target.data<int64_t>()[7] = -100;  // ignored
  auto near = [](const Tensor& got, const Tensor& want, const char* what) {
    std::vector<double> g = got.to_vector<double>(), e = want.to_vector<double>();
    ASSERT_EQ(g.size(), e.size()) << what;
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_NEAR(g[i], e[i], 1e-5 * (1 + std::abs(e[i]))) << what << " " << i;
  };
  for (int kind = 0; kind < 3; ++kind) {
    Tensor xc = x.detach().requires_grad_(true),
           xg = x.to(Device::cuda()).detach().requires_grad_(true);
    Tensor yc, yg;
    if (kind == 2) {
      const F::CrossEntropyOptions opts{.ignore_index = -100, .label_smoothing = 0.1};
      yc = F::cross_entropy(xc, target, opts);
      yg = F::cross_entropy(xg, target.to(Device::cuda()), opts);
      yc.backward();
      yg.backward();
    } else {
      yc = kind == 0 ? softmax(xc, 1) : log_softmax(xc, 1);
      yg = kind == 0 ? softmax(xg, 1) : log_softmax(xg, 1);
      (yc * dy).sum().backward();
      (yg * dy.to(Device::cuda())).sum().backward();
    }
    const char* what[] = {"softmax", "log_softmax", "cross_entropy"};
    near(yg, yc, what[kind]);
    near(xg.grad(), xc.grad(), what[kind]);
  }
}

// Sums of few outputs over many elements take the split (partial sums, then a finishing pass)
// path; results as on the CPU for full sums, sums over a trailing dim and means, f32 and i64.
TEST(CudaKernels, LargeSumsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({3, 5, 70001}) + 0.25;
  Tensor xg = x.to(Device::cuda());
  auto near = [](const Tensor& got, const Tensor& want, const char* what) {
    std::vector<double> g = got.to_vector<double>(), e = want.to_vector<double>();
    ASSERT_EQ(g.size(), e.size()) << what;
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(g[i], e[i], 1e-5 * (1 + std::abs(e[i]))) << what << " " << i;
  };
  near(xg.sum(), x.sum(), "full sum");
  near(xg.mean(), x.mean(), "full mean");
  near(xg.sum({2}), x.sum({2}), "sum over the last dim");
  near(xg.sum({0, 2}), x.sum({0, 2}), "sum over outer and last dims");
  near((xg * xg).sum(), (x * x).sum(), "sum of squares");
  near(xg.reshape({-1, 5}).sum({0}), x.reshape({-1, 5}).sum({0}), "sum over rows of [N, 5]");
  Tensor i = (rand({1 << 20}) * 1000.0).to(DType::i64);
  EXPECT_EQ(i.to(Device::cuda()).sum().to_vector<int64_t>(), i.sum().to_vector<int64_t>());
}

TEST(CudaKernels, ArgmaxTiesAndNaNsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<double> v(3 * 2000, 1.0);
  v[1500] = 7.0, v[1999] = 7.0;                                        // row 0: tie -> 1500
  v[2000 + 10] = NAN, v[2000 + 1700] = NAN, v[2000 + 5] = 9.0;         // row 1: first NaN -> 10
  for (int i = 0; i < 2000; ++i) v[4000 + i] = -std::abs(i - 1234.0);  // row 2: 1234
  Tensor x = from_vector(v, {3, 2000}).to(DType::f32);
  Tensor xc = x.to(Device::cuda());
  EXPECT_EQ(argmax(xc, 1).to_vector<int64_t>(), argmax(x, 1).to_vector<int64_t>());
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1500, 10, 1234}));
  EXPECT_EQ(argmin(xc, 1).to_vector<int64_t>(), argmin(x, 1).to_vector<int64_t>());
  std::vector<double> m = amax(xc, {1}).to_vector<double>();
  EXPECT_EQ(m[0], 7.0);
  EXPECT_TRUE(std::isnan(m[1]));
  // Sums over leading, trailing and middle dims of a non-contiguous view.
  Tensor y = randn({6, 50, 7}).transpose(0, 2);
  for (std::vector<int64_t> dims : {std::vector<int64_t>{0}, {1}, {2}, {0, 2}, {}}) {
    std::vector<double> a = sum(y, dims).to_vector<double>();
    std::vector<double> b = sum(y.to(Device::cuda()), dims).to_vector<double>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * (1 + std::abs(a[i])));
  }
}

// A bad index is refused on CUDA with the CPU's message, before anything is written.
TEST(CudaKernels, OutOfRangeIndicesGiveTheCpuError) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({4, 5});
  Tensor bad = from_vector(std::vector<double>{0, 3, 7, 9}, {4}).to(DType::i64);
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string cpu = message([&] { index_select(x, 0, bad); });
  std::string gpu = message([&] { index_select(x.to(Device::cuda()), 0, bad.to(Device::cuda())); });
  EXPECT_NE(cpu.find("index 7 at position [2]"), std::string::npos) << cpu;
  EXPECT_EQ(gpu, cpu);
  Tensor w = randn({6, 3});
  Tensor ids = from_vector(std::vector<double>{1, 6, 2, 8}, {2, 2}).to(DType::i32);
  cpu = message([&] { F::embedding(ids, w); });
  gpu = message([&] { F::embedding(ids.to(Device::cuda()), w.to(Device::cuda())); });
  EXPECT_NE(cpu.find("index 6 at position [0, 1]"), std::string::npos) << cpu;
  EXPECT_EQ(gpu, cpu);
  Tensor dst = zeros({4, 5}, {.device = Device::cuda()});
  Tensor gidx =
      from_vector(std::vector<double>{0, 1, 2, 3, 4, 0, 1, 2, 3, 9}, {2, 5}).to(DType::i64);
  gpu = message([&] {
    scatter_add(dst, 0, gidx.to(Device::cuda()), ones({2, 5}, {.device = Device::cuda()}));
  });
  EXPECT_EQ(gpu, message([&] { scatter_add(zeros({4, 5}), 0, gidx, ones({2, 5})); }));
  EXPECT_EQ(dst.sum().item(), 0.0);  // nothing written
  // The same errors from indices made on the device (no host copy: the device-side check).
  Tensor on_device = bad.to(Device::cuda()).clone();
  ASSERT_FALSE(kept_host_copy(on_device).defined());
  EXPECT_EQ(message([&] { index_select(x.to(Device::cuda()), 0, on_device); }),
            message([&] { index_select(x, 0, bad); }));
  Tensor ids_dev = ids.to(Device::cuda()) * 1;
  EXPECT_EQ(message([&] { F::embedding(ids_dev, w.to(Device::cuda())); }),
            message([&] { F::embedding(ids, w); }));
}

// Duplicate indices accumulate on CUDA as on the CPU (embedding_backward, index_add).
TEST(CudaKernels, DuplicateIndicesAccumulate) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor ids = from_vector(std::vector<double>{2, 0, 2, 2, 5, 0}, {2, 3}).to(DType::i64);
  expect_cuda_matches_cpu([&](const Tensor& w) { return F::embedding(ids.to(w.device()), w); },
                          randn({7, 4}), 1e-5, "embedding");
  Tensor idx = from_vector(std::vector<double>{1, 1, 0, 3, 1}, {5}).to(DType::i64);
  expect_cuda_matches_cpu(
      [&](const Tensor& src) {
        return index_add(zeros({4, 3}, {.device = src.device()}), 0, idx.to(src.device()), src);
      },
      randn({5, 3}), 1e-5, "index_add");
}

// The fused optimizer kernels match the CPU under every option.
// The embedding backward sorts rows by index: many rows over a small vocabulary (long runs of
// one index), a padding index, i32 and i64 indices, a weight gradient that already holds values.
TEST(CudaKernels, EmbeddingBackwardOfManyRowsMatchesTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (DType idx_dt : {DType::i64, DType::i32}) {
    for (int64_t padding : {int64_t{-1}, int64_t{3}}) {
      Tensor ids = (rand({40, 257}) * 50.0).to(idx_dt);
      Tensor grad = randn({40, 257, 70});
      Tensor start = randn({50, 70});
      Tensor gc = start.clone(), gg = start.to(Device::cuda());
      kernels::embedding_backward(Device::cpu(), gc, grad, ids, padding);
      kernels::embedding_backward(Device::cuda(), gg, grad.to(Device::cuda()),
                                  ids.to(Device::cuda()), padding);
      std::vector<double> got = gg.to_vector<double>(), want = gc.to_vector<double>();
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i])))
            << dtype_name(idx_dt) << " padding " << padding << " " << i;
      if (padding == 3) {  // the padding row gets nothing
        EXPECT_EQ(gg.to(Device::cpu()).select(0, 3).to_vector<double>(),
                  start.select(0, 3).to_vector<double>());
      }
    }
  }
}

// The fused norm power sum over more tensors than one launch takes, of every floating dtype, and
// clip_grad_norm_ built on it: the same norm and clipped gradients as on the CPU.
TEST(CudaKernels, GradientNormAndClippingMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<Tensor> cpu, gpu;
  const DType dtypes[] = {DType::f32, DType::f16, DType::f64, DType::bf16};
  for (int i = 0; i < 70; ++i) {
    Tensor t = (randn({(i * 7919) % 30000 + 1}) * 0.1).to(dtypes[i % 4]);
    cpu.push_back(t);
    gpu.push_back(t.to(Device::cuda()));
  }
  for (double p : {1.0, 2.0, 3.0, double(INFINITY)}) {
    Tensor oc = empty({1}, {.dtype = DType::f64});
    Tensor og = full({1}, NAN, {DType::f64, Device::cuda()});
    kernels::norm_power_sum(Device::cpu(), oc, cpu, p);
    kernels::norm_power_sum(Device::cuda(), og, gpu, p);
    EXPECT_NEAR(og.item(), oc.item(), 1e-12 * oc.item()) << "p = " << p;
  }
  std::vector<Tensor> pc, pg;
  for (int i = 0; i < 70; ++i) {
    pc.push_back(zeros(cpu[i].shape(), {.dtype = cpu[i].dtype()}).requires_grad_(true));
    pc.back().set_grad(cpu[i].clone());
    pg.push_back(zeros(cpu[i].shape(), {cpu[i].dtype(), Device::cuda()}).requires_grad_(true));
    pg.back().set_grad(gpu[i].clone());
  }
  Tensor nc = optim::clip_grad_norm_(pc, 0.5), ng = optim::clip_grad_norm_(pg, 0.5);
  EXPECT_EQ(ng.device(), Device::cuda());
  EXPECT_NEAR(ng.item(), nc.item(), 1e-12 * nc.item());
  for (int i = 0; i < 70; ++i) {
    std::vector<double> a = pg[i].grad().to_vector<double>(), b = pc[i].grad().to_vector<double>();
    for (size_t k = 0; k < a.size(); ++k)
      ASSERT_NEAR(a[k], b[k], 1e-2 * std::abs(b[k]) + 1e-9) << i << " " << k;
  }
}

TEST(CudaKernels, FusedOptimizerStepsMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  auto train = [](Device dev, int kind) {
    Generator gen(5);
    Tensor w = randn({37, 11}, {}, &gen).to(dev).requires_grad_(true);
    Tensor target = randn({37, 11}, {}, &gen).to(dev);
    std::unique_ptr<optim::Optimizer> opt;
    if (kind == 0)
      opt = std::make_unique<optim::SGD>(
          std::vector<Tensor>{w},
          optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    if (kind == 1)
      opt = std::make_unique<optim::SGD>(
          std::vector<Tensor>{w},
          optim::SGDOptions{.lr = 0.1, .momentum = 0.5, .dampening = 0.3, .maximize = true});
    if (kind == 2)
      opt = std::make_unique<optim::Adam>(std::vector<Tensor>{w},
                                          optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1});
    if (kind == 3)
      opt = std::make_unique<optim::AdamW>(
          std::vector<Tensor>{w},
          optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true});
    for (int s = 0; s < 5; ++s) {
      opt->zero_grad();
      ((w - target) * (w - target)).sum().backward();
      opt->step();
    }
    return w.detach().to(Device::cpu()).to_vector<double>();
  };
  for (int kind = 0; kind < 4; ++kind) {
    std::vector<double> a = train(Device::cpu(), kind), b = train(Device::cuda(), kind);
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_NEAR(b[i], a[i], 1e-5 * (1 + std::abs(a[i])))
          << "optimizer " << kind << ", element " << i;
  }
}

}  // namespace
}  // namespace lumen::testing
