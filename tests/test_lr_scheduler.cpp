// Learning-rate schedulers: lr sequences over 30+ steps against the closed forms of the
// PyTorch documentation computed here in f64, PyTorch's chainable behaviour, OneCycleLR's
// momentum, ReduceLROnPlateau on a hand-made metric sequence, argument errors, and
// state_dict round trips that continue identically.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numbers>

#include <gtest/gtest.h>

#include "lumen/lumen.h"
#include "tests/op_harness.h"

namespace lumen {
namespace {

using namespace optim;
using Vec = std::vector<double>;
constexpr double kPi = std::numbers::pi;

Tensor param() {
  Tensor p = zeros({2});
  p.requires_grad_();
  return p;
}

// Two groups with base lrs 0.1 and 0.03, so per-group handling shows.
SGD make_sgd(double momentum = 0.9) {
  return SGD(std::vector<ParamGroup>{{{param()}, {{"lr", 0.1}}}, {{param()}, {{"lr", 0.03}}}},
             {.momentum = momentum});
}
const Vec kBase = {0.1, 0.03};

Vec group_lrs(const Optimizer& opt) {
  Vec out;
  for (const ParamGroup& g : opt.param_groups()) out.push_back(g.lr());
  return out;
}

// Epoch 0 (construction) and `steps` more: lr of every group vs closed_form(base, epoch).
void expect_sequence(LRScheduler& s, int steps,
                     const std::function<double(double base, int epoch)>& closed_form) {
  for (int e = 0; e <= steps; ++e) {
    if (e > 0) s.step();
    ASSERT_EQ(s.last_epoch(), e);
    Vec lrs = group_lrs(s.optimizer());
    EXPECT_EQ(s.get_last_lr(), lrs) << "epoch " << e;
    for (size_t g = 0; g < lrs.size(); ++g) {
      const double want = closed_form(kBase[g], e);
      EXPECT_NEAR(lrs[g], want, 1e-12 * std::max(std::abs(want), 1e-3))
          << s.type_name() << " epoch " << e << " group " << g;
    }
  }
}

TEST(LRSchedulerStepLR, ClosedForm) {
  SGD opt = make_sgd();
  StepLR s(opt, 7, 0.5);
  expect_sequence(s, 30, [](double base, int e) { return base * std::pow(0.5, e / 7); });
}

TEST(LRSchedulerStepLR, RecordsInitialLr) {
  SGD opt = make_sgd();
  StepLR s(opt, 3);
  EXPECT_EQ(opt.param_groups()[0].options.at("initial_lr"), 0.1);
  EXPECT_EQ(opt.param_groups()[1].options.at("initial_lr"), 0.03);
  EXPECT_EQ(s.base_lrs(), kBase);
  EXPECT_EQ(s.get_last_lr(), kBase);
}

TEST(LRSchedulerMultiStepLR, ClosedFormWithRepeatedMilestone) {
  SGD opt = make_sgd();
  const std::vector<int64_t> milestones = {20, 5, 12, 12};  // unsorted; 12 counts twice
  MultiStepLR s(opt, milestones, 0.3);
  expect_sequence(s, 30, [&](double base, int e) {
    std::vector<int64_t> sorted = milestones;
    std::sort(sorted.begin(), sorted.end());
    auto passed = std::upper_bound(sorted.begin(), sorted.end(), e) - sorted.begin();
    return base * std::pow(0.3, static_cast<double>(passed));
  });
}

TEST(LRSchedulerExponentialLR, ClosedForm) {
  SGD opt = make_sgd();
  ExponentialLR s(opt, 0.9);
  expect_sequence(s, 30, [](double base, int e) { return base * std::pow(0.9, e); });
}

TEST(LRSchedulerLambdaLR, ClosedFormOneFunctionOrOnePerGroup) {
  SGD opt = make_sgd();
  LambdaLR s(opt, [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); });
  expect_sequence(s, 12, [](double base, int e) { return base / (1.0 + e); });
  SGD per_group = make_sgd();
  LambdaLR t(per_group, {[](int64_t e) { return e < 3 ? (e + 1) / 3.0 : 1.0; },
                         [](int64_t e) { return std::pow(0.5, static_cast<double>(e)); }});
  for (int e = 1; e <= 5; ++e) t.step();
  EXPECT_NEAR(per_group.param_groups()[0].lr(), 0.1, 1e-15);
  EXPECT_NEAR(per_group.param_groups()[1].lr(), 0.03 / 32, 1e-15);
  SGD other = make_sgd();
  EXPECT_THROW_MSG(LambdaLR(other, std::vector<LrLambda>{[](int64_t) { return 1.0; }}),
                   "LambdaLR: got 1 lr_lambdas for 2 parameter groups");
  EXPECT_THROW_MSG(LambdaLR(other, LrLambda()), "LambdaLR: lr_lambda 0 is empty");
}

TEST(LRSchedulerMultiplicativeLR, ChainsTheFactor) {
  SGD opt = make_sgd();
  MultiplicativeLR s(opt, [](int64_t e) { return e % 2 ? 0.9 : 0.5; });
  expect_sequence(s, 10, [](double base, int e) {
    double lr = base;
    for (int k = 1; k <= e; ++k) lr *= k % 2 ? 0.9 : 0.5;
    return lr;
  });
  EXPECT_THROW_MSG(MultiplicativeLR(opt, LrLambda()), "MultiplicativeLR: lr_lambda 0 is empty");
}

TEST(LRSchedulerPolynomialLR, ClosedFormToZeroAndAfter) {
  SGD opt = make_sgd();
  PolynomialLR s(opt, 4, 2.0);
  expect_sequence(
      s, 8, [](double base, int e) { return base * std::pow(1.0 - std::min(e, 4) / 4.0, 2.0); });
  EXPECT_THROW_MSG(PolynomialLR(opt, 0), "PolynomialLR: total_iters must be positive, got 0");
}

// T_0 = 3, T_mult = 2: restarts at steps 3 and 9 (cycles of 3, 6, 12 steps).
TEST(LRSchedulerCosineAnnealingWarmRestarts, RestartsWithGrowingPeriods) {
  SGD opt = make_sgd();
  const double eta_min = 0.001;
  CosineAnnealingWarmRestarts s(opt, 3, 2, eta_min);
  expect_sequence(s, 24, [&](double base, int e) {
    int t_cur = e, t_i = 3;
    while (t_cur >= t_i) {
      t_cur -= t_i;
      t_i *= 2;
    }
    return eta_min + (base - eta_min) * (1 + std::cos(kPi * t_cur / t_i)) / 2;
  });
  EXPECT_THROW_MSG(CosineAnnealingWarmRestarts(opt, 0), "T_0 must be a positive integer, got 0");
  EXPECT_THROW_MSG(CosineAnnealingWarmRestarts(opt, 2, 0), "T_mult must be an integer >= 1, got 0");
  State bad = s.state_dict();
  bad.attrs["T_cur"] = int64_t{30};  // T_i is 24 by now
  EXPECT_THROW_MSG(s.load_state_dict(bad), "T_i 24, T_cur 30", "0 <= T_cur < T_i");
  EXPECT_EQ(s.last_epoch(), 24);  // the failed load changed nothing
}

// From lr_0 (the groups' 0.1 and 0.03) to swa_lr over anneal_epochs, then swa_lr:
// alpha_k swa_lr + (1 - alpha_k) lr_0.
TEST(LRSchedulerSWALR, AnnealsToTheSwaLr) {
  for (const char* strategy : {"cos", "linear"}) {
    SGD opt = make_sgd();
    SWALR s(opt, std::vector<double>{0.05, 0.2}, 4, strategy);
    const Vec swa = {0.05, 0.2};
    for (int k = 0; k <= 8; ++k) {
      if (k > 0) s.step();
      const double t = std::min(1.0, k / 4.0);
      const double alpha = std::string(strategy) == "cos" ? (1 - std::cos(kPi * t)) / 2 : t;
      for (size_t g = 0; g < 2; ++g)
        EXPECT_NEAR(opt.param_groups()[g].lr(), alpha * swa[g] + (1 - alpha) * kBase[g], 1e-15)
            << strategy << " step " << k << " group " << g;
    }
    EXPECT_EQ(opt.param_groups()[1].options.at("swa_lr"), 0.2);
  }
  SGD at_once = make_sgd();
  SWALR now(at_once, 0.01, 0);
  EXPECT_EQ(group_lrs(at_once), (Vec{0.01, 0.01}));  // no annealing: swa_lr from the start
  SGD opt = make_sgd();
  EXPECT_THROW_MSG(SWALR(opt, 0.1, 3, "step"), "anneal_strategy must be \"cos\" or \"linear\"");
  EXPECT_THROW_MSG(SWALR(opt, 0.1, -1), "anneal_epochs must be >= 0, got -1");
  EXPECT_THROW_MSG(SWALR(opt, std::vector<double>{0.1}), "1 swa_lr values for 2 parameter groups");
}

TEST(LRSchedulerCosineAnnealingLR, ClosedFormThroughAndPastTMax) {
  SGD opt = make_sgd();
  const double eta_min = 0.001;
  CosineAnnealingLR s(opt, 10, eta_min);
  // Past T_max = 10 the rate climbs back (period 20), as PyTorch's.
  expect_sequence(s, 35, [&](double base, int e) {
    return eta_min + (base - eta_min) * (1 + std::cos(kPi * e / 10.0)) / 2;
  });
}

TEST(LRSchedulerChainable, ManualChangeCarriesOn) {
  // PyTorch's schedulers multiply the group's current lr: a change made between steps stays.
  SGD opt = make_sgd();
  StepLR s(opt, 4, 0.5);
  s.step();
  s.step();
  opt.param_groups()[0].options["lr"] = 1.0;
  s.step();
  EXPECT_EQ(opt.param_groups()[0].lr(), 1.0);
  s.step();  // epoch 4: a boundary
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.5);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].lr(), 0.015);
}

