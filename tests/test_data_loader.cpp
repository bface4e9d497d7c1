// Datasets, random_split, default_collate and DataLoader: order, seeded shuffles that never touch
// the default generator, resume by skipping, worker threads that deliver in order and pass on
// exceptions, and the state a checkpoint keeps.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "tests/op_harness.h"
#include "trainer/data_loader.h"
#include "trainer/device_prefetcher.h"
#include "trainer/random_permutation.h"

namespace lumen {
namespace {

// Example i is {x = [i, i + 0.5] (f32), y = i (i64)}.
std::shared_ptr<TensorDataset> numbered(int64_t n) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(i) + 0.5f);
    y.push_back(i);
  }
  return std::make_shared<TensorDataset>(
      std::vector<Tensor>{from_vector(x, {n, 2}), from_vector(y, {n})});
}

// Wraps a dataset: counts get() calls, optionally sleeps (to scramble worker timing) and throws
// at one index.
class ProbeDataset : public Dataset {
 public:
  explicit ProbeDataset(std::shared_ptr<const Dataset> base) : base_(std::move(base)) {}
  int64_t size() const override { return base_->size(); }
  Batch get(int64_t index) const override {
    ++gets;
    if (sleep_us > 0)  // varies by index so workers finish out of order
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us * (1 + (index * 7) % 5)));
    if (index == throw_at)
      throw Error("ProbeDataset: cannot read example " + std::to_string(index));
    return base_->get(index);
  }
  mutable std::atomic<int64_t> gets{0};
  int64_t sleep_us = 0;
  int64_t throw_at = -1;

 private:
  std::shared_ptr<const Dataset> base_;
};

std::vector<Batch> whole_epoch(DataLoader& loader, int64_t epoch, int64_t skip = 0) {
  std::vector<Batch> out;
  loader.begin_epoch(epoch, skip);
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

std::vector<int64_t> labels_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const Batch& b : batches)
    for (int64_t v : b[1].to_vector<int64_t>()) out.push_back(v);
  return out;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) == 0;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(a[k].size(), b[k].size());
    for (size_t f = 0; f < a[k].size(); ++f)
      EXPECT_TRUE(bitwise_equal(a[k][f], b[k][f])) << "batch " << k << " field " << f;
  }
}

TEST(DataLoader, BatchesInOrder) {
  DataLoader loader(numbered(10), {.batch_size = 3});
  EXPECT_EQ(loader.size(), 4);
  std::vector<Batch> batches = whole_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 4u);
  std::vector<int64_t> sizes;
  for (const Batch& b : batches) sizes.push_back(b[0].size(0));
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3, 3, 1}));
  EXPECT_EQ(batches[1][0].shape(), (Shape{3, 2}));
  EXPECT_EQ(batches[1][0].to_vector<float>(), (std::vector<float>{3, 3.5, 4, 4.5, 5, 5.5}));
  EXPECT_EQ(batches[3][1].to_vector<int64_t>(), (std::vector<int64_t>{9}));
  EXPECT_EQ(batches[3][1].dtype(), DType::i64);
  EXPECT_EQ(loader.batches_consumed(), 4);
  EXPECT_FALSE(loader.next().has_value());  // stays at the end
}

// pin_memory: batches in page-locked memory where a GPU is present (their values unchanged,
// copies to the GPU asynchronous), and nothing changes without one, as in PyTorch.
TEST(DataLoader, PinMemoryPinsBatchesOnlyWithAGpu) {
  for (int workers : {0, 2}) {
    DataLoader plain(numbered(10), {.batch_size = 3, .num_workers = workers});
    DataLoader pinned(numbered(10), {.batch_size = 3, .num_workers = workers, .pin_memory = true});
    std::vector<Batch> a = whole_epoch(plain, 0), b = whole_epoch(pinned, 0);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      for (size_t f = 0; f < a[i].size(); ++f) {
        EXPECT_EQ(b[i][f].to_vector<double>(), a[i][f].to_vector<double>());
        EXPECT_EQ(b[i][f].dtype(), a[i][f].dtype());
        EXPECT_EQ(b[i][f].is_pinned(), cuda_is_available());
        EXPECT_FALSE(a[i][f].is_pinned());
      }
    }
  }
}

