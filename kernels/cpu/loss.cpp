// CPU loss kernels. Cross entropy walks logits [N, C, S...] as rows of C classes around dim 1
// (kernels/rows.h); threads take rows.
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/row_loops.h"
#include "kernels/cpu/strided_loop.h"
#include "kernels/loss.h"
#include "kernels/loss_math.h"
#include "kernels/rows.h"

namespace lumen::kernels {
namespace {

using loss_math::bce_logits;
using loss_math::bce_logits_grads;
using loss_math::cross_entropy_grad;

// lse = m + log sum_c exp(x_c - m) with m the row max, so no exp overflows.
template <class T, class L>
void cross_entropy_rows(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                        const Tensor& target, int64_t ignore_index, double smoothing) {
  using A = acc_t<T>;
  const Rows rs = rows_of(logits.shape(), 1);
  const T* px = logits.data<T>();
  const int64_t* pt = target.data<int64_t>();
  L* pl = loss.data<L>();
  A* plse = lse.data<A>();
  const int64_t c = rs.d;
  const A e = A(smoothing);
  cpu::for_each_row(rs, [&](int64_t r, auto st) {
    const T* xr = px + rs.base(r);
    const A m = cpu::row_max(xr, c, st);
    const A l = m + std::log(cpu::sum_exp(xr, c, st, m));
    plse[r] = l;
    const int64_t y = pt[r];
    if (y == ignore_index) {
      pl[r] = L(0);
      return;
    }
    A v = (A(1) - e) * (l - A(xr[y * st]));
    // Only with smoothing: e * mean would turn a -inf logit into NaN even for e = 0.
    if (smoothing != 0) {
      A total = 0;
      for (int64_t j = 0; j < c; ++j) total += l - A(xr[j * st]);
      v += e / A(c) * total;
    }
    pl[r] = L(v);
  });
}

template <class T, class L>
void cross_entropy_backward_rows(const Tensor& grad_logits, const Tensor& grad_loss,
                                 const Tensor& logits, const Tensor& target, const Tensor& lse,
                                 int64_t ignore_index, double smoothing) {
  using A = acc_t<T>;
  const Rows rs = rows_of(logits.shape(), 1);
  const T* px = logits.data<T>();
  const L* pg = grad_loss.data<L>();
  const int64_t* pt = target.data<int64_t>();
  const A* plse = lse.data<A>();
  T* po = grad_logits.data<T>();
  const int64_t c = rs.d;
  const A e = A(smoothing), off = A(smoothing) / A(std::max<int64_t>(c, 1));
  cpu::for_each_row(rs, [&](int64_t r, auto st) {
    const int64_t o = rs.base(r);
    const T* xr = px + o;
    T* gr = po + o;
    const int64_t y = pt[r];
    if (y == ignore_index) {
      for (int64_t j = 0; j < c; ++j) gr[j * st] = T(0);
      return;
    }
    const A g = A(pg[r]), l = plse[r];
    for (int64_t j = 0; j < c; ++j)
      gr[j * st] = T(g * cross_entropy_grad(A(xr[j * st]), l, j == y, e, off));
  });
}

template <class T>
void bce_logits_loop(const Tensor& out, const Tensor& x, const Tensor& y, const Tensor& pw) {
  using A = acc_t<T>;
  T* po = out.data<T>();
  const T* px = x.data<T>();
  const T* py = y.data<T>();
  if (!pw.defined()) {
    cpu::parallel_for(out.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        po[i] = T(bce_logits(A(px[i]), A(py[i]), A(1)));
      }
    });
    return;
  }
  const T* pp = pw.data<T>();
  cpu::StridedLoop<4>({&out, &x, &y, &pw}).parallel([&](auto off, auto st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      po[off[0] + i * st[0]] = T(bce_logits(A(px[off[1] + i * st[1]]), A(py[off[2] + i * st[2]]),
                                            A(pp[off[3] + i * st[3]])));
    }
  });
}

template <class T>
void bce_logits_backward_loop(const Tensor& gx, const Tensor& gy, const Tensor& gp, const Tensor& g,
                              const Tensor& x, const Tensor& y, const Tensor& pw) {
  using A = acc_t<T>;
  T* pgx = gx.data_or_null<T>();
  T* pgy = gy.data_or_null<T>();
  T* pgp = gp.data_or_null<T>();
  const T* pg = g.data<T>();
  const T* px = x.data<T>();
  const T* py = y.data<T>();
  // Without pos_weight, read p = 1 through a stride-0 one-element tensor.
  Tensor one;
  if (!pw.defined()) {
    one = empty({1}, {x.dtype(), x.device()});
    one.data<T>()[0] = T(1);
  }
  const Tensor& p = pw.defined() ? pw : one;
  const T* pp = p.data<T>();
  cpu::StridedLoop<4>({&x, &y, &g, &p}).parallel([&](auto off, auto st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      // x, y, g and the outputs are contiguous and share x's shape, so off[0] + i * st[0]
      // indexes all of them.
      const int64_t k = off[0] + i * st[0];
      const auto d =
          bce_logits_grads(A(pg[off[2] + i * st[2]]), A(px[k]), A(py[off[1] + i * st[1]]),
                           A(pp[off[3] + i * st[3]]), pgy || pgp);
      if (pgx) pgx[k] = T(d.x);
      if (pgy) pgy[k] = T(d.y);
      if (pgp) pgp[k] = T(d.p);
    }
  });
}

void cross_entropy_cpu(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                       const Tensor& target, int64_t ignore_index, double smoothing) {
  dispatch_dtype<DTypes::FloatAndHalf>(logits.dtype(), "cross_entropy", [&]<class T>() {
    dispatch_widened<T>(loss.dtype(), [&]<class L>() {
      cross_entropy_rows<T, L>(loss, lse, logits, target, ignore_index, smoothing);
    });
  });
}

void cross_entropy_backward_cpu(const Tensor& grad_logits, const Tensor& grad_loss,
                                const Tensor& logits, const Tensor& target, const Tensor& lse,
                                int64_t ignore_index, double smoothing) {
  dispatch_dtype<DTypes::FloatAndHalf>(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    dispatch_widened<T>(grad_loss.dtype(), [&]<class L>() {
      cross_entropy_backward_rows<T, L>(grad_logits, grad_loss, logits, target, lse, ignore_index,
                                        smoothing);
    });
  });
}

void bce_logits_cpu(const Tensor& out, const Tensor& x, const Tensor& y, const Tensor& pw) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "binary_cross_entropy_with_logits",
                                       [&]<class T>() { bce_logits_loop<T>(out, x, y, pw); });
}

void bce_logits_backward_cpu(const Tensor& gx, const Tensor& gy, const Tensor& gp, const Tensor& g,
                             const Tensor& x, const Tensor& y, const Tensor& pw) {
  dispatch_dtype<DTypes::FloatAndHalf>(
      x.dtype(), "binary_cross_entropy_with_logits_backward",
      [&]<class T>() { bce_logits_backward_loop<T>(gx, gy, gp, g, x, y, pw); });
}

}  // namespace

LUMEN_REGISTER_KERNEL(cross_entropy, CPU, cross_entropy_cpu);
LUMEN_REGISTER_KERNEL(cross_entropy_backward, CPU, cross_entropy_backward_cpu);
LUMEN_REGISTER_KERNEL(bce_logits, CPU, bce_logits_cpu);
LUMEN_REGISTER_KERNEL(bce_logits_backward, CPU, bce_logits_backward_cpu);

}  // namespace lumen::kernels