TEST(LRSchedulerChainable, TwoSchedulersCompose) {
  SGD opt = make_sgd();
  ExponentialLR exp_s(opt, 0.9);
  StepLR step_s(opt, 3, 0.1);
  for (int e = 1; e <= 12; ++e) {
    exp_s.step();
    step_s.step();
    for (size_t g = 0; g < 2; ++g)
      EXPECT_NEAR(opt.param_groups()[g].lr(), kBase[g] * std::pow(0.9, e) * std::pow(0.1, e / 3),
                  1e-15)
          << "epoch " << e;
  }
}

// OneCycleLR's closed form, from the PyTorch documentation: phase boundaries at
// pct_start * total - 1 (and 2 pct_start total - 2 with three_phase) and total - 1.
struct OneCycleRef {
  double max_lr;
  int total;
  double pct = 0.3, div = 25, final_div = 1e4, base_m = 0.85, max_m = 0.95;
  bool cos = true, three = false;
  double anneal(double a, double b, double t) const {
    return cos ? b + (a - b) / 2 * (1 + std::cos(kPi * t)) : a + (b - a) * t;
  }
  // {lr, momentum} at step e.
  std::pair<double, double> at(int e) const {
    const double init = max_lr / div, min_lr = init / final_div;
    const double e1 = pct * total - 1, e2 = three ? 2 * pct * total - 2 : total - 1.0;
    const double e3 = total - 1.0;
    if (e <= e1) return {anneal(init, max_lr, e / e1), anneal(max_m, base_m, e / e1)};
    if (!three || e <= e2)
      return {anneal(max_lr, three ? init : min_lr, (e - e1) / (e2 - e1)),
              anneal(base_m, max_m, (e - e1) / (e2 - e1))};
    return {anneal(init, min_lr, (e - e2) / (e3 - e2)), max_m};
  }
};

