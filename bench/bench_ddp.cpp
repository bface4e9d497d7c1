// Data-parallel training step on the CPU: the same MLP (784-1024-1024-10, 1.9 M parameters,
// 7.5 MB of f32 gradients) and batch per process, trained by one process, or by DDP over the
// processes mpirun starts. Prints the median step time; for DDP also what an all-reduce of
// all the gradients costs on its own (median of 10, before training), how long each step
// waited for the gradient all-reduce after its backward, and the fraction of the all-reduce
// hidden behind backward: 1 - waited / alone (averages over the ranks).
//   bench/ddp_cpu.sh runs the comparison; by hand:
//   OMP_NUM_THREADS=1 build/bench_ddp [--bucket-mb 25] [--steps 40] [--batch 64]
//   OMP_NUM_THREADS=1 mpirun -np 2 build/bench_ddp [--bucket-mb 25] [--no-ddp]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lumen/lumen.h"

using namespace lumen;

namespace {

using Clock = std::chrono::steady_clock;

struct Mlp : LightningModule {
  nn::Linear fc1{784, 1024}, fc2{1024, 1024}, fc3{1024, 10};
  Mlp() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("fc3", fc3);
  }
  Tensor training_step(const Batch& b, int64_t) override {
    return nn::functional::cross_entropy(fc3(relu(fc2(relu(fc1(b[0]))))), b[1]);
  }
  OptimizerConfig configure_optimizers() override { return optim::SGD(parameters(), {.lr = 0.01}); }
};

// Random images and labels: the step time does not depend on the values.
struct RandomData : DataModule {
  std::shared_ptr<TensorDataset> train;
  int64_t batch;
  RandomData(int64_t n, int64_t batch_size) : batch(batch_size) {
    Generator gen(1);
    train = std::make_shared<TensorDataset>(std::vector<Tensor>{
        randn({n, 784}, {}, &gen), (rand({n}, {}, &gen) * 10.0).to(DType::i64)});
  }
  std::shared_ptr<DataLoader> train_dataloader() override {
    return std::make_shared<DataLoader>(train, DataLoaderOptions{.batch_size = batch});
  }
};

struct StepTimer : Callback {
  std::vector<double> seconds;
  Clock::time_point start;
  std::string state_key() const override { return "StepTimer"; }
  void on_train_batch_start(Trainer&, LightningModule&, const Batch&, int64_t) override {
    start = Clock::now();
  }
  void on_train_batch_end(Trainer&, LightningModule&, const Tensor&, const Batch&,
                          int64_t) override {
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
};

double flag(int argc, char** argv, const char* name, double fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = static_cast<int64_t>(flag(argc, argv, "--steps", 40));
  int64_t batch = static_cast<int64_t>(flag(argc, argv, "--batch", 64));
  double bucket_mb = flag(argc, argv, "--bucket-mb", 25);
  int world = dist::launcher_environment().world_size;
  // --no-ddp: every process trains on its own, the baseline for DDP on a machine where
  // processes share cores and memory bandwidth.
  bool ddp_off = false;
  for (int i = 1; i < argc; ++i) ddp_off = ddp_off || std::strcmp(argv[i], "--no-ddp") == 0;
  const int warmup = 5;

  manual_seed(0);
  Mlp model;
  double alone = 0;
  if (world > 1 && !ddp_off) {
    auto comm = dist::world();
    int64_t numel = 0;
    for (const Tensor& p : model.parameters()) numel += p.numel();
    Tensor flat = randn({numel});
    std::vector<double> times;
    for (int i = 0; i < 12; ++i) {
      comm->barrier();
      Clock::time_point start = Clock::now();
      comm->all_reduce(flat, dist::ReduceOp::avg);
      if (i >= 2) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    alone = times[times.size() / 2];
  }
  RandomData data((steps + warmup) * batch * world, batch);
  auto timer = std::make_shared<StepTimer>();
  StrategyOption strategy = "single_device";
  if (world > 1 && !ddp_off) strategy = DDPStrategy{.bucket_cap_mb = bucket_mb};
  Trainer trainer({.max_steps = steps + warmup,
                   .enable_progress_bar = false,
                   .enable_checkpointing = false,
                   .enable_model_summary = false,
                   .callbacks = {timer},
                   .logger = false,
                   .strategy = strategy});
  trainer.fit(model, data);

  std::vector<double> t(timer->seconds.begin() + warmup, timer->seconds.end());
  std::sort(t.begin(), t.end());
  double median = t[t.size() / 2];
  GradientBuckets::Stats s = trainer.ddp_stats();
  double per_step = s.steps > 0 ? 1.0 / static_cast<double>(s.steps) : 0;
  double waited = s.exposed_seconds * per_step, copies = s.copy_seconds * per_step;
  if (world > 1 && !ddp_off) {
    Tensor v = from_vector(std::vector<double>{median, waited, alone, copies}, {4});
    dist::world()->all_reduce(v, dist::ReduceOp::avg);
    std::vector<double> avg = v.to_vector<double>();
    median = avg[0], waited = avg[1], alone = avg[2], copies = avg[3];
  }
  if (dist::launcher_environment().rank != 0) return 0;
  if (world == 1 || ddp_off) {
    std::printf("processes=%d (independent) batch=%lld median_step_ms=%.2f\n", world,
                static_cast<long long>(batch), median * 1e3);
  } else {
    std::printf(
        "processes=%d batch=%lld bucket_mb=%g buckets=%lld median_step_ms=%.2f "
        "allreduce_alone_ms=%.2f waited_ms_per_step=%.2f hidden=%.2f copies_ms_per_step=%.2f\n",
        world, static_cast<long long>(batch), bucket_mb, static_cast<long long>(s.buckets),
        median * 1e3, alone * 1e3, waited * 1e3, std::max(0.0, 1.0 - waited / alone), copies * 1e3);
  }
  return 0;
}
