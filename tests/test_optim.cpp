// Optimizers and gradient clipping: each optimizer's first steps against an f64 reference of
// the published algorithm written here with plain loops, variants (weight decay, nesterov,
// amsgrad, maximize, per-group options), convergence, argument errors, state_dict round trips
// that continue bit-identically, and clip_grad_norm_ / clip_grad_value_ against hand values.
#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <limits>
#include <type_traits>

#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "kernels/optim.h"
#include "lumen/lumen.h"
#include "tests/op_harness.h"
#include "trainer/lightning_module.h"

namespace lumen {
namespace {

using optim::Adam;
using optim::AdamW;
using optim::ParamGroup;
using optim::SGD;
using Vec = std::vector<double>;

// The test problem: f(w) = 1/2 sum_i a_i (w_i - c_i)^2, gradient a_i (w_i - c_i).
const Vec kA = {1.0, 2.0, 0.5, 3.0, 1.5, 0.25};
const Vec kC = {0.3, -1.2, 2.0, 0.7, -0.4, 1.1};
const Vec kW0 = {1.0, 0.5, -0.5, 0.0, 2.0, -1.0};

Vec quadratic_grad(const Vec& w) {
  Vec g(w.size());
  for (size_t i = 0; i < w.size(); ++i) g[i] = kA[i] * (w[i] - kC[i]);
  return g;
}

// The same loss on a Lumen parameter of shape [2, 3] (any strides), gradient by autograd.
void quadratic_backward(const Tensor& w) {
  Tensor a = from_vector(kA, {2, 3}).to(w.dtype());
  Tensor c = from_vector(kC, {2, 3}).to(w.dtype());
  Tensor d = w - c;
  (sum(a * d * d) * 0.5).backward();
}

Tensor make_param(DType dtype = DType::f64, const Vec& values = kW0) {
  Tensor w = from_vector(values, {2, 3}).to(dtype);
  w.requires_grad_();
  return w;
}

// A non-contiguous leaf of shape [2, 3] (a transposed [3, 2] buffer) holding `values`: the
// optimizers update it with tensor ops instead of the fused kernel.
Tensor make_strided_param(const Vec& values = kW0) {
  Vec transposed(6);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) transposed[c * 2 + r] = values[r * 3 + c];
  Tensor w = from_vector(transposed, {3, 2}).t().detach();
  w.requires_grad_();
  return w;
}

void expect_near_vec(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i])))
        << what << " element " << i;
}

// ---- f64 references: torch.optim's algorithms, written from the documentation ----------

struct SgdRef {
  double lr, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  Vec buf = {};
  int t = 0;
  void step(Vec& w, Vec g) {
    ++t;
    for (size_t i = 0; i < w.size(); ++i) {
      double d = maximize ? -g[i] : g[i];
      d += weight_decay * w[i];
      if (momentum != 0) {
        if (t == 1) {
          buf.resize(w.size());
          buf[i] = d;
        } else {
          buf[i] = momentum * buf[i] + (1 - dampening) * d;
        }
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      w[i] -= lr * d;
    }
  }
};

// Adam as published in torch.optim.Adam's documentation with AMSGrad as PyTorch computes it
// (torch/optim/adam.py): the running maximum is kept of the raw second moment v, and divided
// by the current bias correction.
struct AdamRef {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool amsgrad = false, decoupled = false, maximize = false;
  Vec m = {}, v = {}, vmax = {};
  int t = 0;
  void step(Vec& w, Vec g) {
    ++t;
    m.resize(w.size(), 0.0);
    v.resize(w.size(), 0.0);
    vmax.resize(w.size(), 0.0);
    const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
    for (size_t i = 0; i < w.size(); ++i) {
      double gi = maximize ? -g[i] : g[i];
      if (decoupled)
        w[i] *= 1 - lr * weight_decay;
      else
        gi += weight_decay * w[i];
      m[i] = beta1 * m[i] + (1 - beta1) * gi;
      v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
      double v_used = v[i];
      if (amsgrad) {
        vmax[i] = std::max(vmax[i], v[i]);
        v_used = vmax[i];
      }
      const double m_hat = m[i] / bc1, v_hat = v_used / bc2;
      w[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

// Runs `steps` steps of `opt` on parameter `w` and of `ref` on its copy, comparing after each.
template <class Ref>
void compare_with_reference(optim::Optimizer& opt, const Tensor& w, Ref ref, int steps,
                            double tol) {
  Vec w_ref = w.to_vector<double>();
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    quadratic_backward(w);
    opt.step();
    ref.step(w_ref, quadratic_grad(w_ref));
    expect_near_vec(w.to_vector<double>(), w_ref, tol, "step " + std::to_string(s + 1));
  }
}

// ---- SGD ----------------------------------------------------------------------------------

TEST(OptimSGD, PlainMatchesReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = make_param(dt);
    SGD opt({w}, {.lr = 0.1});
    compare_with_reference(opt, w, SgdRef{.lr = 0.1}, 5, dt == DType::f64 ? 1e-14 : 1e-6);
  }
}

TEST(OptimSGD, MomentumDampeningWeightDecayMatchReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = make_param(dt);
    SGD opt({w}, {.lr = 0.05, .momentum = 0.9, .dampening = 0.2, .weight_decay = 0.01});
    compare_with_reference(
        opt, w, SgdRef{.lr = 0.05, .momentum = 0.9, .dampening = 0.2, .weight_decay = 0.01}, 6,
        dt == DType::f64 ? 1e-13 : 1e-5);
  }
}

TEST(OptimSGD, NesterovMatchesReference) {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true});
  compare_with_reference(
      opt, w, SgdRef{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true}, 6, 1e-13);
}

