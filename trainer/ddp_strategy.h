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
#include <functional>
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace lumen {

namespace nn {
class Module;
}
class DataLoader;

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

// What Trainer and Fabric share of the strategy. `who` starts error messages.

// The communicator `strategy` asks for: a new one over all processes (or DDPStrategy's own) for
// "ddp", and for "auto" when a launcher started several processes; null for one device.
std::shared_ptr<dist::Communicator> strategy_communicator(const StrategyOption& strategy,
                                                          const std::string& who);

// DDP on GPUs runs one process per GPU, the one of its local rank (the launcher starts one
// process per GPU of a node): that device.
Device gpu_of_process(const dist::Communicator& comm, const std::string& who);
// An NCCL communicator over comm's processes for the model's tensors on `device` (comm stays for
// host-side collectives). Every rank must call it together. Throws in a build without NCCL.
std::shared_ptr<dist::Communicator> nccl_communicator(
    const std::shared_ptr<dist::Communicator>& comm, Device device, const std::string& who);

// Rank 0's parameters (unless buffers_only) and buffers, broadcast to every rank in place.
void broadcast_module_state(const nn::Module& module, dist::Communicator& comm, bool buffers_only);

// Makes `loader` this rank's shard (DataLoader::distribute) with rank 0's shuffle seed, so the
// shards partition the data.
void distribute_loader(DataLoader& loader, dist::Communicator& comm);

// Runs `step` on this rank when `here`; then, with a communicator, agrees with the other ranks
// on whether it failed anywhere, so the others stop at once with an error naming the failed rank
// ("<who>: <what> failed on rank 1 ...") instead of waiting at their next collective until the
// timeout. The failed rank rethrows its own error. Every rank must call it.
void run_and_agree(dist::Communicator* comm, const std::string& who, const std::string& what,
                   bool here, const std::function<void()>& step);

}  // namespace lumen
