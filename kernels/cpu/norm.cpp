// CPU normalisation kernels. Layer norm: threads take rows for the statistics and dx, and
// columns for dw and db (each thread sums whole columns over all rows, so the result does not
// depend on the thread count); a row's sums run in vector lanes (`omp simd`: a fixed order,
// not a serial chain of dependent adds). Batch norm: threads take channels.
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/norm.h"

namespace lumen::kernels {
namespace {

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(work_per_item, 1));
}

// Statistics accumulate in double on the CPU: a variance is a difference of nearby sums, and
// rows of 10^5 elements lose digits in float. Two passes (mean, then squared deviations) avoid
// the cancellation of E[x^2] - E[x]^2.
template <class T, class W>
void layer_norm_impl(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                     const Tensor& weight, const Tensor& bias, int64_t d, double eps) {
  using A = acc_t<T>;
  const int64_t m = d == 0 ? 0 : x.numel() / d;
  const T* px = x.data<T>();
  const W* pw = weight.data_or_null<W>();
  const W* pb = bias.data_or_null<W>();
  W* py = y.data<W>();
  A* pm = mean.data<A>();
  A* pr = rstd.data<A>();
  cpu::parallel_for(m, grain_for(d), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* xr = px + i * d;
      W* yr = py + i * d;
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < d; ++j) s += double(A(xr[j]));
      const double mu = s / double(d);
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < d; ++j) {
        double dv = double(A(xr[j])) - mu;
        ss += dv * dv;
      }
      const A mu_a = A(mu), r = A(1.0 / std::sqrt(ss / double(d) + eps));
      pm[i] = mu_a;
      pr[i] = r;
      for (int64_t j = 0; j < d; ++j) {
        A v = (A(xr[j]) - mu_a) * r;
        if (pw) v *= A(pw[j]);
        if (pb) v += A(pb[j]);
        yr[j] = W(v);
      }
    }
  });
}

// dx of one row: with g_j = dy_j w_j and xhat_j = (x_j - mu) r,
//   dx_j = r (g_j - mean(g) - xhat_j mean(g xhat)).
// The weight's presence is a template parameter: a conditional load in the loop, or a lambda's
// captures, keep GCC from vectorising it.
template <bool kWeighted, class T, class W, class A>
void layer_norm_dx_row(T* __restrict dx, const T* __restrict x, const W* __restrict dy,
                       const W* __restrict w, A mu, A r, int64_t d) {
  A sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
  for (int64_t j = 0; j < d; ++j) {
    const A g = kWeighted ? A(dy[j]) * A(w[j]) : A(dy[j]);
    sg += g;
    sgx += g * (A(x[j]) - mu) * r;
  }
  const A mg = sg / A(d), mgx = sgx / A(d);
  for (int64_t j = 0; j < d; ++j) {
    const A g = kWeighted ? A(dy[j]) * A(w[j]) : A(dy[j]);
    dx[j] = T(r * (g - mg - (A(x[j]) - mu) * r * mgx));
  }
}

template <class T, class W>
void layer_norm_backward_impl(const Tensor& gx, const Tensor& gw, const Tensor& gb,
                              const Tensor& gy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, int64_t d) {
  using A = acc_t<T>;
  const int64_t m = d == 0 ? 0 : x.numel() / d;
  const T* px = x.data<T>();
  const W* pg = gy.data<W>();
  const W* pw = weight.data_or_null<W>();
  const A* pm = mean.data<A>();
  const A* pr = rstd.data<A>();
  if (gx.defined()) {
    T* po = gx.data<T>();
    cpu::parallel_for(m, grain_for(d), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t o = i * d;
        if (pw)
          layer_norm_dx_row<true>(po + o, px + o, pg + o, pw, pm[i], pr[i], d);
        else
          layer_norm_dx_row<false>(po + o, px + o, pg + o, pw, pm[i], pr[i], d);
      }
    });
  }
  if (gw.defined() || gb.defined()) {
    W* pgw = gw.data_or_null<W>();
    W* pgb = gb.data_or_null<W>();
    cpu::parallel_for(d, 64, [&](int64_t b, int64_t e) {
      std::vector<A> sw(e - b, A(0)), sb(e - b, A(0));
      for (int64_t i = 0; i < m; ++i) {
        const T* xr = px + i * d;
        const W* gr = pg + i * d;
        const A mu = pm[i], r = pr[i];
        // Columns are independent (GCC cannot prove sw and sb do not alias the inputs).
#pragma omp simd
        for (int64_t j = b; j < e; ++j) {
          A g = A(gr[j]);
          sw[j - b] += g * (A(xr[j]) - mu) * r;
          sb[j - b] += g;
        }
      }
      for (int64_t j = b; j < e; ++j) {
        if (pgw) pgw[j] = W(sw[j - b]);
        if (pgb) pgb[j] = W(sb[j - b]);
      }
    });
  }
}

