#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace lumen {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

// Broadcasts two shapes the NumPy way (align right; a dim of 1 stretches). Throws naming `op`
// and both shapes when a pair of dims is neither equal nor 1.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps dim in [-ndim, ndim) to [0, ndim), else throws naming `op`.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

struct ShapeStr {
  const Shape& s;
};
inline std::ostream& operator<<(std::ostream& os, ShapeStr s) { return os << shape_str(s.s); }

}  // namespace lumen
