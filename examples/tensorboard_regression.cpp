// Logging a run for TensorBoard: fits a small MLP to a noisy linear function with the Trainer,
// logging to a TensorBoardLogger and a CSVLogger side by side, with learning-rate monitoring,
// checkpointing of the two best epochs and early stopping. Then:
//   tensorboard --logdir <save_dir>/tb
// bench/check_tensorboard_events.py reads the event file back with TensorBoard's own reader
// and checks it against the CSV of the same run.
#include <cstdio>
#include <memory>
#include <string>

#include "lumen/lumen.h"
#include "trainer/trainer.h"

using namespace lumen;
namespace F = lumen::nn::functional;

struct Regressor : LightningModule {
  nn::Linear fc1{4, 32}, fc2{32, 1};
  double lr;
  explicit Regressor(double learning_rate) : lr(learning_rate) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    save_hyperparameters({{"lr", lr}, {"hidden", int64_t{32}}, {"optimizer", std::string("SGD")}});
  }
  Tensor forward(const Tensor& x) { return fc2(relu(fc1(x))); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = F::mse_loss(forward(b[0]), b[1]);
    log("train_loss", loss);
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override {
    log("val_loss", F::mse_loss(forward(b[0]), b[1]));
  }
  OptimizerConfig configure_optimizers() override {
    auto opt = std::make_shared<optim::SGD>(parameters(), optim::SGDOptions{.lr = lr});
    SchedulerConfig sched;
    sched.scheduler = std::make_shared<optim::StepLR>(*opt, 2, 0.5);
    return OptimizerConfig(opt, sched);
  }
};

// y = x . (1, -2, 0.5, 3) + 0.1 noise.
struct LinearData : DataModule {
  std::shared_ptr<TensorDataset> train, val;
  LinearData() {
    Generator gen(11);
    auto rows = [&](int64_t n) {
      Tensor x = randn({n, 4}, {}, &gen);
      Tensor y = matmul(x, from_vector<float>({1.f, -2.f, 0.5f, 3.f}, {4, 1})) +
                 randn({n, 1}, {}, &gen) * 0.1;
      return std::make_shared<TensorDataset>(std::vector<Tensor>{x, y});
    };
    train = rows(512);
    val = rows(128);
  }
  std::shared_ptr<DataLoader> train_dataloader() override {
    return std::make_shared<DataLoader>(train,
                                        DataLoaderOptions{.batch_size = 32, .shuffle = true});
  }
  std::shared_ptr<DataLoader> val_dataloader() override {
    return std::make_shared<DataLoader>(val, DataLoaderOptions{.batch_size = 64});
  }
};

int main(int argc, char** argv) {
  std::string save_dir = argc > 1 ? argv[1] : "tensorboard_regression_logs";
  seed_everything(0);
  Regressor model(0.05);
  LinearData data;
  auto tb = std::make_shared<TensorBoardLogger>(
      TensorBoardLoggerOptions{.save_dir = save_dir + "/tb", .name = "regression"});
  auto csv = std::make_shared<CSVLogger>(
      CSVLoggerOptions{.save_dir = save_dir + "/csv", .name = "regression"});
  TrainerOptions options;
  options.max_epochs = 6;
  options.log_every_n_steps = 4;
  options.default_root_dir = save_dir;
  options.enable_progress_bar = false;
  options.logger = LoggerOption(std::vector<std::shared_ptr<Logger>>{tb, csv});
  options.callbacks = {
      std::make_shared<LearningRateMonitor>(
          LearningRateMonitorOptions{.logging_interval = "epoch"}),
      std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.filename = "{epoch}-{val_loss:.4f}",
                                                               .monitor = "val_loss",
                                                               .mode = "min",
                                                               .save_top_k = 2,
                                                               .save_last = true}),
      std::make_shared<EarlyStopping>(EarlyStoppingOptions{.monitor = "val_loss", .patience = 2})};
  Trainer trainer(options);
  trainer.fit(model, data);
  std::printf("event file: %s\nmetrics.csv: %s\n", tb->event_file_path().c_str(),
              csv->metrics_file_path().c_str());
  return 0;
}