void expect_one_cycle(const OneCycleRef& ref, OneCycleLROptions options, bool adam) {
  std::unique_ptr<Optimizer> opt;
  if (adam)
    opt = std::make_unique<Adam>(std::vector<Tensor>{param()});
  else
    opt = std::make_unique<SGD>(std::vector<Tensor>{param()});
  OneCycleLR s(*opt, ref.max_lr, ref.total, options);
  const char* momentum_key = adam ? "betas0" : "momentum";
  for (int e = 0; e < ref.total; ++e) {
    if (e > 0) s.step();
    auto [lr, m] = ref.at(e);
    EXPECT_NEAR(opt->param_groups()[0].lr(), lr, 1e-12 * lr) << "step " << e;
    EXPECT_NEAR(opt->param_groups()[0].options.at(momentum_key), m, 1e-12) << "step " << e;
  }
}

TEST(LRSchedulerOneCycleLR, CosineTwoPhaseWithSgdMomentum) {
  OneCycleRef ref{.max_lr = 0.5, .total = 40};
  expect_one_cycle(ref, {}, false);
  // The landmarks, by hand: start max_lr / 25, peak max_lr at step 0.3 * 40 - 1 = 11, end
  // max_lr / 25 / 1e4 at step 39; momentum 0.95 -> 0.85 -> 0.95.
  SGD opt({param()});
  OneCycleLR s(opt, 0.5, 40);
  EXPECT_NEAR(opt.param_groups()[0].lr(), 0.02, 1e-16);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].options.at("momentum"), 0.95);
  for (int e = 1; e <= 11; ++e) s.step();
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.5);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].options.at("momentum"), 0.85);
  for (int e = 12; e <= 39; ++e) s.step();
  EXPECT_NEAR(opt.param_groups()[0].lr(), 0.02 / 1e4, 1e-18);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].options.at("momentum"), 0.95);
  EXPECT_EQ(opt.param_groups()[0].options.at("max_lr"), 0.5);
  EXPECT_EQ(opt.param_groups()[0].options.at("initial_lr"), 0.02);
}

