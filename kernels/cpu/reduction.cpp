// CPU reductions. The input's dims split into kept dims (one output element each) and reduced
// dims (walked for every output element). Sums accumulate in double (int64 for integers), and
// in a fixed order, so results repeat exactly.
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"
#include "kernels/reduction.h"
#include "kernels/reduction_plan.h"

namespace lumen::kernels {
namespace {

using reduction::make_plan;
using reduction::offset_of;
using reduction::Plan;

// Visits the reduced elements x[base + ...] in row-major order, calling f(row pointer, first k)
// for each row of p.cols elements (stride p.cols_x).
template <class T, class F>
void for_each_row(const T* x, int64_t base, const Plan& p, F&& f) {
  int64_t n_rows = numel_of(p.rows);
  for (int64_t r = 0; r < n_rows; ++r) f(x + base + offset_of(r, p.rows, p.rows_x), r * p.cols);
}

// Sum of n elements at stride s, in four interleaved partial sums (a fixed order, so the result
// repeats exactly) to break the dependency chain of one accumulator.
template <class S, class A, class T>
S row_sum(const T* x, int64_t n, int64_t s) {
  S a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    a0 += static_cast<S>(A(x[k * s]));
    a1 += static_cast<S>(A(x[(k + 1) * s]));
    a2 += static_cast<S>(A(x[(k + 2) * s]));
    a3 += static_cast<S>(A(x[(k + 3) * s]));
  }
  for (; k < n; ++k) a0 += static_cast<S>(A(x[k * s]));
  return (a0 + a1) + (a2 + a3);
}

template <class T>
void reduce_typed(const Tensor& out, const Tensor& x, ReduceOp op) {
  using A = acc_t<T>;
  Plan p = make_plan(out, x);
  const T* px = x.data<T>();
  int64_t n_out = numel_of(p.outer), n_in = numel_of(p.rows) * p.cols;
  bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n_in, 1));
  cpu::parallel_for(n_out, grain, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      int64_t xb = offset_of(o, p.outer, p.outer_x);
      int64_t ob = offset_of(o, p.outer, p.outer_out);
      if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
        sum_t<T> s = 0;
        for_each_row(px, xb, p, [&](const T* row, int64_t) {
          s += row_sum<sum_t<T>, A>(row, p.cols, p.cols_x);
        });
        if (op == ReduceOp::Mean) s /= static_cast<sum_t<T>>(n_in);
        out.data<T>()[ob] = T(static_cast<A>(s));
        continue;
      }
      // max/min: NaN wins; ties keep the first index.
      bool is_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
      A best = A(px[xb]);
      int64_t best_k = 0;
      for_each_row(px, xb, p, [&](const T* row, int64_t k0) {
        for (int64_t c = 0; c < p.cols && best == best; ++c) {
          A v = A(row[c * p.cols_x]);
          if (v != v || (is_max ? v > best : v < best)) {
            best = v;
            best_k = k0 + c;
          }
        }
      });
      if (arg)
        out.data<int64_t>()[ob] = best_k;
      else
        out.data<T>()[ob] = T(best);
    }
  });
}

// out[j] = sum_i x[i, j] over a contiguous 2-D [rows, cols] block (reducing leading dims):
// rows outer, columns inner, so the loop streams through memory instead of striding.
template <class T>
bool try_reduce_rows(const Tensor& out, const Tensor& x, ReduceOp op) {
  if ((op != ReduceOp::Sum && op != ReduceOp::Mean) || !x.is_contiguous() || !out.is_contiguous())
    return false;
  int64_t lead = 0;
  while (lead < x.dim() && out.size(lead) == 1) ++lead;
  for (int64_t d = lead; d < x.dim(); ++d)
    if (out.size(d) != x.size(d)) return false;
  int64_t rows = 1, cols = out.numel();
  for (int64_t d = 0; d < lead; ++d) rows *= x.size(d);
  if (rows < 2 || cols < 16) return false;
  using A = acc_t<T>;
  const T* px = x.data<T>();
  T* po = out.data<T>();
  cpu::parallel_for(cols, 256, [&](int64_t b, int64_t e) {
    std::vector<sum_t<T>> acc(e - b, 0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = px + i * cols;
      for (int64_t j = b; j < e; ++j) acc[j - b] += static_cast<sum_t<T>>(A(row[j]));
    }
    for (int64_t j = b; j < e; ++j) {
      sum_t<T> s = acc[j - b];
      if (op == ReduceOp::Mean) s /= static_cast<sum_t<T>>(rows);
      po[j] = T(static_cast<A>(s));
    }
  });
  return true;
}

void reduce_cpu(const Tensor& out, const Tensor& x, ReduceOp op) {
  dispatch_dtype<DTypes::Arithmetic>(x.dtype(), "reduce", [&]<class T>() {
    if (x.numel() == 0) return;
    if (!try_reduce_rows<T>(out, x, op)) reduce_typed<T>(out, x, op);
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(reduce, CPU, reduce_cpu);

}  // namespace lumen::kernels
