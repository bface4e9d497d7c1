#pragma once
// How a reduction walks its input, shared by the CPU and CUDA kernels (kernels/reduction.h):
// x's dims split into kept dims (one output element each) and reduced dims (walked for every
// output element).
#include "tensor/tensor.h"

namespace lumen::kernels::reduction {

struct Plan {
  Shape outer, outer_x, outer_out;  // kept dims: sizes, input strides, output strides
  Shape rows, rows_x;               // reduced dims but the last: sizes, input strides
  int64_t cols = 1, cols_x = 0;     // the last reduced dim: size, input stride
};

// Splits x's dims into kept and reduced ones, merging neighbours of the same kind that are laid
// out as one (stride[d] == size[d+1] stride[d+1]), so a reduction over (N, H, W) of a
// contiguous [N, C, H, W] walks N rows of H W contiguous elements.
inline Plan make_plan(const Tensor& out, const Tensor& x) {
  Plan p;
  Shape inner, inner_x;
  enum { None, Outer, Inner } last = None;
  for (int64_t d = 0; d < x.dim(); ++d) {
    int64_t n = x.size(d), sx = x.stride(d);
    if (n == 1) continue;
    if (out.size(d) == 1) {
      if (last == Inner && inner_x.back() == n * sx) {
        inner.back() *= n;
        inner_x.back() = sx;
      } else {
        inner.push_back(n);
        inner_x.push_back(sx);
      }
      last = Inner;
    } else {
      int64_t so = out.stride(d);
      if (last == Outer && p.outer_x.back() == n * sx && p.outer_out.back() == n * so) {
        p.outer.back() *= n;
        p.outer_x.back() = sx;
        p.outer_out.back() = so;
      } else {
        p.outer.push_back(n);
        p.outer_x.push_back(sx);
        p.outer_out.push_back(so);
      }
      last = Outer;
    }
  }
  if (!inner.empty()) {
    p.cols = inner.back();
    p.cols_x = inner_x.back();
    p.rows.assign(inner.begin(), inner.end() - 1);
    p.rows_x.assign(inner_x.begin(), inner_x.end() - 1);
  }
  return p;
}

// Offset of element `i` (row-major over `shape`) through `strides`.
inline int64_t offset_of(int64_t i, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

}  // namespace lumen::kernels::reduction
