// Fabric on one device: a loop written with it must do exactly what the Trainer does for the
// same model, data and precision (bit for bit), its checkpoints must resume a loop exactly, and
// every misuse must say what was wrong and change nothing.
#include "trainer/fabric.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "io/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/exponential_lr.h"
#include "nn/optim/linear_warmup.h"
#include "nn/optim/step_lr.h"
#include "op_harness.h"
#include "trainer/csv_logger.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::parameters_of;
using testing::quiet;
using testing::TempDir;
using testing::TinyData;
using testing::TinyDataOptions;
using testing::TinyModel;

// A loss scale that grows every 3 good steps, so that runs compare it after it moved.
constexpr optim::GradScalerOptions kMovingScale{.growth_interval = 3};

FabricOptions fabric_options(const std::string& precision = "32") {
  return {.accelerator = "cpu",
          .strategy = "single_device",
          .precision = precision,
          .grad_scaler = kMovingScale};
}

// The loop of Lightning's Fabric docs over TinyModel: `steps` optimizer steps, epochs as needed.
void fabric_loop(Fabric& fabric, TinyModel& net, DataLoader& data, int64_t steps) {
  OptimizerConfig config = net.configure_optimizers();
  auto [model, optimizer] = fabric.setup(net, *config.optimizers.front());
  FabricDataLoader loader = fabric.setup_dataloaders(data);
  int64_t step = 0;
  while (step < steps)
    for (Batch& b : loader) {
      if (step == steps) break;
      optimizer.zero_grad();
      Tensor loss = nn::functional::mse_loss(model(b[0]), b[1]);
      fabric.backward(loss);
      optimizer.step();
      ++step;
    }
}

class FabricMatchesTrainer : public ::testing::TestWithParam<std::string> {};

// 11 steps over batches of 8 from 64 rows: a second, reshuffled epoch is included.
TEST_P(FabricMatchesTrainer, BitForBit) {
  const std::string precision = GetParam();
  manual_seed(5);
  TinyModel expected;
  TinyData data(TinyDataOptions{.shuffle = true});
  Trainer trainer(quiet({.max_steps = 11,
                         .num_sanity_val_steps = 0,
                         .precision = precision,
                         .grad_scaler = kMovingScale,
                         .strategy = "single_device"}));
  trainer.fit(expected, data);

  manual_seed(5);
  TinyModel net;
  std::vector<std::vector<float>> initial = parameters_of(net);
  auto loader = TinyData(TinyDataOptions{.shuffle = true}).train_dataloader();
  Fabric fabric(fabric_options(precision));
  EXPECT_EQ(fabric.precision(), precision == "32" ? "32-true" : precision);
  fabric_loop(fabric, net, *loader, 11);
  EXPECT_EQ(parameters_of(net), parameters_of(expected));
  EXPECT_NE(parameters_of(net), initial);
  if (precision == "16-mixed") {
    ASSERT_NE(fabric.grad_scaler(), nullptr);
    EXPECT_EQ(fabric.grad_scaler()->get_scale(), trainer.grad_scaler()->get_scale());
    EXPECT_NE(fabric.grad_scaler()->get_scale(), kMovingScale.init_scale);
  } else {
    EXPECT_EQ(fabric.grad_scaler(), nullptr);
  }
}

INSTANTIATE_TEST_SUITE_P(Fabric, FabricMatchesTrainer,
                         ::testing::Values("32", "16-mixed", "bf16-mixed"));