TEST(OptimSGD, MomentumBufferStartsAtFirstGradient) {
  // With the buffer initialised to d_1 (not zero), the first step is p - lr d_1 whatever
  // the momentum and dampening.
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  quadratic_backward(w);
  opt.step();
  Vec g = quadratic_grad(kW0), want(6);
  for (int i = 0; i < 6; ++i) want[i] = kW0[i] - 0.1 * g[i];
  expect_near_vec(w.to_vector<double>(), want, 1e-15, "first step");
  Tensor buf = opt.state_dict().group("0").tensor("momentum_buffer");
  expect_near_vec(buf.to_vector<double>(), g, 1e-15, "buffer");
}

TEST(OptimSGD, MaximizeAscends) {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1, .momentum = 0.5, .maximize = true});
  compare_with_reference(opt, w, SgdRef{.lr = 0.1, .momentum = 0.5, .maximize = true}, 4, 1e-13);
}

TEST(OptimSGD, StridedParameterUsesTensorOpsAndMatchesReference) {
  Tensor w = make_strided_param();
  ASSERT_FALSE(w.is_contiguous());
  SGD opt({w}, {.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  compare_with_reference(
      opt, w, SgdRef{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}, 5,
      1e-13);
}

TEST(OptimSGD, PerGroupOptionsOverrideDefaults) {
  Tensor w1 = make_param(), w2 = make_param();
  SGD opt(std::vector<ParamGroup>{{{w1}, {}}, {{w2}, {{"lr", 0.01}, {"momentum", 0.5}}}},
          {.lr = 0.1});
  EXPECT_EQ(opt.param_groups()[0].lr(), 0.1);
  EXPECT_EQ(opt.param_groups()[0].options.at("momentum"), 0.0);
  EXPECT_EQ(opt.param_groups()[1].lr(), 0.01);
  SgdRef r1{.lr = 0.1}, r2{.lr = 0.01, .momentum = 0.5};
  Vec v1 = kW0, v2 = kW0;
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    quadratic_backward(w1);
    quadratic_backward(w2);
    opt.step();
    r1.step(v1, quadratic_grad(v1));
    r2.step(v2, quadratic_grad(v2));
  }
  expect_near_vec(w1.to_vector<double>(), v1, 1e-14, "group 0");
  expect_near_vec(w2.to_vector<double>(), v2, 1e-14, "group 1");
}

TEST(OptimSGD, SkipsParametersWithoutGradient) {
  Tensor w = make_param(), frozen = make_param();
  SGD opt({w, frozen}, {.lr = 0.1, .momentum = 0.9});
  quadratic_backward(w);
  opt.step();
  EXPECT_EQ(frozen.to_vector<double>(), kW0);
  EXPECT_NE(w.to_vector<double>(), kW0);
  State s = opt.state_dict();
  EXPECT_TRUE(s.has_group("0"));
  EXPECT_FALSE(s.has_group("1"));  // no momentum buffer for a parameter never stepped
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

TEST(OptimSGD, MomentumConvergesOnQuadratic) {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1, .momentum = 0.9});
  // The error contracts by about sqrt(momentum) ~ 0.95 per step.
  for (int s = 0; s < 700; ++s) {
    opt.zero_grad();
    quadratic_backward(w);
    opt.step();
  }
  expect_near_vec(w.to_vector<double>(), kC, 1e-10, "minimum");
  EXPECT_EQ(opt.step_count(), 700);
}

// ---- Adam / AdamW -------------------------------------------------------------------------