// x [N, C, S]: element (n, c, s) is at (n * C + c) * S + s.
struct Channels {
  int64_t n = 0, c = 0, s = 1;
  int64_t count() const { return n * s; }  // elements per channel
};
Channels channels_of(const Tensor& x) {
  Channels ch;
  ch.n = x.size(0);
  ch.c = x.size(1);
  for (int64_t i = 2; i < x.dim(); ++i) ch.s *= x.size(i);
  return ch;
}

// Calls f(value index) for every element of channel c, in memory order.
template <class F>
void for_channel(const Channels& ch, int64_t c, const F& f) {
  for (int64_t n = 0; n < ch.n; ++n) {
    const int64_t base = (n * ch.c + c) * ch.s;
    for (int64_t k = 0; k < ch.s; ++k) f(base + k);
  }
}

template <class T>
void batch_norm_stats_impl(const Tensor& mean, const Tensor& var, const Tensor& x) {
  using A = acc_t<T>;
  const Channels ch = channels_of(x);
  const T* px = x.data<T>();
  A* pm = mean.data<A>();
  A* pv = var.data<A>();
  cpu::parallel_for(ch.c, grain_for(ch.count()), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      double s = 0;
      for_channel(ch, c, [&](int64_t i) { s += double(A(px[i])); });
      const double mu = s / double(ch.count());
      double ss = 0;
      for_channel(ch, c, [&](int64_t i) {
        double dv = double(A(px[i])) - mu;
        ss += dv * dv;
      });
      pm[c] = A(mu);
      pv[c] = A(ss / double(ch.count()));
    }
  });
}

template <class T>
void batch_norm_apply_impl(const Tensor& y, const Tensor& x, const Tensor& mean,
                           const Tensor& invstd, const Tensor& weight, const Tensor& bias) {
  using A = acc_t<T>;
  const Channels ch = channels_of(x);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const A* pm = mean.data<A>();
  const A* pr = invstd.data<A>();
  const T* pw = weight.data_or_null<T>();
  const T* pb = bias.data_or_null<T>();
  // Rows of S elements share one channel: (n, c) pairs split across threads.
  cpu::parallel_for(ch.n * ch.c, grain_for(ch.s), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % ch.c;
      // y = x * scale + shift with scale = invstd w, shift = b - mean scale.
      const A scale = pr[c] * (pw ? A(pw[c]) : A(1));
      const A shift = (pb ? A(pb[c]) : A(0)) - pm[c] * scale;
      const T* xr = px + nc * ch.s;
      T* yr = py + nc * ch.s;
      for (int64_t k = 0; k < ch.s; ++k) yr[k] = T(A(xr[k]) * scale + shift);
    }
  });
}