// Mixed precision: the forward runs in 16 bits, what leaves it is f32 (convert_output).
TEST(Fabric, AMixedForwardRunsInSixteenBitsAndReturnsF32) {
  manual_seed(1);
  nn::Linear lin(4, 3);
  Fabric fabric(fabric_options("bf16-mixed"));
  auto model = fabric.setup(lin);
  Tensor x = randn({2, 4});
  Tensor y = model(x);
  EXPECT_EQ(y.dtype(), DType::f32);
  // Equal to the product of the bf16-rounded operands (f32 accumulation), not to the f32 one.
  Tensor reference;
  {
    AutocastGuard autocast(DType::bf16);
    reference = lin(x).to(DType::f32);
  }
  EXPECT_EQ(y.to_vector<float>(), reference.to_vector<float>());
  EXPECT_NE(y.to_vector<float>(), lin(x).to_vector<float>());
  // Outside the FabricModule nothing is autocast; fabric.autocast() opts in.
  EXPECT_EQ(matmul(x, x.transpose(0, 1)).dtype(), DType::f32);
  {
    auto autocast = fabric.autocast();
    EXPECT_EQ(matmul(x, x.transpose(0, 1)).dtype(), DType::bf16);
  }
  // call() runs another member as a forward pass, under autocast too.
  TinyModel net;
  auto tiny = fabric.setup(net);
  Tensor called = tiny.call(&TinyModel::forward, x);
  EXPECT_EQ(called.dtype(), DType::f32);
  {
    AutocastGuard autocast(DType::bf16);
    reference = net.forward(x).to(DType::f32);
  }
  EXPECT_EQ(called.to_vector<float>(), reference.to_vector<float>());
  EXPECT_NE(called.to_vector<float>(), net.forward(x).to_vector<float>());
}

TEST(Fabric, SixteenMixedSkipsAStepWithInfGradientsAndBacksOff) {
  manual_seed(2);
  TinyModel net;
  Fabric fabric(fabric_options("16-mixed"));
  OptimizerConfig config = net.configure_optimizers();
  auto [model, optimizer] = fabric.setup(net, *config.optimizers.front());
  Tensor x = randn({8, 4}), y = randn({8, 1});
  std::vector<std::vector<float>> before = parameters_of(net);
  const double scale = fabric.grad_scaler()->get_scale();

  optimizer.zero_grad();
  // A loss of 1e35 times the real one: scaled by 65536 it overflows f32, so the gradients are inf.
  fabric.backward(nn::functional::mse_loss(model(x), y) * 1e35);
  EXPECT_FALSE(optimizer.step());
  EXPECT_EQ(parameters_of(net), before);
  EXPECT_EQ(fabric.grad_scaler()->get_scale(), scale * 0.5);
  EXPECT_EQ(fabric.grad_scaler()->skipped_steps(), 1);

  optimizer.zero_grad();
  fabric.backward(nn::functional::mse_loss(model(x), y));
  EXPECT_TRUE(optimizer.step());
  EXPECT_NE(parameters_of(net), before);
  EXPECT_EQ(fabric.grad_scaler()->skipped_steps(), 1);
}

TEST(Fabric, ClipGradientsByNormOrValueAfterUnscaling) {
  for (const std::string precision : {"32", "16-mixed"}) {
    SCOPED_TRACE(precision);
    manual_seed(3);
    TinyModel net;
    FabricOptions options = fabric_options(precision);
    options.grad_scaler.init_scale = 1024;  // large enough to tell, small enough not to overflow
    Fabric fabric(options);
    OptimizerConfig config = net.configure_optimizers();
    auto [model, optimizer] = fabric.setup(net, *config.optimizers.front());
    Tensor x = randn({8, 4}) * 10.0, y = randn({8, 1});
    fabric.backward(nn::functional::mse_loss(model(x), y));
    // The true (unscaled) gradients, in f64.
    double sum = 0;
    std::vector<std::vector<double>> grads;
    const double s = fabric.grad_scaler() ? fabric.grad_scaler()->get_scale() : 1.0;
    for (const Tensor& p : net.parameters()) {
      grads.push_back(p.grad().to(DType::f64).to_vector<double>());
      for (double& g : grads.back()) {
        g /= s;
        sum += g * g;
      }
    }
    const double norm = std::sqrt(sum), max_norm = norm / 4;
    ASSERT_GT(norm, 1.0);
    Tensor total = fabric.clip_gradients(model, optimizer, {.max_norm = max_norm});
    EXPECT_NEAR(total.item(), norm, norm * 1e-5);
    auto params = net.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      std::vector<float> got = params[i].grad().to_vector<float>();
      for (size_t j = 0; j < got.size(); ++j)
        EXPECT_NEAR(got[j], grads[i][j] * max_norm / (norm + 1e-6), 1e-5 * norm);
    }
    EXPECT_TRUE(optimizer.step());

    optimizer.zero_grad();
    fabric.backward(nn::functional::mse_loss(model(x), y));
    EXPECT_FALSE(fabric.clip_gradients(model, optimizer, {.clip_val = 1e-3}).defined());
    for (const Tensor& p : net.parameters())
      for (float g : p.grad().to_vector<float>()) EXPECT_LE(std::abs(g), 1e-3f);
    EXPECT_TRUE(optimizer.step());
  }
}

