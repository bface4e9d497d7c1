#pragma once
// Lumen's own CPU GEMM (gemm.cpp), for the kernels built on matrix products: matmul, conv2d,
// attention. Operands are read in place through their strides, so a transposed view costs no
// copy: the GEMM packs every operand into its own cache-sized panels anyway.
#include <cstdint>

namespace lumen::kernels {

// A matrix read in place: element (i, j) is p[i * row_stride + j * col_stride].
template <class T>
struct MatrixRef {
  const T* p;
  int64_t row_stride, col_stride;
  MatrixRef transposed() const { return {p, col_stride, row_stride}; }
};

// C = alpha A B, or C += alpha A B with `accumulate`, for A [M, K], B [K, N] and C [M, N]
// row-major with row stride ldc; K = 0 gives zeros (or leaves C). C may not overlap A or B.
// Outside a parallel region, a product large enough splits over the OpenMP threads.
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixRef<T> a, MatrixRef<T> b, T* c, int64_t ldc,
          T alpha = T(1), bool accumulate = false);

}  // namespace lumen::kernels