TEST(OptimAdam, MatchesReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = make_param(dt);
    Adam opt({w}, {.lr = 0.01});
    compare_with_reference(opt, w, AdamRef{.lr = 0.01}, 6, dt == DType::f64 ? 1e-13 : 1e-6);
  }
}

TEST(OptimAdam, L2WeightDecayAndBetasMatchReference) {
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.02, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1});
  compare_with_reference(
      opt, w, AdamRef{.lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1}, 6,
      1e-13);
}

TEST(OptimAdam, AmsgradMatchesReferenceAndDiffersFromAdam) {
  // beta2 = 0.5 and gradients that shrink as w approaches the minimum make v fall, so the
  // running maximum matters.
  AdamRef ref{.lr = 0.3, .beta1 = 0.5, .beta2 = 0.5, .amsgrad = true};
  Tensor w = make_param(), w_plain = make_param();
  Adam opt({w}, {.lr = 0.3, .betas = {0.5, 0.5}, .amsgrad = true});
  Adam plain({w_plain}, {.lr = 0.3, .betas = {0.5, 0.5}});
  compare_with_reference(opt, w, ref, 8, 1e-13);
  compare_with_reference(plain, w_plain, AdamRef{.lr = 0.3, .beta1 = 0.5, .beta2 = 0.5}, 8, 1e-13);
  double diff = 0;
  Vec a = w.to_vector<double>(), b = w_plain.to_vector<double>();
  for (int i = 0; i < 6; ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  EXPECT_GT(diff, 1e-3);
  EXPECT_TRUE(opt.state_dict().group("0").has_tensor("max_exp_avg_sq"));
}

TEST(OptimAdam, StridedParameterUsesTensorOpsAndMatchesReference) {
  Tensor w = make_strided_param(), w2 = make_strided_param();
  Adam opt({w}, {.lr = 0.05, .weight_decay = 0.05, .amsgrad = true});
  compare_with_reference(opt, w, AdamRef{.lr = 0.05, .weight_decay = 0.05, .amsgrad = true}, 6,
                         1e-13);
  AdamW optw({w2}, {.lr = 0.05, .weight_decay = 0.2});
  compare_with_reference(optw, w2, AdamRef{.lr = 0.05, .weight_decay = 0.2, .decoupled = true}, 6,
                         1e-13);
}

TEST(OptimAdam, MaximizeMatchesReference) {
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.01, .maximize = true});
  compare_with_reference(opt, w, AdamRef{.lr = 0.01, .maximize = true}, 4, 1e-13);
}

TEST(OptimAdam, PerParameterStepCounts) {
  Tensor w1 = make_param(), w2 = make_param();
  Adam opt({w1, w2}, {.lr = 0.01});
  quadratic_backward(w1);
  quadratic_backward(w2);
  opt.step();
  w2.set_grad(Tensor());
  opt.step();  // w2 has no gradient: its step count stays at 1, as PyTorch's per-param "step"
  State s = opt.state_dict();
  EXPECT_EQ(s.group("0").tensor("step").item(), 2.0);
  EXPECT_EQ(s.group("1").tensor("step").item(), 1.0);
  EXPECT_EQ(s.get_int("step"), 2);
}

// One fused call updates every parameter that shares a device, dtype and step count; those
// whose step counts differ (a parameter that missed a step) go in separate calls, and the
// f32 and f64 parameters of one optimizer too. Each must end as if it had its own optimizer.
TEST(OptimFused, BatchesSplitByStepCountAndDtypeMatchSeparateOptimizers) {
  auto run = [](bool together, int kind) {
    std::vector<Tensor> ws = {make_param(), make_param(DType::f64, kA), make_param(DType::f32),
                              make_strided_param()};
    std::vector<std::unique_ptr<optim::Optimizer>> opts;
    auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<optim::Optimizer> {
      if (kind == 0) return std::make_unique<Adam>(ps, optim::AdamOptions{.lr = 0.05});
      return std::make_unique<SGD>(ps, optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
    };
    if (together)
      opts.push_back(make(ws));
    else
      for (const Tensor& w : ws) opts.push_back(make({w}));
    for (int step = 0; step < 4; ++step) {
      for (auto& o : opts) o->zero_grad();
      for (size_t i = 0; i < ws.size(); ++i) {
        if (i == 1 && step == 0) continue;  // w1 misses the first step: its state starts later
        quadratic_backward(ws[i]);
      }
      for (auto& o : opts) o->step();
    }
    std::vector<Vec> out;
    for (const Tensor& w : ws) out.push_back(w.to_vector<double>());
    return out;
  };
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<Vec> a = run(true, kind), b = run(false, kind);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i], b[i]) << (kind == 0 ? "Adam" : "SGD") << " parameter " << i;
      EXPECT_NE(a[i], i == 1 ? kA : kW0);  // every one moved
    }
  }
}