TEST(LRSchedulerOneCycleLR, LinearThreePhaseWithAdamBeta1) {
  OneCycleRef ref{.max_lr = 0.01, .total = 30, .pct = 0.25, .cos = false, .three = true};
  expect_one_cycle(ref, {.pct_start = 0.25, .anneal_strategy = "linear", .three_phase = true},
                   true);
}

TEST(LRSchedulerOneCycleLR, CustomFactorsAndMomenta) {
  OneCycleRef ref{.max_lr = 1.0,
                  .total = 33,
                  .pct = 0.4,
                  .div = 10,
                  .final_div = 100,
                  .base_m = 0.8,
                  .max_m = 0.9};
  expect_one_cycle(ref,
                   {.pct_start = 0.4,
                    .base_momentum = 0.8,
                    .max_momentum = 0.9,
                    .div_factor = 10,
                    .final_div_factor = 100},
                   false);
}

TEST(LRSchedulerOneCycleLR, Errors) {
  SGD opt({param()});
  OneCycleLR s(opt, 0.1, 3);
  s.step();
  s.step();
  s.step();  // step 3 == total_steps is still allowed, as PyTorch
  EXPECT_THROW_MSG(s.step(), "tried to step 4 times", "total steps is 3");
  SGD opt2({param()});
  EXPECT_THROW_MSG(OneCycleLR(opt2, 0.1, 0), "total_steps must be positive");
  EXPECT_THROW_MSG(OneCycleLR(opt2, 0.1, 10, {.pct_start = 1.5}), "pct_start");
  EXPECT_THROW_MSG(OneCycleLR(opt2, 0.1, 10, {.anneal_strategy = "cosine"}), "\"cosine\"");
  EXPECT_THROW_MSG(OneCycleLR(opt2, Vec{0.1, 0.2}, 10), "2 max_lr values for 1");
}

TEST(LRSchedulerLinearWarmup, AloneMatchesLinearLR) {
  SGD opt = make_sgd();
  LinearWarmup s(opt, 5);  // start_factor 1/3, end_factor 1
  expect_sequence(s, 30, [](double base, int e) {
    return base * (1.0 / 3 + (1 - 1.0 / 3) * std::min(e, 5) / 5.0);
  });
}

TEST(LRSchedulerLinearWarmup, EndFactorBelowOne) {
  SGD opt = make_sgd();
  LinearWarmup s(opt, 4, {.start_factor = 0.1, .end_factor = 0.5});
  expect_sequence(
      s, 12, [](double base, int e) { return base * (0.1 + (0.5 - 0.1) * std::min(e, 4) / 4.0); });
}

TEST(LRSchedulerLinearWarmup, HandsOverToCosine) {
  SGD opt = make_sgd();
  auto cosine = std::make_shared<CosineAnnealingLR>(opt, 20, 0.0);
  LinearWarmup s(opt, 5, {.start_factor = 0.01}, cosine);
  // SequentialLR([LinearLR(0.01, total_iters=5), cosine], milestones=[5]).
  expect_sequence(s, 30, [](double base, int e) {
    if (e < 5) return base * (0.01 + 0.99 * e / 5.0);
    return base * (1 + std::cos(kPi * (e - 5) / 20.0)) / 2;
  });
  EXPECT_EQ(cosine->last_epoch(), 25);
}

