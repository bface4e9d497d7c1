// Fabric's DDP over two processes: a hand-written loop on two ranks with batch B each must end
// with the parameters one process reaches with batch 2B; collectives, checkpoints and
// rank_zero_first must behave as on one device, from every rank.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "autograd/grad_mode.h"
#include "dist/world.h"
#include "trainer/fabric.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::parameters_of;
using testing::TempDir;
using testing::TinyData;
using testing::TinyDataOptions;
using testing::TinyModel;

// `steps` optimizer steps of `accumulate` micro-batches each (no sync on all but the last).
std::vector<std::vector<float>> train(const StrategyOption& strategy, uint64_t seed, int64_t batch,
                                      int64_t steps, int64_t accumulate,
                                      const std::string& precision = "32") {
  manual_seed(seed);
  TinyModel net;
  auto data = TinyData(TinyDataOptions{.n_train = 64, .batch_size = batch, .shuffle = true})
                  .train_dataloader();
  // A loss scale whose f16 output gradients do not overflow: a rank's batch of B has a mean's
  // gradient 2x one of 2B, so a scale at the edge would skip steps on the ranks only.
  Fabric fabric({.accelerator = "cpu",
                 .strategy = strategy,
                 .precision = precision,
                 .grad_scaler = {.init_scale = 256}});
  OptimizerConfig config = net.configure_optimizers();
  auto [model, optimizer] = fabric.setup(net, *config.optimizers.front());
  FabricDataLoader loader = fabric.setup_dataloaders(*data);
  int64_t micro = 0;
  while (micro < steps * accumulate)
    for (Batch& b : loader) {
      if (micro == steps * accumulate) break;
      bool last = (micro + 1) % accumulate == 0;
      auto no_sync = fabric.no_backward_sync(model, !last);
      Tensor loss = nn::functional::mse_loss(model(b[0]), b[1]);
      fabric.backward(loss / static_cast<double>(accumulate));
      if (last) {
        optimizer.step();
        optimizer.zero_grad();
      }
      ++micro;
    }
  return parameters_of(net);
}

TEST(FabricDdp, TwoRanksWithBatchBMatchOneProcessWithBatch2B) {
  auto world = dist::world();
  const int rank = world->rank(), size = world->world_size();
  for (int64_t accumulate : {1, 2}) {
    SCOPED_TRACE(accumulate);
    // Each rank starts from other weights and loader seed: setup must broadcast rank 0's.
    std::vector<std::vector<float>> ddp = train(
        DDPStrategy{.bucket_cap_mb = 0.0001}, 100 + static_cast<uint64_t>(rank), 4, 5, accumulate);
    std::vector<std::vector<float>> one = train("single_device", 100, 4 * size, 5, accumulate);
    manual_seed(100);
    std::vector<std::vector<float>> initial = parameters_of(TinyModel());
    ASSERT_EQ(ddp.size(), one.size());
    float moved = 0;
    for (size_t i = 0; i < one.size(); ++i)
      for (size_t j = 0; j < one[i].size(); ++j) {
        ASSERT_NEAR(ddp[i][j], one[i][j], 2e-6f) << "parameter " << i << " element " << j;
        moved = std::max(moved, std::abs(one[i][j] - initial[i][j]));
      }
    EXPECT_GT(moved, 1e-2f);
  }
}

// Mixed precision over the ranks: the parameters of one process, up to the rounding of 16-bit
// sums over other batch splits.
TEST(FabricDdp, SixteenMixedOnTwoRanksMatchesOneProcess) {
  auto world = dist::world();
  const int rank = world->rank(), size = world->world_size();
  std::vector<std::vector<float>> ddp =
      train("ddp", 100 + static_cast<uint64_t>(rank), 4, 5, 1, "16-mixed");
  std::vector<std::vector<float>> one = train("single_device", 100, 4 * size, 5, 1, "16-mixed");
  for (size_t i = 0; i < one.size(); ++i)
    for (size_t j = 0; j < one[i].size(); ++j)
      ASSERT_NEAR(ddp[i][j], one[i][j], 1e-3f * std::max(1.f, std::abs(one[i][j])))
          << "parameter " << i << " element " << j;  // f16's rounding: 2^-11 relative
}