TEST(OptimAdam, ConvergesOnQuadratic) {
  Tensor w = make_param(DType::f32);
  Adam opt({w}, {.lr = 0.05});
  for (int s = 0; s < 600; ++s) {
    opt.zero_grad();
    quadratic_backward(w);
    opt.step();
  }
  expect_near_vec(w.to_vector<double>(), kC, 2e-3, "minimum");
}

TEST(OptimAdamW, DecoupledWeightDecayMatchesReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor w = make_param(dt);
    AdamW opt({w}, {.lr = 0.01});  // default weight_decay 1e-2
    EXPECT_EQ(opt.type_name(), "AdamW");
    EXPECT_EQ(opt.param_groups()[0].options.at("weight_decay"), 1e-2);
    compare_with_reference(opt, w, AdamRef{.lr = 0.01, .weight_decay = 1e-2, .decoupled = true}, 6,
                           dt == DType::f64 ? 1e-13 : 1e-6);
  }
}

TEST(OptimAdamW, DecayIsNotAdam) {
  // With the same weight decay, Adam (L2 in the gradient) and AdamW (decay of p) differ.
  Tensor w1 = make_param(), w2 = make_param();
  Adam adam({w1}, {.lr = 0.01, .weight_decay = 0.5});
  AdamW adamw({w2}, {.lr = 0.01, .weight_decay = 0.5});
  compare_with_reference(adam, w1, AdamRef{.lr = 0.01, .weight_decay = 0.5}, 3, 1e-13);
  compare_with_reference(adamw, w2, AdamRef{.lr = 0.01, .weight_decay = 0.5, .decoupled = true}, 3,
                         1e-13);
  EXPECT_NE(w1.to_vector<double>(), w2.to_vector<double>());
}

TEST(OptimAdamW, AmsgradWithDecoupledDecayMatchesReference) {
  Tensor w = make_param();
  AdamW opt({w}, {.lr = 0.2, .betas = {0.6, 0.5}, .weight_decay = 0.1, .amsgrad = true});
  compare_with_reference(opt, w,
                         AdamRef{.lr = 0.2,
                                 .beta1 = 0.6,
                                 .beta2 = 0.5,
                                 .weight_decay = 0.1,
                                 .amsgrad = true,
                                 .decoupled = true},
                         8, 1e-13);
}

// ---- construction ---------------------------------------------------------------------------

