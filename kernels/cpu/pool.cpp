// CPU 2-D pooling: one plane (one image channel) at a time, planes split across threads. Each
// backward writes only its own plane of grad_x, so threads never share an output.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/pool.h"

namespace lumen::kernels {
namespace {

struct Planes {
  int64_t count, H, W, OH, OW;
  Planes(const Tensor& x, const Tensor& y)
      : count(x.dim() > 2 ? x.numel() / (x.size(-2) * x.size(-1)) : 1),
        H(x.size(-2)),
        W(x.size(-1)),
        OH(y.size(-2)),
        OW(y.size(-1)) {}
  // Enough planes per task that a thread gets some 16K output elements.
  int64_t grain() const { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, OH * OW)); }
};

// One output row of a 2x2 window at stride 2 without padding or dilation (the pooling after
// most convolutions): output j reads x[2i + a, 2j + k]. The max over the four taps stays in
// registers, in window order with the rules of the general loop below, and the tap's number
// (a 2 + k, 32-bit like the floats so the loop vectorises across j) becomes the index after.
template <class T, class A>
void max_pool2d_2x2_row(const T* __restrict r0, int64_t W, int64_t OW, int64_t base,
                        T* __restrict orow, int64_t* __restrict irow) {
  const T* __restrict r1 = r0 + W;
  for (int64_t j = 0; j < OW; ++j) {
    A best = A(r0[2 * j]);
    int32_t tap = 0;
    const A v[3] = {A(r0[2 * j + 1]), A(r1[2 * j]), A(r1[2 * j + 1])};
    for (int32_t t = 0; t < 3; ++t) {
      const bool take = (v[t] > best) | (v[t] != v[t]);
      best = take ? v[t] : best;
      tap = take ? t + 1 : tap;
    }
    orow[j] = T(best);
    irow[j] = base + 2 * j + (tap >> 1) * W + (tap & 1);
  }
}

// One tap of the window swept across an output row: output j in [j0, j1) reads x[base + j sw]
// and takes it if it is its first tap (arg < 0), larger than its best, or NaN. A function of its
// own so that __restrict holds (GCC ignores it on locals), which lets the loop keep everything
// in registers instead of reloading after each store.
template <class T, class A>
void max_pool2d_sweep_tap(const T* __restrict xp, int64_t base, int64_t sw, int64_t j0, int64_t j1,
                          A* __restrict best, int64_t* __restrict arg) {
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t idx = base + j * sw;
    const A v = A(xp[idx]);
    const bool take = (arg[j] < 0) | (v > best[j]) | (v != v);
    best[j] = take ? v : best[j];
    arg[j] = take ? idx : arg[j];
  }
}

// Output row by output row: each tap (a, k) of the window is swept across the whole row, so the
// inner loop is a branch-free max over j (a row of selects the compiler vectorises) instead of
// a short, mispredicting loop per output. Taps are visited in window order (a, then k) and only
// a strictly larger value (or a NaN) replaces the best, so ties keep the first tap as before.
void max_pool2d_cpu(const Tensor& out, const Tensor& indices, const Tensor& x, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "max_pool2d", [&]<class T>() {
    using A = acc_t<T>;
    const Planes s(x, out);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    int64_t* pi = indices.data<int64_t>();
    // Output columns [j0, j1) for which column tap k lands inside the image.
    std::vector<std::pair<int64_t, int64_t>> cols(p.kernel_w);
    for (int64_t k = 0; k < p.kernel_w; ++k) {
      int64_t j0 = s.OW, j1 = 0;
      for (int64_t j = 0; j < s.OW; ++j) {
        int64_t iw = j * p.stride_w - p.pad_w + k * p.dilation_w;
        if (iw >= 0 && iw < s.W) j0 = std::min(j0, j), j1 = j + 1;
      }
      cols[k] = {j0, std::max(j0, j1)};
    }
    const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW, KH = p.kernel_h, KW = p.kernel_w;
    const int64_t sh = p.stride_h, sw = p.stride_w, ph = p.pad_h, pw = p.pad_w;
    const int64_t dh = p.dilation_h, dw = p.dilation_w;
    const bool two_by_two =
        KH == 2 && KW == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 && dw == 1;
    if (two_by_two) {
      cpu::parallel_for(s.count, s.grain(), [&](int64_t b, int64_t e) {
        for (int64_t plane = b; plane < e; ++plane)
          for (int64_t i = 0; i < OH; ++i)
            max_pool2d_2x2_row<T, A>(px + plane * H * W + 2 * i * W, W, OW, 2 * i * W,
                                     po + (plane * OH + i) * OW, pi + (plane * OH + i) * OW);
      });
      return;
    }
    cpu::parallel_for(s.count, s.grain(), [&](int64_t b, int64_t e) {
      std::vector<A> best_row(OW);
      std::vector<int64_t> arg_row(OW);
      A* best = best_row.data();
      int64_t* arg = arg_row.data();
      for (int64_t plane = b; plane < e; ++plane) {
        const T* xp = px + plane * H * W;
        for (int64_t i = 0; i < OH; ++i) {
          std::fill(best, best + OW, -std::numeric_limits<A>::infinity());
          std::fill(arg, arg + OW, int64_t(-1));
          for (int64_t a = 0; a < KH; ++a) {
            const int64_t ih = i * sh - ph + a * dh;
            if (ih < 0 || ih >= H) continue;
            for (int64_t k = 0; k < KW; ++k) {
              max_pool2d_sweep_tap<T, A>(xp, ih * W - pw + k * dw, sw, cols[k].first,
                                         cols[k].second, best, arg);
            }
          }
          T* orow = po + (plane * OH + i) * OW;
          int64_t* irow = pi + (plane * OH + i) * OW;
          for (int64_t j = 0; j < OW; ++j) {
            orow[j] = T(best[j]);
            irow[j] = arg[j];
          }
        }
      }
    });
  });
}