// Two modules in one backward (a generator feeding a discriminator), several buckets each: the
// average of both modules' gradients, whatever order their buckets complete in; a forward
// without gradients on one rank only joins no all-reduce.
TEST(FabricDdp, TwoModulesInOneBackwardAndAForwardWithoutGradientsOnOneRank) {
  auto world = dist::world();
  const int rank = world->rank(), size = world->world_size();
  using namespace std::chrono_literals;
  // A timeout that fails the test, should the ranks' collectives stop matching, instead of
  // hanging it.
  Fabric fabric(
      {.accelerator = "cpu", .strategy = DDPStrategy{.bucket_cap_mb = 0.00005, .timeout = 60s}});
  manual_seed(300 + static_cast<uint64_t>(rank));
  TinyModel generator_net, discriminator_net, critic_net;
  auto generator = fabric.setup(generator_net);
  auto discriminator = fabric.setup(discriminator_net);
  auto critic = fabric.setup(critic_net);  // evaluated on rank 0 only, without gradients
  Tensor z = randn({6, 4});                // other data on each rank
  auto loss = [&] {
    Tensor fake = generator(z).expand({6, 4});
    return nn::functional::mse_loss(discriminator(fake), randn({6, 1}, {}, nullptr) * 0.0);
  };
  std::vector<Tensor> params = generator_net.parameters();
  for (const Tensor& p : discriminator_net.parameters()) params.push_back(p);
  {
    auto a = fabric.no_backward_sync(generator), b = fabric.no_backward_sync(discriminator);
    fabric.backward(loss());
  }
  std::vector<Tensor> local;
  for (const Tensor& p : params) local.push_back(fabric.all_gather(p.grad()));
  generator_net.zero_grad();
  discriminator_net.zero_grad();
  if (rank == 0) {
    NoGradGuard no_grad;
    (void)critic(z);
  }
  fabric.backward(loss());
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<float> got = params[i].grad().to_vector<float>();
    std::vector<float> mean(got.size(), 0.f);
    for (int r = 0; r < size; ++r) {
      std::vector<float> row = local[i].select(0, r).reshape({-1}).to_vector<float>();
      for (size_t j = 0; j < row.size(); ++j) mean[j] += row[j] / static_cast<float>(size);
    }
    for (size_t j = 0; j < got.size(); ++j)
      ASSERT_NEAR(got[j], mean[j], 1e-5f + 1e-5f * std::abs(mean[j])) << "parameter " << i;
  }
}

// Lightning's DCGAN loop: the discriminator's loss detaches the generator's output, so the
// generator gets no gradient in that backward; its gradients in the next one must still be
// averaged over the ranks.
TEST(FabricDdp, AGeneratorDetachedInOneBackwardSyncsInTheNext) {
  using namespace std::chrono_literals;
  auto world = dist::world();
  const int rank = world->rank();
  Fabric fabric({.accelerator = "cpu", .strategy = DDPStrategy{.timeout = 60s}});
  manual_seed(400 + static_cast<uint64_t>(rank));
  TinyModel generator_net, discriminator_net;
  optim::SGD g_sgd(generator_net.parameters(), {.lr = 0.1});
  optim::SGD d_sgd(discriminator_net.parameters(), {.lr = 0.1});
  auto [generator, g_opt] = fabric.setup(generator_net, g_sgd);
  auto [discriminator, d_opt] = fabric.setup(discriminator_net, d_sgd);
  Tensor z = randn({6, 4}), real = randn({6, 4});  // other data on each rank
  Tensor fake = generator(z).expand({6, 4});
  d_opt.zero_grad();
  fabric.backward(discriminator(real).mean() - discriminator(fake.detach()).mean());
  d_opt.step();
  g_opt.zero_grad();
  fabric.backward(discriminator(fake).mean());
  Tensor rows = fabric.all_gather(generator_net.fc1.weight.grad().reshape({-1}));
  EXPECT_EQ(rows.select(0, 0).to_vector<float>(), rows.select(0, 1).to_vector<float>());
  g_opt.step();
}

