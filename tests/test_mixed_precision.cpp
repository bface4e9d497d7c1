// Mixed precision: autocast's op policies, GradScaler (growth, backoff, skipped steps, state),
// its fused unscale kernel, and the Trainer's "16-mixed" / "bf16-mixed".
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "examples/fashion_mnist_classifier.h"
#include "kernels/optim.h"
#include "tests/op_harness.h"
#include "tests/trainer_fixtures.h"

namespace lumen {
namespace {

using testing::TempDir;
using testing::TinyData;
using testing::TinyModel;

Tensor random(Shape shape, uint64_t seed, DType dtype = DType::f32) {
  Generator gen(seed);
  return randn(std::move(shape), {.dtype = dtype}, &gen);
}

// f32 values rounded to `dtype` and back: the inputs a 16-bit op really sees.
Tensor rounded(const Tensor& t, DType dtype) { return t.detach().to(dtype).to(DType::f32); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// ---- autocast ----

TEST(Autocast, LinearRunsInSixteenBitsAndItsF32ParametersGetF32Gradients) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    Tensor x = random({5, 7}, 1), w = random({3, 7}, 2).requires_grad_(true),
           b = random({3}, 3).requires_grad_(true);
    Tensor y;
    {
      AutocastGuard autocast(dtype);
      y = nn::functional::linear(x, w, b);
    }
    EXPECT_EQ(y.dtype(), dtype);
    // Reference: f32 on the rounded operands, rounded once (f32 accumulation in the GEMM; the
    // bias add rounds once more).
    Tensor want = nn::functional::linear(rounded(x, dtype), rounded(w, dtype), rounded(b, dtype));
    double eps = dtype == DType::f16 ? 0x1p-10 : 0x1p-7;
    EXPECT_LE(max_abs_diff(y.to(DType::f32), want), 4 * eps * 8.0);
    y.to(DType::f32).sum().backward();
    ASSERT_TRUE(w.grad().defined());
    EXPECT_EQ(w.grad().dtype(), DType::f32);
    EXPECT_EQ(b.grad().dtype(), DType::f32);
    // dW = g^T x with g = 1: column sums of the rounded x, exact in f32 up to the final round.
    Tensor want_gw = ones({3, 5}).matmul(rounded(x, dtype));
    EXPECT_LE(max_abs_diff(w.grad(), want_gw), 8 * eps * 8.0);
    EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>(3, 5.0f));
  }
}

// A parameter's 16-bit copy is made once and reused while the parameter is unchanged; an
// in-place write makes the next cast a fresh one with the new values; the gradient still
// reaches the f32 parameter through each use.
TEST(Autocast, ParameterCopiesAreKeptUntilTheParameterChanges) {
  autocast::clear_weight_copies();
  Tensor w = random({4, 3}, 1).requires_grad_(true);
  Tensor a, b, c;
  {
    AutocastGuard autocast(DType::f16);
    a = autocast::to_lower_precision(w);
    b = autocast::to_lower_precision(w);
  }
  EXPECT_EQ(a.dtype(), DType::f16);
  EXPECT_EQ(a.data_ptr(), b.data_ptr());  // one cast
  EXPECT_EQ(a.to_vector<float>(), w.to(DType::f16).to_vector<float>());
  (a.to(DType::f32).sum() + 2.0 * b.to(DType::f32).sum()).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(12, 3.0f));
  EXPECT_TRUE(autocast::current_weight_copy(w).defined());
  {
    NoGradGuard no_grad;
    w.mul_(2.0);
  }
  EXPECT_FALSE(autocast::current_weight_copy(w).defined());  // stale
  {
    AutocastGuard autocast(DType::f16);
    c = autocast::to_lower_precision(w);
  }
  EXPECT_EQ(c.to_vector<float>(), w.to(DType::f16).to_vector<float>());
  // bf16 replaces the f16 copy; non-parameters are never kept.
  {
    AutocastGuard autocast(DType::bf16);
    EXPECT_EQ(autocast::to_lower_precision(w).to_vector<float>(),
              w.to(DType::bf16).to_vector<float>());
    Tensor x = random({4, 3}, 2);
    autocast::to_lower_precision(x);
    EXPECT_FALSE(autocast::current_weight_copy(x).defined());
  }
}

// The fused optimizer steps write the 16-bit copy with the parameter: afterwards the copy is
// current and equals the cast of the updated parameter bit for bit; a parameter without a copy
// gets none; the copy's dtype follows autocast's.
TEST(Autocast, FusedOptimizerStepsUpdateTheParameterCopies) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    for (int opt_kind = 0; opt_kind < 2; ++opt_kind) {
      autocast::clear_weight_copies();
      Tensor w = random({37, 11}, 3).requires_grad_(true), v = random({5}, 4).requires_grad_(true);
      std::unique_ptr<optim::Optimizer> opt;
      if (opt_kind == 0)
        opt =
            std::make_unique<optim::Adam>(std::vector<Tensor>{w, v}, optim::AdamOptions{.lr = 0.1});
      else
        opt = std::make_unique<optim::SGD>(std::vector<Tensor>{w, v},
                                           optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      for (int step = 0; step < 3; ++step) {
        Tensor low;
        {
          AutocastGuard autocast(dtype);
          low = autocast::to_lower_precision(w);
        }
        (low.to(DType::f32).pow(2.0).sum() + v.pow(2.0).sum()).backward();
        opt->step();
        opt->zero_grad();
        Tensor copy = autocast::current_weight_copy(w);
        ASSERT_TRUE(copy.defined()) << "step " << step;
        EXPECT_EQ(copy.data_ptr(), low.data_ptr());  // written in place, no new cast
        EXPECT_EQ(copy.to_vector<float>(), w.to(dtype).to_vector<float>())
            << dtype_name(dtype) << " optimizer " << opt_kind << " step " << step;
        EXPECT_FALSE(autocast::current_weight_copy(v).defined());
      }
    }
  }
}