// Gradient accumulation with no_backward_sync on one device: the guard changes nothing, and two
// half batches add up to the full batch's gradient.
TEST(Fabric, AccumulatedHalfBatchesGiveTheFullBatchGradient) {
  manual_seed(4);
  TinyModel net;
  Fabric fabric(fabric_options());
  auto model = fabric.setup(net);
  Tensor x = randn({8, 4}), y = randn({8, 1});
  {
    auto no_sync = fabric.no_backward_sync(model);
    fabric.backward(nn::functional::mse_loss(model(x.narrow(0, 0, 4)), y.narrow(0, 0, 4)) * 0.5);
  }
  fabric.backward(nn::functional::mse_loss(model(x.narrow(0, 4, 4)), y.narrow(0, 4, 4)) * 0.5);
  std::vector<std::vector<float>> accumulated;
  for (const Tensor& p : net.parameters()) accumulated.push_back(p.grad().to_vector<float>());
  net.zero_grad();
  nn::functional::mse_loss(net.forward(x), y).backward();
  auto params = net.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<float> full = params[i].grad().to_vector<float>();
    for (size_t j = 0; j < full.size(); ++j) EXPECT_NEAR(accumulated[i][j], full[j], 1e-5);
  }
}

struct TrainingRun {
  TinyModel net;
  std::shared_ptr<optim::Optimizer> optimizer;
  std::shared_ptr<optim::StepLR> scheduler;
  std::shared_ptr<DataLoader> data;
  explicit TrainingRun(uint64_t seed) : net((manual_seed(seed), testing::TinyModelOptions{})) {
    optimizer = net.configure_optimizers().optimizers.front();
    scheduler = std::make_shared<optim::StepLR>(*optimizer, 3, 0.5);
    data = TinyData(TinyDataOptions{.shuffle = true}).train_dataloader();
  }
};

// Trains until `stop` total steps (counting from `step`), saving after step `save_at` if set.
void train_steps(Fabric& fabric, TrainingRun& run, FabricModule<TinyModel>& model,
                 FabricOptimizer& optimizer, FabricDataLoader& loader, int64_t& step, int64_t stop,
                 const std::string& save_path = "", int64_t save_at = -1) {
  while (step < stop)
    for (Batch& b : loader) {
      optimizer.zero_grad();
      fabric.backward(nn::functional::mse_loss(model(b[0]), b[1]));
      optimizer.step();
      run.scheduler->step();
      ++step;
      if (step == save_at) {
        std::string note = "mid-epoch";
        fabric.save(save_path, {{"model", model},
                                {"optimizer", optimizer},
                                {"scheduler", *run.scheduler},
                                {"loader", loader},
                                {"step", step},
                                {"note", note}});
      }
      if (step == stop) break;
    }
}

