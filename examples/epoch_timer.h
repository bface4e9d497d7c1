#pragma once
// The examples' --bench mode: prints the lines bench/lightning_fashion_mnist.py and
// bench/lightning_char_gpt.py print (the wall clock at the first training step, each epoch's
// training time without its validation), so bench/compare_fashion_mnist.sh and
// bench/gpu_compare.sh time Lumen and PyTorch alike.
#include <lumen/lumen.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace examples {

using namespace lumen;

struct EpochTimer : Callback {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start, paused;
  std::string state_key() const override { return "EpochTimer"; }
  void on_train_batch_start(Trainer& t, LightningModule&, const Batch&, int64_t i) override {
    if (t.global_step() == 0 && i == 0) {
      double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      std::printf("first_step_unix=%.6f\n", now);
    }
  }
  void on_train_epoch_start(Trainer&, LightningModule&) override { start = Clock::now(); }
  // The validation inside fit (at the epoch's end) is not training time. training() is already
  // false in these hooks, as in Lightning; the stage says whether a fit runs.
  void on_validation_start(Trainer& t, LightningModule&) override {
    if (t.stage() == "fit") paused = Clock::now();
  }
  void on_validation_end(Trainer& t, LightningModule&) override {
    if (t.stage() == "fit") start += Clock::now() - paused;
  }
  void on_train_epoch_end(Trainer& t, LightningModule&) override {
    std::printf("epoch=%lld train_seconds=%.4f\n", static_cast<long long>(t.current_epoch()),
                std::chrono::duration<double>(Clock::now() - start).count());
    std::fflush(stdout);
  }
};

}  // namespace examples