// Training under autocast gives the same parameters, bit for bit, whether the weight copies are
// kept and updated by the optimizer or every cast is made afresh.
TEST(Autocast, KeptWeightCopiesTrainLikeFreshCasts) {
  auto train = [](bool fresh) {
    manual_seed(7);
    nn::Sequential net{std::make_shared<nn::Linear>(6, 16), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::Linear>(16, 3)};
    optim::Adam opt(net.parameters(), {.lr = 0.01});
    Generator gen(9);
    Tensor x = randn({32, 6}, {}, &gen), y = (rand({32}, {}, &gen) * 3.0).to(DType::i64);
    autocast::clear_weight_copies();
    for (int step = 0; step < 5; ++step) {
      if (fresh) autocast::clear_weight_copies();
      Tensor loss;
      {
        AutocastGuard autocast(DType::f16);
        loss = nn::functional::cross_entropy(net.forward(x), y);
      }
      loss.backward();
      opt.step();
      opt.zero_grad();
    }
    std::vector<float> params;
    for (const Tensor& p : net.parameters())
      for (float f : p.to_vector<float>()) params.push_back(f);
    return params;
  };
  EXPECT_EQ(train(false), train(true));
}

// Under autocast, cross entropy reads 16-bit logits as they are and computes in f32: the same
// loss, bit for bit, as on the logits cast to f32, and the same 16-bit gradient as through the
// cast, without the f32 copy of the logits.
TEST(Autocast, CrossEntropyReadsSixteenBitLogitsDirectly) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    Tensor base = random({6, 5, 3}, 5) * 4.0;
    Tensor target =
        from_vector<int64_t>({0, 4, 2, -100, 1, 3, 3, 2, 0, 1, -100, 4, 2, 2, 1, 0, 4, 3}, {6, 3});
    nn::functional::CrossEntropyOptions opts{.ignore_index = -100, .label_smoothing = 0.1};
    for (const char* red : {"mean", "none"}) {
      opts.reduction = red;
      Tensor a = base.to(dtype).detach().requires_grad_(true);
      Tensor b = base.to(dtype).detach().requires_grad_(true);
      Tensor fused, want;
      {
        AutocastGuard autocast(dtype);
        fused = nn::functional::cross_entropy(a, target, opts);
      }
      want = nn::functional::cross_entropy(b.to(DType::f32), target, opts);
      EXPECT_EQ(fused.dtype(), DType::f32);
      EXPECT_EQ(fused.to_vector<float>(), want.to_vector<float>()) << dtype_name(dtype) << red;
      Tensor r = random(fused.shape(), 6);
      (fused * r).sum().backward();
      (want * r).sum().backward();
      EXPECT_EQ(a.grad().dtype(), dtype);
      EXPECT_EQ(a.grad().to_vector<float>(), b.grad().to_vector<float>())
          << dtype_name(dtype) << red;
    }
  }
}

// Layer norm under autocast reads a 16-bit input as it is and computes, and writes, in f32: the
// values and gradients of the op on the input cast to f32, bit for bit.
TEST(Autocast, LayerNormReadsSixteenBitInputDirectly) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    Tensor base = random({4, 3, 40}, 7) * 2.0 + 1.0;
    Tensor w1 = random({40}, 8).requires_grad_(true), b1 = random({40}, 9).requires_grad_(true);
    Tensor w2 = w1.detach().clone().requires_grad_(true),
           b2 = b1.detach().clone().requires_grad_(true);
    Tensor a = base.to(dtype).detach().requires_grad_(true);
    Tensor c = base.to(dtype).detach().requires_grad_(true);
    Tensor fused;
    {
      AutocastGuard autocast(dtype);
      fused = nn::functional::layer_norm(a, {40}, w1, b1);
    }
    Tensor want = nn::functional::layer_norm(c.to(DType::f32), {40}, w2, b2);
    EXPECT_EQ(fused.dtype(), DType::f32);
    EXPECT_EQ(fused.to_vector<float>(), want.to_vector<float>()) << dtype_name(dtype);
    Tensor r = random({4, 3, 40}, 10);
    (fused * r).sum().backward();
    (want * r).sum().backward();
    EXPECT_EQ(a.grad().dtype(), dtype);
    EXPECT_EQ(a.grad().to_vector<float>(), c.grad().to_vector<float>()) << dtype_name(dtype);
    EXPECT_EQ(w1.grad().to_vector<float>(), w2.grad().to_vector<float>()) << dtype_name(dtype);
    EXPECT_EQ(b1.grad().to_vector<float>(), b2.grad().to_vector<float>()) << dtype_name(dtype);
  }
}

TEST(Autocast, ConvAndMatmulRunInSixteenBits) {
  Tensor x = random({2, 3, 6, 6}, 4), w = random({4, 3, 3, 3}, 5).requires_grad_(true);
  AutocastGuard autocast(DType::bf16);
  Tensor y = nn::functional::conv2d(x, w);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_EQ(matmul(random({2, 3}, 6), random({3, 2}, 7)).dtype(), DType::bf16);
  // f64 is left alone, as PyTorch's autocast leaves it.
  EXPECT_EQ(matmul(random({2, 3}, 6, DType::f64), random({3, 2}, 7, DType::f64)).dtype(),
            DType::f64);
  {
    AutocastGuard off(DType::bf16, false);
    y = nn::functional::conv2d(x, w);
  }
  EXPECT_EQ(y.dtype(), DType::f32);
}

