#include "tensor/cpu_allocator.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/error.h"

namespace lumen {
namespace {

size_t rounded(size_t nbytes) {
  size_t unit = nbytes >= kMinCachedBytes ? 4096 : 64;
  return (nbytes + unit - 1) / unit * unit;
}

struct Cache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by rounded size
  size_t bytes = 0;

  void release_all() {  // with mutex held
    for (auto& [size, blocks] : free_blocks)
      for (void* p : blocks) std::free(p);
    free_blocks.clear();
    bytes = 0;
  }
};

// Never destroyed: tensors held by static objects may be freed after main returns.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

void* cpu_allocate(size_t nbytes) {
  const size_t size = rounded(nbytes);
  if (size >= kMinCachedBytes) {
    Cache& c = cache();
    std::lock_guard lock(c.mutex);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= size;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, size);
  if (!p && size >= kMinCachedBytes) {  // the cache's blocks may be what is missing
    cpu_empty_cache();
    p = std::aligned_alloc(64, size);
  }
  if (!p)
    throw OutOfMemoryError(detail::concat("cpu: out of memory allocating ", nbytes, " bytes"));
  return p;
}

void cpu_deallocate(void* p, size_t nbytes) {
  const size_t size = rounded(nbytes);
  if (size < kMinCachedBytes || size > kMaxCachedBytes) {
    std::free(p);
    return;
  }
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  if (c.bytes + size > kMaxCachedBytes) c.release_all();
  c.free_blocks[size].push_back(p);
  c.bytes += size;
}

size_t cpu_cached_bytes() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  c.release_all();
}

}  // namespace lumen