template <class T>
void batch_norm_backward_impl(const Tensor& gx, const Tensor& gw, const Tensor& gb,
                              const Tensor& gy, const Tensor& x, const Tensor& mean,
                              const Tensor& invstd, const Tensor& weight, bool training) {
  using A = acc_t<T>;
  const Channels ch = channels_of(x);
  const T* px = x.data<T>();
  const T* pg = gy.data<T>();
  const A* pm = mean.data<A>();
  const A* pr = invstd.data<A>();
  const T* pw = weight.data_or_null<T>();
  T* pgx = gx.data_or_null<T>();
  T* pgw = gw.data_or_null<T>();
  T* pgb = gb.data_or_null<T>();
  const double count = double(ch.count());
  cpu::parallel_for(ch.c, grain_for(ch.count()), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const A mu = pm[c], r = pr[c], w = pw ? A(pw[c]) : A(1);
      double sdy = 0, sdyx = 0;  // sum dy, sum dy xhat
      if (training || pgw || pgb) {
        for_channel(ch, c, [&](int64_t i) {
          double g = double(A(pg[i]));
          sdy += g;
          sdyx += g * double((A(px[i]) - mu) * r);
        });
      }
      if (pgw) pgw[c] = T(A(sdyx));
      if (pgb) pgb[c] = T(A(sdy));
      if (!pgx) continue;
      const A k = w * r;
      if (training) {
        const A mdy = A(sdy / count), mdyx = A(sdyx / count);
        for_channel(ch, c, [&](int64_t i) {
          A xh = (A(px[i]) - mu) * r;
          pgx[i] = T(k * (A(pg[i]) - mdy - xh * mdyx));
        });
      } else {
        for_channel(ch, c, [&](int64_t i) { pgx[i] = T(k * A(pg[i])); });
      }
    }
  });
}

void layer_norm_cpu(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor& weight, const Tensor& bias, int64_t d, double eps) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "layer_norm", [&]<class T>() {
    dispatch_widened<T>(y.dtype(), [&]<class W>() {
      layer_norm_impl<T, W>(y, mean, rstd, x, weight, bias, d, eps);
    });
  });
}

void layer_norm_backward_cpu(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& gy,
                             const Tensor& x, const Tensor& mean, const Tensor& rstd,
                             const Tensor& weight, int64_t d) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "layer_norm_backward", [&]<class T>() {
    dispatch_widened<T>(gy.dtype(), [&]<class W>() {
      layer_norm_backward_impl<T, W>(gx, gw, gb, gy, x, mean, rstd, weight, d);
    });
  });
}

void batch_norm_training_cpu(const Tensor& y, const Tensor& mean, const Tensor& invstd,
                             const Tensor& running_mean, const Tensor& running_var, const Tensor& x,
                             const Tensor& weight, const Tensor& bias, double momentum,
                             double eps) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm", [&]<class T>() {
    using A = acc_t<T>;
    batch_norm_stats_impl<T>(mean, invstd, x);  // invstd holds the variance until finished
    const int64_t count = channels_of(x).count();
    A* pm = mean.data<A>();
    A* pr = invstd.data<A>();
    A* rm = running_mean.data_or_null<A>();
    A* rv = running_var.data_or_null<A>();
    for (int64_t c = 0; c < mean.numel(); ++c)
      batch_norm_finish_channel<A>(pm[c], pr[c], rm ? rm + c : nullptr, rv ? rv + c : nullptr,
                                   count, momentum, eps);
    batch_norm_apply_impl<T>(y, x, mean, invstd, weight, bias);
  });
}

void batch_norm_apply_cpu(const Tensor& y, const Tensor& x, const Tensor& mean,
                          const Tensor& invstd, const Tensor& weight, const Tensor& bias) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm", [&]<class T>() {
    batch_norm_apply_impl<T>(y, x, mean, invstd, weight, bias);
  });
}

void batch_norm_backward_cpu(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& gy,
                             const Tensor& x, const Tensor& mean, const Tensor& invstd,
                             const Tensor& weight, bool training, double /*eps*/) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm_backward", [&]<class T>() {
    batch_norm_backward_impl<T>(gx, gw, gb, gy, x, mean, invstd, weight, training);
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(layer_norm, CPU, layer_norm_cpu);
LUMEN_REGISTER_KERNEL(layer_norm_backward, CPU, layer_norm_backward_cpu);
LUMEN_REGISTER_KERNEL(batch_norm_training, CPU, batch_norm_training_cpu);
LUMEN_REGISTER_KERNEL(batch_norm_apply, CPU, batch_norm_apply_cpu);
LUMEN_REGISTER_KERNEL(batch_norm_backward, CPU, batch_norm_backward_cpu);

}  // namespace lumen::kernels
