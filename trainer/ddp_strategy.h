#pragma once
// The DDP strategy's options, as Lightning's DDPStrategy: `Trainer({.strategy = "ddp"})` or
// `Trainer({.strategy = DDPStrategy{.bucket_cap_mb = 4}})`. One process per rank, started by
// mpirun or srun (dist/launcher_environment.h). What the Trainer does with it:
//   - at fit start, parameters and buffers are broadcast from rank 0;
//   - every loader gets a distributed sampler (DataLoader::distribute);
//   - gradients are averaged in buckets whose all-reduce starts during backward
//     (trainer/gradient_buckets.h); the micro-steps of gradient accumulation do not sync;
//   - buffers (batch-norm statistics) are broadcast from rank 0 before each training step;
//   - progress bar, model summary, loggers and checkpoint files are rank 0's only (a callback
//     that writes to a logger itself checks trainer.is_global_zero(), as LearningRateMonitor);
//     log(..., {.sync_dist = true}) reduces a value over the ranks.
#include <chrono>
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace lumen {

struct DDPStrategy {
  double bucket_cap_mb = 25;  // PyTorch's default
  // A rank that does not reach a collective within this time makes the others throw
  // dist::TimeoutError (PyTorch's default process-group timeout).
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  bool broadcast_buffers = true;
  // Unset: a new communicator over all processes (dist::new_world_communicator) with timeout.
  std::shared_ptr<dist::Communicator> communicator = nullptr;
};

// Lightning's `strategy=` option: "auto" (DDP when a launcher started several processes, else
// one device), "single_device", "ddp", or a DDPStrategy.
struct StrategyOption {
  std::string name = "auto";
  DDPStrategy ddp;
  StrategyOption(const char* n = "auto") : name(n) {}                // NOLINT: implicit on purpose
  StrategyOption(std::string n) : name(std::move(n)) {}              // NOLINT: implicit on purpose
  StrategyOption(DDPStrategy d) : name("ddp"), ddp(std::move(d)) {}  // NOLINT: implicit on purpose
};

}  // namespace lumen