// A checkpoint saved inside the loop (mid-epoch, 16-mixed) resumes it exactly: model, optimizer,
// scheduler, loader position, loss scale and plain values.
TEST(Fabric, ACheckpointSavedMidEpochResumesTheLoopBitIdentically) {
  TempDir dir("fabric_resume");
  const std::string path = dir.str("mid.ckpt");
  TrainingRun straight(6);
  int64_t straight_step = 0;
  double straight_scale = 0;
  {
    Fabric fabric(fabric_options("16-mixed"));
    auto [model, optimizer] = fabric.setup(straight.net, *straight.optimizer);
    FabricDataLoader loader = fabric.setup_dataloaders(*straight.data);
    train_steps(fabric, straight, model, optimizer, loader, straight_step, 13, path, 5);
    straight_scale = fabric.grad_scaler()->get_scale();
  }

  TrainingRun resumed(99);  // other initial weights and loader seed, all replaced by the checkpoint
  Fabric fabric(fabric_options("16-mixed"));
  auto [model, optimizer] = fabric.setup(resumed.net, *resumed.optimizer);
  FabricDataLoader loader = fabric.setup_dataloaders(*resumed.data);
  int64_t step = 0;
  std::string note;
  State rest = fabric.load(path, {{"model", model},
                                  {"optimizer", optimizer},
                                  {"scheduler", *resumed.scheduler},
                                  {"loader", loader},
                                  {"step", step}});
  EXPECT_EQ(step, 5);
  EXPECT_EQ(rest.get_string("note"), "mid-epoch");  // not asked for: the remainder
  EXPECT_TRUE(rest.groups.empty());
  train_steps(fabric, resumed, model, optimizer, loader, step, 13);
  EXPECT_EQ(parameters_of(resumed.net), parameters_of(straight.net));
  EXPECT_EQ(resumed.optimizer->param_groups()[0].lr(), straight.optimizer->param_groups()[0].lr());
  EXPECT_EQ(fabric.grad_scaler()->get_scale(), straight_scale);
  EXPECT_NE(straight_scale, kMovingScale.init_scale);

  // The file is a Lumen checkpoint any HDF5 tool reads, with Fabric's own group.
  State file = io::load_checkpoint(path);
  EXPECT_EQ(file.get_string("format"), "lumen.checkpoint");
  EXPECT_EQ(file.group("fabric").get_string("precision"), "16-mixed");
  EXPECT_TRUE(file.group("fabric").has_group("grad_scaler"));
  EXPECT_TRUE(file.group("model").has_tensor("fc1.weight"));
  // With no state, load returns the whole checkpoint.
  EXPECT_TRUE(fabric.load(path).has_group("optimizer"));
}

// Sets `net` and `sgd` up and takes `steps` steps on random data.
void take_sgd_steps(Fabric& fabric, TinyModel& net, optim::SGD& sgd, int steps) {
  auto [model, optimizer] = fabric.setup(net, sgd);
  for (int i = 0; i < steps; ++i) {
    optimizer.zero_grad();
    fabric.backward(nn::functional::mse_loss(model(randn({4, 4})), randn({4, 1})));
    optimizer.step();
  }
}