TEST(PinMemory, NeedsAGpuAndACpuTensor) {
  if (cuda_is_available()) {
    Tensor x = randn({3, 5}).t();  // non-contiguous: the pinned copy is contiguous
    Tensor p = x.pin_memory();
    EXPECT_TRUE(p.is_pinned());
    EXPECT_TRUE(p.is_contiguous());
    EXPECT_EQ(p.to_vector<double>(), x.to_vector<double>());
    EXPECT_EQ(p.pin_memory().data_ptr(), p.data_ptr());  // already pinned: itself
    EXPECT_EQ(p.to(Device::cuda()).to(Device::cpu()).to_vector<double>(), x.to_vector<double>());
    // A freed block is reused once the copies queued before its release are done.
    const void* first = p.data_ptr();
    p = Tensor();
    ones({1}, {.device = Device::cuda()}).item();  // the device has caught up
    EXPECT_EQ(randn({3, 5}).pin_memory().data_ptr(), first);
    EXPECT_THROW_MSG(ones({2}, {.device = Device::cuda()}).pin_memory(), "expects a CPU tensor");
  } else {
    EXPECT_THROW_MSG(ones({2}).pin_memory(), "pin_memory", "no CUDA device");
  }
  EXPECT_THROW_MSG(empty({2}, {.device = Device::cuda(), .pin_memory = true}), "pin_memory",
                   "CPU tensors");
  EXPECT_FALSE(ones({2}).is_pinned());
}

TEST(DataLoader, DropLastCounts) {
  auto ds = numbered(10);
  EXPECT_EQ(DataLoader(ds, {.batch_size = 3, .drop_last = true}).size(), 3);
  EXPECT_EQ(DataLoader(ds, {.batch_size = 5, .drop_last = true}).size(), 2);
  EXPECT_EQ(DataLoader(ds, {.batch_size = 5}).size(), 2);
  EXPECT_EQ(DataLoader(ds, {.batch_size = 11}).size(), 1);
  DataLoader none(ds, {.batch_size = 11, .drop_last = true});
  EXPECT_EQ(none.size(), 0);
  EXPECT_TRUE(whole_epoch(none, 0).empty());
  DataLoader dropped(ds, {.batch_size = 3, .shuffle = true, .drop_last = true, .seed = 1});
  std::vector<Batch> batches = whole_epoch(dropped, 0);
  ASSERT_EQ(batches.size(), 3u);
  for (const Batch& b : batches) EXPECT_EQ(b[1].size(0), 3);
  std::set<int64_t> seen;
  for (int64_t v : labels_of(batches)) seen.insert(v);
  EXPECT_EQ(seen.size(), 9u);  // 9 distinct examples; one dropped
}

TEST(DataLoader, ShuffleIsAPermutation) {
  DataLoader loader(numbered(100), {.batch_size = 7, .shuffle = true, .seed = 3});
  std::vector<int64_t> order = labels_of(whole_epoch(loader, 0));
  std::vector<int64_t> sorted = order, identity(100);
  std::sort(sorted.begin(), sorted.end());
  std::iota(identity.begin(), identity.end(), int64_t{0});
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(order, identity);
}

