#pragma once
// Iteration over N tensors that share one (broadcast) shape but may have any strides: the
// output first, then inputs broadcast to it (stride 0 on stretched dims). Dims that are
// contiguous for every operand are merged, so the common case is one long inner run.
#include <array>

#include "kernels/cpu/parallel.h"
#include "tensor/tensor.h"

namespace lumen::cpu {

template <int N>
struct StridedLoop {
  Shape shape;
  std::array<Shape, N> strides;  // in elements

  // ops[0] gives the shape; the others must broadcast to it.
  explicit StridedLoop(std::array<const Tensor*, N> ops) {
    const Shape& full = ops[0]->shape();
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

  // Calls run(offsets, inner_strides, n) for runs of the innermost dim covering elements
  // [begin, end) in row-major order; offsets are in elements from each operand's data_ptr.
  template <class Run>
  void for_range(int64_t begin, int64_t end, const Run& run) const {
    int nd = static_cast<int>(shape.size());
    int64_t inner = shape[nd - 1];
    std::array<int64_t, N> inner_stride;
    for (int k = 0; k < N; ++k) inner_stride[k] = strides[k][nd - 1];
    int64_t idx[16];  // multi-index of `begin` over the outer dims
    int64_t rest = begin / inner;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = rest % shape[d];
      rest /= shape[d];
    }
    int64_t pos = begin % inner, i = begin;
    while (i < end) {
      std::array<int64_t, N> off;
      for (int k = 0; k < N; ++k) {
        off[k] = pos * inner_stride[k];
        for (int d = 0; d < nd - 1; ++d) off[k] += idx[d] * strides[k][d];
      }
      int64_t n = std::min(inner - pos, end - i);
      run(off, inner_stride, n);
      i += n;
      pos = 0;
      for (int d = nd - 2; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }

  // The same over all elements, split across threads.
  template <class Run>
  void parallel(const Run& run, int64_t grain = 32768) const {
    parallel_for(numel(), grain, [&](int64_t b, int64_t e) { for_range(b, e, run); });
  }
};

}  // namespace lumen::cpu
