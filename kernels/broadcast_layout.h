#pragma once
// The shared iteration layout of N tensors: the output first, then inputs broadcast to its
// shape (stride 0 on stretched dims). Dims that are contiguous for every operand are merged, so
// the common case is one long inner run. Both backends iterate over this layout.
#include <array>

#include "tensor/tensor.h"

namespace lumen::kernels {

template <int N>
struct BroadcastLayout {
  Shape shape;
  std::array<Shape, N> strides;  // in elements

  // ops[0] gives the shape; the others must broadcast to it.
  explicit BroadcastLayout(std::array<const Tensor*, N> ops) {
    const Shape& full = ops[0]->shape();
    LUMEN_CHECK(full.size() <= 16, "tensors of more than 16 dims are not supported, got shape ",
                ShapeStr{full});
    size_t nd = full.size();
    std::array<Shape, N> st;
    for (int k = 0; k < N; ++k) {
      const Tensor& t = *ops[k];
      st[k].assign(nd, 0);
      size_t lead = nd - t.shape().size();
      for (size_t i = 0; i < t.shape().size(); ++i)
        st[k][lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
    }
    // Drop size-1 dims, then merge dim i into i+1 when every operand steps through them as one.
    for (size_t i = 0; i < nd; ++i) {
      if (full[i] == 1) continue;
      if (!shape.empty()) {
        bool mergeable = true;
        for (int k = 0; k < N; ++k)
          if (strides[k].back() != st[k][i] * full[i]) mergeable = false;
        if (mergeable) {
          shape.back() *= full[i];
          for (int k = 0; k < N; ++k) strides[k].back() = st[k][i];
          continue;
        }
      }
      shape.push_back(full[i]);
      for (int k = 0; k < N; ++k) strides[k].push_back(st[k][i]);
    }
    if (shape.empty()) {  // a single element
      shape.push_back(1);
      for (int k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  int64_t numel() const { return numel_of(shape); }
};

}  // namespace lumen::kernels
