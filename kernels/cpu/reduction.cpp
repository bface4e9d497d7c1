// CPU reductions. The input's dims split into kept dims (one output element each) and reduced
// dims (walked for every output element). Sums accumulate in double (int64 for integers), and
// in a fixed order, so results repeat exactly.
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"
#include "kernels/reduction.h"

namespace lumen::kernels {
namespace {

struct Plan {
  Shape outer, outer_x, outer_out;  // kept dims: sizes, input strides, output strides
  Shape inner, inner_x;             // reduced dims: sizes, input strides
};

Plan make_plan(const Tensor& out, const Tensor& x) {
  Plan p;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.size(d) == 1) continue;
    if (out.size(d) == 1) {
      p.inner.push_back(x.size(d));
      p.inner_x.push_back(x.stride(d));
    } else {
      p.outer.push_back(x.size(d));
      p.outer_x.push_back(x.stride(d));
      p.outer_out.push_back(out.stride(d));
    }
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

template <class T>
using sum_t = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

// Visits x[base + offset_of(k, inner)] for k in [0, n) in order.
template <class T, class F>
void walk(const T* x, int64_t base, const Plan& p, int64_t n, F&& f) {
  if (p.inner.size() == 1) {
    int64_t s = p.inner_x[0];
    for (int64_t k = 0; k < n; ++k) f(x[base + k * s], k);
  } else {
    for (int64_t k = 0; k < n; ++k) f(x[base + offset_of(k, p.inner, p.inner_x)], k);
  }
}

template <class T>
void reduce_typed(const Tensor& out, const Tensor& x, ReduceOp op) {
  using A = acc_t<T>;
  Plan p = make_plan(out, x);
  const T* px = x.data<T>();
  int64_t n_out = numel_of(p.outer), n_in = numel_of(p.inner);
  bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n_in, 1));
  cpu::parallel_for(n_out, grain, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      int64_t xb = offset_of(o, p.outer, p.outer_x);
      int64_t ob = offset_of(o, p.outer, p.outer_out);
      if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
        sum_t<T> s = 0;
        walk(px, xb, p, n_in, [&](T v, int64_t) { s += static_cast<sum_t<T>>(A(v)); });
        if (op == ReduceOp::Mean) s /= static_cast<sum_t<T>>(n_in);
        out.data<T>()[ob] = T(static_cast<A>(s));
        continue;
      }
      // max/min: NaN wins; ties keep the first index.
      bool is_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
      A best = A(px[xb]);
      int64_t best_k = 0;
      walk(px, xb, p, n_in, [&](T raw, int64_t k) {
        A v = A(raw);
        if (best != best) return;
        if (v != v || (is_max ? v > best : v < best)) {
          best = v;
          best_k = k;
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
