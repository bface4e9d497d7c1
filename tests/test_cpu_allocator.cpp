#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "lumen/lumen.h"
#include "tensor/cpu_allocator.h"
#include "tests/op_harness.h"

namespace lumen {
namespace {

constexpr size_t MiB = size_t{1} << 20;

TEST(CpuAllocator, ReusesFreedLargeBlocksOfTheSameSize) {
  cpu_empty_cache();
  void* a = cpu_allocate(3 * MiB + 5);
  std::memset(a, 7, 3 * MiB + 5);
  cpu_deallocate(a, 3 * MiB + 5);
  EXPECT_EQ(cpu_cached_bytes(), 3 * MiB + 4096);  // rounded up to pages
  void* b = cpu_allocate(3 * MiB + 5);            // same rounded size: the cached block
  EXPECT_EQ(b, a);
  EXPECT_EQ(cpu_cached_bytes(), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 64, 0u);
  cpu_deallocate(b, 3 * MiB + 5);
  void* c = cpu_allocate(2 * MiB);  // another size is not served from it
  EXPECT_NE(c, a);
  EXPECT_EQ(cpu_cached_bytes(), 3 * MiB + 4096);
  cpu_deallocate(c, 2 * MiB);
  cpu_empty_cache();
  EXPECT_EQ(cpu_cached_bytes(), 0u);
}

TEST(CpuAllocator, SmallBlocksAreNotCached) {
  cpu_empty_cache();
  void* p = cpu_allocate(kMinCachedBytes - 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  cpu_deallocate(p, kMinCachedBytes - 4096);
  EXPECT_EQ(cpu_cached_bytes(), 0u);
}

// Three 400 MiB blocks: the third would take the cache past 1 GiB, so it empties the cache
// first and is then the only block held. (Untouched pages: no real memory is used.)
TEST(CpuAllocator, ACacheOverItsLimitStartsAgain) {
  cpu_empty_cache();
  void* blocks[3];
  for (void*& p : blocks) p = cpu_allocate(400 * MiB);
  cpu_deallocate(blocks[0], 400 * MiB);
  cpu_deallocate(blocks[1], 400 * MiB);
  EXPECT_EQ(cpu_cached_bytes(), 800 * MiB);
  cpu_deallocate(blocks[2], 400 * MiB);
  EXPECT_EQ(cpu_cached_bytes(), 400 * MiB);
  EXPECT_EQ(cpu_allocate(400 * MiB), blocks[2]);
  cpu_deallocate(blocks[2], 400 * MiB);
  cpu_empty_cache();
}

// Tensors go through it: a step's activation freed and allocated again lands on the same
// block, and a poisoned allocation is poisoned even when it is a reused block.
TEST(CpuAllocator, TensorsReuseBlocks) {
  cpu_empty_cache();
  const void* first = nullptr;
  {
    Tensor t = ones({512, 1024});
    first = t.data_ptr();
  }
  Tensor again = empty({1024, 512});
  EXPECT_EQ(again.data_ptr(), first);
  again = Tensor();
  set_poison_allocations(true);
  Tensor poisoned = empty({512, 1024});
  set_poison_allocations(false);
  EXPECT_EQ(poisoned.data_ptr(), first);
  EXPECT_TRUE(std::isnan(poisoned.flatten().narrow(0, 0, 1).item()));
}

// memory_stats counts the bytes of live storages and their peak; reserved adds the cache.
TEST(MemoryStats, CountsLiveStoragesPeakAndCache) {
  cpu_empty_cache();
  reset_peak_memory_stats(Device::cpu());
  const MemoryStats before = memory_stats(Device::cpu());
  EXPECT_EQ(before.peak_allocated, before.allocated);
  EXPECT_EQ(before.reserved, before.allocated);  // an empty cache
  const int64_t bytes = 1024 * 1024 * 4;
  {
    Tensor t = empty({1024, 1024});  // f32: 4 MiB
    const MemoryStats during = memory_stats(Device::cpu());
    EXPECT_EQ(during.allocated, before.allocated + bytes);
    EXPECT_EQ(during.peak_allocated, before.allocated + bytes);
    Tensor view = t.t();  // a view allocates nothing
    EXPECT_EQ(memory_stats(Device::cpu()).allocated, during.allocated);
  }
  const MemoryStats after = memory_stats(Device::cpu());
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_EQ(after.peak_allocated, before.allocated + bytes);  // the peak stays
  EXPECT_EQ(after.reserved, after.allocated + bytes);         // the freed block is cached
  reset_peak_memory_stats(Device::cpu());
  EXPECT_EQ(memory_stats(Device::cpu()).peak_allocated, after.allocated);
  cpu_empty_cache();
  EXPECT_EQ(memory_stats(Device::cpu()).reserved, after.allocated);
}

// An allocation beyond what the machine has is an OutOfMemoryError that says how much.
TEST(CpuAllocator, OutOfMemoryIsItsOwnErrorAndSaysHowMuch) {
  EXPECT_THROW(empty({int64_t{1} << 60}, {.dtype = DType::u8}), OutOfMemoryError);
  EXPECT_THROW_MSG(empty({int64_t{1} << 60}, {.dtype = DType::u8}), "cpu: out of memory",
                   "1152921504606846976 bytes");
}

TEST(MemoryStats, UnknownDeviceIsRefused) {
  if (cuda_is_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW_MSG(memory_stats(Device::cuda(0)), "cuda:0");
}

}  // namespace
}  // namespace lumen
