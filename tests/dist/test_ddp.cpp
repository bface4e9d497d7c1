// The DDP strategy over two processes, against one process doing the same work: two ranks
// with batch B each must end with the parameters one process reaches with batch 2B (the
// distributed sampler interleaves the one-process order, and gradients are averaged).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dist/world.h"
#include "nn/batch_norm.h"
#include "trainer/finetuning.h"
#include "trainer/learning_rate_monitor.h"
#include "trainer/model_checkpoint.h"
#include "trainer/timer.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::parameters_of;
using testing::TinyData;
using testing::TinyDataOptions;
using testing::TinyModel;

TrainerOptions quiet(TrainerOptions o) {
  o.enable_progress_bar = false;
  o.enable_model_summary = false;
  o.enable_checkpointing = false;
  o.logger = false;
  o.accelerator = "cpu";  // DDP over MPI on CPU tensors, even where a GPU is present
  return o;
}

void expect_close(const std::vector<std::vector<float>>& a,
                  const std::vector<std::vector<float>>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (size_t j = 0; j < a[i].size(); ++j)
      ASSERT_NEAR(a[i][j], b[i][j], tol) << "parameter " << i << " element " << j;
  }
}

// One process, batch 2B, from rank 0's initial parameters (seed 100).
std::vector<std::vector<float>> single_process(int64_t batch, int64_t steps, int64_t accumulate) {
  manual_seed(100);
  TinyModel model;
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = batch, .shuffle = true});
  Trainer trainer(quiet({.max_steps = steps,
                         .accumulate_grad_batches = accumulate,
                         .num_sanity_val_steps = 0,
                         .strategy = "single_device"}));
  trainer.fit(model, data);
  return parameters_of(model);
}

struct DdpCase {
  int64_t batch_per_rank, steps, accumulate;
  double bucket_cap_mb;
};

class DdpMatchesOneProcess : public ::testing::TestWithParam<DdpCase> {};

TEST_P(DdpMatchesOneProcess, AfterNSteps) {
  DdpCase c = GetParam();
  auto world = dist::world();
  int rank = world->rank(), size = world->world_size();
  // Each rank starts from different parameters (and loader seed): DDP must broadcast rank 0's.
  manual_seed(100 + static_cast<uint64_t>(rank));
  TinyModel model;
  std::vector<std::vector<float>> initial = parameters_of(model);
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = c.batch_per_rank, .shuffle = true});
  Trainer trainer(quiet({.max_steps = c.steps,
                         .accumulate_grad_batches = c.accumulate,
                         .num_sanity_val_steps = 0,
                         .strategy = DDPStrategy{.bucket_cap_mb = c.bucket_cap_mb}}));
  EXPECT_EQ(trainer.world_size(), size);
  EXPECT_EQ(trainer.global_rank(), rank);
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), c.steps);
  std::vector<std::vector<float>> reference =
      single_process(c.batch_per_rank * size, c.steps, c.accumulate);
  expect_close(parameters_of(model), reference, 2e-6f);
  // The check is not vacuous: training moved the parameters well past the tolerance.
  EXPECT_GT(std::abs(parameters_of(model)[0][0] - (rank == 0 ? initial[0][0] : reference[0][0])) +
                std::abs(reference[0][0] - initial[0][0]),
            0.0f);
  float moved = 0;
  manual_seed(100);
  TinyModel start;
  for (size_t i = 0; i < reference.size(); ++i)
    for (size_t j = 0; j < reference[i].size(); ++j)
      moved = std::max(moved, std::abs(reference[i][j] - parameters_of(start)[i][j]));
  EXPECT_GT(moved, 1e-2f);
}

INSTANTIATE_TEST_SUITE_P(Ddp, DdpMatchesOneProcess,
                         ::testing::Values(DdpCase{4, 6, 1, 25.0},      // one bucket
                                           DdpCase{4, 6, 1, 0.00005},   // a bucket per tensor
                                           DdpCase{2, 3, 2, 0.0001}));  // no_sync micro-steps