TEST(Autocast, ReductionsSoftmaxLossesAndNormsRunInF32) {
  Tensor h = random({4, 5}, 8, DType::f16);
  Tensor target = from_vector<int64_t>({0, 4, 2, 1}, {4});
  {
    AutocastGuard autocast(DType::f16);
    EXPECT_EQ(nn::functional::cross_entropy(h, target).dtype(), DType::f32);
    EXPECT_EQ(softmax(h, 1).dtype(), DType::f32);
    EXPECT_EQ(log_softmax(h, 1).dtype(), DType::f32);
    EXPECT_EQ(h.sum().dtype(), DType::f32);
    EXPECT_EQ(h.mean({1}).dtype(), DType::f32);
    EXPECT_EQ(nn::functional::mse_loss(h, h.detach()).dtype(), DType::f32);
    EXPECT_EQ(nn::functional::layer_norm(h, {5}).dtype(), DType::f32);
    // Everything else keeps its inputs' dtype; f16 with f32 promotes.
    EXPECT_EQ(relu(h).dtype(), DType::f16);
    EXPECT_EQ((h + random({4, 5}, 9)).dtype(), DType::f32);
  }
  // Outside autocast, the same ops keep f16.
  EXPECT_EQ(softmax(h, 1).dtype(), DType::f16);
  EXPECT_EQ(h.sum().dtype(), DType::f16);
}

TEST(Autocast, GuardsNestRestoreAndRejectOtherDtypes) {
  EXPECT_FALSE(AutocastMode::is_enabled());
  {
    AutocastGuard outer(DType::f16);
    EXPECT_TRUE(AutocastMode::is_enabled());
    EXPECT_EQ(AutocastMode::dtype(), DType::f16);
    {
      AutocastGuard inner(DType::bf16);
      EXPECT_EQ(AutocastMode::dtype(), DType::bf16);
      AutocastGuard off(DType::bf16, false);
      EXPECT_FALSE(AutocastMode::is_enabled());
    }
    EXPECT_TRUE(AutocastMode::is_enabled());
    EXPECT_EQ(AutocastMode::dtype(), DType::f16);
  }
  EXPECT_FALSE(AutocastMode::is_enabled());
  EXPECT_THROW_MSG(AutocastGuard bad(DType::f32), "AutocastGuard", "f16 or bf16", "f32");
  EXPECT_FALSE(AutocastMode::is_enabled());
}

TEST(Autocast, BackwardComputesInTheForwardDtypesWhateverAutocastSaysThen) {
  Tensor x = random({4, 6}, 10), w = random({3, 6}, 11).requires_grad_(true);
  Tensor plain = nn::functional::linear(x, w).sum();
  plain.backward(Tensor(), true);
  Tensor want = w.grad().clone();
  w.set_grad(Tensor());
  {
    AutocastGuard autocast(DType::f16);
    plain.backward();
  }
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().to_vector<float>(), want.to_vector<float>());
}

// ---- the fused unscale kernel ----

TEST(UnscaleGrads, DividesEveryGradientAndFlagsInfAndNan) {
  Tensor a = random({33}, 12), b = random({4, 5}, 13, DType::f64), c = random({7}, 14, DType::f16);
  std::vector<double> wa = a.to_vector<double>(), wb = b.to_vector<double>(),
                      wc = c.to_vector<double>();
  Tensor found = zeros({1});
  kernels::unscale_grads(Device::cpu(), {a, b, c}, 0.25, found);
  EXPECT_EQ(found.item(), 0.0);
  auto check = [](const Tensor& t, const std::vector<double>& before) {
    std::vector<double> got = t.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], before[i] * 0.25) << i;
  };
  check(a, wa);
  check(b, wb);
  check(c, wc);  // a power of two scales f16 exactly
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    Tensor d = random({100}, 15);
    d.data<float>()[77] = bad;
    Tensor f = zeros({1});
    kernels::unscale_grads(Device::cpu(), {a, d}, 1.0, f);
    EXPECT_EQ(f.item(), 1.0) << bad;
  }
  // A flag already set stays set (it collects over several calls).
  Tensor set = ones({1});
  kernels::unscale_grads(Device::cpu(), {a}, 1.0, set);
  EXPECT_EQ(set.item(), 1.0);
}

TEST(UnscaleGradsCuda, MatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  set_poison_allocations(true);
  // Sizes across the kernel's chunk boundaries, every floating dtype, and more tensors of one
  // dtype (100 f32) than one launch takes (launches go by dtype, 48 tensors at most).
  std::vector<Tensor> cpu, gpu;
  for (int i = 0; i < 170; ++i) {
    const DType dt = i >= 70      ? DType::f32
                     : i % 3 == 0 ? DType::f16
                     : i % 3 == 1 ? DType::f32
                                  : DType::f64;
    Tensor t = random({(i * 977) % 20000 + 1}, 100 + i, dt);
    cpu.push_back(t);
    gpu.push_back(t.to(Device::cuda()));
  }
  Tensor fc = zeros({1}), fg = zeros({1}, {DType::f32, Device::cuda()});
  kernels::unscale_grads(Device::cpu(), cpu, 1.0 / 1024, fc);
  kernels::unscale_grads(Device::cuda(), gpu, 1.0 / 1024, fg);
  EXPECT_EQ(fg.to(Device::cpu()).item(), 0.0);
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_EQ(gpu[i].to(Device::cpu()).to_vector<double>(), cpu[i].to_vector<double>()) << i;
  // An inf in the last element of the last tensor.
  Tensor last = gpu.back().to(Device::cpu());
  if (last.dtype() == DType::f32)
    last.data<float>()[last.numel() - 1] = INFINITY;
  else
    last.data<Half>()[last.numel() - 1] = Half(INFINITY);
  gpu.back() = last.to(Device::cuda());
  kernels::unscale_grads(Device::cuda(), gpu, 1.0, fg);
  EXPECT_EQ(fg.to(Device::cpu()).item(), 1.0);
  set_poison_allocations(false);
}

