#pragma once
// What the Fashion-MNIST examples share: a LightningModule that classifies images with a
// given network, and the program around it (options, trainer, test, bench output).
#include <lumen/lumen.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "examples/command_line.h"

namespace fashion_mnist {

using namespace lumen;

using Layers = std::initializer_list<std::shared_ptr<nn::UnaryModule>>;

struct Classifier : LightningModule {
  nn::Sequential net;
  double lr;

  Classifier(Layers layers, double learning_rate) : net(layers), lr(learning_rate) {
    register_module("net", net);
    save_hyperparameters({{"lr", lr}, {"architecture", net.repr()}});
  }

  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = nn::functional::cross_entropy(net(b[0]), b[1]);
    log("train_loss", loss, {.prog_bar = true});
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override {
    Tensor logits = net(b[0]);
    // sync_dist: under DDP (mpirun -np N) each rank evaluates a shard; the logged value is
    // the average over the ranks. On one process it changes nothing.
    log("val_loss", nn::functional::cross_entropy(logits, b[1]), {.sync_dist = true});
    log("val_acc", metrics::accuracy(logits, b[1]), {.prog_bar = true, .sync_dist = true});
  }
  void test_step(const Batch& b, int64_t) override {
    log("test_acc", metrics::accuracy(net(b[0]), b[1]), {.sync_dist = true});
  }
  OptimizerConfig configure_optimizers() override { return optim::AdamW(parameters(), {.lr = lr}); }
};

// Usage: <program> [--epochs N] [--threads N] [--precision P] [--accelerator A] [--data DIR]
//                  [--bench]
inline int run(const char* name, Layers layers, int64_t default_epochs, int argc, char** argv) {
  examples::CommandLine cl{.epochs = default_epochs};
  if (!examples::parse_command_line(argc, argv, cl, "DIR")) return 2;
  io::FashionMNISTOptions data_options{.batch_size = 128};
  if (!cl.data.empty()) data_options.data_dir = cl.data;
  try {
    seed_everything(42);
    io::FashionMNIST data(data_options);
    Classifier model(layers, 1e-3);
    Trainer trainer(examples::trainer_options(cl, std::string("runs/") + name,
                                              ModelCheckpoint({.filename = "{epoch}-{val_acc:.4f}",
                                                               .monitor = "val_acc",
                                                               .mode = "max",
                                                               .save_last = true})));
    trainer.fit(model, data);
    // Without --bench the trainer prints Lightning's table of test metrics.
    auto results = trainer.test(model, data, "", /*verbose=*/!cl.bench);
    if (!trainer.is_global_zero()) return 0;  // under mpirun, rank 0 reports
    if (cl.bench) {
      std::printf("test_acc=%.4f\n", results.at("test_acc"));
      // The most memory the run's tensors held on the training device.
      Device dev = model.parameters().at(0).device();
      std::printf("peak_mem_bytes=%lld\n",
                  static_cast<long long>(memory_stats(dev).peak_allocated));
    } else
      std::printf("checkpoints and logs: %s\n", trainer.log_dir().c_str());
    return 0;
  } catch (const lumen::Error& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace fashion_mnist
