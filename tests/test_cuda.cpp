// CUDA backend checks beyond the per-op harness. Without a GPU only the first test runs: a
// CUDA build must keep working on the CPU and say clearly that no device is there.
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

TEST(Cuda, AbsentDeviceGivesAClearError) {
  if (cuda_is_available()) GTEST_SKIP() << "a CUDA device is present";
  Tensor x = ones({3});
  EXPECT_THROW_MSG(x.to(Device::cuda()), "cuda:0");
  EXPECT_EQ((x + x).sum().item(), 6.0);  // the CPU path is unaffected
}

TEST(Cuda, RoundTripKeepsValuesAndLayout) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({5, 7}, {.dtype = DType::f64});
  Tensor g = x.to(Device::cuda());
  EXPECT_EQ(g.device(), Device::cuda(0));
  EXPECT_EQ(g.to(Device::cpu()).to_vector<double>(), x.to_vector<double>());
  // A transposed (non-contiguous) source arrives with the same values.
  EXPECT_EQ(x.t().to(Device::cuda()).to_vector<double>(), x.t().contiguous().to_vector<double>());
  // Casts on the device match casts on the host.
  EXPECT_EQ(g.to(DType::f16).to_vector<float>(), x.to(DType::f16).to_vector<float>());
  EXPECT_EQ(g.to(DType::bf16).to_vector<float>(), x.to(DType::bf16).to_vector<float>());
}

TEST(Cuda, RandomNumbersMatchTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::f32, DType::f64}) {
    Generator a(11), b(11);
    EXPECT_EQ(randn({1001}, {.dtype = dt, .device = Device::cuda()}, &a).to_vector<double>(),
              randn({1001}, {.dtype = dt}, &b).to_vector<double>());
    EXPECT_EQ(rand({1001}, {.dtype = dt, .device = Device::cuda()}, &a).to_vector<double>(),
              rand({1001}, {.dtype = dt}, &b).to_vector<double>());
  }
}

TEST(Cuda, OutOfMemorySaysHowMuch) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW_MSG(empty({int64_t{1} << 50}, {.dtype = DType::u8, .device = Device::cuda()}),
                   "out of memory", "1125899906842624 bytes", "free");
}

TEST(Cuda, MemoryStatsCountAllocationsAndThePoolKeepsFreedMemory) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  const Device dev = Device::cuda();
  reset_peak_memory_stats(dev);
  const MemoryStats before = memory_stats(dev);
  const int64_t bytes = int64_t{64} << 20;
  {
    Tensor t = empty({bytes}, {.dtype = DType::u8, .device = dev});
    EXPECT_EQ(memory_stats(dev).allocated, before.allocated + bytes);
  }
  ones({1}, {.device = dev}).item();  // the free is stream-ordered: let the stream reach it
  const MemoryStats after = memory_stats(dev);
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_EQ(after.peak_allocated, before.allocated + bytes);
  EXPECT_GE(after.reserved, after.allocated + bytes);  // the pool keeps what was freed
}

TEST(Cuda, MixedDevicesAreRefused) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW_MSG(ones({2}) + ones({2}, {.device = Device::cuda()}), "add", "cpu", "cuda:0");
}

}  // namespace
}  // namespace lumen::testing
