// CUDA softmax and log-softmax (kernels/softmax.h) over the rows of the softmax dim
// (kernels/rows.h): a warp per row up to 1024 elements, a block per row beyond, a thread per
// row for many interleaved rows (cuda::row_mode). Each row takes
// two reductions in acc_t: the max m (NaN wins), then sum_j exp(x_j - m).
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/rows.h"
#include "kernels/softmax.h"

namespace lumen::kernels {
namespace {

using cuda::RowGroup;
using cuda::RowMode;

// y_j = exp(x_j - m) / s, or x_j - m - log s for log-softmax, s = sum_j exp(x_j - m).
template <class T, RowMode kMode>
__global__ void softmax_kernel(T* y, const T* x, Rows rs, bool log) {
  using A = acc_t<T>;
  const RowGroup<kMode> grp;
  for (int64_t r = grp.first_row(); r < rs.count(); r += grp.row_step()) {
    const T* xr = x + rs.base(r);
    T* yr = y + rs.base(r);
    A m, s;
    cuda::row_max_sum_exp(grp, xr, rs.d, rs.inner, m, s);
    if (log) {
      const A shift = m + ::log(s);
      for (int64_t j = grp.lane(); j < rs.d; j += grp.size())
        yr[j * rs.inner] = T(A(xr[j * rs.inner]) - shift);
    } else {
      const A inv = A(1) / s;
      for (int64_t j = grp.lane(); j < rs.d; j += grp.size())
        yr[j * rs.inner] = T(exp(A(xr[j * rs.inner]) - m) * inv);
    }
  }
}

// softmax: dx_j = y_j (dy_j - sum_k dy_k y_k); log-softmax: dx_j = dy_j - exp(y_j) sum_k dy_k.
template <class T, RowMode kMode>
__global__ void softmax_backward_kernel(T* gx, const T* gy, const T* y, Rows rs, bool log) {
  using A = acc_t<T>;
  const RowGroup<kMode> grp;
  for (int64_t r = grp.first_row(); r < rs.count(); r += grp.row_step()) {
    const int64_t o = rs.base(r);
    A dot = 0;
    for (int64_t j = grp.lane(); j < rs.d; j += grp.size()) {
      const int64_t k = o + j * rs.inner;
      dot += log ? A(gy[k]) : A(gy[k]) * A(y[k]);
    }
    dot = grp.reduce(dot, cuda::Plus{});
    for (int64_t j = grp.lane(); j < rs.d; j += grp.size()) {
      const int64_t k = o + j * rs.inner;
      gx[k] = log ? T(A(gy[k]) - exp(A(y[k])) * dot) : T(A(y[k]) * (A(gy[k]) - dot));
    }
  }
}

void softmax_cuda(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  const Rows rs = rows_of(x.shape(), dim);
  if (x.numel() == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    const RowMode mode = cuda::row_mode(rs.count(), rs.d, rs.inner);
    cuda::with_row_mode(mode, [&]<RowMode M>() {
      softmax_kernel<T, M><<<cuda::row_blocks(mode, rs.count()), cuda::kBlock>>>(
          out.data<T>(), x.data<T>(), rs, log);
    });
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward_cuda(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim,
                           bool log) {
  const Rows rs = rows_of(y.shape(), dim);
  if (y.numel() == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(y.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(
      y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&]<class T>() {
        const RowMode mode = cuda::row_mode(rs.count(), rs.d, rs.inner);
        cuda::with_row_mode(mode, [&]<RowMode M>() {
          softmax_backward_kernel<T, M><<<cuda::row_blocks(mode, rs.count()), cuda::kBlock>>>(
              gx.data<T>(), gy.data<T>(), y.data<T>(), rs, log);
        });
        LUMEN_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace

LUMEN_REGISTER_KERNEL(softmax, CUDA, softmax_cuda);
LUMEN_REGISTER_KERNEL(softmax_backward, CUDA, softmax_backward_cuda);

}  // namespace lumen::kernels