TEST(FabricDdp, CollectivesCheckpointsAndRankZeroFirst) {
  auto world = dist::world();
  const int rank = world->rank(), size = world->world_size();
  Fabric fabric({.accelerator = "cpu", .strategy = "ddp"});
  EXPECT_EQ(fabric.strategy(), "ddp");
  EXPECT_EQ(fabric.global_rank(), rank);
  EXPECT_EQ(fabric.world_size(), size);

  Tensor mine =
      from_vector<float>({static_cast<float>(rank + 1), 2.f * static_cast<float>(rank)}, {2});
  float n = static_cast<float>(size);
  EXPECT_EQ(fabric.all_reduce(mine).to_vector<float>(),
            (std::vector<float>{(n + 1) / 2, n - 1}));  // the mean over ranks
  EXPECT_EQ(fabric.all_reduce(mine, dist::ReduceOp::sum).to_vector<float>()[0], n * (n + 1) / 2);
  Tensor gathered = fabric.all_gather(mine);
  ASSERT_EQ(gathered.shape(), (Shape{size, 2}));
  EXPECT_EQ(gathered.select(0, 1).to_vector<float>(), (std::vector<float>{2.f, 2.f}));
  EXPECT_EQ(fabric.broadcast(mine, 1).to_vector<float>(), (std::vector<float>{2.f, 2.f}));
  EXPECT_EQ(fabric.broadcast(std::string(rank == 0 ? "zero" : "other")), "zero");

  // rank_zero_first: rank 0 writes a file the others then read; the directory is rank 0's.
  std::unique_ptr<TempDir> mine_dir;
  if (rank == 0) mine_dir = std::make_unique<TempDir>("fabric_ddp");
  const std::string dir = fabric.broadcast(rank == 0 ? mine_dir->str() : std::string());
  const std::string file = dir + "/prepared.txt";
  std::string seen;
  fabric.rank_zero_first([&] {
    if (rank == 0) std::ofstream(file) << "ready";
    std::ifstream(file) >> seen;
  });
  EXPECT_EQ(seen, "ready");
  // A failure on rank 1 stops every rank.
  try {
    fabric.rank_zero_first([&] { LUMEN_CHECK(rank != 1, "cannot prepare here"); });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string want = rank == 1 ? "cannot prepare here" : "failed on rank 1";
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }

  // A checkpoint: rank 0 writes it, every rank loads rank 0's values.
  manual_seed(200 + static_cast<uint64_t>(rank));
  TinyModel net;
  auto model = fabric.setup(net);  // rank 0's weights everywhere
  int64_t step = 10 + rank;
  fabric.save(dir + "/f.ckpt", {{"model", model}, {"step", step}});
  EXPECT_TRUE(std::filesystem::exists(dir + "/f.ckpt"));
  int64_t loaded = -1;
  fabric.load(dir + "/f.ckpt", {{"step", loaded}});
  EXPECT_EQ(loaded, 10);

  // no_backward_sync keeps each rank's own gradient; the next synced backward averages the sum.
  auto grad_rows = [&] { return fabric.all_gather(net.fc2.bias.grad().reshape({-1})); };
  Tensor x = randn({4, 4}), y = randn({4, 1});  // other data on each rank (other seeds)
  {
    auto no_sync = fabric.no_backward_sync(model);
    fabric.backward(nn::functional::mse_loss(model(x), y));
  }
  Tensor local = grad_rows();
  EXPECT_NE(local.select(0, 0).item(), local.select(0, 1).item());
  fabric.backward(nn::functional::mse_loss(model(x), y));
  Tensor synced = grad_rows();
  EXPECT_EQ(synced.select(0, 0).item(), synced.select(0, 1).item());
  double mean = 0;
  for (int r = 0; r < size; ++r) mean += local.select(0, r).item() / size;
  EXPECT_NEAR(synced.select(0, 0).item(), 2 * mean, 1e-6 * std::abs(mean) + 1e-7);

  // Under DDP a backward with no FabricModule forward would skip the gradient average.
  Tensor loss = nn::functional::mse_loss(net.forward(randn({2, 4})), randn({2, 1}));
  EXPECT_THROW(fabric.backward(loss), Error);
  fabric.barrier();
}

}  // namespace
}  // namespace lumen