// Manual optimization with two optimizers (TinyGan: the generator's backward with the
// discriminator toggled off, then the discriminator's on detached fakes): every
// manual_backward averages the gradients it produced, and a network without gradients in it
// stays without, so two ranks with batch B end where one process with batch 2B does.
TEST(Ddp, ManualOptimizationOfAGanMatchesOneProcess) {
  auto world = dist::world();
  int rank = world->rank(), size = world->world_size();
  auto fit = [&](uint64_t seed, int64_t batch, StrategyOption strategy) {
    manual_seed(seed);
    testing::TinyGan gan;
    TinyData data(TinyDataOptions{.n_train = 64, .batch_size = batch, .shuffle = true});
    Trainer trainer(quiet({.max_steps = 12,
                           .num_sanity_val_steps = 0,
                           .strategy = std::move(strategy),
                           .use_distributed_sampler = true}));
    trainer.fit(gan, data);
    EXPECT_EQ(trainer.global_step(), 12);
    return parameters_of(gan);
  };
  std::vector<std::vector<float>> ddp =
      fit(100 + static_cast<uint64_t>(rank), 4, DDPStrategy{.bucket_cap_mb = 0.00005});
  std::vector<std::vector<float>> reference = fit(100, 4 * size, "single_device");
  expect_close(ddp, reference, 2e-6f);
  manual_seed(100);
  testing::TinyGan start;
  float moved = 0;
  for (size_t i = 0; i < reference.size(); ++i)
    for (size_t j = 0; j < reference[i].size(); ++j)
      moved = std::max(moved, std::abs(reference[i][j] - parameters_of(start)[i][j]));
  EXPECT_GT(moved, 1e-2f);
}

// Loaders passed to fit are sharded as copies: the user's loader stays whole, and the fit
// reaches what a DataModule's loaders reach.
TEST(Ddp, LoadersPassedToFitStayWhole) {
  auto world = dist::world();
  manual_seed(100 + static_cast<uint64_t>(world->rank()));
  TinyModel model;
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4, .shuffle = true});
  auto train = data.train_dataloader();
  const int64_t batches = train->size();
  Trainer trainer(quiet({.max_steps = 6, .num_sanity_val_steps = 0, .strategy = "ddp"}));
  trainer.fit(model, train);
  EXPECT_EQ(train->num_replicas(), 1);
  EXPECT_EQ(train->size(), batches);
  EXPECT_EQ(trainer.num_training_batches(), batches / world->world_size());
  auto val = data.val_dataloader();
  trainer.validate(model, val, "", false);
  EXPECT_EQ(trainer.num_val_batches(), val->size() / world->world_size());
  EXPECT_EQ(val->num_replicas(), 1);
  expect_close(parameters_of(model), single_process(4 * world->world_size(), 6, 1), 2e-6f);
}

// A module that logs its rank, with and without sync_dist.
struct RankLogger : TinyModel {
  int rank = 0;
  Tensor training_step(const Batch& b, int64_t i) override {
    log("rank_synced", static_cast<double>(rank + 1), {.on_epoch = true, .sync_dist = true});
    log("rank_local", static_cast<double>(rank + 1), {.on_epoch = true});
    return TinyModel::training_step(b, i);
  }
};