// ---- GradScaler ----

// One parameter of 4 elements with SGD (lr 0.5, no momentum).
struct OneParam {
  Tensor p = from_vector<float>({1.f, 2.f, 3.f, 4.f}, {4}).requires_grad_(true);
  optim::SGD opt{{p}, {.lr = 0.5}};
  void set_grad(std::vector<float> g) { p.set_grad(from_vector<float>(std::move(g), {4})); }
};

// The fused unscale kernel: every gradient times inv_scale (against f64), and found_inf set by
// one inf, -inf or NaN anywhere (in a vector lane or in a loop's tail, in any dtype), left
// alone when all are finite (f32's max and subnormals included).
TEST(GradScaler, UnscaleKernelMultipliesAndFindsEveryNonFinite) {
  const float fmax = std::numeric_limits<float>::max(), tiny = 1e-40f;
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    std::vector<Tensor> grads = {randn({1000}).to(dt), randn({37}).to(dt)};
    std::vector<std::vector<double>> before;
    for (const Tensor& g : grads) before.push_back(g.to_vector<double>());
    Tensor found_inf = zeros({1});
    kernels::unscale_grads(Device::cpu(), grads, 0.25, found_inf);
    EXPECT_EQ(found_inf.item(), 0.0) << dt;
    for (size_t t = 0; t < grads.size(); ++t) {
      std::vector<double> after = grads[t].to_vector<double>();
      for (size_t i = 0; i < after.size(); ++i)  // exact but where f16 goes subnormal (2^-24)
        ASSERT_NEAR(after[i], before[t][i] * 0.25, 6e-8) << dt << " " << i;
    }
    if (dt == DType::f32) {
      std::vector<Tensor> big = {from_vector<float>({fmax, -fmax, tiny, -tiny, 0.0f})};
      kernels::unscale_grads(Device::cpu(), big, 1.0, found_inf);
      EXPECT_EQ(found_inf.item(), 0.0);
    }
    for (double bad : {double(INFINITY), -double(INFINITY), double(NAN)}) {
      for (int64_t at : {0, 9, 999, 1036}) {  // a lane, a lane, the first tensor's tail, the last
        std::vector<double> v(1037, 1.0);
        v[at] = bad;
        std::vector<Tensor> g = {from_vector<double>({v.begin(), v.begin() + 1000}).to(dt),
                                 from_vector<double>({v.begin() + 1000, v.end()}).to(dt)};
        found_inf = zeros({1});
        kernels::unscale_grads(Device::cpu(), g, 0.5, found_inf);
        EXPECT_EQ(found_inf.item(), 1.0) << dt << " " << bad << " at " << at;
      }
    }
  }
}

TEST(GradScaler, ScalesTheLossInF32) {
  optim::GradScaler scaler;
  EXPECT_EQ(scaler.get_scale(), 65536.0);
  Tensor loss = scalar_tensor(3.0, {DType::f16});
  Tensor scaled = scaler.scale(loss);
  EXPECT_EQ(scaled.dtype(), DType::f32);  // 3 * 65536 overflows f16
  EXPECT_EQ(scaled.item(), 3.0 * 65536.0);
}

TEST(GradScaler, StepUnscalesThenStepsAndGrowsAfterTheInterval) {
  OneParam m;
  optim::GradScaler scaler({.init_scale = 8.0, .growth_interval = 2});
  m.set_grad({8.f, 16.f, -8.f, 0.f});  // 8 * (1, 2, -1, 0)
  EXPECT_TRUE(scaler.step(m.opt));
  // p - lr * g / S = p - 0.5 * (1, 2, -1, 0)
  EXPECT_EQ(m.p.to_vector<float>(), (std::vector<float>{0.5f, 1.f, 3.5f, 4.f}));
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 8.0);
  EXPECT_EQ(scaler.growth_tracker(), 1);
  m.set_grad({0.f, 0.f, 0.f, 8.f});
  EXPECT_TRUE(scaler.step(m.opt));
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 16.0);  // two good steps: grown
  EXPECT_EQ(scaler.growth_tracker(), 0);
  EXPECT_EQ(m.p.to_vector<float>(), (std::vector<float>{0.5f, 1.f, 3.5f, 3.5f}));
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(GradScaler, AnInfSkipsTheStepLeavesEverythingAndBacksOff) {
  Tensor p = from_vector<float>({1.f, -1.f, 2.f}, {3}).requires_grad_(true);
  optim::Adam opt({p}, {.lr = 0.1});
  optim::GradScaler scaler({.init_scale = 1024.0, .growth_interval = 3});
  p.set_grad(from_vector<float>({1024.f, 512.f, -1024.f}, {3}));
  ASSERT_TRUE(scaler.step(opt));
  scaler.update();
  std::vector<float> params = p.to_vector<float>();
  State before = opt.state_dict();
  std::vector<float> exp_avg = before.group("0").tensor("exp_avg").to_vector<float>();
  int64_t steps = opt.step_count();

  for (float bad : {INFINITY, NAN}) {
    p.set_grad(from_vector<float>({1.f, bad, 1.f}, {3}));
    EXPECT_FALSE(scaler.step(opt));
    scaler.update();
    EXPECT_EQ(p.to_vector<float>(), params);
    EXPECT_EQ(opt.step_count(), steps);
    EXPECT_EQ(opt.state_dict().group("0").tensor("exp_avg").to_vector<float>(), exp_avg);
  }
  EXPECT_EQ(scaler.get_scale(), 1024.0 * 0.25);  // backed off twice
  EXPECT_EQ(scaler.growth_tracker(), 0);
  EXPECT_EQ(scaler.skipped_steps(), 2);
}

