#pragma once
// Small models, data and recorders for the Trainer tests (tests/test_trainer*.cpp).
#include <unistd.h>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/batch_norm.h"
#include "nn/dropout.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/linalg.h"
#include "nn/functional/loss.h"
#include "nn/linear.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "nn/optim/step_lr.h"
#include "tensor/generator.h"
#include "tensor/tensor.h"
#include "trainer/data_loader.h"
#include "trainer/data_module.h"
#include "trainer/lightning_module.h"
#include "trainer/logger.h"
#include "trainer/trainer.h"

namespace lumen::testing {

// A fresh directory under the system temp dir, removed when the object goes.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("lumen_trainer_" + tag + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str(const std::string& name = "") const { return (path / name).string(); }
  // Writes `bytes` to the file `name` here; returns its path.
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path / name, std::ios::binary) << bytes;
    return str(name);
  }
};

// Every parameter's values, in registration order.
inline std::vector<std::vector<float>> parameters_of(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.to_vector<float>());
  return out;
}

// Regression rows: x ~ N(0, 1) [n, 4], y = x . (1, -2, 0.5, 3) + 0.1 noise [n, 1]. Drawn from a
// private generator so the data does not depend on (or move) the default one.
inline std::shared_ptr<TensorDataset> regression_rows(int64_t n, uint64_t seed = 7) {
  Generator gen(seed);
  Tensor x = randn({n, 4}, {}, &gen);
  Tensor w = from_vector<float>({1.f, -2.f, 0.5f, 3.f}, {4, 1});
  Tensor y = matmul(x, w) + randn({n, 1}, {}, &gen) * 0.1;
  return std::make_shared<TensorDataset>(std::vector<Tensor>{x, y});
}

struct TinyDataOptions {
  int64_t n_train = 64;
  int64_t n_val = 32;
  int64_t n_test = 16;
  int64_t batch_size = 8;
  bool shuffle = false;
  int num_workers = 0;
  bool with_val = true;
};

// A DataModule over regression_rows; each *_dataloader() call makes a new loader (as a
// LightningDataModule usually does).
struct TinyData : DataModule {
  TinyDataOptions o;
  std::shared_ptr<TensorDataset> train, val, test;
  std::vector<std::string>* events = nullptr;  // records prepare_data/setup/teardown
  explicit TinyData(TinyDataOptions options = {}) : o(options) {
    train = regression_rows(o.n_train, 7);
    val = regression_rows(o.n_val, 8);
    test = regression_rows(o.n_test, 9);
  }
  void prepare_data() override {
    if (events) events->push_back("data:prepare_data");
  }
  void setup(const std::string& stage) override {
    if (events) events->push_back("data:setup:" + stage);
  }
  void teardown(const std::string& stage) override {
    if (events) events->push_back("data:teardown:" + stage);
  }
  std::shared_ptr<DataLoader> train_dataloader() override {
    return std::make_shared<DataLoader>(
        train, DataLoaderOptions{
                   .batch_size = o.batch_size, .shuffle = o.shuffle, .num_workers = o.num_workers});
  }
  std::shared_ptr<DataLoader> val_dataloader() override {
    if (!o.with_val) return nullptr;
    return std::make_shared<DataLoader>(
        val, DataLoaderOptions{.batch_size = o.batch_size, .num_workers = o.num_workers});
  }
  std::shared_ptr<DataLoader> test_dataloader() override {
    return std::make_shared<DataLoader>(test, DataLoaderOptions{.batch_size = o.batch_size});
  }
  std::shared_ptr<DataLoader> predict_dataloader() override { return test_dataloader(); }
};

struct TinyModelOptions {
  int64_t hidden = 8;
  double dropout = 0.0;
  double lr = 0.05;
  double momentum = 0.9;
  // Returns the scheduler config (or nothing) for the optimizer configure_optimizers makes.
  std::function<std::optional<SchedulerConfig>(optim::Optimizer&)> scheduler = nullptr;
};

