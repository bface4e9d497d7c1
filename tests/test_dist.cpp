// dist/ and the DDP pieces that run in one process: the local communicator, the launcher's
// environment, the distributed sampler, gradient buckets and post-accumulate hooks. The
// collectives over two processes are in tests/dist/ (run with mpirun -np 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "autograd/checkpoint.h"
#include "dist/launcher_environment.h"
#include "dist/local_communicator.h"
#include "dist/world.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"
#include "tensor/generator.h"
#include "trainer/data_loader.h"
#include "trainer/gradient_buckets.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

template <class F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "expected lumen::Error";
  } catch (const Error& e) {
    for (const char* p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(LocalCommunicator, CollectivesOfOneRankAreTheIdentity) {
  dist::LocalCommunicator local;
  dist::Communicator& comm = local;
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.rank(), 0);
  Generator gen(3);
  Tensor x = randn({5, 3}, {}, &gen);
  std::vector<float> before = x.to_vector<float>();
  comm.all_reduce(x, dist::ReduceOp::avg);
  EXPECT_EQ(x.to_vector<float>(), before);
  Tensor g = comm.all_gather(x);
  EXPECT_EQ(g.shape(), (Shape{1, 5, 3}));
  EXPECT_EQ(g.to_vector<float>(), before);
  EXPECT_EQ(comm.reduce_scatter(x).to_vector<float>(), before);
  EXPECT_EQ(comm.broadcast_string("version_3"), "version_3");
  EXPECT_EQ(comm.broadcast_string(""), "");
}

TEST(LocalCommunicator, RefusesBadTensorsWithTheirShapeAndDtype) {
  dist::LocalCommunicator local;
  dist::Communicator& comm = local;
  Tensor x = randn({4, 6});
  expect_error([&] { comm.all_reduce(x.t()); }, {"all_reduce", "must be contiguous", "[6, 4]"});
  expect_error(
      [&] {
        comm.all_reduce(from_vector<int64_t>({1, 2}, {2}), dist::ReduceOp::avg);
      },
      {"avg", "i64", "floating"});
  expect_error([&] { comm.all_reduce(x.to(DType::f16)); }, {"f16", "f32"});
  expect_error([&] { comm.broadcast(x, 1); }, {"root 1", "size 1"});
  expect_error([&] { comm.all_reduce(Tensor()); }, {"undefined"});
}

// setenv for the length of a scope.
struct ScopedEnv {
  std::vector<std::string> names;
  void set(const char* name, const char* value) {
    setenv(name, value, 1);
    names.push_back(name);
  }
  ~ScopedEnv() {
    for (const auto& n : names) unsetenv(n.c_str());
  }
};

TEST(LauncherEnvironment, ReadsOpenMpiSlurmAndPmi) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("SLURM_STEP_NUM_TASKS") ||
      std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "running under a launcher";
  EXPECT_EQ(dist::launcher_environment().world_size, 1);
  EXPECT_EQ(dist::launcher_environment().launcher, "");
  {
    ScopedEnv env;
    env.set("SLURM_STEP_NUM_TASKS", "8");
    env.set("SLURM_PROCID", "5");
    env.set("SLURM_LOCALID", "1");
    auto e = dist::launcher_environment();
    EXPECT_EQ(e.launcher, "slurm");
    EXPECT_EQ(e.world_size, 8);
    EXPECT_EQ(e.rank, 5);
    EXPECT_EQ(e.local_rank, 1);
  }
  {
    ScopedEnv env;
    env.set("OMPI_COMM_WORLD_SIZE", "4");
    env.set("OMPI_COMM_WORLD_RANK", "3");
    env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
    auto e = dist::launcher_environment();
    EXPECT_EQ(e.launcher, "openmpi");
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.local_rank, 1);
  }
  {
    ScopedEnv env;
    env.set("PMI_SIZE", "2");
    env.set("PMI_RANK", "7");
    expect_error([] { dist::launcher_environment(); }, {"pmi", "rank 7", "world size 2"});
  }
  {
    ScopedEnv env;
    env.set("OMPI_COMM_WORLD_SIZE", "two");
    expect_error([] { dist::launcher_environment(); }, {"OMPI_COMM_WORLD_SIZE", "two"});
  }
}

// Every example's value, in the order the rank-th of `replicas` loaders delivers them.
std::vector<int64_t> shard_values(int64_t n, int64_t rank, int64_t replicas, bool shuffle,
                                  int64_t epoch) {
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{arange(n, {DType::i64})});
  DataLoader loader(ds, {.batch_size = 3, .shuffle = shuffle, .seed = 11});
  loader.distribute(rank, replicas);
  std::vector<int64_t> values;
  for (Batch& b : loader.epoch(epoch))
    for (int64_t v : b[0].to_vector<int64_t>()) values.push_back(v);
  EXPECT_EQ(static_cast<int64_t>(values.size()), loader.num_examples());
  EXPECT_EQ(loader.size(), (loader.num_examples() + 2) / 3);
  return values;
}