TEST(OptimErrors, BadHyperParameters) {
  Tensor w = make_param();
  EXPECT_THROW_MSG(SGD({w}, {.lr = -0.1}), "SGD", "invalid learning rate -0.1");
  EXPECT_THROW_MSG(SGD({w}, {.lr = 0.1, .momentum = -1}), "invalid momentum");
  EXPECT_THROW_MSG(SGD({w}, {.lr = 0.1, .weight_decay = -1}), "invalid weight_decay");
  EXPECT_THROW_MSG(SGD({w}, {.lr = 0.1, .nesterov = true}),
                   "Nesterov momentum requires a momentum and zero dampening");
  EXPECT_THROW_MSG(SGD({w}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                   "Nesterov", "dampening 0.1");
  EXPECT_THROW_MSG(Adam({w}, {.lr = -1}), "Adam", "invalid learning rate");
  EXPECT_THROW_MSG(Adam({w}, {.betas = {1.0, 0.999}}), "invalid beta parameter at index 0: 1");
  EXPECT_THROW_MSG(Adam({w}, {.betas = {0.9, -0.1}}), "invalid beta parameter at index 1");
  EXPECT_THROW_MSG(Adam({w}, {.eps = 0}), "invalid epsilon value 0");
  EXPECT_THROW_MSG(AdamW({w}, {.weight_decay = -0.1}), "AdamW", "invalid weight_decay");
  EXPECT_THROW_MSG(SGD(std::vector<ParamGroup>{{{w}, {{"lr", -2.0}}}}), "learning rate -2",
                   "group 0");
}

TEST(OptimErrors, BadParameters) {
  Tensor w = make_param();
  EXPECT_THROW_MSG(SGD(std::vector<Tensor>{}), "SGD: got an empty parameter list");
  EXPECT_THROW_MSG(Adam({w * 2.0}), "non-leaf");
  EXPECT_THROW_MSG(SGD({arange(4.0)}), "floating", "i64");
  EXPECT_THROW_MSG(SGD({w, w}), "more than once");
  EXPECT_THROW_MSG(SGD({Tensor()}), "undefined");
  EXPECT_THROW_MSG(SGD(std::vector<ParamGroup>{{{w}, {{"momentun", 0.9}}}}),
                   "unknown option 'momentun'", "momentum");
}

TEST(OptimMove, OptimizersMoveButDoNotCopy) {
  static_assert(std::is_move_constructible_v<AdamW> && std::is_move_constructible_v<SGD>);
  static_assert(!std::is_copy_constructible_v<Adam> && !std::is_copy_constructible_v<SGD>);
  Tensor w = make_param();
  OptimizerConfig config = AdamW({w}, {.lr = 0.01});  // the trainer's make_shared(move)
  ASSERT_EQ(config.optimizers.size(), 1u);
  EXPECT_EQ(config.optimizers[0]->type_name(), "AdamW");
  quadratic_backward(w);
  config.optimizers[0]->step();
  Vec ref = kW0;
  AdamRef{.lr = 0.01, .weight_decay = 1e-2, .decoupled = true}.step(ref, quadratic_grad(ref));
  expect_near_vec(w.to_vector<double>(), ref, 1e-13, "moved optimizer");
}

// ---- state_dict ----------------------------------------------------------------------------

// Runs 3 steps on `a`, loads its state into `b` (a fresh optimizer over clones of the
// parameters, built by make_b), then 2 more steps on both: the parameters stay bit-identical.
// With through_file the state goes through an HDF5 checkpoint file.
template <class MakeOpt>
void expect_resume_bit_identical(DType dt, MakeOpt make_opt, bool through_file = false) {
  Tensor w1 = make_param(dt), w2 = make_param(dt, {0.1, 0.2, 0.3, -0.4, -0.5, 0.6});
  auto a = make_opt(std::vector<Tensor>{w1, w2});
  auto run = [](optim::Optimizer& opt, const std::vector<Tensor>& ws) {
    opt.zero_grad();
    for (const Tensor& w : ws) quadratic_backward(w);
    opt.step();
  };
  for (int s = 0; s < 3; ++s) run(a, {w1, w2});
  State state = a.state_dict();
  if (through_file) {
    std::string path = (std::filesystem::temp_directory_path() /
                        ("lumen_optim_" + std::to_string(::getpid()) + ".h5"))
                           .string();
    io::save_state(path, state);
    state = io::load_state(path);
    std::filesystem::remove(path);
  }
  Tensor c1 = w1.detach().clone(), c2 = w2.detach().clone();
  c1.requires_grad_();
  c2.requires_grad_();
  auto b = make_opt(std::vector<Tensor>{c1, c2});
  b.load_state_dict(state);
  EXPECT_EQ(b.step_count(), 3);
  for (int s = 0; s < 2; ++s) {
    run(a, {w1, w2});
    run(b, {c1, c2});
  }
  EXPECT_EQ(w1.to_vector<double>(), c1.to_vector<double>());
  EXPECT_EQ(w2.to_vector<double>(), c2.to_vector<double>());
}

TEST(OptimStateDict, SGDResumesBitIdentically) {
  for (DType dt : {DType::f32, DType::f64})
    expect_resume_bit_identical(dt, [](std::vector<Tensor> p) {
      return SGD(std::move(p),
                 {.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    });
}

TEST(OptimStateDict, AdamResumesBitIdentically) {
  for (DType dt : {DType::f32, DType::f64})
    expect_resume_bit_identical(dt, [](std::vector<Tensor> p) {
      return Adam(std::move(p), {.lr = 0.05, .weight_decay = 0.01, .amsgrad = true});
    });
}

TEST(OptimStateDict, AdamWResumesBitIdenticallyThroughCheckpointFile) {
  expect_resume_bit_identical(
      DType::f32, [](std::vector<Tensor> p) { return AdamW(std::move(p), {.lr = 0.05}); },
      /*through_file=*/true);
}

TEST(OptimStateDict, Layout) {
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.01, .betas = {0.8, 0.9}});
  quadratic_backward(w);
  opt.step();
  State s = opt.state_dict();
  EXPECT_EQ(s.get_string("type"), "Adam");
  EXPECT_EQ(s.get_int("step"), 1);
  EXPECT_EQ(s.get_ints("group_sizes"), std::vector<int64_t>{1});
  EXPECT_EQ(s.get_double("group0.lr"), 0.01);
  EXPECT_EQ(s.get_double("group0.betas0"), 0.8);
  EXPECT_EQ(s.get_double("group0.betas1"), 0.9);
  EXPECT_EQ(s.get_double("group0.eps"), 1e-8);
  EXPECT_EQ(s.get_double("group0.amsgrad"), 0.0);
  const State& p0 = s.group("0");
  EXPECT_EQ(p0.tensor("step").dim(), 0);
  EXPECT_EQ(p0.tensor("exp_avg").shape(), (Shape{2, 3}));
  EXPECT_EQ(p0.tensor("exp_avg_sq").shape(), (Shape{2, 3}));
  EXPECT_FALSE(p0.has_tensor("max_exp_avg_sq"));
  // exp_avg after one step from zero: (1 - beta1) g.
  Vec g = quadratic_grad(kW0), want(6);
  for (int i = 0; i < 6; ++i) want[i] = 0.2 * g[i];
  expect_near_vec(p0.tensor("exp_avg").to_vector<double>(), want, 1e-15, "exp_avg");
}

TEST(OptimStateDict, LoadRestoresHyperParameters) {
  Tensor w = make_param();
  SGD a({w}, {.lr = 0.3, .momentum = 0.7});
  a.param_groups()[0].options["lr"] = 0.125;  // as a scheduler would
  SGD b({make_param()}, {.lr = 0.01, .momentum = 0.1});
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.param_groups()[0].lr(), 0.125);
  EXPECT_EQ(b.param_groups()[0].options.at("momentum"), 0.7);
}

