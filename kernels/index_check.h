#pragma once
// What every backend's indexing kernels share on the host: the index dtype dispatch and the
// out-of-range errors (kernels/index.h), so a bad index reads the same on every device.
#include "tensor/tensor.h"

namespace lumen::kernels {

// Calls f.template operator()<I>() with I = int32_t or int64_t, the index's element type.
template <class F>
void dispatch_index(const char* op, const Tensor& index, F&& f) {
  if (index.dtype() == DType::i64) return f.template operator()<int64_t>();
  if (index.dtype() == DType::i32) return f.template operator()<int32_t>();
  detail::throw_error(op, ": index must be i32 or i64, got ", index.dtype(), " of shape ",
                      ShapeStr{index.shape()});
}

// The multi-index of row-major position p in `shape`.
inline Shape unravel(int64_t p, const Shape& shape) {
  Shape c(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    c[d] = p % shape[d];
    p /= shape[d];
  }
  return c;
}

// The value of an index tensor (on the CPU) at a multi-index.
inline int64_t index_value(const Tensor& index, const Shape& pos) {
  int64_t off = 0;
  for (size_t d = 0; d < pos.size(); ++d) off += pos[d] * index.strides()[d];
  if (index.dtype() == DType::i32) return index.data<int32_t>()[off];
  return index.data<int64_t>()[off];
}

[[noreturn]] inline void throw_index_out_of_range(const char* op, int64_t value,
                                                  const Shape& position, const Shape& index_shape,
                                                  int64_t dim, const Shape& shape,
                                                  const char* what) {
  detail::throw_error(op, ": index ", value, " at position ", ShapeStr{position},
                      " of the index (shape ", ShapeStr{index_shape}, ") is out of range for dim ",
                      dim, " of the ", what, " of shape ", ShapeStr{shape},
                      "; expected 0 <= index < ", shape[dim]);
}

[[noreturn]] inline void throw_embedding_index_out_of_range(const char* op, int64_t value,
                                                            const Shape& position,
                                                            const Tensor& indices,
                                                            const Tensor& weight) {
  detail::throw_error(op, ": index ", value, " at position ", ShapeStr{position},
                      " of the indices (shape ", ShapeStr{indices.shape()},
                      ") is out of range for a weight of shape ", ShapeStr{weight.shape()},
                      "; expected 0 <= index < ", weight.size(0));
}

}  // namespace lumen::kernels
