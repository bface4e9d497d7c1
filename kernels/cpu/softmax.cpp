// CPU softmax and log-softmax over rows (kernels/rows.h) of the softmax dim; threads take
// rows.
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/rows.h"
#include "kernels/softmax.h"

namespace lumen::kernels {
namespace {

// Subtracting the row max keeps every exp argument <= 0: no overflow, and the largest term is
// exactly 1, so the sum is >= 1 and its log is safe.
template <class T>
void softmax_rows(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  using A = acc_t<T>;
  const Rows rs = rows_of(x.shape(), dim);
  const T* px = x.data<T>();
  T* py = out.data<T>();
  const int64_t st = rs.inner, d = rs.d;
  cpu::parallel_for(rs.count(), row_grain(d), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = px + rs.base(r);
      T* yr = py + rs.base(r);
      A m = -INFINITY;
      for (int64_t j = 0; j < d; ++j) {
        A v = A(xr[j * st]);
        if (v > m || v != v) m = v;  // NaN propagates to the whole row
      }
      // A row of all -inf has no finite max; shifting by 0 gives exp(-inf) = 0 and then NaN
      // from 0/0, as PyTorch.
      if (std::isinf(m) && m < 0) m = A(0);
      A sum = 0;
      if (log) {
        for (int64_t j = 0; j < d; ++j) sum += std::exp(A(xr[j * st]) - m);
        A shift = m + std::log(sum);
        for (int64_t j = 0; j < d; ++j) yr[j * st] = T(A(xr[j * st]) - shift);
      } else {
        for (int64_t j = 0; j < d; ++j) {
          A ev = std::exp(A(xr[j * st]) - m);
          yr[j * st] = T(ev);
          sum += ev;
        }
        // Normalise the stored exponentials; for 16-bit T recompute them in A so the rounding
        // happens once.
        A inv = A(1) / sum;
        for (int64_t j = 0; j < d; ++j) {
          A ev = std::is_same_v<T, A> ? A(yr[j * st]) : std::exp(A(xr[j * st]) - m);
          yr[j * st] = T(ev * inv);
        }
      }
    }
  });
}

template <class T>
void softmax_backward_rows(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim,
                           bool log) {
  using A = acc_t<T>;
  const Rows rs = rows_of(y.shape(), dim);
  const T* pg = gy.data<T>();
  const T* py = y.data<T>();
  T* po = gx.data<T>();
  const int64_t st = rs.inner, d = rs.d;
  cpu::parallel_for(rs.count(), row_grain(d), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = rs.base(r);
      const T *gr = pg + o, *yr = py + o;
      T* xr = po + o;
      A dot = 0;
      if (log) {
        for (int64_t j = 0; j < d; ++j) dot += A(gr[j * st]);
        for (int64_t j = 0; j < d; ++j)
          xr[j * st] = T(A(gr[j * st]) - std::exp(A(yr[j * st])) * dot);
      } else {
        for (int64_t j = 0; j < d; ++j) dot += A(gr[j * st]) * A(yr[j * st]);
        for (int64_t j = 0; j < d; ++j) xr[j * st] = T(A(yr[j * st]) * (A(gr[j * st]) - dot));
      }
    }
  });
}

void softmax_cpu(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), log ? "log_softmax" : "softmax",
                                       [&]<class T>() { softmax_rows<T>(out, x, dim, log); });
}

void softmax_backward_cpu(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim,
                          bool log) {
  dispatch_dtype<DTypes::FloatAndHalf>(
      y.dtype(), log ? "log_softmax_backward" : "softmax_backward",
      [&]<class T>() { softmax_backward_rows<T>(gx, gy, y, dim, log); });
}

}  // namespace

LUMEN_REGISTER_KERNEL(softmax, CPU, softmax_cpu);
LUMEN_REGISTER_KERNEL(softmax_backward, CPU, softmax_backward_cpu);

}  // namespace lumen::kernels
