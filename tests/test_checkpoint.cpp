// Activation checkpointing: the same values and gradients as running the function plainly (bit
// for bit, dropout included), a numerical gradient check, less memory kept after the forward,
// and the error paths.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) == 0;
}

// Linear -> GELU -> Dropout -> Linear, run plainly or checkpointed from the same generator
// state: outputs, input and parameter gradients, and the generator's state afterwards agree
// bit for bit. Without preserve_rng_state the recomputation draws other masks, and the
// gradients differ.
TEST(Checkpoint, GradientsEqualThePlainRunBitForBit) {
  manual_seed(3);
  nn::Linear a(8, 16), b(16, 8);
  nn::Dropout drop(0.3);
  auto block = [&](const Tensor& h) { return b(drop(gelu(a(h)))); };
  Tensor x0 = randn({5, 8});
  struct Run {
    Tensor y, gx, ga, gb;
    uint64_t offset;
  };
  auto run = [&](int mode) {  // 0 plain, 1 checkpointed, 2 checkpointed without the RNG state
    a.zero_grad();
    b.zero_grad();
    Tensor x = x0.clone().requires_grad_();
    manual_seed(11);
    Tensor y = mode == 0 ? block(x) : checkpoint(block, x, {.preserve_rng_state = mode == 1});
    (y * y).sum().backward();
    return Run{y.detach(), x.grad(), a.weight.grad(), b.weight.grad(),
               default_generator().offset()};
  };
  Run plain = run(0), ckpt = run(1), unseeded = run(2);
  EXPECT_TRUE(same_bits(ckpt.y, plain.y));
  EXPECT_TRUE(same_bits(ckpt.gx, plain.gx));
  EXPECT_TRUE(same_bits(ckpt.ga, plain.ga));
  EXPECT_TRUE(same_bits(ckpt.gb, plain.gb));
  EXPECT_EQ(ckpt.offset, plain.offset);  // the recomputation's draws are put back
  EXPECT_TRUE(same_bits(unseeded.y, plain.y));
  EXPECT_FALSE(same_bits(unseeded.ga, plain.ga));
}

TEST(Checkpoint, NumericalGradient) {
  Generator gen(5);
  Tensor x = randn({3, 4}, {.dtype = DType::f64}, &gen).requires_grad_();
  Tensor w = randn({4, 2}, {.dtype = DType::f64}, &gen).requires_grad_();
  auto fn = [](const std::vector<Tensor>& v) {
    return checkpoint(
        [](const std::vector<Tensor>& in) { return (in[0].matmul(in[1])).tanh() * in[0].sum(); },
        v);
  };
  autograd::GradcheckResult r = autograd::gradcheck(fn, {x, w});
  EXPECT_TRUE(r.ok) << r.message;
}

// Four tanh in a row each keep their output for the backward; checkpointed, only the result
// outlives the forward, and no more than two of them are alive at once while it runs.
TEST(Checkpoint, KeepsOnlyTheOutputAfterTheForward) {
  const int64_t n = 1 << 18;
  const int64_t bytes = n * 4;
  Tensor x = randn({n}).requires_grad_();
  auto chain = [](const Tensor& h) {  // each step drops the previous one where nothing saved it
    Tensor t = h.tanh();
    t = t.tanh();
    t = t.tanh();
    return t.tanh();
  };
  auto kept_by = [&](bool ckpt) {
    x.set_grad(Tensor());
    const int64_t before = memory_stats(Device::cpu()).allocated;
    reset_peak_memory_stats(Device::cpu());
    Tensor y = ckpt ? checkpoint(chain, x) : chain(x);
    const int64_t kept = memory_stats(Device::cpu()).allocated - before;
    const int64_t peak = memory_stats(Device::cpu()).peak_allocated - before;
    y.sum().backward();
    return std::tuple{kept, peak, x.grad()};
  };
  auto [plain, plain_peak, plain_grad] = kept_by(false);
  auto [ckpt, ckpt_peak, ckpt_grad] = kept_by(true);
  EXPECT_GE(plain, 4 * bytes);
  EXPECT_LT(ckpt, 2 * bytes);
  EXPECT_GE(plain_peak, 4 * bytes);
  EXPECT_LT(ckpt_peak, 3 * bytes);
  EXPECT_TRUE(same_bits(ckpt_grad, plain_grad));
}

// The parameters inside get their gradients even when the input needs none (the first layer on
// the data); without anything that requires grad, or under NoGradGuard, nothing is recorded.
TEST(Checkpoint, ParametersGetGradientsWhenTheInputNeedsNone) {
  manual_seed(4);
  nn::Linear a(3, 2);
  Tensor x = randn({4, 3});
  F::mse_loss(a(x), zeros({4, 2})).backward();
  Tensor plain = a.weight.grad().clone();
  a.zero_grad();
  F::mse_loss(checkpoint([&](const Tensor& h) { return a(h); }, x), zeros({4, 2})).backward();
  EXPECT_TRUE(same_bits(a.weight.grad(), plain));
  // Nothing inside or outside requires grad: neither does the result (so a Trainer still sees
  // a loss that trains nothing).
  for (Tensor p : a.parameters()) p.requires_grad_(false);
  EXPECT_FALSE(checkpoint([&](const Tensor& h) { return a(h); }, x).requires_grad());
  for (Tensor p : a.parameters()) p.requires_grad_(true);
  NoGradGuard no_grad;
  EXPECT_FALSE(checkpoint([&](const Tensor& h) { return a(h); }, x).requires_grad());
}

// Under autocast the recomputation runs in the forward's 16-bit dtype too.
TEST(Checkpoint, RecomputesUnderTheForwardsAutocast) {
  manual_seed(6);
  nn::Linear a(8, 8);
  Tensor x0 = randn({4, 8});
  auto grads = [&](bool ckpt) {
    a.zero_grad();
    Tensor x = x0.clone().requires_grad_();
    Tensor y;
    {
      AutocastGuard autocast(DType::bf16);
      y = ckpt ? checkpoint([&](const Tensor& h) { return a(h).relu(); }, x) : a(x).relu();
    }
    y.to(DType::f32).sum().backward();
    return std::pair{x.grad(), a.weight.grad()};
  };
  auto plain = grads(false), ckpt = grads(true);
  EXPECT_TRUE(same_bits(ckpt.first, plain.first));
  EXPECT_TRUE(same_bits(ckpt.second, plain.second));
}

TEST(Checkpoint, Errors) {
  Tensor x = randn({2, 3}).requires_grad_();
  EXPECT_THROW_MSG(checkpoint(std::function<Tensor(const Tensor&)>(), x), "checkpoint",
                   "function is empty");
  EXPECT_THROW_MSG(checkpoint([](const Tensor&) { return Tensor(); }, x), "checkpoint",
                   "undefined tensor");
  int calls = 0;
  Tensor y = checkpoint([&](const Tensor& h) { return ++calls == 1 ? h * 2.0 : h.sum(); }, x);
  EXPECT_THROW_MSG(y.sum().backward(), "checkpoint", "shape []", "shape [2, 3]",
                   "same thing each time");
}

}  // namespace
}  // namespace lumen::testing