TEST(DataLoader, OrderIsAFunctionOfSeedAndEpoch) {
  auto ds = numbered(50);
  DataLoader a(ds, {.batch_size = 4, .shuffle = true, .seed = 5});
  DataLoader b(ds, {.batch_size = 4, .shuffle = true, .seed = 5});
  DataLoader c(ds, {.batch_size = 4, .shuffle = true, .seed = 6});
  std::vector<int64_t> a2 = labels_of(whole_epoch(a, 2));
  labels_of(whole_epoch(b, 0));  // b's history does not matter
  EXPECT_EQ(labels_of(whole_epoch(b, 2)), a2);
  EXPECT_NE(labels_of(whole_epoch(a, 3)), a2);
  EXPECT_NE(labels_of(whole_epoch(c, 2)), a2);
  // The same permutation, computed directly: Philox block kLoaderStream + epoch * 2^32.
  EXPECT_EQ(a2, philox_permutation(50, 5, kLoaderStream + (uint64_t{2} << 32)));
}

TEST(DataLoader, IndependentOfTheDefaultGenerator) {
  auto ds = numbered(40);
  manual_seed(11);
  DataLoader first(ds, {.batch_size = 8, .shuffle = true, .seed = 9});
  std::vector<int64_t> before = labels_of(whole_epoch(first, 1));
  randn({1000});  // moves the default generator
  DataLoader second(ds, {.batch_size = 8, .shuffle = true, .num_workers = 2, .seed = 9});
  EXPECT_EQ(labels_of(whole_epoch(second, 1)), before);

  // Loading an epoch leaves the default generator where it was.
  for (int workers : {0, 2}) {
    manual_seed(21);
    std::vector<float> expected = randn({16}).to_vector<float>();
    manual_seed(21);
    DataLoader loader(ds, {.batch_size = 8, .shuffle = true, .num_workers = workers});
    whole_epoch(loader, 0);
    EXPECT_EQ(randn({16}).to_vector<float>(), expected) << workers << " workers";
  }

  // Unset, the seed is the default generator's when the loader is made.
  manual_seed(77);
  DataLoader unseeded(ds, {.batch_size = 8, .shuffle = true});
  manual_seed(78);
  EXPECT_EQ(unseeded.seed(), 77u);
  DataLoader seeded(ds, {.batch_size = 8, .shuffle = true, .seed = 77});
  EXPECT_EQ(labels_of(whole_epoch(unseeded, 0)), labels_of(whole_epoch(seeded, 0)));
}

TEST(DataLoader, PermutationsAreUniform) {
  // All 6 orders of 3 elements over 6000 seeds: each 1000 expected, sd sqrt(6000/6*5/6) = 28.9.
  std::map<std::vector<int64_t>, int> counts;
  for (uint64_t seed = 0; seed < 6000; ++seed) ++counts[philox_permutation(3, seed, 0)];
  ASSERT_EQ(counts.size(), 6u);
  for (const auto& [order, count] : counts) EXPECT_NEAR(count, 1000, 150);
  // Where element 0 lands among 10, over 10000 permutations: 1000 each, sd 30.
  std::vector<int> where(10);
  for (uint64_t seed = 0; seed < 10000; ++seed) {
    std::vector<int64_t> p = philox_permutation(10, 123, seed * 16);
    ++where[std::find(p.begin(), p.end(), 0) - p.begin()];
  }
  for (int c : where) EXPECT_NEAR(c, 1000, 160);
  // Bounded draws: in range, and uniform for a bound that does not divide 2^32.
  PhiloxWords words(1, 0);
  std::vector<int> thirds(3);
  for (int i = 0; i < 30000; ++i) ++thirds[words.below(3)];
  for (int c : thirds) EXPECT_NEAR(c, 10000, 400);  // sd 81.6
  uint64_t big = (uint64_t{1} << 40) + 12345;
  uint64_t max_seen = 0;
  for (int i = 0; i < 1000; ++i) max_seen = std::max(max_seen, words.below(big));
  EXPECT_LT(max_seen, big);
  EXPECT_GT(max_seen, big / 2);
  EXPECT_EQ(words.below(1), 0u);
}