// 4 -> hidden -> 1 MLP with optional dropout, MSE loss, SGD with momentum. Records every
// training loss and every validation epoch's mean loss, bit for bit.
struct TinyModel : LightningModule {
  TinyModelOptions o;
  nn::Linear fc1, fc2;
  nn::Dropout drop;
  std::vector<float> train_losses;
  std::vector<double> val_losses;  // callback_metrics["val_loss"] after each validation
  std::vector<std::string>* events = nullptr;
  int64_t training_steps = 0, validation_steps = 0, test_steps = 0;
  std::vector<float> first_inputs;  // x[0, 0] of each training batch

  explicit TinyModel(TinyModelOptions options = {})
      : o(std::move(options)), fc1(4, o.hidden), fc2(o.hidden, 1), drop(o.dropout) {
    register_module("fc1", fc1);
    register_module("drop", drop);
    register_module("fc2", fc2);
  }
  Tensor forward(const Tensor& x) { return fc2(drop(relu(fc1(x)))); }
  void record(const std::string& e) {
    if (events) events->push_back("module:" + e);
  }

  Tensor training_step(const Batch& b, int64_t) override {
    record("training_step");
    ++training_steps;
    first_inputs.push_back(b[0].select(0, 0).select(0, 0).item<float>());  // on any device
    Tensor loss = nn::functional::mse_loss(forward(b[0]), b[1]);
    train_losses.push_back(loss.item<float>());
    log("train_loss", loss, {.prog_bar = true});
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override {
    record("validation_step");
    ++validation_steps;
    log("val_loss", nn::functional::mse_loss(forward(b[0]), b[1]), {.prog_bar = true});
  }
  void test_step(const Batch& b, int64_t) override {
    record("test_step");
    ++test_steps;
    log("test_loss", nn::functional::mse_loss(forward(b[0]), b[1]));
  }
  Tensor predict_step(const Batch& b, int64_t) override { return forward(b[0]); }
  OptimizerConfig configure_optimizers() override {
    record("configure_optimizers");
    auto opt = std::make_shared<optim::SGD>(parameters(),
                                            optim::SGDOptions{.lr = o.lr, .momentum = o.momentum});
    std::optional<SchedulerConfig> sched;
    if (o.scheduler) sched = o.scheduler(*opt);
    return OptimizerConfig(opt, sched);
  }

  void on_fit_start() override { record("on_fit_start"); }
  void on_fit_end() override { record("on_fit_end"); }
  void on_train_start() override { record("on_train_start"); }
  void on_train_end() override { record("on_train_end"); }
  void on_train_epoch_start() override { record("on_train_epoch_start"); }
  void on_train_epoch_end() override { record("on_train_epoch_end"); }
  void setup(const std::string& s) override { record("setup:" + s); }
  void teardown(const std::string& s) override { record("teardown:" + s); }
  void on_validation_start() override { record("on_validation_start"); }
  void on_validation_end() override { record("on_validation_end"); }
  void on_validation_batch_start(const Batch&, int64_t) override {
    record("on_validation_batch_start");
  }
  void on_validation_batch_end(const Batch&, int64_t) override {
    record("on_validation_batch_end");
  }
  void on_test_start() override { record("on_test_start"); }
  void on_test_end() override { record("on_test_end"); }
  void on_test_batch_start(const Batch&, int64_t) override { record("on_test_batch_start"); }
  void on_test_batch_end(const Batch&, int64_t) override { record("on_test_batch_end"); }
  void on_predict_start() override { record("on_predict_start"); }
  void on_predict_end() override { record("on_predict_end"); }
  void on_predict_epoch_start() override { record("on_predict_epoch_start"); }
  void on_predict_epoch_end() override { record("on_predict_epoch_end"); }
  void on_predict_batch_start(const Batch&, int64_t) override { record("on_predict_batch_start"); }
  void on_predict_batch_end(const Tensor&, const Batch&, int64_t) override {
    record("on_predict_batch_end");
  }
  void on_validation_epoch_start() override { record("on_validation_epoch_start"); }
  void on_validation_epoch_end() override { record("on_validation_epoch_end"); }
  void on_test_epoch_start() override { record("on_test_epoch_start"); }
  void on_test_epoch_end() override { record("on_test_epoch_end"); }
  bool on_train_batch_start(const Batch&, int64_t) override {
    record("on_train_batch_start");
    return true;
  }
  void on_train_batch_end(const Tensor&, const Batch&, int64_t) override {
    record("on_train_batch_end");
  }
  void on_before_zero_grad(optim::Optimizer&) override { record("on_before_zero_grad"); }
  void on_before_backward(const Tensor&) override { record("on_before_backward"); }
  void on_after_backward() override { record("on_after_backward"); }
  void on_before_optimizer_step(optim::Optimizer&) override { record("on_before_optimizer_step"); }
  void on_save_checkpoint(State&) override { record("on_save_checkpoint"); }
  void on_load_checkpoint(const State&) override { record("on_load_checkpoint"); }
};

struct BackboneModelOptions {
  bool batch_norm = false;      // a BatchNorm1d after the backbone's Linear
  bool all_parameters = false;  // SGD over every parameter, not only the trainable ones
  double lr = 0.1;
  double momentum = 0.9;
};

// For the fine-tuning callbacks: a child "backbone" (Linear 4 -> 8, optional BatchNorm, ReLU)
// under a Linear 8 -> 1 head, MSE loss; SGD over the parameters that require grad when
// configure_optimizers runs (Lightning's advice with BackboneFinetuning), or over all.
struct BackboneModel : LightningModule {
  struct Backbone : nn::Module {
    nn::Linear fc{4, 8};
    std::shared_ptr<nn::BatchNorm1d> bn;
    explicit Backbone(bool with_bn) {
      register_module("fc", fc);
      if (with_bn) bn = register_module("bn", std::make_shared<nn::BatchNorm1d>(8));
    }
    Tensor forward(const Tensor& x) {
      Tensor h = fc(x);
      return relu(bn ? bn->forward(h) : h);
    }
  };
  BackboneModelOptions o;
  Backbone backbone;
  nn::Linear head{8, 1};
  explicit BackboneModel(BackboneModelOptions options = {})
      : o(options), backbone(options.batch_norm) {
    register_module("backbone", backbone);
    register_module("head", head);
  }
  Tensor training_step(const Batch& b, int64_t) override {
    return nn::functional::mse_loss(head(backbone.forward(b[0])), b[1]);
  }
  OptimizerConfig configure_optimizers() override {
    std::vector<Tensor> params;
    for (const Tensor& p : parameters())
      if (o.all_parameters || p.requires_grad()) params.push_back(p);
    return OptimizerConfig(std::make_shared<optim::SGD>(
        params, optim::SGDOptions{.lr = o.lr, .momentum = o.momentum}));
  }
};

// Saves a checkpoint at the end of epoch `epoch` (listed after the callbacks whose epoch-end state
// it should hold).
struct SaveAtEpochEnd : Callback {
  std::string path;
  int64_t epoch;
  SaveAtEpochEnd(std::string p, int64_t e) : path(std::move(p)), epoch(e) {}
  std::string state_key() const override { return "SaveAtEpochEnd"; }
  void on_train_epoch_end(Trainer& t, LightningModule&) override {
    if (t.current_epoch() == epoch) t.save_checkpoint(path);
  }
};

// Throws at the start of the batch that would make optimizer step `step` + 1: a crash.
struct CrashAfterStep : Callback {
  int64_t step;
  explicit CrashAfterStep(int64_t s) : step(s) {}
  std::string state_key() const override { return "CrashAfterStep"; }
  void on_train_batch_start(Trainer& t, LightningModule&, const Batch&, int64_t) override {
    if (t.global_step() == step) throw Error("simulated crash");
  }
};

// Records every callback hook as "cb:<hook>".
struct HookRecorder : Callback {
  std::vector<std::string>* events;
  explicit HookRecorder(std::vector<std::string>* e) : events(e) {}
  std::string state_key() const override { return "HookRecorder"; }
  void r(const std::string& h) { events->push_back("cb:" + h); }
  void setup(Trainer&, LightningModule&, const std::string& s) override { r("setup:" + s); }
  void teardown(Trainer&, LightningModule&, const std::string& s) override { r("teardown:" + s); }
  void on_fit_start(Trainer&, LightningModule&) override { r("on_fit_start"); }
  void on_fit_end(Trainer&, LightningModule&) override { r("on_fit_end"); }
  void on_sanity_check_start(Trainer&, LightningModule&) override { r("on_sanity_check_start"); }
  void on_sanity_check_end(Trainer&, LightningModule&) override { r("on_sanity_check_end"); }
  void on_train_start(Trainer&, LightningModule&) override { r("on_train_start"); }
  void on_train_end(Trainer&, LightningModule&) override { r("on_train_end"); }
  void on_train_epoch_start(Trainer&, LightningModule&) override { r("on_train_epoch_start"); }
  void on_train_epoch_end(Trainer&, LightningModule&) override { r("on_train_epoch_end"); }
  void on_train_batch_start(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_train_batch_start");
  }
  void on_train_batch_end(Trainer&, LightningModule&, const Tensor&, const Batch&,
                          int64_t) override {
    r("on_train_batch_end");
  }
  void on_before_zero_grad(Trainer&, LightningModule&, optim::Optimizer&) override {
    r("on_before_zero_grad");
  }
  void on_before_backward(Trainer&, LightningModule&, const Tensor&) override {
    r("on_before_backward");
  }
  void on_after_backward(Trainer&, LightningModule&) override { r("on_after_backward"); }
  void on_before_optimizer_step(Trainer&, LightningModule&, optim::Optimizer&) override {
    r("on_before_optimizer_step");
  }
  void on_validation_start(Trainer&, LightningModule&) override { r("on_validation_start"); }
  void on_validation_end(Trainer&, LightningModule&) override { r("on_validation_end"); }
  void on_validation_epoch_start(Trainer&, LightningModule&) override {
    r("on_validation_epoch_start");
  }
  void on_validation_epoch_end(Trainer&, LightningModule&) override {
    r("on_validation_epoch_end");
  }
  void on_validation_batch_end(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_validation_batch_end");
  }
  void on_test_start(Trainer&, LightningModule&) override { r("on_test_start"); }
  void on_test_end(Trainer&, LightningModule&) override { r("on_test_end"); }
  void on_test_epoch_end(Trainer&, LightningModule&) override { r("on_test_epoch_end"); }
  void on_test_batch_end(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_test_batch_end");
  }
  void on_validation_batch_start(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_validation_batch_start");
  }
  void on_test_epoch_start(Trainer&, LightningModule&) override { r("on_test_epoch_start"); }
  void on_test_batch_start(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_test_batch_start");
  }
  void on_predict_start(Trainer&, LightningModule&) override { r("on_predict_start"); }
  void on_predict_end(Trainer&, LightningModule&) override { r("on_predict_end"); }
  void on_predict_epoch_start(Trainer&, LightningModule&) override { r("on_predict_epoch_start"); }
  void on_predict_epoch_end(Trainer&, LightningModule&) override { r("on_predict_epoch_end"); }
  void on_predict_batch_start(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_predict_batch_start");
  }
  void on_predict_batch_end(Trainer&, LightningModule&, const Batch&, int64_t) override {
    r("on_predict_batch_end");
  }
  void on_exception(Trainer&, LightningModule&, const std::exception& e) override {
    r(std::string("on_exception:") + e.what());
  }
  void on_save_checkpoint(Trainer&, LightningModule&, State&) override { r("on_save_checkpoint"); }
  void on_load_checkpoint(Trainer&, LightningModule&, const State&) override {
    r("on_load_checkpoint");
  }
};

// A logger that keeps every log_metrics call.
struct RecordingLogger : Logger {
  struct Row {
    std::map<std::string, double> metrics;
    int64_t step;
  };
  std::vector<Row> rows;
  std::map<std::string, AttrValue> hparams;
  std::vector<std::string> finalized;
  std::string name() const override { return "recording"; }
  std::string version() const override { return "version_0"; }
  std::string log_dir() const override { return "."; }
  void log_metrics(const std::map<std::string, double>& m, int64_t step) override {
    rows.push_back({m, step});
  }
  void log_hyperparams(const std::map<std::string, AttrValue>& p) override { hparams = p; }
  void finalize(const std::string& status) override { finalized.push_back(status); }
};

// Trainer options for quiet, fast CPU tests: no progress bar, no default logger or
// checkpointing.
inline TrainerOptions quiet(TrainerOptions o) {
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.enable_model_summary = false;
  if (o.logger.enabled && o.logger.loggers.empty()) o.logger = false;
  o.accelerator = "cpu";  // the determinism contract is about CPU runs
  return o;
}

struct GanOptions {
  bool toggle = true;
  bool step_scheduler = true;  // the module steps the discriminator's StepLR every batch
  bool two_adams = false;      // both optimizers Adam (LearningRateMonitor names)
  double dropout = 0.0;
};

// A generator and a discriminator over TinyData's rows, trained as Lightning's GAN example
// trains them (least squares in place of BCE): the generator's step with the discriminator
// toggled off, then the discriminator's on real rows and detached fakes.
struct TinyGan : LightningModule {
  GanOptions o;
  nn::Linear gen{4, 4}, d1{4, 8}, d2{8, 1};
  nn::Dropout drop;
  std::vector<float> g_losses, d_losses;
  std::vector<bool> step_results;