TEST(Ddp, SyncDistAveragesOverRanksAndOnlyRankZeroWritesFiles) {
  auto world = dist::world();
  int rank = world->rank();
  // One directory for the job: rank 0 names it.
  std::string root =
      world->broadcast_string(rank == 0 ? (std::filesystem::temp_directory_path() /
                                           ("lumen_ddp_files_" + std::to_string(::getpid())))
                                              .string()
                                        : "");
  if (rank == 0) std::filesystem::remove_all(root);
  world->barrier();

  manual_seed(3);
  RankLogger model;
  model.rank = rank;
  TinyData data(TinyDataOptions{.n_train = 64, .n_val = 32, .batch_size = 4});
  // The learning-rate monitor writes to the loggers itself: on rank 0 only too.
  auto trainer = std::make_unique<Trainer>(
      TrainerOptions{.max_epochs = 2,
                     .log_every_n_steps = 1,
                     .default_root_dir = root,
                     .enable_progress_bar = false,
                     .enable_model_summary = false,
                     .callbacks = {LearningRateMonitor()},
                     .accelerator = "cpu",
                     // A hang says where it waited.
                     .strategy = DDPStrategy{.timeout = std::chrono::seconds(120)}});
  trainer->fit(model, data);
  EXPECT_DOUBLE_EQ(trainer->callback_metrics().at("rank_synced"), 1.5);
  EXPECT_DOUBLE_EQ(trainer->callback_metrics().at("rank_local"), rank + 1.0);
  // Every rank agrees on where the run's files are.
  std::string log_dir = trainer->log_dir();
  EXPECT_EQ(world->broadcast_string(log_dir), log_dir);
  // test(ckpt_path="best") loads on every rank what rank 0 wrote.
  auto metrics = trainer->test(model, data, "best", false);
  EXPECT_EQ(metrics.count("test_loss"), 1u);
  // Loggers flush what they hold when they go: the files are final after this.
  trainer.reset();
  world->barrier();

  namespace fs = std::filesystem;
  if (rank == 0) {
    std::vector<std::string> versions;
    for (const auto& e : fs::directory_iterator(fs::path(root) / "lightning_logs"))
      versions.push_back(e.path().filename().string());
    EXPECT_EQ(versions, std::vector<std::string>{"version_0"});
    // 64 examples over 2 ranks, batch 4: 8 steps an epoch. Per epoch a row per step, the
    // validation row and the training epoch row (the on_epoch metrics), and the learning-rate
    // monitor's rows: one per step and one at the epoch's start; and the header.
    std::ifstream csv(fs::path(log_dir) / "metrics.csv");
    int64_t rows = 0;
    std::string content;
    for (std::string line; std::getline(csv, line);) {
      ++rows;
      content += line + "\n";
    }
    EXPECT_EQ(rows, 1 + 2 * (8 + 1 + 1) + 2 * (8 + 1) + 1) << "one writer, no duplicated rows:\n"
                                                           << content;
    int64_t checkpoints = 0;
    for (const auto& e : fs::directory_iterator(fs::path(log_dir) / "checkpoints")) {
      (void)e;
      ++checkpoints;
    }
    EXPECT_EQ(checkpoints, 1);
  }
  world->barrier();
  if (rank == 0) std::filesystem::remove_all(root);
}

// Batch norm's running statistics are buffers: with broadcast_buffers every step's forward
// starts from rank 0's, so they are equal on all ranks inside training_step; without, each
// rank's drift apart with its own data.
struct NormModel : TinyModel {
  nn::BatchNorm1d norm{4};
  bool buffers_equal_every_step = true;
  NormModel() { register_module("norm", norm); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor all = dist::world()->all_gather(norm.running_mean.contiguous());
    if (all.select(0, 0).to_vector<float>() != all.select(0, 1).to_vector<float>())
      buffers_equal_every_step = false;
    return nn::functional::mse_loss(forward(norm(b[0])), b[1]);
  }
};

TEST(Ddp, BroadcastBuffersKeepsBatchNormStatisticsInStep) {
  for (bool broadcast : {true, false}) {
    manual_seed(9);
    NormModel model;
    TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4, .shuffle = true});
    Trainer trainer(quiet({.max_steps = 4,
                           .num_sanity_val_steps = 0,
                           .strategy = DDPStrategy{.broadcast_buffers = broadcast}}));
    trainer.fit(model, data);
    EXPECT_EQ(model.buffers_equal_every_step, broadcast);
  }
}

// sync_batchnorm: a BatchNorm between the layers normalises over both ranks' batches, so two
// ranks with batch B end where one process with batch 2B does, running statistics included;
// without it each rank normalises over its own B, and they end elsewhere.
struct HiddenNormModel : TinyModel {
  nn::BatchNorm1d norm{8};
  bool synced = false;  // the BatchNorm had a process group in training_step
  HiddenNormModel() { register_module("norm", norm); }
  Tensor training_step(const Batch& b, int64_t) override {
    synced = norm.process_group != nullptr;
    return nn::functional::mse_loss(fc2(norm(relu(fc1(b[0])))), b[1]);
  }
};