TEST(OptimStateDict, LoadNamesWhatDiffers) {
  Tensor w = make_param();
  Adam adam({w}, {.lr = 0.01});
  quadratic_backward(w);
  adam.step();
  State s = adam.state_dict();

  SGD sgd({make_param()}, {.lr = 0.1});
  EXPECT_THROW_MSG(sgd.load_state_dict(s), "state is of a Adam optimizer, expected SGD");
  Adam two_params({make_param(), make_param()});
  EXPECT_THROW_MSG(two_params.load_state_dict(s), "group 0 has 1 parameters in the state, 2");
  Adam two_groups(std::vector<ParamGroup>{{{make_param()}, {}}, {{make_param()}, {}}});
  EXPECT_THROW_MSG(two_groups.load_state_dict(s), "1 parameter groups, this optimizer has 2");

  Tensor other_shape = zeros({3, 2}, {.dtype = DType::f64});
  other_shape.requires_grad_();
  Adam shaped({other_shape});
  EXPECT_THROW_MSG(shaped.load_state_dict(s), "'exp_avg' of parameter 0 has shape [2, 3]",
                   "[3, 2]");

  State bad = s;
  bad.groups["0"].tensors.erase("exp_avg_sq");
  Adam fresh({make_param()});
  EXPECT_THROW_MSG(fresh.load_state_dict(bad), "parameter 0 has no state tensor 'exp_avg_sq'");
  bad = s;
  bad.groups["5"] = s.group("0");
  EXPECT_THROW_MSG(fresh.load_state_dict(bad), "state group '5' does not name a parameter");
  bad = s;
  bad.attrs["group0.eps"] = -1.0;
  EXPECT_THROW_MSG(fresh.load_state_dict(bad), "invalid epsilon value -1");
  // A failed load changed nothing.
  EXPECT_EQ(fresh.param_groups()[0].options.at("eps"), 1e-8);
  EXPECT_EQ(fresh.step_count(), 0);
  EXPECT_FALSE(fresh.state_dict().has_group("0"));
}

TEST(OptimCuda, AdamAndSGDOnCudaMatchCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (int kind = 0; kind < 2; ++kind) {
    Tensor cpu_w = make_param(DType::f32);
    Tensor gpu_w = cpu_w.detach().to(Device::cuda());
    gpu_w.requires_grad_();
    auto run = [&](optim::Optimizer& opt, const Tensor& w) {
      for (int s = 0; s < 4; ++s) {
        opt.zero_grad();
        Tensor a = from_vector(kA, {2, 3}).to(DType::f32).to(w.device());
        Tensor c = from_vector(kC, {2, 3}).to(DType::f32).to(w.device());
        Tensor d = w - c;
        (sum(a * d * d) * 0.5).backward();
        opt.step();
      }
    };
    if (kind == 0) {
      Adam a({cpu_w}, {.lr = 0.05, .amsgrad = true}), b({gpu_w}, {.lr = 0.05, .amsgrad = true});
      run(a, cpu_w);
      run(b, gpu_w);
    } else {
      SGD a({cpu_w}, {.lr = 0.05, .momentum = 0.9}), b({gpu_w}, {.lr = 0.05, .momentum = 0.9});
      run(a, cpu_w);
      run(b, gpu_w);
    }
    expect_near_vec(gpu_w.to(Device::cpu()).to_vector<double>(), cpu_w.to_vector<double>(), 1e-5,
                    kind == 0 ? "Adam" : "SGD");
  }
}

