#pragma once
// A library's choice per problem (cuDNN's convolution algorithm, cuBLASLt's matmul algorithm),
// made once per key and kept for the life of the process: the first call with a key runs
// `choose`, later ones return its answer. One table per key type and call site.
#include <map>
#include <mutex>

namespace lumen::cuda {

template <class Key, class Choose>
auto cached_choice(const Key& key, Choose choose) -> decltype(choose()) {
  using Value = decltype(choose());
  static std::mutex mutex;
  static std::map<Key, Value> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Value v = choose();  // outside the lock: it may take long, and two threads agree anyway
  std::lock_guard<std::mutex> lock(mutex);
  cache.emplace(key, v);
  return v;
}

}  // namespace lumen::cuda
