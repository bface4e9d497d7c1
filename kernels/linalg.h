#pragma once
// Matrix products. The caller (nn/functional/linalg.cpp) broadcasts the batch dims, allocates
// the output and lays each operand out the way every GEMM library takes it; kernels only
// compute.
#include "kernels/dispatch.h"

namespace lumen::kernels {

// out[..., M, N] = a[..., M, K] @ b[..., K, N]
//
// a, b and out have one rank (>= 2) and the same batch dims (a and b may be expanded views:
// stride 0 on a broadcast batch dim) and one floating dtype. Each matrix is "BLAS-shaped": it
// has unit stride along one of its last two dims and an outer stride no smaller than the extent
// of that dim (a plain or a transposed matrix, never a strided slice); see gemm_layout_ok.
// out may not overlap a or b. K = 0 gives zeros.
inline constinit OpKernel<void(const Tensor& out, const Tensor& a, const Tensor& b)> matmul{
    "matmul"};

// Whether the last two dims of `t` can be handed to a GEMM as they are: a row-major matrix
// (unit column stride, row stride >= columns) or a column-major one. A dim of extent 1 may have
// any stride, and an empty matrix any layout.
inline bool gemm_layout_ok(const Tensor& t) {
  int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  if (r == 0 || c == 0) return true;  // nothing is read
  bool row_major = (c == 1 || sc == 1) && (r == 1 || sr >= std::max<int64_t>(c, 1));
  bool col_major = (r == 1 || sr == 1) && (c == 1 || sc >= std::max<int64_t>(r, 1));
  return row_major || col_major;
}

}  // namespace lumen::kernels