TEST(GradScaler, ScaleFollowsTheHandComputedSchedule) {
  // growth_interval 3, growth 2, backoff 0.5; 'g' a good step, 'i' an inf step.
  OneParam m;
  optim::GradScaler scaler({.init_scale = 4.0, .growth_interval = 3});
  std::string pattern = "gggiggggggi";
  double scale = 4.0;
  int good = 0;
  for (char c : pattern) {
    m.set_grad({1.f, c == 'i' ? INFINITY : 1.f, 1.f, 1.f});
    scaler.step(m.opt);
    scaler.update();
    if (c == 'i') {
      scale *= 0.5;
      good = 0;
    } else if (++good == 3) {
      scale *= 2.0;
      good = 0;
    }
    EXPECT_EQ(scaler.get_scale(), scale);
    EXPECT_EQ(scaler.growth_tracker(), good);
  }
  EXPECT_EQ(scaler.skipped_steps(), 2);
}

TEST(GradScaler, UnscaleBeforeStepDoesNotUnscaleTwice) {
  OneParam m;
  optim::GradScaler scaler({.init_scale = 4.0});
  m.set_grad({4.f, 8.f, 12.f, 16.f});
  scaler.unscale_(m.opt);
  EXPECT_EQ(m.p.grad().to_vector<float>(), (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
  EXPECT_TRUE(scaler.step(m.opt));
  EXPECT_EQ(m.p.to_vector<float>(), (std::vector<float>{0.5f, 1.f, 1.5f, 2.f}));
}

TEST(GradScaler, UnscalesAStridedGradient) {
  OneParam m;
  optim::GradScaler scaler({.init_scale = 2.0});
  Tensor wide = from_vector<float>({2.f, 0.f, 4.f, 0.f, 6.f, 0.f, 8.f, 0.f}, {4, 2});
  m.p.set_grad(wide.select(1, 0));
  ASSERT_FALSE(m.p.grad().is_contiguous());
  scaler.unscale_(m.opt);
  EXPECT_EQ(m.p.grad().to_vector<float>(), (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
}

TEST(GradScaler, MisuseIsRefusedAndChangesNothing) {
  OneParam m;
  optim::GradScaler scaler({.init_scale = 2.0});
  EXPECT_THROW_MSG(scaler.update(), "GradScaler.update", "step(optimizer)");
  m.set_grad({2.f, 2.f, 2.f, 2.f});
  scaler.unscale_(m.opt);
  EXPECT_THROW_MSG(scaler.unscale_(m.opt), "unscale_", "already called");
  EXPECT_EQ(m.p.grad().to_vector<float>(), std::vector<float>(4, 1.f));
  scaler.step(m.opt);
  EXPECT_THROW_MSG(scaler.step(m.opt), "GradScaler.step", "already called");
  scaler.update();

  Tensor h = from_vector<float>({1.f, 2.f}, {2}).to(DType::f16).requires_grad_(true);
  Tensor q = from_vector<float>({1.f, 2.f}, {2}).requires_grad_(true);
  optim::SGD opt({q, h}, {.lr = 0.1});
  q.set_grad(from_vector<float>({2.f, 4.f}, {2}));
  h.set_grad(from_vector<float>({2.f, 4.f}, {2}).to(DType::f16));
  EXPECT_THROW_MSG(scaler.unscale_(opt), "GradScaler.unscale_", "f16 gradient", "f32");
  EXPECT_EQ(q.grad().to_vector<float>(), (std::vector<float>{2.f, 4.f}));  // untouched
  optim::GradScaler fresh;
  EXPECT_THROW(fresh.unscale_(opt), Error);
  EXPECT_THROW_MSG(fresh.update(), "no inf checks were recorded");  // the refusal left none

  EXPECT_THROW_MSG(optim::GradScaler({.init_scale = 0.0}), "init_scale");
  EXPECT_THROW_MSG(optim::GradScaler({.growth_factor = 1.0}), "growth_factor", "> 1");
  EXPECT_THROW_MSG(optim::GradScaler({.backoff_factor = 1.0}), "backoff_factor", "(0, 1)");
  EXPECT_THROW_MSG(optim::GradScaler({.growth_interval = 0}), "growth_interval");
  EXPECT_THROW_MSG(scaler.scale(from_vector<int64_t>({1}, {1})), "GradScaler.scale", "floating");
}

TEST(GradScaler, DisabledPassesThrough) {
  OneParam m;
  optim::GradScaler scaler({.enabled = false});
  Tensor loss = scalar_tensor(2.0);
  EXPECT_EQ(scaler.scale(loss).item(), 2.0);
  EXPECT_EQ(scaler.get_scale(), 1.0);
  m.set_grad({2.f, 2.f, 2.f, 2.f});
  EXPECT_TRUE(scaler.step(m.opt));
  scaler.update();
  EXPECT_EQ(m.p.to_vector<float>(), (std::vector<float>{0.f, 1.f, 2.f, 3.f}));
  EXPECT_TRUE(scaler.state_dict().attrs.empty());
}

TEST(GradScaler, StateDictRoundTripsThroughACheckpointFile) {
  OneParam m;
  optim::GradScaler scaler({.init_scale = 64.0, .growth_factor = 4.0, .growth_interval = 5});
  for (float g : {1.f, INFINITY, 1.f, 1.f}) {
    m.set_grad({g, 1.f, 1.f, 1.f});
    scaler.step(m.opt);
    scaler.update();
  }
  TempDir dir("scaler");
  State root;
  root.groups["precision"] = scaler.state_dict();
  io::save_checkpoint(dir.str("s.ckpt"), root);
  State loaded = io::load_checkpoint(dir.str("s.ckpt"));
  optim::GradScaler other;
  other.load_state_dict(loaded.group("precision"));
  EXPECT_EQ(other.get_scale(), 32.0);
  EXPECT_EQ(other.growth_tracker(), 2);
  EXPECT_EQ(other.skipped_steps(), 1);
  EXPECT_EQ(other.options().growth_factor, 4.0);
  EXPECT_EQ(other.options().growth_interval, 5);

  State bad = scaler.state_dict();
  bad.attrs["growth_tracker"] = int64_t{5};
  EXPECT_THROW_MSG(other.load_state_dict(bad), "growth_tracker 5", "[0, growth_interval = 5)");
  EXPECT_EQ(other.growth_tracker(), 2);  // a refused state loads nothing
  EXPECT_THROW_MSG(other.load_state_dict(State{}), "no \"scale\"");
}

// ---- the Trainer ----

TEST(TrainerPrecision, AcceptsLightningsFlags) {
  struct Case {
    std::string flag, resolved;
  };
  for (const Case& c :
       {Case{"32", "32-true"}, Case{"32-true", "32-true"}, Case{"16-mixed", "16-mixed"},
        Case{"16", "16-mixed"}, Case{"bf16-mixed", "bf16-mixed"}, Case{"bf16", "bf16-mixed"}}) {
    Trainer t({.precision = c.flag});
    EXPECT_EQ(t.precision(), c.resolved) << c.flag;
    EXPECT_EQ(t.grad_scaler() != nullptr, c.resolved == "16-mixed") << c.flag;
  }
  EXPECT_THROW_MSG(Trainer({.precision = "64-true"}), "precision \"64-true\"", "16-mixed",
                   "bf16-mixed");
  EXPECT_THROW_MSG(Trainer({.precision = "fp16"}), "precision \"fp16\"");
}

// Records the dtype of the network's output in each step hook, and the unscaled gradient of
// fc1's weight the on_before_optimizer_step hook sees.
struct DtypeRecorder : TinyModel {
  std::map<std::string, DType> seen;
  std::vector<Tensor> hook_grads;
  Tensor training_step(const Batch& b, int64_t i) override {
    seen["training_step"] = fc1(b[0]).dtype();
    return TinyModel::training_step(b, i);
  }
  void validation_step(const Batch& b, int64_t i) override {
    seen["validation_step"] = fc1(b[0]).dtype();
    TinyModel::validation_step(b, i);
  }
  void test_step(const Batch& b, int64_t i) override {
    seen["test_step"] = fc1(b[0]).dtype();
    TinyModel::test_step(b, i);
  }
  Tensor predict_step(const Batch& b, int64_t i) override {
    seen["predict_step"] = fc1(b[0]).dtype();
    return TinyModel::predict_step(b, i);
  }
  void on_before_optimizer_step(optim::Optimizer&) override {
    hook_grads.push_back(fc1.weight.grad().clone());
  }
  void on_train_batch_end(const Tensor&, const Batch&, int64_t) override {
    // After the optimizer step: the fused step wrote the weight's 16-bit copy (mixed precision).
    copy_current.push_back(autocast::current_weight_copy(fc1.weight).defined());
    seen["on_train_batch_end"] = fc1(from_vector<float>({1, 2, 3, 4}, {1, 4})).dtype();
  }
  std::vector<bool> copy_current;
};

TrainerOptions quiet(TempDir& dir, const std::string& precision) {
  return {.max_epochs = 1,
          .num_sanity_val_steps = 0,
          .default_root_dir = dir.str(),
          .enable_progress_bar = false,
          .enable_checkpointing = false,
          .enable_model_summary = false,
          .logger = false,
          .accelerator = "cpu",  // the CPU's emulation; TrainerCuda tests the GPU
          .precision = precision};
}

TEST(TrainerPrecision, StepHooksRunUnderAutocastAndHooksSeeUnscaledGradients) {
  std::vector<Tensor> grads32;
  for (std::string precision : {"32", "16-mixed", "bf16-mixed"}) {
    SCOPED_TRACE(precision);
    TempDir dir("precision");
    seed_everything(3);
    DtypeRecorder model;
    TinyData data({.n_train = 16, .n_val = 8, .n_test = 8});
    TrainerOptions o = quiet(dir, precision);
    // 2^16 would overflow this model's first f16 gradients (a skipped step, no hook grads
    // to compare); 2^10 does not.
    o.grad_scaler.init_scale = 1024.0;
    Trainer trainer(o);
    trainer.fit(model, data);
    trainer.test(model, data, "", false);
    trainer.predict(model, data);
    DType want = precision == "32"         ? DType::f32
                 : precision == "16-mixed" ? DType::f16
                                           : DType::bf16;
    for (const char* hook : {"training_step", "validation_step", "test_step", "predict_step"})
      EXPECT_EQ(model.seen.at(hook), want) << hook;
    EXPECT_EQ(model.seen.at("on_train_batch_end"), DType::f32);  // outside the step
    ASSERT_FALSE(model.copy_current.empty());
    for (bool current : model.copy_current) EXPECT_EQ(current, precision != "32");
    // The stages' teardown dropped the copies.
    EXPECT_FALSE(autocast::current_weight_copy(model.fc1.weight).defined());
    // The first step's gradient (same initial weights and data in every run) as the hook saw
    // it: unscaled, so within 16-bit rounding of f32's, not 65536 times larger.
    ASSERT_FALSE(model.hook_grads.empty());
    if (precision == "32") {
      grads32 = model.hook_grads;
      continue;
    }
    double eps = precision == "16-mixed" ? 0x1p-10 : 0x1p-7;
    double scale = 0.0;
    for (double v : grads32[0].to_vector<double>()) scale = std::max(scale, std::abs(v));
    EXPECT_LE(max_abs_diff(model.hook_grads[0], grads32[0]), 16 * eps * scale);
  }
}

// A TinyModel whose loss is inf at the given batches (so every gradient is inf or NaN).
struct InfAt : TinyModel {
  std::set<int64_t> bad;
  std::vector<std::vector<float>> params_after;  // fc2.weight after each batch
  Tensor training_step(const Batch& b, int64_t i) override {
    Tensor loss = TinyModel::training_step(b, i);
    return bad.count(i) ? loss * INFINITY : loss;
  }
  void on_train_batch_end(const Tensor&, const Batch&, int64_t) override {
    params_after.push_back(fc2.weight.to_vector<float>());
  }
};

// One epoch of 8 batches in 16-mixed whose loss is inf at batches 2 and 5, the scale starting at
// 256 and growing every 2 good steps in a row. Checks what the scaler did and returns fc2's
// weight after each batch; `trainer_seen` may look at the trainer afterwards.
std::vector<std::vector<float>> fit_through_two_infs(
    TrainerOptions o, const std::function<void(const Trainer&)>& trainer_seen = {}) {
  seed_everything(4);
  InfAt model;
  model.bad = {2, 5};
  TinyData data({.n_train = 64, .n_val = 8});
  o.grad_scaler = {.init_scale = 256.0, .growth_interval = 2};
  Trainer trainer(o);
  trainer.fit(model, data);
  EXPECT_EQ(model.fc2.weight.device().is_cuda(), o.accelerator == "cuda");
  const optim::GradScaler* scaler = trainer.grad_scaler();
  EXPECT_NE(scaler, nullptr);
  if (!scaler) return {};
  EXPECT_EQ(scaler->skipped_steps(), 2);
  // Batches: 0 1 | 2 inf | 3 4 | 5 inf | 6 7 ; growth every 2 good steps in a row.
  // 256 -> 512 (after 1) -> 256 (2) -> 512 (4) -> 256 (5) -> 512 (7)
  EXPECT_EQ(scaler->get_scale(), 512.0);
  EXPECT_EQ(trainer.global_step(), 8);  // skipped steps count, as Lightning's
  const std::vector<std::vector<float>>& after = model.params_after;
  EXPECT_EQ(after.size(), 8u);
  if (after.size() != 8) return after;
  EXPECT_EQ(after[2], after[1]);
  EXPECT_EQ(after[5], after[4]);
  EXPECT_NE(after[3], after[2]);
  if (trainer_seen) trainer_seen(trainer);
  return after;
}

TEST(TrainerPrecision, AnInfLossSkipsItsStepCountsAndLogsIt) {
  TempDir dir("skip");
  TrainerOptions o = quiet(dir, "16-mixed");
  o.logger = true;
  o.log_every_n_steps = 1;
  std::string log_dir;
  fit_through_two_infs(o, [&](const Trainer& t) { log_dir = t.log_dir(); });
  ASSERT_FALSE(log_dir.empty());
  // The CSV rows carry the scale and the skipped-step count.
  std::ifstream csv(log_dir + "/metrics.csv");
  std::string header, line, last;
  std::getline(csv, header);
  EXPECT_NE(header.find("grad_scaler/scale"), std::string::npos) << header;
  EXPECT_NE(header.find("grad_scaler/skipped_steps"), std::string::npos) << header;
  int rows_with_two = 0;
  std::vector<std::string> names;
  std::stringstream hs(header);
  for (std::string n; std::getline(hs, n, ',');) names.push_back(n);
  size_t col = std::find(names.begin(), names.end(), "grad_scaler/skipped_steps") - names.begin();
  while (std::getline(csv, line)) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    if (col < cells.size() && !cells[col].empty() && std::stod(cells[col]) == 2.0) ++rows_with_two;
  }
  EXPECT_EQ(rows_with_two, 3);  // after batches 5, 6, 7
}

// 16-mixed on the GPU: f16 tensor-core products, the fused unscale and inf check, the scaler's
// found_inf read back from the device. The same run as on the CPU (its emulation, above) must
// skip the same steps, move the scale the same way and end at the same weights within f16
// rounding (tensor cores and the CPU sum the f32 products in different orders).
TEST(TrainerPrecisionCuda, SixteenMixedSkipsInfStepsAsOnTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  std::map<std::string, std::vector<std::vector<float>>> params;
  for (std::string accelerator : {"cpu", "cuda"}) {
    SCOPED_TRACE(accelerator);
    TempDir dir("skip_cuda");
    TrainerOptions o = quiet(dir, "16-mixed");
    o.accelerator = accelerator;
    params[accelerator] = fit_through_two_infs(o);
    ASSERT_EQ(params[accelerator].size(), 8u);
  }
  const std::vector<float>&cpu = params["cpu"].back(), &gpu = params["cuda"].back();
  float scale = 0;
  for (float v : cpu) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 16 * 0x1p-10 * scale) << i;
}

TEST(TrainerPrecision, BfloatMixedHasNoScalerAndTracksF32) {
  std::map<std::string, std::vector<float>> losses;
  for (std::string precision : {"32", "bf16-mixed"}) {
    TempDir dir("bf16");
    seed_everything(5);
    TinyModel model({.lr = 0.01});
    TinyData data({.n_train = 64});
    TrainerOptions o = quiet(dir, precision);
    o.max_epochs = 5;
    Trainer trainer(o);
    trainer.fit(model, data);
    EXPECT_EQ(trainer.grad_scaler(), nullptr);
    losses[precision] = model.train_losses;
  }
  const std::vector<float>&f32 = losses["32"], &bf16 = losses["bf16-mixed"];
  ASSERT_EQ(bf16.size(), 40u);
  // Same data and initial weights: the first steps' losses differ by bf16 rounding only.
  for (size_t i = 0; i < 10; ++i) EXPECT_NEAR(bf16[i], f32[i], 0.05 * f32[i]) << "step " << i;
  auto mean = [](const std::vector<float>& v, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += v[i];
    return s / static_cast<double>(to - from);
  };
  EXPECT_LT(mean(bf16, 32, 40), 0.2 * mean(bf16, 0, 8));
}

TEST(TrainerPrecision, CheckpointsKeepTheScalerAndResumeContinuesIt) {
  TempDir dir("resume");
  TinyData data({.n_train = 64, .n_val = 8});
  // Uninterrupted: 2 epochs of 8 steps.
  seed_everything(6);
  InfAt full;
  full.bad = {1, 9};
  TrainerOptions o = quiet(dir, "16-mixed");
  o.max_epochs = 2;
  o.deterministic = true;
  o.grad_scaler = {.init_scale = 128.0, .growth_interval = 3};
  Trainer a(o);
  a.fit(full, data);

  // Interrupted after epoch 1, then resumed from its checkpoint.
  seed_everything(6);
  InfAt first;
  first.bad = {1, 9};
  o.max_epochs = 1;
  Trainer b(o);
  b.fit(first, data);
  b.save_checkpoint(dir.str("mid.ckpt"));
  State saved = io::load_checkpoint(dir.str("mid.ckpt"));
  ASSERT_TRUE(saved.has_group("precision"));
  EXPECT_EQ(saved.group("precision").get_string("precision"), "16-mixed");
  EXPECT_EQ(saved.group("precision").get_double("scale"), b.grad_scaler()->get_scale());

  InfAt second;
  second.bad = {1, 9};
  o.max_epochs = 2;
  Trainer c(o);
  c.fit(second, data, dir.str("mid.ckpt"));
  EXPECT_EQ(c.grad_scaler()->get_scale(), a.grad_scaler()->get_scale());
  EXPECT_EQ(c.grad_scaler()->growth_tracker(), a.grad_scaler()->growth_tracker());
  EXPECT_EQ(c.grad_scaler()->skipped_steps(), a.grad_scaler()->skipped_steps());
  ASSERT_EQ(second.params_after.size(), 8u);
  EXPECT_EQ(second.params_after.back(), full.params_after.back());  // bit-identical
}

// The bar: a Fashion-MNIST MLP trained in 16-mixed and in bf16-mixed reaches the f32
// accuracy within 0.5 points (CPU: 16-bit storage and rounding, f32 compute).
TEST(TrainerPrecision, FashionMnistMixedPrecisionMatchesF32Accuracy) {
  io::FashionMNISTOptions data_options{.batch_size = 128};
  if (!std::filesystem::exists(data_options.data_dir))
    GTEST_SKIP() << "no Fashion-MNIST at " << data_options.data_dir
                 << " (apt-get install dataset-fashion-mnist)";
  std::map<std::string, double> acc;
  for (std::string precision : {"32", "16-mixed", "bf16-mixed"}) {
    TempDir dir("fashion");
    seed_everything(42);
    io::FashionMNIST data(data_options);
    using namespace nn;
    fashion_mnist::Classifier model(
        {std::make_shared<Flatten>(), std::make_shared<Linear>(784, 256), std::make_shared<ReLU>(),
         std::make_shared<Linear>(256, 10)},
        1e-3);
    TrainerOptions o = quiet(dir, precision);
    o.max_epochs = 3;
    o.limit_val_batches = 0;
    Trainer trainer(o);
    trainer.fit(model, data);
    acc[precision] = trainer.test(model, data, "", false).at("test_acc");
    std::printf("precision %s: test accuracy %.4f\n", precision.c_str(), acc[precision]);
  }
  EXPECT_GT(acc["32"], 0.85);
  EXPECT_NEAR(acc["16-mixed"], acc["32"], 0.005);
  EXPECT_NEAR(acc["bf16-mixed"], acc["32"], 0.005);
}

}  // namespace
}  // namespace lumen