void max_pool2d_backward_cpu(const Tensor& gx, const Tensor& gy, const Tensor& indices,
                             Pool2dParams) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "max_pool2d_backward", [&]<class T>() {
    using A = acc_t<T>;
    const Planes s(gx, gy);
    T* pgx = gx.data<T>();
    const T* pgy = gy.data<T>();
    const int64_t* pi = indices.data<int64_t>();
    cpu::parallel_for(s.count, s.grain(), [&](int64_t b, int64_t e) {
      std::fill(pgx + b * s.H * s.W, pgx + e * s.H * s.W, T(0));
      for (int64_t plane = b; plane < e; ++plane) {
        T* gp = pgx + plane * s.H * s.W;
        for (int64_t o = plane * s.OH * s.OW; o < (plane + 1) * s.OH * s.OW; ++o)
          gp[pi[o]] = T(A(gp[pi[o]]) + A(pgy[o]));
      }
    });
  });
}

void avg_pool2d_cpu(const Tensor& out, const Tensor& x, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "avg_pool2d", [&]<class T>() {
    using A = acc_t<T>;
    const Planes s(x, out);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    cpu::parallel_for(s.count, s.grain(), [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        const T* xp = px + plane * s.H * s.W;
        for (int64_t i = 0; i < s.OH; ++i) {
          for (int64_t j = 0; j < s.OW; ++j) {
            AvgWindow w(i, j, s.H, s.W, p);
            A sum = 0;
            for (int64_t ih = w.h0; ih < w.h1; ++ih)
              for (int64_t iw = w.w0; iw < w.w1; ++iw) sum += A(xp[ih * s.W + iw]);
            po[(plane * s.OH + i) * s.OW + j] = T(sum / A(w.divisor));
          }
        }
      }
    });
  });
}

void avg_pool2d_backward_cpu(const Tensor& gx, const Tensor& gy, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "avg_pool2d_backward", [&]<class T>() {
    using A = acc_t<T>;
    const Planes s(gx, gy);
    T* pgx = gx.data<T>();
    const T* pgy = gy.data<T>();
    cpu::parallel_for(s.count, s.grain(), [&](int64_t b, int64_t e) {
      std::fill(pgx + b * s.H * s.W, pgx + e * s.H * s.W, T(0));
      for (int64_t plane = b; plane < e; ++plane) {
        T* gp = pgx + plane * s.H * s.W;
        for (int64_t i = 0; i < s.OH; ++i) {
          for (int64_t j = 0; j < s.OW; ++j) {
            AvgWindow w(i, j, s.H, s.W, p);
            A g = A(pgy[(plane * s.OH + i) * s.OW + j]) / A(w.divisor);
            for (int64_t ih = w.h0; ih < w.h1; ++ih)
              for (int64_t iw = w.w0; iw < w.w1; ++iw)
                gp[ih * s.W + iw] = T(A(gp[ih * s.W + iw]) + g);
          }
        }
      }
    });
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(max_pool2d, CPU, max_pool2d_cpu);
LUMEN_REGISTER_KERNEL(max_pool2d_backward, CPU, max_pool2d_backward_cpu);
LUMEN_REGISTER_KERNEL(avg_pool2d, CPU, avg_pool2d_cpu);
LUMEN_REGISTER_KERNEL(avg_pool2d_backward, CPU, avg_pool2d_backward_cpu);

}  // namespace lumen::kernels