std::vector<std::vector<float>> fit_hidden_norm(const StrategyOption& strategy, int64_t batch,
                                                bool sync, bool expect_synced) {
  manual_seed(100);
  HiddenNormModel model;
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = batch, .shuffle = true});
  Trainer trainer(quiet(
      {.max_steps = 5, .num_sanity_val_steps = 0, .strategy = strategy, .sync_batchnorm = sync}));
  trainer.fit(model, data);
  EXPECT_EQ(model.synced, expect_synced);
  EXPECT_EQ(model.norm.process_group, nullptr);  // the group goes with the fit
  std::vector<std::vector<float>> out = parameters_of(model);
  out.push_back(model.norm.running_mean.to_vector<float>());
  out.push_back(model.norm.running_var.to_vector<float>());
  return out;
}

TEST(Ddp, SyncBatchNormMatchesOneProcessWithTheWholeBatch) {
  const int64_t size = dist::world()->world_size();
  std::vector<std::vector<float>> one = fit_hidden_norm("single_device", 4 * size, true, false);
  expect_close(fit_hidden_norm(DDPStrategy{}, 4, true, true), one, 1e-5f);
  std::vector<std::vector<float>> own = fit_hidden_norm(DDPStrategy{}, 4, false, false);
  float apart = 0;
  for (size_t i = 0; i < one.size(); ++i)
    for (size_t j = 0; j < one[i].size(); ++j)
      apart = std::max(apart, std::abs(own[i][j] - one[i][j]));
  EXPECT_GT(apart, 1e-3f);
}

// BackboneFinetuning under DDP: the backbone's parameters join the gradient buckets when they
// are unfrozen (epoch 1), so two ranks with batch B end as one process with batch 2B. Without
// the Trainer remaking its buckets, each rank would train the backbone on its own gradients.
TEST(Ddp, AnUnfrozenBackboneIsAveragedLikeTheRest) {
  const int64_t size = dist::world()->world_size();
  auto fit = [](StrategyOption strategy, int64_t batch) {
    manual_seed(8);
    testing::BackboneModel model({.lr = 0.02});
    TinyData data(TinyDataOptions{.n_train = 64, .batch_size = batch, .with_val = false});
    Trainer trainer(quiet({.max_epochs = 3,
                           .callbacks = {BackboneFinetuning({.unfreeze_backbone_at_epoch = 1})},
                           .strategy = strategy}));
    trainer.fit(model, data);
    return parameters_of(model);
  };
  std::vector<std::vector<float>> one = fit("single_device", 4 * size);
  for (const auto& p : one)
    for (float v : p) ASSERT_LT(std::abs(v), 10.0f) << "the fit diverged";
  expect_close(fit(DDPStrategy{}, 4), one, 1e-5f);
}

// Stop decisions are the job's, not a rank's: rank 0's Timer runs out at once, rank 1's never;
// both ranks stop after the same step (otherwise rank 1 would wait in an all-reduce forever).
TEST(Ddp, ATimerRunningOutOnOneRankStopsEveryRank) {
  auto world = dist::world();
  int rank = world->rank();
  manual_seed(6);
  TinyModel model;
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4});
  Trainer trainer(
      quiet({.max_epochs = 3,
             .num_sanity_val_steps = 0,
             .callbacks = {Timer({.duration = rank == 0 ? 0.0 : 1e6, .verbose = false})},
             .strategy = DDPStrategy{.timeout = std::chrono::seconds(20)}}));
  trainer.fit(model, data);
  Tensor steps = from_vector(std::vector<int64_t>{trainer.global_step()}, {1});
  Tensor all = world->all_gather(steps);
  EXPECT_EQ(all.to_vector<int64_t>()[0], all.to_vector<int64_t>()[1]);
  EXPECT_LT(trainer.global_step(), 3 * 16) << "the timer stopped the fit early";
}

