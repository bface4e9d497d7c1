#pragma once
// CPU loops over the rows of kernels/rows.h (softmax, log-softmax, cross entropy): the split
// across threads, and the row max and sum of exponentials that they share. Subtracting the
// max m keeps every exp argument <= 0 (no overflow) and makes the largest term exactly 1, so
// sum_j e^{x_j - m} >= 1 and its log is safe.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/parallel.h"
#include "kernels/rows.h"
#include "kernels/simd_math.h"
#include "tensor/dtype.h"

namespace lumen::cpu {

// A row's stride known at compile time to be 1: loops over contiguous rows (softmax over the
// last dim, cross entropy over [N, C]) vectorise with plain loads instead of gathers.
using UnitStride = std::integral_constant<int64_t, 1>;

// Runs f(r, st) for every row r, rows split across threads; st is the distance between a
// row's elements, UnitStride for contiguous rows.
template <class F>
void for_each_row(const kernels::Rows& rs, const F& f) {
  parallel_for(rs.count(), kernels::row_grain(rs.d), [&](int64_t b, int64_t e) {
    if (rs.inner == 1)
      for (int64_t r = b; r < e; ++r) f(r, UnitStride{});
    else
      for (int64_t r = b; r < e; ++r) f(r, rs.inner);
  });
}

// max_j x[j st]: NaN if the row has one (it propagates to the whole row); 0 for a row of all
// -inf, whose exps are then 0 (0/0 = NaN for softmax, log 0 = -inf for its log, as PyTorch).
template <class T, class S, class A = acc_t<T>>
A row_max(const T* x, int64_t d, S st) {
  A m = -INFINITY;
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t j = 0; j < d; ++j) {
    const A v = A(x[j * st]);
    m = v > m ? v : m;
    nan |= v != v;
  }
  if (nan) return A(NAN);
  return std::isinf(m) && m < 0 ? A(0) : m;
}

// sum_j e^{x[j st] - m}, in vector lanes (the order of the additions is fixed at compile time,
// so results still repeat bit for bit). With `out`, each term is stored to out[j st] as well.
template <class T, class S, class A>
A sum_exp(const T* x, int64_t d, S st, A m, T* out = nullptr) {
  A sum = 0;
  if (out) {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) {
      const A e = kernels::math::exp(A(x[j * st]) - m);
      out[j * st] = T(e);
      sum += e;
    }
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) sum += kernels::math::exp(A(x[j * st]) - m);
  }
  return sum;
}

}  // namespace lumen::cpu