// Handing over to LambdaLR starts it at base_lr * lr_lambda(0), as SequentialLR's _update_lr(0);
// to MultiplicativeLR, at the lr the warmup left (epoch 1's 0.1 (0.25 + 0.25 / 2), as a
// chainable scheduler's epoch 0 in PyTorch keeps the group's lr).
TEST(LRSchedulerLinearWarmup, HandsOverToLambdaAndMultiplicative) {
  SGD opt = make_sgd();
  auto lambda = std::make_shared<LambdaLR>(opt, [](int64_t e) { return 0.5 / (1.0 + e); });
  LinearWarmup s(opt, 3, {.start_factor = 0.1}, lambda);
  expect_sequence(s, 8, [](double base, int e) {
    if (e < 3) return base * (0.1 + 0.9 * e / 3.0);
    return base * 0.5 / (1.0 + (e - 3));
  });
  SGD other = make_sgd();
  auto mult = std::make_shared<MultiplicativeLR>(other, [](int64_t) { return 0.9; });
  LinearWarmup t(other, 2, {.start_factor = 0.25, .end_factor = 0.5}, mult);
  for (int e = 1; e <= 2; ++e) t.step();
  EXPECT_NEAR(other.param_groups()[0].lr(), 0.0375, 1e-15);  // epoch 2: the handover
  t.step();
  EXPECT_NEAR(other.param_groups()[0].lr(), 0.0375 * 0.9, 1e-15);
}

TEST(LRSchedulerLinearWarmup, Errors) {
  SGD opt = make_sgd();
  EXPECT_THROW_MSG(LinearWarmup(opt, 0), "warmup_steps must be positive");
  EXPECT_THROW_MSG(LinearWarmup(opt, 5, {.start_factor = 0}), "start_factor must be in (0, 1]");
  EXPECT_THROW_MSG(LinearWarmup(opt, 5, {.end_factor = 1.5}), "end_factor");
  SGD other = make_sgd();
  auto foreign = std::make_shared<StepLR>(other, 3);
  EXPECT_THROW_MSG(LinearWarmup(opt, 5, {}, foreign), "belongs to another optimizer");
  auto plateau = std::make_shared<ReduceLROnPlateau>(opt);
  EXPECT_THROW_MSG(LinearWarmup(opt, 5, {}, plateau), "ReduceLROnPlateau", "metric");
}

TEST(LRSchedulerReduceLROnPlateau, PatienceCooldownMinLr) {
  SGD opt({param()}, {.lr = 0.1});
  ReduceLROnPlateau s(opt, {.factor = 0.5, .patience = 2, .cooldown = 1, .min_lr = 0.02});
  EXPECT_TRUE(s.needs_metric());
  EXPECT_EQ(s.get_last_lr(), Vec{0.1});
  const Vec metrics = {1.0,  0.9,  0.95, 0.95, 0.95, 0.8,  0.85, 0.85, 0.85,
                       0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85};
  // By hand: three bad steps in a row (> patience 2) halve the lr; the step after a cut is a
  // cooldown step whose badness does not count; the lr stops at min_lr 0.02.
  const Vec want = {0.1,   0.1,   0.1,   0.1,  0.05, 0.05, 0.05, 0.05, 0.025,
                    0.025, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02, 0.02};
  for (size_t i = 0; i < metrics.size(); ++i) {
    s.step(metrics[i]);
    EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), want[i]) << "step " << i + 1;
    EXPECT_EQ(s.get_last_lr(), Vec{opt.param_groups()[0].lr()});
  }
  EXPECT_EQ(s.best(), 0.8);
}

TEST(LRSchedulerReduceLROnPlateau, MaxModeAbsoluteThresholdAndNaN) {
  SGD opt({param()}, {.lr = 0.1});
  ReduceLROnPlateau s(opt,
                      {.mode = "max", .patience = 0, .threshold = 0.1, .threshold_mode = "abs"});
  s.step(1.0);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.1);
  s.step(1.05);  // not above 1.0 + 0.1: a bad step, more than patience 0
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.01);
  s.step(1.2);
  EXPECT_EQ(s.best(), 1.2);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.01);
  s.step(std::nan(""));  // never an improvement
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.001);
  EXPECT_EQ(s.best(), 1.2);
}

TEST(LRSchedulerReduceLROnPlateau, RelativeThresholdInMinMode) {
  SGD opt({param()}, {.lr = 0.1});
  ReduceLROnPlateau s(opt, {.patience = 0, .threshold = 0.1});
  s.step(10.0);
  s.step(9.5);  // not below 10 * 0.9 = 9: bad
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.01);
  s.step(8.9);
  EXPECT_EQ(s.best(), 8.9);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.01);
}