TEST(DistributedSampler, ShardsCoverTheDataOncePerEpoch) {
  for (int64_t replicas : {2, 3}) {
    for (int64_t n : {12, 13, 2}) {
      for (bool shuffle : {false, true}) {
        std::map<int64_t, int> seen;
        size_t per_rank = 0;
        for (int64_t r = 0; r < replicas; ++r) {
          auto v = shard_values(n, r, replicas, shuffle, 1);
          if (r == 0) per_rank = v.size();
          EXPECT_EQ(v.size(), per_rank) << "every rank gets as many examples";
          for (int64_t x : v) ++seen[x];
        }
        int64_t padded = (n + replicas - 1) / replicas * replicas;
        EXPECT_EQ(static_cast<int64_t>(seen.size()), n) << "each example at least once";
        int64_t twice = 0;
        for (auto& [x, c] : seen) twice += c - 1;
        EXPECT_EQ(twice, padded - n) << "only the padding repeats; n=" << n << " r=" << replicas;
      }
    }
  }
  // The shuffled shards change with the epoch and interleave the unsharded order.
  EXPECT_NE(shard_values(12, 0, 2, true, 0), shard_values(12, 0, 2, true, 1));
  std::vector<int64_t> whole = shard_values(12, 0, 1, true, 4);
  std::vector<int64_t> r0 = shard_values(12, 0, 2, true, 4), r1 = shard_values(12, 1, 2, true, 4);
  for (size_t i = 0; i < r0.size(); ++i) {
    EXPECT_EQ(r0[i], whole[2 * i]);
    EXPECT_EQ(r1[i], whole[2 * i + 1]);
  }
}

TEST(PostAccumulateGradHook, RunsOnceAfterTheGradientIsAccumulated) {
  Tensor w = from_vector<float>({1.f, 2.f}, {2});
  w.requires_grad_();
  std::vector<std::vector<float>> seen;
  size_t h = w.register_post_accumulate_grad_hook(
      [&](const Tensor& t) { seen.push_back(t.grad().to_vector<float>()); });
  // w is used twice: the engine sums both uses first, so the hook runs once with 3 * w + w^2'.
  ((w * 3.0).sum() + (w * w).sum()).backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<float>{5.f, 7.f}));
  (w * 2.0).sum().backward();  // accumulates: the hook sees the sum
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], (std::vector<float>{7.f, 9.f}));
  w.remove_post_accumulate_grad_hook(h);
  (w * 2.0).sum().backward();
  EXPECT_EQ(seen.size(), 2u);
  expect_error([&] { from_vector<float>({1.f}, {1}).register_post_accumulate_grad_hook(nullptr); },
               {"leaf", "require grad"});
}

TEST(GradientBuckets, PacksParametersInReverseOrderUpToTheCap) {
  std::vector<Tensor> params;
  for (int64_t n : {10, 20, 5, 30, 1}) params.push_back(randn({n}).requires_grad_());
  params.push_back(randn({4}, {DType::f64}).requires_grad_());
  auto comm = std::make_shared<dist::LocalCommunicator>();
  // 100 bytes = 25 floats a bucket, in reverse: [5] (f64), [4] (dtype changes), [3] (1 + 30 >
  // 25), [2, 1] (5 + 20 = 25 fits exactly), [0] (25 + 10 > 25).
  GradientBuckets buckets(params, comm, 100);
  std::vector<std::vector<size_t>> expected = {{5}, {4}, {3}, {2, 1}, {0}};
  EXPECT_EQ(buckets.bucket_params(), expected);
  GradientBuckets big(params, comm, 1 << 20);
  EXPECT_EQ(big.bucket_params(), (std::vector<std::vector<size_t>>{{5}, {4, 3, 2, 1, 0}}));
}

