// CPU softmax and log-softmax over rows (kernels/rows.h) of the softmax dim; threads take
// rows (kernels/cpu/row_loops.h).
#include <cmath>

#include "kernels/cpu/row_loops.h"
#include "kernels/softmax.h"

namespace lumen::kernels {
namespace {

template <class T>
void softmax_rows(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  using A = acc_t<T>;
  const Rows rs = rows_of(x.shape(), dim);
  const T* px = x.data<T>();
  T* py = out.data<T>();
  const int64_t d = rs.d;
  cpu::for_each_row(rs, [&](int64_t r, auto st) {
    const T* xr = px + rs.base(r);
    T* yr = py + rs.base(r);
    const A m = cpu::row_max(xr, d, st);
    if (log) {
      const A shift = m + std::log(cpu::sum_exp(xr, d, st, m));
      for (int64_t j = 0; j < d; ++j) yr[j * st] = T(A(xr[j * st]) - shift);
    } else if constexpr (std::is_same_v<T, A>) {
      // Store the exponentials, then scale them.
      const A inv = A(1) / cpu::sum_exp(xr, d, st, m, yr);
      for (int64_t j = 0; j < d; ++j) yr[j * st] *= inv;
    } else {
      // 16-bit T: recompute the exponentials in A so the result is rounded once.
      const A inv = A(1) / cpu::sum_exp(xr, d, st, m);
      for (int64_t j = 0; j < d; ++j) yr[j * st] = T(math::exp(A(xr[j * st]) - m) * inv);
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
  const int64_t d = rs.d;
  cpu::for_each_row(rs, [&](int64_t r, auto st) {
    const int64_t o = rs.base(r);
    const T *gr = pg + o, *yr = py + o;
    T* xr = po + o;
    A dot = 0;
    if (log) {
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < d; ++j) dot += A(gr[j * st]);
      for (int64_t j = 0; j < d; ++j)
        xr[j * st] = T(A(gr[j * st]) - math::exp(A(yr[j * st])) * dot);
    } else {
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < d; ++j) dot += A(gr[j * st]) * A(yr[j * st]);
      for (int64_t j = 0; j < d; ++j) xr[j * st] = T(A(yr[j * st]) * (A(gr[j * st]) - dot));
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