TEST(LRSchedulerReduceLROnPlateau, Errors) {
  SGD opt({param()});
  EXPECT_THROW_MSG(ReduceLROnPlateau(opt, {.mode = "minimum"}), "mode must be");
  EXPECT_THROW_MSG(ReduceLROnPlateau(opt, {.factor = 1.0}), "factor must be in [0, 1)");
  EXPECT_THROW_MSG(ReduceLROnPlateau(opt, {.threshold_mode = "relative"}), "threshold_mode");
  EXPECT_THROW_MSG(ReduceLROnPlateau(opt, {.min_lrs = {0.1, 0.2}}), "2 min_lrs for 1");
  ReduceLROnPlateau s(opt);
  EXPECT_THROW_MSG(s.step(), "needs the monitored metric");
}

TEST(LRSchedulerErrors, BadArguments) {
  SGD opt = make_sgd();
  EXPECT_THROW_MSG(StepLR(opt, 0), "step_size must be positive");
  EXPECT_THROW_MSG(StepLR(opt, 3, -0.1), "gamma must be positive");
  EXPECT_THROW_MSG(MultiStepLR(opt, {0, 3}), "milestones must be positive");
  EXPECT_THROW_MSG(ExponentialLR(opt, 0.0), "gamma");
  EXPECT_THROW_MSG(CosineAnnealingLR(opt, 0), "T_max must be positive");
}

// ---- state_dict ----------------------------------------------------------------------------

// Builds an optimizer and a scheduler with make(), runs `before` steps, saves both, loads
// them into a fresh pair, then steps both `after` more times: the lrs (and momenta) agree
// exactly. metric(i) feeds ReduceLROnPlateau.
template <class Make>
void expect_resume_identical(Make make, int before, int after,
                             const std::function<double(int)>& metric = nullptr) {
  auto [opt_a, sched_a] = make();
  auto step = [&](LRScheduler& s, int i) {
    if (metric)
      s.step(metric(i));
    else
      s.step();
  };
  for (int i = 0; i < before; ++i) step(*sched_a, i);
  State opt_state = opt_a->state_dict(), sched_state = sched_a->state_dict();
  auto [opt_b, sched_b] = make();
  opt_b->load_state_dict(opt_state);
  sched_b->load_state_dict(sched_state);
  EXPECT_EQ(sched_b->last_epoch(), sched_a->last_epoch());
  for (int i = before; i < before + after; ++i) {
    step(*sched_a, i);
    step(*sched_b, i);
    EXPECT_EQ(sched_a->get_last_lr(), sched_b->get_last_lr()) << "step " << i;
    for (size_t g = 0; g < opt_a->param_groups().size(); ++g)
      EXPECT_EQ(opt_a->param_groups()[g].options, opt_b->param_groups()[g].options);
  }
}

using Pair = std::pair<std::unique_ptr<SGD>, std::unique_ptr<LRScheduler>>;
std::unique_ptr<SGD> sgd_ptr() { return std::make_unique<SGD>(make_sgd()); }

TEST(LRSchedulerStateDict, EachSchedulerResumesIdentically) {
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<StepLR>(*o, 4, 0.5);
        return Pair(std::move(o), std::move(s));
      },
      6, 10);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<MultiStepLR>(*o, std::vector<int64_t>{3, 8, 8, 11}, 0.2);
        return Pair(std::move(o), std::move(s));
      },
      5, 10);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<ExponentialLR>(*o, 0.8);
        return Pair(std::move(o), std::move(s));
      },
      3, 10);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<CosineAnnealingLR>(*o, 6, 0.01);
        return Pair(std::move(o), std::move(s));
      },
      5, 15);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<OneCycleLR>(*o, 0.4, 30);
        return Pair(std::move(o), std::move(s));
      },
      7, 20);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto after = std::make_shared<CosineAnnealingLR>(*o, 10);
        auto s =
            std::make_unique<LinearWarmup>(*o, 5, LinearWarmupOptions{.start_factor = 0.1}, after);
        return Pair(std::move(o), std::move(s));
      },
      3, 12);  // saved during the warmup, resumed across the handover
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<LambdaLR>(*o, [](int64_t e) { return 1.0 / (1.0 + e); });
        return Pair(std::move(o), std::move(s));
      },
      4, 6);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<MultiplicativeLR>(*o, [](int64_t) { return 0.9; });
        return Pair(std::move(o), std::move(s));
      },
      4, 6);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<SWALR>(*o, 0.01, 6, "linear");
        return Pair(std::move(o), std::move(s));
      },
      3, 6);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<PolynomialLR>(*o, 8, 1.5);
        return Pair(std::move(o), std::move(s));
      },
      3, 8);
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<CosineAnnealingWarmRestarts>(*o, 2, 3, 0.01);
        return Pair(std::move(o), std::move(s));
      },
      5, 12);  // saved inside the second cycle
  expect_resume_identical(
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<ReduceLROnPlateau>(
            *o, ReduceLROnPlateauOptions{.factor = 0.5, .patience = 1, .cooldown = 2});
        return Pair(std::move(o), std::move(s));
      },
      4, 12, [](int i) { return i < 2 ? 1.0 - 0.1 * i : 1.0; });
}