TEST(Fabric, ALoadThatDoesNotFitSaysWhyAndChangesNothing) {
  TempDir dir("fabric_load_errors");
  const std::string path = dir.str("a.ckpt");
  Fabric fabric(fabric_options());
  manual_seed(7);
  TinyModel net;
  optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  take_sgd_steps(fabric, net, sgd, 1);
  int64_t epoch = 3;
  double best = 0.25;
  fabric.save(path, {{"model", net}, {"sgd", sgd}, {"epoch", epoch}, {"best", best}});

  manual_seed(8);
  TinyModel other;
  optim::SGD other_sgd(other.parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::Adam other_adam(other.parameters(), {.lr = 0.1});
  const std::vector<std::vector<float>> weights = parameters_of(other);
  int64_t other_epoch = 0;
  std::string wrong_type;
  auto unchanged = [&] {
    EXPECT_EQ(parameters_of(other), weights);
    EXPECT_EQ(other_epoch, 0);
    EXPECT_EQ(other_sgd.step_count(), 0);
  };
  auto expect_error = [&](const FabricState& state, const std::string& want, bool strict = true) {
    try {
      fabric.load(path, state, strict);
      ADD_FAILURE() << "no error; wanted " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    unchanged();
  };
  expect_error({{"model", other}, {"missing_thing", other_epoch}}, "missing \"missing_thing\"");
  expect_error({{"model", other}, {"epoch", wrong_type}},
               "\"epoch\" is an integer in the file, expected a string");
  expect_error({{"epoch", other_epoch}, {"sgd", other}}, "\"sgd\": missing fc1.bias");
  expect_error({{"model", other_sgd}, {"epoch", other_epoch}}, "\"model\" (an optimizer): ");
  expect_error({{"model", other}, {"sgd", other_adam}, {"epoch", other_epoch}},
               "\"sgd\" (an optimizer): ");
  TinyModel wide(testing::TinyModelOptions{.hidden = 16});
  expect_error({{"model", wide}}, "fc1.weight shape [8, 4] in checkpoint vs [16, 4] in module");

  // A double reads an integer; non-strict skips what the file lacks.
  double epoch_as_double = 0;
  State rest = fabric.load(
      path, {{"model", other}, {"epoch", epoch_as_double}, {"gone", other_epoch}}, false);
  EXPECT_EQ(epoch_as_double, 3.0);
  EXPECT_EQ(parameters_of(other), parameters_of(net));
  EXPECT_EQ(rest.get_double("best"), 0.25);
  EXPECT_TRUE(rest.has_group("sgd"));
  EXPECT_EQ(other_epoch, 0);
}

TEST(Fabric, AnOptimizerThatFailsToLoadGetsItsStateBack) {
  TempDir dir("fabric_rollback");
  const std::string path = dir.str("b.ckpt");
  Fabric fabric(fabric_options());
  manual_seed(9);
  TinyModel net;
  optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  take_sgd_steps(fabric, net, sgd, 2);
  fabric.save(path, {{"first", sgd}, {"second", sgd}});

  manual_seed(10);
  TinyModel other;
  optim::SGD first(other.parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::Adam second(other.parameters(), {.lr = 0.1});
  EXPECT_THROW(fabric.load(path, {{"first", first}, {"second", second}}), Error);
  EXPECT_EQ(first.step_count(), 0);
  EXPECT_TRUE(first.state_dict().groups.empty()) << "the SGD kept the loaded momentum";
  EXPECT_EQ(second.step_count(), 0);
}

TEST(Fabric, MisuseSaysWhatWasWrong) {
  auto expect_error = [](const std::function<void()>& fn, const std::string& want) {
    try {
      fn();
      ADD_FAILURE() << "no error; wanted " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  expect_error([] { Fabric f({.precision = "8-mixed"}); }, "precision \"8-mixed\"");
  expect_error([] { Fabric f({.accelerator = "tpu"}); }, "accelerator must be");
  expect_error([] { Fabric f({.strategy = "fsdp"}); }, "strategy must be");
  if (!cuda_is_available())
    expect_error([] { Fabric f({.accelerator = "cuda"}); }, "no CUDA device is available");

  Fabric fabric(fabric_options());
  TinyModel net;
  auto model = fabric.setup(net);
  optim::SGD stepped(net.parameters(), {.lr = 0.1});
  fabric.backward(nn::functional::mse_loss(model(randn({2, 4})), randn({2, 1})));
  stepped.step();
  TinyModel fresh;
  expect_error([&] { fabric.setup(fresh, stepped); }, "has stepped 1 times already");
  auto optimizer = fabric.setup_optimizers(stepped);
  expect_error([&] { fabric.clip_gradients(model, optimizer, {}); }, "exactly one of");
  expect_error([&] { fabric.clip_gradients(model, optimizer, {.clip_val = 1, .max_norm = 1}); },
               "exactly one of");
  expect_error(
      [&] {
        fabric.backward(model(randn({2, 4})));
      },
      "must be a scalar, got shape [2, 1]");
  expect_error([&] { fabric.backward(randn({})); }, "does not depend on any parameter");
  expect_error([&] { fabric.backward(Tensor()); }, "undefined");
  int64_t value = 1;
  expect_error(
      [&] {
        fabric.save("/nonexistent-dir/x.ckpt", {{"format", value}});
      },
      "\"format\" is reserved");
  expect_error(
      [&] {
        fabric.load("/nonexistent-dir/x.ckpt", {{"version", value}});
      },
      "\"version\" is reserved");
  expect_error(
      [&] {
        fabric.load("/nonexistent-dir/x.ckpt", {{"v", value}});
      },
      "/nonexistent-dir/x.ckpt");
}

TEST(Fabric, OneDeviceCollectivesLogsAndRankZeroFirst) {
  TempDir dir("fabric_log");
  auto csv = std::make_shared<CSVLogger>(CSVLoggerOptions{.save_dir = dir.str()});
  {
    Fabric fabric({.accelerator = "cpu", .loggers = {csv}});
    EXPECT_EQ(fabric.world_size(), 1);
    EXPECT_TRUE(fabric.is_global_zero());
    EXPECT_EQ(fabric.strategy(), "single_device");
    EXPECT_EQ(fabric.device(), Device::cpu());
    Tensor x = randn({3});
    Tensor reduced = fabric.all_reduce(x);
    EXPECT_EQ(reduced.to_vector<float>(), x.to_vector<float>());
    EXPECT_NE(reduced.impl(), x.impl());
    EXPECT_EQ(fabric.all_gather(x).shape(), (Shape{1, 3}));
    EXPECT_EQ(fabric.broadcast(std::string("a")), "a");
    int calls = 0;
    fabric.rank_zero_first([&] { ++calls; });
    EXPECT_EQ(calls, 1);
    fabric.log("loss", 0.5);
    fabric.log("loss", from_vector<float>({0.25f}, {}));
    fabric.log_dict({{"acc", 0.75}, {"loss", 0.125}}, 10);
    EXPECT_EQ(fabric.logger(), csv.get());
  }
  // The destructor finalized (flushed) the logger.
  std::ifstream in(csv->metrics_file_path());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "acc,loss,step\n,0.5,0\n,0.25,1\n0.75,0.125,10\n");
}

// On the CPU setup moves nothing, so an optimizer built before setup_module (and any other
// reference to the parameters) stays valid; setup takes several optimizers.
TEST(Fabric, OptimizersBuiltBeforeSetupAndSeveralAtOnce) {
  Fabric fabric(fabric_options());
  manual_seed(11);
  TinyModel net;
  optim::SGD early(net.parameters(), {.lr = 0.1});
  auto model = fabric.setup_module(net);
  auto optimizer = fabric.setup_optimizers(early);
  std::vector<std::vector<float>> before = parameters_of(net);
  fabric.backward(nn::functional::mse_loss(model(randn({4, 4})), randn({4, 1})));
  optimizer.step();
  auto after = parameters_of(net);
  for (size_t i = 0; i < after.size(); ++i) EXPECT_NE(after[i], before[i]) << "parameter " << i;

  TinyModel two;
  optim::SGD first(two.fc1.parameters(), {.lr = 0.1});
  optim::SGD second(two.fc2.parameters(), {.lr = 0.1});
  auto [m, a, b] = fabric.setup(two, first, second);
  before = parameters_of(two);
  fabric.backward(nn::functional::mse_loss(m(randn({4, 4})), randn({4, 1})));
  a.step();
  after = parameters_of(two);
  EXPECT_NE(after[0], before[0]);  // fc1.weight: the first optimizer's
  EXPECT_EQ(after[2], before[2]);  // fc2.weight: not yet
  b.step();
  EXPECT_NE(parameters_of(two)[2], before[2]);
  // Setting a module up again replaces its record.
  EXPECT_NO_THROW(fabric.setup(two));
}

// Clipping takes the optimizer's parameters (Lightning's main_params), after unscaling them.
TEST(Fabric, ClipGradientsClipsTheOptimizersParametersOnly) {
  FabricOptions options = fabric_options("16-mixed");
  options.grad_scaler.init_scale = 1024;
  Fabric fabric(options);
  manual_seed(12);
  TinyModel net;
  optim::SGD body(net.fc1.parameters(), {.lr = 0.1});
  optim::SGD head(net.fc2.parameters(), {.lr = 0.1});
  auto [model, body_opt, head_opt] = fabric.setup(net, body, head);
  fabric.backward(nn::functional::mse_loss(model(randn({8, 4}) * 10.0), randn({8, 1})));
  std::vector<float> body_grad = net.fc1.weight.grad().to_vector<float>();
  double head_sq = 0;
  for (const Tensor& p : net.fc2.parameters())
    for (float g : p.grad().to_vector<float>()) head_sq += double(g) * g / (1024.0 * 1024.0);
  Tensor norm = fabric.clip_gradients(model, head_opt, {.max_norm = 1e-3});
  EXPECT_NEAR(norm.item(), std::sqrt(head_sq), 1e-5 * std::sqrt(head_sq));
  EXPECT_EQ(net.fc1.weight.grad().to_vector<float>(), body_grad);  // still scaled, untouched
}

TEST(Fabric, StepAfterLossBackwardInsteadOfFabricBackwardIsAnError) {
  FabricOptions options = fabric_options("16-mixed");
  options.grad_scaler.init_scale = 1024;  // 65536 overflows this model's f16 output gradient
  Fabric fabric(options);
  manual_seed(13);
  TinyModel net;
  optim::SGD sgd(net.parameters(), {.lr = 0.1});
  auto [model, optimizer] = fabric.setup(net, sgd);
  std::vector<std::vector<float>> before = parameters_of(net);
  nn::functional::mse_loss(model(randn({4, 4})), randn({4, 1})).backward();
  try {
    optimizer.step();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("call fabric.backward(loss), not loss.backward()"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(parameters_of(net), before);
  // A forward without gradients (evaluation) between backward and step is fine.
  optimizer.zero_grad();
  fabric.backward(nn::functional::mse_loss(model(randn({4, 4})), randn({4, 1})));
  {
    NoGradGuard no_grad;
    (void)model(randn({4, 4}));
  }
  EXPECT_TRUE(optimizer.step());
}

// A loader saved before its first epoch resumes at epoch 0; a failed load leaves a loader (and
// everything else) as it was; a loss scaler that is off saves and loads nothing.
TEST(Fabric, LoaderStatesBeforeTheFirstEpochFailedLoadsAndADisabledScaler) {
  TempDir dir("fabric_loader_state");
  FabricOptions options = fabric_options("16-mixed");
  options.grad_scaler.enabled = false;
  Fabric fabric(options);
  auto first_inputs = [](FabricDataLoader& loader) {
    std::vector<float> out;
    for (Batch& b : loader) out.push_back(b[0].select(0, 0).select(0, 0).item<float>());
    return out;
  };
  manual_seed(14);
  auto data = TinyData(TinyDataOptions{.shuffle = true}).train_dataloader();
  FabricDataLoader loader = fabric.setup_dataloaders(*data);
  const std::string path = dir.str("c.ckpt");
  TinyModel net;
  optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  auto [model, optimizer] = fabric.setup(net, sgd);
  fabric.save(path, {{"loader", loader}, {"optimizer", optimizer}});
  EXPECT_FALSE(fabric.load(path).group("fabric").has_group("grad_scaler"));

  auto other_data = TinyData(TinyDataOptions{.shuffle = true}).train_dataloader();  // other seed
  FabricDataLoader other = fabric.setup_dataloaders(*other_data);
  fabric.load(path, {{"loader", other}, {"optimizer", optimizer}});
  std::vector<float> epoch0 = first_inputs(loader);
  EXPECT_EQ(first_inputs(other), epoch0);

  // The Adam refuses SGD's state: the loader keeps its place (epoch 1 next, not a resume).
  optim::Adam adam(net.parameters(), {.lr = 0.1});
  EXPECT_THROW(fabric.load(path, {{"loader", other}, {"optimizer", adam}}), Error);
  std::vector<float> epoch1 = first_inputs(loader);
  EXPECT_NE(epoch1, epoch0);
  EXPECT_EQ(first_inputs(other), epoch1);
}

// Two optimizers stepping on one backward: the loss scale moves once per backward (torch.amp's
// step(a); step(b); update()), and both see the gradients unscaled by the same scale.
TEST(Fabric, SeveralOptimizersOnOneBackwardAdjustTheScaleOnce) {
  FabricOptions options = fabric_options("16-mixed");
  options.grad_scaler = {.init_scale = 64, .growth_interval = 1};
  Fabric fabric(options);
  manual_seed(15);
  TinyModel net;
  optim::SGD body(net.fc1.parameters(), {.lr = 0.01});
  optim::SGD head(net.fc2.parameters(), {.lr = 0.01});
  auto [model, a, b] = fabric.setup(net, body, head);
  Tensor x = randn({8, 4}), y = randn({8, 1});
  for (int i = 0; i < 3; ++i) {
    a.zero_grad();
    b.zero_grad();
    fabric.backward(nn::functional::mse_loss(model(x), y));
    // What the head's step will read: its gradient over the scale of this backward.
    const double scale = 64.0 * std::pow(2.0, i);
    std::vector<float> expected = net.fc2.weight.grad().to_vector<float>();
    for (float& g : expected) g = static_cast<float>(g / scale);
    std::vector<float> before = net.fc2.weight.to_vector<float>();
    EXPECT_TRUE(a.step());
    // A read between the steps shows the scale the backward leads to and changes nothing.
    EXPECT_EQ(fabric.grad_scaler()->get_scale(), scale * 2);
    EXPECT_TRUE(b.step());
    std::vector<float> after = net.fc2.weight.to_vector<float>();
    for (size_t j = 0; j < after.size(); ++j)
      EXPECT_NEAR(after[j], before[j] - 0.01f * expected[j], 1e-6f) << "step " << i;
  }
  EXPECT_EQ(fabric.grad_scaler()->get_scale(), 64.0 * 8);  // three growths, not six
}

// LinearWarmup loads its own part before its `after` scheduler refuses the state: the whole
// warmup gets its earlier state back.
TEST(Fabric, ASchedulerThatFailsHalfwayThroughItsLoadGetsItsStateBack) {
  TempDir dir("fabric_scheduler_rollback");
  Fabric fabric(fabric_options());
  TinyModel net;
  optim::SGD sgd(net.parameters(), {.lr = 0.1});
  auto step_lr = std::make_shared<optim::StepLR>(sgd, 2);
  optim::LinearWarmup warmup(sgd, 5, {}, step_lr);
  for (int i = 0; i < 7; ++i) {
    sgd.step();
    warmup.step();
  }
  fabric.save(dir.str("w.ckpt"), {{"scheduler", warmup}});

  TinyModel other;
  optim::SGD other_sgd(other.parameters(), {.lr = 0.3});
  auto exponential = std::make_shared<optim::ExponentialLR>(other_sgd, 0.9);
  optim::LinearWarmup other_warmup(other_sgd, 2, {.start_factor = 0.5}, exponential);
  const State before = other_warmup.state_dict();
  EXPECT_THROW_MSG(fabric.load(dir.str("w.ckpt"), {{"scheduler", other_warmup}}),
                   "\"scheduler\" (a scheduler)", "StepLR", "(nothing was loaded)");
  const State after = other_warmup.state_dict();
  for (const char* key : {"warmup_steps", "last_epoch", "step_count"})
    EXPECT_EQ(after.get_int(key), before.get_int(key)) << key;
  EXPECT_EQ(after.get_double("start_factor"), 0.5);
  EXPECT_EQ(after.get_doubles("base_lrs"), before.get_doubles("base_lrs"));
  EXPECT_NE(warmup.state_dict().get_int("warmup_steps"), before.get_int("warmup_steps"));
}

}  // namespace
}  // namespace lumen
