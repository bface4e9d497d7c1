#pragma once
// Uniformly random permutations drawn from Philox (tensor/generator.h) at an explicit counter,
// so a data order is a pure function of (seed, stream) and never touches the default
// generator: loading data cannot change the numbers a model draws.
#include <cstdint>
#include <vector>

namespace lumen {

// Philox counter regions, far above the blocks the default generator consumes (it counts up
// from 0), so a loader seeded like the model still draws independent numbers.
// Loader epoch e uses blocks [kLoaderStream + e * 2^32, ... + 2^32): 2^34 words per epoch.
inline constexpr uint64_t kLoaderStream = uint64_t{1} << 63;
inline constexpr uint64_t kSplitStream = uint64_t{1} << 62;

// A stream of 32-bit Philox words (4 per block) from block `counter` on, keyed by `seed`.
class PhiloxWords {
 public:
  PhiloxWords(uint64_t seed, uint64_t counter) : seed_(seed), counter_(counter) {}
  uint32_t next();
  // Uniform in [0, bound) without modulo bias (Lemire, "Fast random integer generation in an
  // interval", 2019): the high half of word * bound, rejecting the few low halves that would
  // make some results one draw more likely.
  uint64_t below(uint64_t bound);

 private:
  uint64_t seed_, counter_;
  uint32_t words_[4] = {};
  int used_ = 4;
};

// A permutation of [0, n) by Fisher-Yates over PhiloxWords(seed, counter): for i = n-1 .. 1,
// swap element i with element below(i + 1); every one of the n! orders is equally likely.
std::vector<int64_t> philox_permutation(int64_t n, uint64_t seed, uint64_t counter);

}  // namespace lumen