// "16-mixed" under DDP: an inf in one rank's gradients reaches every rank through the
// all-reduce, so every rank skips that step and backs off alike; the replicas stay identical.
struct InfOnRank : TinyModel {
  int rank = 0;
  Tensor training_step(const Batch& b, int64_t i) override {
    Tensor loss = TinyModel::training_step(b, i);
    return rank == 1 && i == 2 ? loss * INFINITY : loss;
  }
};

TEST(Ddp, SixteenMixedSkipsAStepOnEveryRankWhenOneRankOverflows) {
  auto world = dist::world();
  manual_seed(7);
  InfOnRank model;
  model.o.lr = 0.01;
  model.rank = world->rank();
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4});
  Trainer trainer(quiet({.max_steps = 6,
                         .num_sanity_val_steps = 0,
                         .precision = "16-mixed",
                         .grad_scaler = {.init_scale = 512.0},
                         .strategy = "ddp"}));
  trainer.fit(model, data);
  ASSERT_NE(trainer.grad_scaler(), nullptr);
  EXPECT_EQ(trainer.grad_scaler()->skipped_steps(), 1);
  EXPECT_EQ(trainer.grad_scaler()->get_scale(), 256.0);
  std::vector<float> mine;
  for (const auto& p : parameters_of(model)) mine.insert(mine.end(), p.begin(), p.end());
  Tensor all = world->all_gather(from_vector(mine, {static_cast<int64_t>(mine.size())}));
  std::vector<float> both = all.to_vector<float>();
  std::vector<float> r0(both.begin(), both.begin() + static_cast<long>(mine.size())),
      r1(both.begin() + static_cast<long>(mine.size()), both.end());
  EXPECT_EQ(r0, r1);
}

// A checkpoint written by two ranks in the middle of an epoch resumes in one process: the
// weights are rank 0's, and the one process skips the examples the two ranks had seen.
TEST(Ddp, AMidEpochCheckpointResumesOnAnotherWorldSize) {
  namespace fs = std::filesystem;
  auto world = dist::world();
  int rank = world->rank();
  std::string dir = world->broadcast_string(
      rank == 0 ? (fs::temp_directory_path() / ("lumen_ddp_resume_" + std::to_string(::getpid())))
                      .string()
                : "");
  manual_seed(8);
  TinyModel model;
  // 64 examples, batch 4 per rank: 8 steps an epoch; the checkpoint of step 3 is mid-epoch.
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4, .shuffle = true});
  Trainer trainer(
      {.max_steps = 5,
       .num_sanity_val_steps = 0,
       .enable_progress_bar = false,
       .enable_model_summary = false,
       .callbacks = {ModelCheckpoint(
           {.dirpath = dir, .filename = "{step}", .save_top_k = -1, .every_n_train_steps = 3})},
       .logger = false,
       .accelerator = "cpu",
       .strategy = "ddp"});
  trainer.fit(model, data);
  world->barrier();
  if (rank == 0) {
    std::string path = (fs::path(dir) / "step=3.ckpt").string();
    ASSERT_TRUE(fs::exists(path));
    TinyModel resumed;
    TinyData one(TinyDataOptions{.n_train = 64, .batch_size = 4, .shuffle = true});
    Trainer single(quiet({.max_epochs = 1, .strategy = "single_device"}));
    single.fit(resumed, one, path);
    // 3 steps x 4 examples x 2 ranks = 24 examples seen: 6 of the 16 single-process batches.
    EXPECT_EQ(resumed.training_steps, 16 - 6);
    EXPECT_EQ(single.global_step(), 3 + 10);
    fs::remove_all(dir);
  }
  world->barrier();
}

// A rank that hangs inside a training step: the other's gradient all-reduce fails after the
// DDP timeout with a clear error instead of waiting forever.
struct Sleeper : TinyModel {
  bool sleep = false;
  Tensor training_step(const Batch& b, int64_t i) override {
    if (sleep) std::this_thread::sleep_for(std::chrono::milliseconds(5000));
    return TinyModel::training_step(b, i);
  }
};

