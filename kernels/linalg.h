#pragma once
// Matrix products. The caller (nn/functional/linalg.cpp) broadcasts the batch dims, allocates
// the output and lays each operand out the way every GEMM library takes it; kernels only
// compute.
#include <optional>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

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

// A linear layer's forward in one kernel where the backend can fuse it:
//   pre = a[M, K] @ b[K, N] + bias[N],   out = act(pre)
// with the bias add and the activation applied as the GEMM writes its result (cuBLASLt
// epilogues on CUDA) instead of in passes of their own. bias may be undefined (none), act
// nullopt (identity). `pre`, if defined ([M, N], contiguous), also receives the activation's
// input, which the backward of most activations needs. a and b are 2-D and BLAS-shaped, out
// and bias contiguous.
inline constinit OpKernel<void(const Tensor& out, const Tensor& pre, const Tensor& a,
                               const Tensor& b, const Tensor& bias, std::optional<UnaryArgs> act)>
    linear{"linear"};

// The same from its parts on any backend: the GEMM, then at most one pass that adds the bias
// and applies the activation (two when `pre` is asked for).
inline void linear_by_parts(Device dev, const Tensor& out, const Tensor& pre, const Tensor& a,
                            const Tensor& b, const Tensor& bias, std::optional<UnaryArgs> act) {
  if (pre.defined()) {
    matmul(dev, pre, a, b);
    if (bias.defined()) binary(dev, pre, pre, bias, BinaryOp::Add);
    if (act)
      unary(dev, out, pre, *act);
    else
      copy(dev, out, pre);
    return;
  }
  matmul(dev, out, a, b);
  if (bias.defined() && act)
    add_act(dev, out, out, bias, *act);
  else if (bias.defined())
    binary(dev, out, out, bias, BinaryOp::Add);
  else if (act)
    unary(dev, out, out, *act);
}

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

// How a BLAS-shaped matrix (the last two dims of t) lies in memory: row- or column-major with
// leading dimension ld, as every GEMM library takes it. An empty matrix reads as row-major.
struct GemmLayout {
  bool row_major;
  int64_t rows, cols, ld;
};
inline GemmLayout gemm_layout(const Tensor& t) {
  int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  if (r == 0 || c == 0) return {true, r, c, std::max<int64_t>(c, 1)};
  if ((c == 1 || sc == 1) && (r == 1 || sr >= std::max<int64_t>(c, 1)))
    return {true, r, c, r == 1 ? std::max<int64_t>(c, 1) : sr};
  return {false, r, c, c == 1 ? std::max<int64_t>(r, 1) : sc};
}

}  // namespace lumen::kernels