// ---- gradient clipping -------------------------------------------------------------------

struct Grads {
  Tensor p1, p2, p3;  // p3 never gets a gradient
  Grads(const Vec& g1, const Vec& g2) {
    p1 = zeros({static_cast<int64_t>(g1.size())}, {.dtype = DType::f64});
    p2 = zeros({static_cast<int64_t>(g2.size())}, {.dtype = DType::f64});
    p3 = zeros({2}, {.dtype = DType::f64});
    for (Tensor* p : {&p1, &p2, &p3}) p->requires_grad_();
    p1.set_grad(from_vector(g1, {static_cast<int64_t>(g1.size())}));
    p2.set_grad(from_vector(g2, {static_cast<int64_t>(g2.size())}));
  }
  std::vector<Tensor> all() const { return {p1, p2, p3}; }
};

TEST(OptimClipGradNorm, TwoNormScalesByMaxNormOverTotal) {
  Grads g({3, -4}, {12});  // total sqrt(9 + 16 + 144) = 13
  double total = optim::clip_grad_norm_(g.all(), 6.5).item();
  EXPECT_DOUBLE_EQ(total, 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  expect_near_vec(g.p1.grad().to_vector<double>(), {3 * coef, -4 * coef}, 1e-15, "p1");
  expect_near_vec(g.p2.grad().to_vector<double>(), {12 * coef}, 1e-15, "p2");
  EXPECT_FALSE(g.p3.grad().defined());
}

TEST(OptimClipGradNorm, OtherNorms) {
  {
    Grads g({3, -4}, {12});
    EXPECT_DOUBLE_EQ(optim::clip_grad_norm_(g.all(), 1.0, INFINITY).item(), 12.0);
    expect_near_vec(g.p2.grad().to_vector<double>(), {12 / (12 + 1e-6)}, 1e-15, "inf");
  }
  {
    Grads g({3, -4}, {12});
    EXPECT_DOUBLE_EQ(optim::clip_grad_norm_(g.all(), 100.0, 1.0).item(), 19.0);
    EXPECT_EQ(g.p1.grad().to_vector<double>(), (Vec{3, -4}));  // under max_norm: unchanged
  }
  {
    Grads g({3, -4}, {12});
    EXPECT_NEAR(optim::clip_grad_norm_(g.all(), 100.0, 3.0).item(), std::cbrt(27.0 + 64.0 + 1728.0),
                1e-12);
  }
}

// The fused power sum over many gradients of mixed dtypes (several chunks each) against an f64
// sum over the same values; NaN wins the inf-norm's max.
TEST(OptimClipGradNorm, FusedPowerSumMatchesF64) {
  Generator gen(21);
  std::vector<Tensor> ts = {randn({40000}, {}, &gen), randn({3, 777}, {}, &gen).to(DType::f16),
                            randn({17}, {.dtype = DType::f64}, &gen),
                            randn({50000}, {}, &gen).to(DType::bf16), zeros({0})};
  for (double p : {1.0, 2.0, 3.0, double(INFINITY)}) {
    double want = 0;
    for (const Tensor& t : ts)
      for (double v : t.to_vector<double>())
        want = std::isinf(p) ? std::max(want, std::abs(v)) : want + std::pow(std::abs(v), p);
    Tensor out = empty({1}, {.dtype = DType::f64});
    kernels::norm_power_sum(Device::cpu(), out, ts, p);
    EXPECT_NEAR(out.item(), want, 1e-12 * want) << "p = " << p;
  }
  std::vector<Tensor> with_nan = {ones({5}), from_vector<float>({1.0f, NAN, 2.0f})};
  Tensor out = empty({1}, {.dtype = DType::f64});
  kernels::norm_power_sum(Device::cpu(), out, with_nan, INFINITY);
  EXPECT_TRUE(std::isnan(out.item()));
  kernels::norm_power_sum(Device::cpu(), out, {zeros({0})}, 2.0);
  EXPECT_EQ(out.item(), 0.0);
}

TEST(OptimClipGradNorm, NoGradientsGiveZero) {
  Tensor p = zeros({3});
  p.requires_grad_();
  EXPECT_EQ(optim::clip_grad_norm_({p}, 1.0).item(), 0.0);
}

TEST(OptimClipGradNorm, NonFinite) {
  const double inf = std::numeric_limits<double>::infinity();
  {
    Grads g({1, inf}, {2});
    EXPECT_THROW_MSG(optim::clip_grad_norm_(g.all(), 1.0, 2.0, true), "non-finite",
                     "error_if_nonfinite");
  }
  {
    // As PyTorch: coef = max_norm / inf = 0, so finite entries become 0 and inf * 0 = NaN.
    Grads g({1, inf}, {2});
    EXPECT_EQ(optim::clip_grad_norm_(g.all(), 1.0).item(), inf);
    Vec v = g.p1.grad().to_vector<double>();
    EXPECT_EQ(v[0], 0.0);
    EXPECT_TRUE(std::isnan(v[1]));
  }
}

TEST(OptimClipGradNorm, Errors) {
  Grads g({1}, {2});
  EXPECT_THROW_MSG(optim::clip_grad_norm_(g.all(), 1.0, 0.0), "norm_type must be positive");
  EXPECT_THROW_MSG(optim::clip_grad_norm_(g.all(), -1.0), "max_norm must be >= 0");
  EXPECT_THROW_MSG(optim::clip_grad_value_(g.all(), -0.5), "clip_value must be >= 0");
}

TEST(OptimClipGradValue, ClampsEachElement) {
  Grads g({3, -4, 0.25}, {-0.5, 12});
  optim::clip_grad_value_(g.all(), 1.0);
  EXPECT_EQ(g.p1.grad().to_vector<double>(), (Vec{1, -1, 0.25}));
  EXPECT_EQ(g.p2.grad().to_vector<double>(), (Vec{-0.5, 1}));
}

// add_param_group: the new group takes the optimizer's defaults for what it leaves out, and
// steps with its own options; the constructor's checks apply, naming the new group's index.
TEST(OptimAddParamGroup, DefaultsStepsStateAndErrors) {
  Tensor a = make_param();
  Tensor b = make_param(DType::f64, {0.5, -1, 2, 0, 1, -3});
  SGD opt({a}, {.lr = 0.1, .momentum = 0.9});
  opt.add_param_group({{b}, {{"lr", 0.01}}});
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[1].lr(), 0.01);
  EXPECT_EQ(opt.param_groups()[1].options.at("momentum"), 0.9);
  Vec ga = {1, 2, 3, 4, 5, 6}, gb = {-1, 0.5, 2, -2, 1, 3};
  a.set_grad(from_vector(ga, {2, 3}));
  b.set_grad(from_vector(gb, {2, 3}));
  opt.step();  // first step: the momentum buffer is the gradient, p -= lr g
  Vec want_a = kW0, want_b = {0.5, -1, 2, 0, 1, -3};
  for (size_t i = 0; i < 6; ++i) {
    want_a[i] -= 0.1 * ga[i];
    want_b[i] -= 0.01 * gb[i];
  }
  EXPECT_EQ(a.to_vector<double>(), want_a);
  EXPECT_EQ(b.to_vector<double>(), want_b);
  State state = opt.state_dict();
  EXPECT_EQ(state.get_ints("group_sizes"), (std::vector<int64_t>{1, 1}));
  EXPECT_TRUE(state.has_group("1"));  // b's momentum buffer

  SGD one_group({a}, {.lr = 0.1, .momentum = 0.9});
  EXPECT_THROW_MSG(one_group.load_state_dict(state), "2 parameter groups", "this optimizer has 1");
  one_group.add_param_group({{b}, {}});
  one_group.load_state_dict(state);
  EXPECT_EQ(one_group.param_groups()[1].lr(), 0.01);

  EXPECT_THROW_MSG(opt.add_param_group({{a}, {}}), "parameter 0 of group 2", "more than once");
  EXPECT_THROW_MSG(opt.add_param_group({{make_param()}, {{"betas0", 0.9}}}),
                   "unknown option 'betas0' in parameter group 2");
  EXPECT_THROW_MSG(opt.add_param_group({{make_param()}, {{"lr", -1.0}}}), "learning rate -1",
                   "group 2");
  EXPECT_THROW_MSG(opt.add_param_group({{}, {}}), "add_param_group: the group has no parameters");
  EXPECT_EQ(opt.param_groups().size(), 2u);  // failed adds change nothing
}

// A parameter that does not require grad is accepted, as in PyTorch (a frozen backbone), and
// left alone while it has no gradient.
TEST(OptimAddParamGroup, FrozenParametersAreAcceptedAndSkipped) {
  Tensor frozen = from_vector(kW0, {2, 3});
  Tensor w = make_param();
  AdamW opt({frozen, w}, {.lr = 0.1});
  w.set_grad(ones({2, 3}, {.dtype = DType::f64}));
  opt.step();
  EXPECT_EQ(frozen.to_vector<double>(), kW0);
  EXPECT_NE(w.to_vector<double>(), kW0);
}
}  // namespace
}  // namespace lumen