TEST(GradientBuckets, OneRankKeepsGradientsAndUnusedParametersStayWithout) {
  Tensor a = randn({3}).requires_grad_(), b = randn({3}).requires_grad_(),
         unused = randn({2}).requires_grad_();
  auto comm = std::make_shared<dist::LocalCommunicator>();
  GradientBuckets buckets({a, b, unused}, comm, 8);
  buckets.prepare(true);
  (a * b).sum().backward();
  std::vector<float> ga = a.grad().to_vector<float>(), gb = b.grad().to_vector<float>();
  buckets.finish();
  EXPECT_EQ(a.grad().to_vector<float>(), ga);
  EXPECT_EQ(a.grad().to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(b.grad().to_vector<float>(), gb);
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_EQ(buckets.stats().steps, 1);
  // Without sync the hooks do nothing, and finish() is refused.
  buckets.prepare(false);
  (a * b).sum().backward();
  expect_error([&] { buckets.finish(); }, {"prepare(true)"});
}

// A parameter used in two checkpointed calls gets two gradients in one backward (each
// recomputation accumulates its own). While its bucket waits for another parameter, the bucket
// packs their sum; once its bucket has started, the backward fails and says why.
TEST(GradientBuckets, ASecondGradientInOneBackwardCountsOnceOrFailsClearly) {
  auto comm = std::make_shared<dist::LocalCommunicator>();
  Tensor w = randn({3}).requires_grad_(), x = randn({3}).requires_grad_();
  auto loss = [&] {
    auto scale = [&](const Tensor& h) { return h * w; };
    return checkpoint(scale, checkpoint(scale, x)).sum();
  };
  loss().backward();
  std::vector<float> want_w = w.grad().to_vector<float>(), want_x = x.grad().to_vector<float>();
  w.set_grad(Tensor());
  x.set_grad(Tensor());
  {
    GradientBuckets one_bucket({x, w}, comm, 1 << 20);  // w's gradients, then x's
    one_bucket.prepare(true);
    loss().backward();
    one_bucket.finish();
    EXPECT_EQ(w.grad().to_vector<float>(), want_w);
    EXPECT_EQ(x.grad().to_vector<float>(), want_x);
  }
  w.set_grad(Tensor());
  x.set_grad(Tensor());
  GradientBuckets own_buckets({x, w}, comm, 4);  // w's bucket starts at its first gradient
  own_buckets.prepare(true);
  expect_error([&] { loss().backward(); }, {"second gradient in one backward", "checkpointed"});
}

TEST(TrainerStrategy, DdpOnOneProcessTrainsLikeASingleDevice) {
  if (dist::launcher_environment().world_size > 1) GTEST_SKIP() << "running under a launcher";
  auto run = [](StrategyOption strategy) {
    manual_seed(5);
    testing::TinyModel model;
    testing::TinyData data({.shuffle = true});
    Trainer trainer({.max_epochs = 2,
                     .enable_progress_bar = false,
                     .enable_checkpointing = false,
                     .enable_model_summary = false,
                     .logger = false,
                     .accelerator = "cpu",
                     .strategy = strategy});
    trainer.fit(model, data);
    EXPECT_EQ(trainer.world_size(), 1);
    EXPECT_TRUE(trainer.is_global_zero());
    return std::make_pair(model.train_losses, trainer.strategy());
  };
  auto [single, s1] = run("single_device");
  auto [ddp, s2] = run(DDPStrategy{.bucket_cap_mb = 0.0001});
  EXPECT_EQ(s1, "single_device");
  EXPECT_EQ(s2, "ddp");
  EXPECT_EQ(single, ddp);  // the average over one rank changes nothing, bit for bit
  expect_error([] { Trainer({.strategy = "fsdp"}); }, {"strategy", "fsdp", "ddp"});
  expect_error([] { Trainer({.strategy = DDPStrategy{.bucket_cap_mb = 0}}); }, {"bucket_cap_mb"});
}

}  // namespace
}  // namespace lumen

#if LUMEN_NCCL
#include "dist/nccl_communicator.h"
#include "tensor/storage.h"

namespace lumen {
namespace {

// NCCL with one rank (what one GPU can check): every collective returns its input, on the
// device, through NCCL's own kernels and stream.
TEST(NcclCommunicator, OneRankOnTheGpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  auto bootstrap = std::make_shared<dist::LocalCommunicator>();
  dist::NcclCommunicator nccl(bootstrap, 0);
  dist::Communicator& comm = nccl;
  EXPECT_EQ(comm.backend(), "nccl");
  Generator gen(21);
  Tensor host = randn({257, 3}, {}, &gen);
  for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max}) {
    Tensor x = host.to(Device::cuda(0));
    comm.all_reduce(x, op);
    EXPECT_EQ(x.to(Device::cpu()).to_vector<float>(), host.to_vector<float>());
  }
  Tensor x = host.to(Device::cuda(0));
  comm.broadcast(x, 0);
  EXPECT_EQ(x.to(Device::cpu()).to_vector<float>(), host.to_vector<float>());
  Tensor g = comm.all_gather(x);
  EXPECT_EQ(g.shape(), (Shape{1, 257, 3}));
  EXPECT_EQ(g.to(Device::cpu()).to_vector<float>(), host.to_vector<float>());
  EXPECT_EQ(comm.reduce_scatter(x).to(Device::cpu()).to_vector<float>(), host.to_vector<float>());
  comm.barrier();
  expect_error([&] { comm.all_reduce(host); }, {"all_reduce", "cpu", "cuda:0"});
}

}  // namespace
}  // namespace lumen
#endif
