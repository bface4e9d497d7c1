#include "trainer/random_permutation.h"

#include <numeric>
#include <utility>

#include "tensor/error.h"
#include "tensor/generator.h"

namespace lumen {

uint32_t PhiloxWords::next() {
  if (used_ == 4) {
    PhiloxOut o = philox4x32(counter_++, seed_);
    for (int i = 0; i < 4; ++i) words_[i] = o.w[i];
    used_ = 0;
  }
  return words_[used_++];
}

uint64_t PhiloxWords::below(uint64_t bound) {
  LUMEN_CHECK(bound > 0, "PhiloxWords::below: expected a positive bound, got 0");
  if (bound <= 0xFFFFFFFFull) {
    // x * bound / 2^32 maps a word onto [0, bound); the low halves below 2^32 mod bound are
    // the surplus of the results that would otherwise come up once more, so they are redrawn.
    uint32_t range = static_cast<uint32_t>(bound);
    uint64_t m = static_cast<uint64_t>(next()) * range;
    uint32_t low = static_cast<uint32_t>(m);
    if (low < range) {
      uint32_t threshold = static_cast<uint32_t>(-range) % range;
      while (low < threshold) {
        m = static_cast<uint64_t>(next()) * range;
        low = static_cast<uint32_t>(m);
      }
    }
    return m >> 32;
  }
  // The same with 64-bit words (two Philox words) for bounds of 2^32 and more.
  auto next64 = [&] { return (static_cast<uint64_t>(next()) << 32) | next(); };
  unsigned __int128 m = static_cast<unsigned __int128>(next64()) * bound;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < bound) {
    uint64_t threshold = (0 - bound) % bound;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next64()) * bound;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

std::vector<int64_t> philox_permutation(int64_t n, uint64_t seed, uint64_t counter) {
  LUMEN_CHECK(n >= 0, "philox_permutation: expected n >= 0, got ", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  PhiloxWords words(seed, counter);
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(words.below(static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

}  // namespace lumen