// Lightning's prepare_data_per_node: only local rank 0 (both ranks share this node) prepares;
// when it, or one rank's setup, fails, the other rank stops with an error at once instead of
// waiting out the timeout at its next collective.
struct FailingPrepare : TinyData {
  using TinyData::TinyData;
  void prepare_data() override { throw Error("FailingPrepare: no data here"); }
};
struct FailingSetupOnRankOne : TinyData {
  using TinyData::TinyData;
  void setup(const std::string&) override {
    if (dist::world()->rank() == 1) throw Error("FailingSetupOnRankOne: no split here");
  }
};

// A callback whose setup throws on rank 1.
struct FailingCallbackOnRankOne : Callback {
  std::string state_key() const override { return "FailingCallbackOnRankOne"; }
  void setup(Trainer&, LightningModule&, const std::string&) override {
    if (dist::world()->rank() == 1) throw Error("FailingCallbackOnRankOne: no callback here");
  }
};

// A DDP fit over Data (with `callbacks`) must throw lumen::Error containing `want`, well before
// the timeout (far beyond the test's run time: no rank may wait for it).
template <class Data>
void expect_fit_fails_fast(const char* want, std::vector<CallbackPtr> callbacks = {}) {
  using namespace std::chrono_literals;
  TinyModel model;
  Data data(TinyDataOptions{.n_train = 16, .batch_size = 4});
  Trainer trainer(quiet({.max_steps = 1,
                         .num_sanity_val_steps = 0,
                         .callbacks = std::move(callbacks),
                         .strategy = DDPStrategy{.timeout = 600s}}));
  const auto start = std::chrono::steady_clock::now();
  try {
    trainer.fit(model, data);
    ADD_FAILURE() << "expected lumen::Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(want), std::string::npos) << m;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);
}

TEST(Ddp, PrepareDataRunsOnLocalRankZeroAndAFailedPrepareOrSetupStopsEveryRank) {
  auto world = dist::world();
  int rank = world->rank();
  manual_seed(6);
  {
    TinyModel model;
    TinyData data(TinyDataOptions{.n_train = 16, .batch_size = 4});
    std::vector<std::string> events;
    data.events = &events;
    Trainer trainer(quiet({.max_steps = 1, .num_sanity_val_steps = 0, .strategy = "ddp"}));
    trainer.fit(model, data);
    EXPECT_EQ(std::count(events.begin(), events.end(), "data:prepare_data"),
              world->local_rank() == 0 ? 1 : 0);
    EXPECT_EQ(std::count(events.begin(), events.end(), "data:setup:fit"), 1);
  }
  expect_fit_fails_fast<FailingPrepare>(rank == 0 ? "no data here"
                                                  : "prepare_data failed on rank 0");
  expect_fit_fails_fast<FailingSetupOnRankOne>(rank == 1 ? "no split here"
                                                         : "setup failed on rank 1");
  expect_fit_fails_fast<TinyData>(
      rank == 1 ? "no callback here" : "the module's setup failed on rank 1",
      {FailingCallbackOnRankOne()});
  world->barrier();
}

TEST(Ddp, AHangingRankMakesTheOtherFailAfterTheTimeout) {
  using namespace std::chrono_literals;
  auto world = dist::world();
  int rank = world->rank();
  manual_seed(4);
  Sleeper model;
  model.sleep = rank == 1;
  TinyData data(TinyDataOptions{.n_train = 64, .batch_size = 4});
  {
    Trainer trainer(quiet(
        {.max_steps = 1, .num_sanity_val_steps = 0, .strategy = DDPStrategy{.timeout = 1500ms}}));
    if (rank == 0) {
      try {
        trainer.fit(model, data);
        ADD_FAILURE() << "expected dist::TimeoutError";
      } catch (const dist::TimeoutError& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("all_reduce(avg)"), std::string::npos) << m;
        EXPECT_NE(m.find("did not complete within 1500 ms"), std::string::npos) << m;
      }
    } else {
      trainer.fit(model, data);  // arrives late; its all-reduce meets rank 0's
    }
    world->barrier();  // rank 0's late all-reduce has completed: its communicator can go
  }
}

}  // namespace
}  // namespace lumen
