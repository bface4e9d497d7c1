#pragma once
// A (height, width) argument of a 2-D layer, given as one int for both or as two, as PyTorch's
// layers accept `3` or `(3, 5)`: Conv2d(3, 8, 3) and Conv2d(3, 8, {3, 5}) both work, as do
// {.stride = 2} and {.stride = {2, 1}}. It remembers which form it was given in, because the
// pooling layers' repr prints the argument as given ("kernel_size=2" vs "kernel_size=(2, 2)").
#include <array>
#include <cstdint>
#include <string>

#include "tensor/error.h"

namespace lumen::nn {

struct IntPair {
  int64_t h = 0, w = 0;
  bool single = true;  // given as one int

  IntPair(int64_t both) : h(both), w(both), single(true) {}  // NOLINT: implicit by design
  IntPair(int64_t height, int64_t width) : h(height), w(width), single(false) {}

  std::array<int64_t, 2> array() const { return {h, w}; }
  bool all(int64_t v) const { return h == v && w == v; }
  bool any_below(int64_t v) const { return h < v || w < v; }

  // "(3, 5)"; `as_given` prints a single int as "3".
  std::string str(bool as_given = false) const {
    if (as_given && single) return std::to_string(h);
    return detail::concat("(", h, ", ", w, ")");
  }
};

}  // namespace lumen::nn