  explicit TinyGan(GanOptions options = {}) : o(options), drop(o.dropout) {
    register_module("gen", gen);
    register_module("d1", d1);
    register_module("drop", drop);
    register_module("d2", d2);
    automatic_optimization = false;
  }
  Tensor discriminate(const Tensor& x) { return d2(drop(relu(d1(x)))); }
  Tensor generator_loss(const Tensor& x) {
    Tensor score = discriminate(gen(x));
    return nn::functional::mse_loss(score, ones_like(score));
  }
  Tensor discriminator_loss(const Tensor& x) {
    Tensor real = discriminate(x), fake = discriminate(gen(x).detach());
    return (nn::functional::mse_loss(real, ones_like(real)) +
            nn::functional::mse_loss(fake, zeros_like(fake))) *
           0.5;
  }
  std::vector<Tensor> generator_parameters() const { return gen.parameters(); }
  std::vector<Tensor> discriminator_parameters() const {
    std::vector<Tensor> p = d1.parameters(), q = d2.parameters();
    p.insert(p.end(), q.begin(), q.end());
    return p;
  }
  std::pair<std::shared_ptr<optim::Optimizer>, std::shared_ptr<optim::Optimizer>> make_optimizers()
      const {
    std::shared_ptr<optim::Optimizer> g =
        std::make_shared<optim::Adam>(generator_parameters(), optim::AdamOptions{.lr = 0.01});
    std::shared_ptr<optim::Optimizer> d =
        o.two_adams ? std::shared_ptr<optim::Optimizer>(std::make_shared<optim::Adam>(
                          discriminator_parameters(), optim::AdamOptions{.lr = 0.02}))
                    : std::make_shared<optim::SGD>(discriminator_parameters(),
                                                   optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
    return {g, d};
  }
  OptimizerConfig configure_optimizers() override {
    auto [g, d] = make_optimizers();
    return OptimizerConfig(
        {g, d}, {SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*d, 2, 0.5)}});
  }
  Tensor training_step(const Batch& b, int64_t) override {
    auto [opt_g, opt_d] = optimizers<2>();
    const Tensor& x = b[0];
    if (o.toggle) toggle_optimizer(opt_g);
    Tensor g_loss = generator_loss(x);
    opt_g.zero_grad();
    manual_backward(g_loss);
    step_results.push_back(opt_g.step());
    if (o.toggle) untoggle_optimizer(opt_g);

    if (o.toggle) toggle_optimizer(opt_d);
    Tensor d_loss = discriminator_loss(x);
    opt_d.zero_grad();
    manual_backward(d_loss);
    step_results.push_back(opt_d.step());
    if (o.toggle) untoggle_optimizer(opt_d);
    if (o.step_scheduler) lr_schedulers().at(0)->step();

    g_losses.push_back(g_loss.item<float>());
    d_losses.push_back(d_loss.item<float>());
    log("g_loss", g_loss, {.prog_bar = true});
    log("d_loss", d_loss);
    return d_loss;
  }
};

}  // namespace lumen::testing