TEST(DataLoader, SkipBatchesEqualsConsumingWithoutLoading) {
  auto probe = std::make_shared<ProbeDataset>(numbered(23));
  DataLoader loader(probe, {.batch_size = 4, .shuffle = true, .seed = 8});
  std::vector<Batch> full = whole_epoch(loader, 4);
  probe->gets = 0;
  std::vector<Batch> rest = whole_epoch(loader, 4, 2);
  EXPECT_EQ(probe->gets.load(), 23 - 8);  // the 8 skipped examples were never read
  EXPECT_EQ(loader.batches_consumed(), 6);
  expect_same_batches(rest, std::vector<Batch>(full.begin() + 2, full.end()));

  DataLoader threaded(probe, {.batch_size = 4, .shuffle = true, .num_workers = 3, .seed = 8});
  expect_same_batches(whole_epoch(threaded, 4, 5),
                      std::vector<Batch>(full.begin() + 5, full.end()));
  EXPECT_TRUE(whole_epoch(threaded, 4, 6).empty());  // skipping every batch
  EXPECT_THROW_MSG(loader.begin_epoch(0, 7), "skip_batches 7", "[0, 6]");
  EXPECT_THROW_MSG(loader.begin_epoch(-1), "epoch -1");
}

TEST(DataLoader, WorkersDeliverIdenticalBatchesInOrder) {
  auto probe = std::make_shared<ProbeDataset>(numbered(103));
  probe->sleep_us = 30;
  std::vector<Batch> reference;
  for (int workers : {0, 1, 3}) {
    DataLoader loader(probe, {.batch_size = 8,
                              .shuffle = true,
                              .num_workers = workers,
                              .prefetch_factor = 2,
                              .seed = 2});
    EXPECT_EQ(loader.size(), 13);
    std::vector<Batch> batches = whole_epoch(loader, 1);
    if (workers == 0)
      reference = batches;
    else
      expect_same_batches(batches, reference);
  }
  // Non-shuffled with threads: batch k holds examples 8k...
  DataLoader ordered(probe, {.batch_size = 8, .num_workers = 3});
  std::vector<int64_t> identity(103);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  EXPECT_EQ(labels_of(whole_epoch(ordered, 0)), identity);
}

