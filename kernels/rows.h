#pragma once
// A contiguous tensor seen as [outer, D, inner] around one dim holds outer * inner independent
// rows of D elements, `inner` apart: the layout of softmax over any dim and of cross entropy's
// [N, C, d1, ...] logits (the class dim is 1). The CPU kernels split such rows across threads,
// the CUDA kernels give each row a warp or a block.
#include <algorithm>

#include "tensor/half.h"
#include "tensor/shape.h"

namespace lumen::kernels {

struct Rows {
  int64_t outer = 1, d = 1, inner = 1;
  LUMEN_HD int64_t count() const { return outer * inner; }
  // Offset of element 0 of row r.
  LUMEN_HD int64_t base(int64_t r) const { return (r / inner) * d * inner + r % inner; }
};

inline Rows rows_of(const Shape& shape, int64_t dim) {
  Rows r;
  if (shape.empty()) return r;  // a 0-d tensor is one row of one element
  for (int64_t i = 0; i < dim; ++i) r.outer *= shape[i];
  r.d = shape[dim];
  for (size_t i = dim + 1; i < shape.size(); ++i) r.inner *= shape[i];
  return r;
}

// Rows per CPU thread chunk: enough elements that a chunk outweighs the cost of a thread.
inline int64_t row_grain(int64_t d) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1));
}

}  // namespace lumen::kernels