// A group added after the scheduler was built (BaseFinetuning's add_param_group) keeps the lr
// it was added with; the groups the scheduler was built with follow the same sequence as
// without it, and the scheduler's state still loads into the grown optimizer.
TEST(LRSchedulerAddedGroup, IsLeftToWhoeverAddedIt) {
  std::vector<std::function<Pair()>> factories = {
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<StepLR>(*o, 2, 0.5);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<MultiStepLR>(*o, std::vector<int64_t>{2, 5}, 0.2);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<ExponentialLR>(*o, 0.8);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<CosineAnnealingLR>(*o, 4, 0.01);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<OneCycleLR>(*o, 0.4, 12);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto after = std::make_shared<CosineAnnealingLR>(*o, 10);
        auto s = std::make_unique<LinearWarmup>(*o, 3, LinearWarmupOptions{}, after);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<ReduceLROnPlateau>(
            *o, ReduceLROnPlateauOptions{.factor = 0.5, .patience = 1});
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<LambdaLR>(*o, [](int64_t e) { return 1.0 / (1.0 + e); });
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<MultiplicativeLR>(*o, [](int64_t) { return 0.9; });
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<PolynomialLR>(*o, 6);
        return Pair(std::move(o), std::move(s));
      },
      [] {
        auto o = sgd_ptr();
        auto s = std::make_unique<CosineAnnealingWarmRestarts>(*o, 3);
        return Pair(std::move(o), std::move(s));
      },
  };
  for (const auto& make : factories) {
    auto step = [](LRScheduler& s) {
      if (s.needs_metric())
        s.step(1.0);
      else
        s.step();
    };
    auto [ref_opt, ref] = make();
    auto [opt, sched] = make();
    for (int e = 1; e <= 10; ++e) {
      if (e == 4) opt->add_param_group({{param()}, {{"lr", 0.007}}});
      step(*ref);
      step(*sched);
      Vec want = group_lrs(*ref_opt), got = group_lrs(*opt);
      if (e >= 4) want.push_back(0.007);
      EXPECT_EQ(got, want) << sched->type_name() << " epoch " << e;
      EXPECT_EQ(sched->get_last_lr().size(), 2u);
    }
    auto [other_opt, other] = make();
    other_opt->add_param_group({{param()}, {{"lr", 0.007}}});
    other->load_state_dict(sched->state_dict());
    EXPECT_EQ(other->last_epoch(), sched->last_epoch()) << sched->type_name();
  }
  auto [shrunk_opt, shrunk] = factories[0]();
  shrunk_opt->param_groups().pop_back();
  EXPECT_THROW_MSG(shrunk->step(), "StepLR: the optimizer has 1 parameter groups",
                   "fewer than the 2 this scheduler was built with");
}

TEST(LRSchedulerStateDict, LayoutAndErrors) {
  SGD opt = make_sgd();
  StepLR s(opt, 4, 0.5);
  s.step();
  State st = s.state_dict();
  EXPECT_EQ(st.get_string("type"), "StepLR");
  EXPECT_EQ(st.get_int("last_epoch"), 1);
  EXPECT_EQ(st.get_doubles("base_lrs"), kBase);
  EXPECT_EQ(st.get_doubles("last_lr"), kBase);
  EXPECT_EQ(st.get_int("step_size"), 4);
  ExponentialLR e(opt, 0.5);
  EXPECT_THROW_MSG(e.load_state_dict(st), "state is of a StepLR scheduler, expected ExponentialLR");
  SGD one({param()});
  StepLR s1(one, 4);
  EXPECT_THROW_MSG(s1.load_state_dict(st), "2 base learning rates", "1 parameter groups");
}

}  // namespace
}  // namespace lumen