TEST(DataLoader, PrefetchIsBounded) {
  auto probe = std::make_shared<ProbeDataset>(numbered(100));
  DataLoader loader(probe, {.batch_size = 1, .num_workers = 2, .prefetch_factor = 1});
  loader.begin_epoch(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(probe->gets.load(), 2);  // prefetch_factor * num_workers batches of one example
  EXPECT_EQ(loader.next().value()[1].item<int64_t>(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(probe->gets.load(), 3);
}

TEST(DataLoader, WorkerExceptionsAreRethrownForTheirBatch) {
  auto probe = std::make_shared<ProbeDataset>(numbered(30));
  probe->throw_at = 17;  // in batch 4 (examples 16..19)
  for (int workers : {0, 2}) {
    DataLoader loader(probe, {.batch_size = 4, .num_workers = workers});
    loader.begin_epoch(0);
    for (int k = 0; k < 4; ++k) EXPECT_TRUE(loader.next().has_value());
    EXPECT_THROW_MSG(loader.next(), "ProbeDataset: cannot read example 17");
    // The failed batch counts as delivered; the epoch goes on.
    std::optional<Batch> b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ((*b)[1].to_vector<int64_t>(), (std::vector<int64_t>{20, 21, 22, 23}));
  }
  // Any exception type passes through unchanged.
  DataLoader loader(numbered(8),
                    {.batch_size = 4, .num_workers = 2, .collate = [](const auto&) -> Batch {
                       throw std::out_of_range("collate says no");
                     }});
  loader.begin_epoch(0);
  try {
    loader.next();
    ADD_FAILURE() << "expected std::out_of_range";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "collate says no");
  }
}

// The prefetcher (the Trainer's way to the device) delivers the loader's batches in order and
// keeps one ahead when asked (always on a GPU): the loader has handed out batch i + 1 by the time
// batch i is returned, but never more than `limit` batches. A batch that fails to load fails
// the call that would return it, and the next call returns the batch after it.
TEST(DevicePrefetcher, KeepsOneBatchAheadWithinItsLimit) {
  auto probe = std::make_shared<ProbeDataset>(numbered(30));
  probe->throw_at = 17;  // batch 4
  for (bool lookahead : {false, true}) {
    SCOPED_TRACE(lookahead ? "lookahead" : "one at a time");
    DataLoader loader(probe, {.batch_size = 4});
    loader.begin_epoch(0);
    DevicePrefetcher batches(loader, Device::cpu(), 6, lookahead);
    for (int64_t k = 0; k < 4; ++k) {
      std::optional<Batch> b = batches.next();
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ((*b)[1].to_vector<int64_t>()[0], 4 * k);
      EXPECT_EQ(loader.batches_consumed(), k + 1 + (lookahead ? 1 : 0));
    }
    EXPECT_THROW_MSG(batches.next(), "ProbeDataset: cannot read example 17");
    std::optional<Batch> b = batches.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ((*b)[1].to_vector<int64_t>(), (std::vector<int64_t>{20, 21, 22, 23}));
    EXPECT_EQ(loader.batches_consumed(), 6);  // the limit: nothing beyond it is loaded
    EXPECT_FALSE(batches.next().has_value());
    EXPECT_FALSE(batches.next().has_value());
  }
  // The end of the epoch before the limit.
  DataLoader loader(numbered(10), {.batch_size = 4});
  loader.begin_epoch(0);
  DevicePrefetcher batches(loader, Device::cpu(), 100, true);
  int n = 0;
  while (batches.next()) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_FALSE(batches.next().has_value());
}

// On a GPU the batches arrive on the device with the loader's values, from pinned memory too.
TEST(DevicePrefetcher, BatchesArriveOnTheGpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (bool pin : {false, true}) {
    DataLoader loader(numbered(23), {.batch_size = 5, .num_workers = 2, .pin_memory = pin});
    std::vector<Batch> want = whole_epoch(loader, 0);
    loader.begin_epoch(0);
    DevicePrefetcher batches(loader, Device::cuda(), 100);
    for (const Batch& w : want) {
      std::optional<Batch> b = batches.next();
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ((*b)[0].device(), Device::cuda());
      // A kernel on the compute stream reads the copied values.
      EXPECT_EQ(((*b)[0] * 2.0).to_vector<float>(), (w[0] * 2.0).to_vector<float>());
      EXPECT_EQ((*b)[1].to_vector<int64_t>(), w[1].to_vector<int64_t>());
    }
    EXPECT_FALSE(batches.next().has_value());
  }
}

TEST(DataLoader, RestartAndDestructionMidEpoch) {
  auto probe = std::make_shared<ProbeDataset>(numbered(200));
  probe->sleep_us = 100;
  DataLoaderOptions opts{.batch_size = 5, .shuffle = true, .num_workers = 3, .seed = 4};
  std::vector<Batch> epoch1;
  {
    DataLoader fresh(probe, opts);
    epoch1 = whole_epoch(fresh, 1);
  }
  {
    DataLoader loader(probe, opts);
    loader.begin_epoch(0);
    loader.next();
    loader.next();
    expect_same_batches(whole_epoch(loader, 1), epoch1);  // epoch 0 abandoned half-way
    loader.begin_epoch(2);
    loader.next();
  }  // destroyed with batches loading: joins without hanging
  {
    DataLoader idle(probe, opts);  // threads never started
  }
  {
    DataLoader loader(probe, opts);
    loader.begin_epoch(0);
    loader.next();
    State s = loader.state_dict();
    loader.load_state_dict(s);  // also abandons the epoch
    EXPECT_THROW_MSG(loader.next(), "begin_epoch");
  }
}

TEST(DataLoader, NoGraphInBatches) {
  Tensor x = randn({6, 3}).requires_grad_();
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{x});
  for (int workers : {0, 2}) {
    DataLoader loader(ds, {.batch_size = 3, .num_workers = workers});
    for (const Batch& b : whole_epoch(loader, 0)) {
      EXPECT_FALSE(b[0].requires_grad()) << workers << " workers";
      EXPECT_EQ(b[0].grad_fn(), nullptr);
    }
  }
  EXPECT_TRUE(GradMode::is_enabled());  // the guard ends with next()
}

TEST(DataLoader, RangeForOverOneEpoch) {
  DataLoader loader(numbered(10), {.batch_size = 4, .shuffle = true, .num_workers = 2, .seed = 1});
  std::vector<int64_t> seen;
  int64_t batches = 0;
  for (Batch& b : loader.epoch(3)) {
    ++batches;
    for (int64_t v : b[1].to_vector<int64_t>()) seen.push_back(v);
  }
  EXPECT_EQ(batches, 3);
  EXPECT_EQ(loader.epoch(), 3);
  DataLoader same(numbered(10), {.batch_size = 4, .shuffle = true, .seed = 1});
  EXPECT_EQ(seen, labels_of(whole_epoch(same, 3)));
}

TEST(DataLoader, StateDictRoundTrip) {
  auto ds = numbered(37);
  DataLoader a(ds,
               {.batch_size = 5, .shuffle = true, .num_workers = 2, .seed = 0xFEEDFACECAFEBEEFull});
  std::vector<Batch> full = whole_epoch(a, 2);
  a.begin_epoch(2);
  for (int k = 0; k < 3; ++k) a.next();
  State s = a.state_dict();
  EXPECT_EQ(s.get_int("epoch"), 2);
  EXPECT_EQ(s.get_int("batches_consumed"), 3);
  EXPECT_EQ(static_cast<uint64_t>(s.get_int("seed")), 0xFEEDFACECAFEBEEFull);

  DataLoader b(ds, {.batch_size = 5, .shuffle = true, .seed = 1});  // another seed, replaced
  b.load_state_dict(s);
  EXPECT_EQ(b.seed(), 0xFEEDFACECAFEBEEFull);
  EXPECT_EQ(b.epoch(), 2);
  EXPECT_EQ(b.batches_consumed(), 3);
  std::vector<Batch> rest = whole_epoch(b, b.epoch(), b.batches_consumed());
  expect_same_batches(rest, std::vector<Batch>(full.begin() + 3, full.end()));

  State bad = s;
  bad.attrs["batches_consumed"] = int64_t{-1};
  EXPECT_THROW_MSG(b.load_state_dict(bad), "batches_consumed -1");
  State missing;
  EXPECT_THROW_MSG(b.load_state_dict(missing), "epoch");
}

TEST(DataLoader, BadOptions) {
  auto ds = numbered(4);
  EXPECT_THROW_MSG(DataLoader(ds, {.batch_size = 0}), "batch_size must be >= 1, got 0");
  EXPECT_THROW_MSG(DataLoader(ds, {.num_workers = -1}), "num_workers");
  EXPECT_THROW_MSG(DataLoader(ds, {.prefetch_factor = 0}), "prefetch_factor");
  EXPECT_THROW_MSG(DataLoader(nullptr), "dataset is null");
  DataLoader loader(ds);
  EXPECT_THROW_MSG(loader.next(), "no epoch has begun", "begin_epoch");
}

TEST(Collate, StacksEachField) {
  Batch b =
      default_collate({{from_vector<float>({1, 2}), scalar_tensor(7, {.dtype = DType::i64})},
                       {from_vector<float>({3, 4}), scalar_tensor(8, {.dtype = DType::i64})}});
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(b[0].to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(b[1].shape(), (Shape{2}));
  EXPECT_EQ(b[1].to_vector<int64_t>(), (std::vector<int64_t>{7, 8}));
}

TEST(Collate, Errors) {
  EXPECT_THROW_MSG(default_collate({}), "at least one example");
  EXPECT_THROW_MSG(default_collate({{zeros({2}), zeros({2})}, {zeros({2}), zeros({3})}}),
                   "field 1 of example 1", "[3]", "[2]");
  EXPECT_THROW_MSG(default_collate({{zeros({2}), zeros({2})}, {zeros({2})}}),
                   "example 1 has 1 fields but example 0 has 2");
  // Through a loader: examples of different lengths.
  class Ragged : public Dataset {
   public:
    int64_t size() const override { return 4; }
    Batch get(int64_t i) const override { return {zeros({1 + i % 2 + (i == 3 ? 3 : 0)})}; }
  };
  for (int workers : {0, 2}) {
    DataLoader loader(std::make_shared<Ragged>(), {.batch_size = 2, .num_workers = workers});
    loader.begin_epoch(0);
    EXPECT_THROW_MSG(loader.next(), "field 0 of example 1", "[2]", "[1]");
  }
}

TEST(Datasets, TensorDatasetAndSubset) {
  auto ds = numbered(5);
  EXPECT_EQ(ds->size(), 5);
  Batch e = ds->get(3);
  EXPECT_EQ(e[0].to_vector<float>(), (std::vector<float>{3, 3.5}));
  EXPECT_EQ(e[1].dim(), 0);
  EXPECT_THROW_MSG(ds->get(5), "index 5", "5 examples");
  EXPECT_THROW_MSG(TensorDataset({zeros({4, 2}), zeros({3})}), "tensor 1 has 3 rows", "[4, 2]");
  EXPECT_THROW_MSG(TensorDataset({}), "at least one tensor");
  Subset sub(ds, {4, 0});
  EXPECT_EQ(sub.size(), 2);
  EXPECT_EQ(sub.get(0)[1].item<int64_t>(), 4);
  EXPECT_EQ(sub.get(1)[1].item<int64_t>(), 0);
  EXPECT_THROW_MSG(Subset(ds, {1, 5}), "index 5", "position 1");
}

// TensorDataset and Subset gather a batch in one go (get_batch) where the loader's collate is
// default_collate, and never call get(); the batches are those that collating get()'s examples
// gives, bit for bit: shuffled or not, sharded, with workers, for a random_split piece, with a
// short last batch. A derived class that overrides get() alone keeps its get().
TEST(Datasets, GatheredBatchesEqualCollatedExamples) {
  struct Counting : TensorDataset {
    using TensorDataset::TensorDataset;
    Batch get(int64_t index) const override {
      ++gets;
      return TensorDataset::get(index);
    }
    std::optional<Batch> get_batch(const std::vector<int64_t>& indices) const override {
      return gather_rows(indices);  // opts in
    }
    mutable std::atomic<int64_t> gets{0};
  };
  Generator gen(4);
  std::vector<Tensor> tensors{randn({37, 3, 2}, {}, &gen), numbered(37)->tensors()[1]};
  auto ds = std::make_shared<Counting>(tensors);
  auto piece = random_split(ds, {20, 17}, 5)[1];
  auto by_examples = [](const std::vector<Batch>& e) { return default_collate(e); };
  for (const std::shared_ptr<const Dataset>& d :
       std::vector<std::shared_ptr<const Dataset>>{ds, piece})
    for (int workers : {0, 2})
      for (bool shuffle : {false, true})
        for (int64_t replicas : {1, 2}) {
          SCOPED_TRACE(std::to_string(workers) + " workers, shuffle " + std::to_string(shuffle) +
                       ", " + std::to_string(replicas) + " replicas, size " +
                       std::to_string(d->size()));
          DataLoaderOptions o{
              .batch_size = 8, .shuffle = shuffle, .num_workers = workers, .seed = 3};
          DataLoader gathered(d, o);
          o.collate = by_examples;
          DataLoader collated(d, o);
          gathered.distribute(replicas - 1, replicas);
          collated.distribute(replicas - 1, replicas);
          ds->gets = 0;
          std::vector<Batch> a = whole_epoch(gathered, 1);
          EXPECT_EQ(ds->gets, 0);
          std::vector<Batch> b = whole_epoch(collated, 1);
          EXPECT_EQ(ds->gets, collated.num_examples());
          expect_same_batches(a, b);
        }

  struct Augmenting : TensorDataset {
    using TensorDataset::TensorDataset;
    Batch get(int64_t index) const override {
      Batch e = TensorDataset::get(index);
      e[0] = e[0] * 2.0;
      return e;
    }
  };
  auto augmented = std::make_shared<Augmenting>(tensors);
  EXPECT_FALSE(augmented->get_batch({0, 1}).has_value());
  DataLoader loader(augmented, {.batch_size = 4});
  std::vector<Batch> batches = whole_epoch(loader, 0);
  EXPECT_TRUE(bitwise_equal(batches[0][0], tensors[0].narrow(0, 0, 4) * 2.0));

  auto plain = std::make_shared<TensorDataset>(tensors);
  std::optional<Batch> rows = plain->get_batch({4, 0, 4});
  ASSERT_TRUE(rows.has_value());
  expect_same_batches({*rows}, {default_collate({plain->get(4), plain->get(0), plain->get(4)})});
  EXPECT_THROW_MSG(plain->get_batch({1, 37}), "TensorDataset::get_batch", "index 37", "position 1",
                   "37 examples");
  Subset sub(plain, {3, 1});
  ASSERT_TRUE(sub.get_batch({1}).has_value());
  EXPECT_EQ(sub.get_batch({1})->at(1).to_vector<int64_t>(), std::vector<int64_t>{1});
  EXPECT_THROW_MSG(sub.get_batch({2}), "Subset::get_batch", "index 2", "2 examples");
}

TEST(Datasets, RandomSplit) {
  auto ds = numbered(20);
  auto pieces = random_split(ds, {12, 0, 8}, 42);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0]->size(), 12);
  EXPECT_EQ(pieces[1]->size(), 0);
  EXPECT_EQ(pieces[2]->size(), 8);
  std::vector<int64_t> all;
  for (const auto& p : pieces)
    for (int64_t i = 0; i < p->size(); ++i) all.push_back(p->get(i)[1].item<int64_t>());
  std::vector<int64_t> perm = philox_permutation(20, 42, kSplitStream);
  EXPECT_EQ(all, perm);  // consecutive pieces of one permutation
  std::sort(all.begin(), all.end());
  std::vector<int64_t> identity(20);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  EXPECT_EQ(all, identity);
  EXPECT_NE(perm, identity);
  auto again = random_split(ds, {12, 0, 8}, 42);
  auto other = random_split(ds, {12, 0, 8}, 43);
  EXPECT_EQ(again[2]->get(0)[1].item<int64_t>(), pieces[2]->get(0)[1].item<int64_t>());
  std::vector<int64_t> a, b;
  for (int64_t i = 0; i < 8; ++i) {
    a.push_back(pieces[2]->get(i)[1].item<int64_t>());
    b.push_back(other[2]->get(i)[1].item<int64_t>());
  }
  EXPECT_NE(a, b);
  EXPECT_THROW_MSG(random_split(ds, {10, 5}, 1), "[10, 5] sum to 15", "20 examples");
  EXPECT_THROW_MSG(random_split(ds, {25, -5}, 1), "length 1 is -5");

  // Fractions, torch's rule: floor(0.5 * 7) = 3, floor(0.3 * 7) = 2, floor(0.2 * 7) = 1; the
  // one left over goes to the first piece.
  auto fr = random_split_fractions(numbered(7), {0.5, 0.3, 0.2}, 1);
  EXPECT_EQ(fr[0]->size(), 4);
  EXPECT_EQ(fr[1]->size(), 2);
  EXPECT_EQ(fr[2]->size(), 1);
  EXPECT_THROW_MSG(random_split_fractions(ds, {0.5, 0.4}, 1), "sum to 0.9");
}

}  // namespace
}  // namespace lumen
