// CPU 2-D convolution as im2col + GEMM (gemm.cpp). For each image and group the receptive fields
// are unrolled into a matrix col [Cg kH kW, OH OW]; the convolution is then one GEMM, and its
// two backward passes are GEMMs with the transposed operands:
//   forward        Y_g  = W_g col                 [Og, OH OW]
//   grad input     col  = W_g^T dY_g, then col2im  (scatter-add back to the image)
//   grad weight    dW_g = sum_n dY_g col^T
// A 1x1 convolution with unit stride and no padding needs no unrolling: col is the image. A 3x3
// one with unit stride and dilation, one group and enough channels takes Winograd's F(2x2, 3x3)
// instead (conv_winograd.cpp: 2.25x fewer multiplies), forward and for both gradients.
// Batches of at least one image per thread run one image per thread (each thread owns its
// col buffer and the GEMM runs single-threaded inside); smaller batches let im2col and the
// GEMM use the threads.
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/elementwise.h"

namespace lumen::kernels {
namespace {

struct Geom {
  int64_t N, C, H, W, O, KH, KW, OH, OW, G;
  Conv2dParams p;

  Geom(const Tensor& x, const Tensor& w, const Tensor& y, Conv2dParams p)
      : N(x.size(0)),
        C(x.size(1)),
        H(x.size(2)),
        W(x.size(3)),
        O(w.size(0)),
        KH(w.size(2)),
        KW(w.size(3)),
        OH(y.size(2)),
        OW(y.size(3)),
        G(p.groups),
        p(p) {}
  int64_t cg() const { return C / G; }            // input channels per group
  int64_t og() const { return O / G; }            // output channels per group
  int64_t ckk() const { return cg() * KH * KW; }  // rows of col
  int64_t l() const { return OH * OW; }           // columns of col
  bool pointwise() const {
    return KH == 1 && KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  }
  bool per_image() const { return N > 1 && N >= cpu::num_threads(); }
  // 3x3, unit stride and dilation, one group: Winograd's shape.
  bool winograd_shape() const {
    return KH == 3 && KW == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 &&
           p.dilation_w == 1 && G == 1;
  }
};

// floor(a / b) for b > 0.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output positions o in [0, n_out) whose input position o s - pad + k d lies in [0, n_in):
// [lo, hi).
std::pair<int64_t, int64_t> valid_range(int64_t n_in, int64_t n_out, int64_t s, int64_t pad,
                                        int64_t kd) {
  int64_t lo = std::max<int64_t>(0, floor_div(pad - kd + s - 1, s));
  int64_t hi = std::min<int64_t>(n_out, floor_div(n_in - 1 + pad - kd, s) + 1);
  return {lo, std::max(lo, hi)};
}

// One row (c, kh, kw) of col: col[oh, ow] = xc[ih, iw] with ih = oh sh - ph + kh dh and
// iw = ow sw - pw + kw dw, 0 where (ih, iw) falls in the padding ([oh0, oh1) and [ow0, ow1) are
// the valid ranges). The runs are a row of a small image (tens of elements): plain loops, kept
// from becoming memcpy/memset calls (CMake: -fno-tree-loop-distribute-patterns for this
// file), whose fixed cost per call exceeded the copy itself (a fifth of a forward pass).
template <bool kUnitStride, class T>
void im2col_row(const T* __restrict xc, T* __restrict dst, const Geom& g, int64_t kh, int64_t kw) {
  const auto [oh0, oh1] = valid_range(g.H, g.OH, g.p.stride_h, g.p.pad_h, kh * g.p.dilation_h);
  const auto [ow0, ow1] = valid_range(g.W, g.OW, g.p.stride_w, g.p.pad_w, kw * g.p.dilation_w);
  const int64_t OW = g.OW, sw = kUnitStride ? 1 : g.p.stride_w;
  const int64_t shift = kw * g.p.dilation_w - g.p.pad_w;
  for (int64_t oh = 0; oh < g.OH; ++oh, dst += OW) {
    if (oh < oh0 || oh >= oh1) {
      for (int64_t ow = 0; ow < OW; ++ow) dst[ow] = T(0);
      continue;
    }
    const T* xr = xc + (oh * g.p.stride_h - g.p.pad_h + kh * g.p.dilation_h) * g.W + shift;
    for (int64_t ow = 0; ow < ow0; ++ow) dst[ow] = T(0);
    for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] = xr[ow * sw];
    for (int64_t ow = ow1; ow < OW; ++ow) dst[ow] = T(0);
  }
}

// col[(c, kh, kw), (oh, ow)] = x[c, oh sh - ph + kh dh, ow sw - pw + kw dw] (0 outside), for the
// Cg channels starting at x.
template <class T>
void im2col(const T* x, T* col, const Geom& g) {
  const int64_t KK = g.KH * g.KW, L = g.l();
  cpu::parallel_for(g.ckk(), 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xc = x + (r / KK) * g.H * g.W;
      const int64_t kh = (r / g.KW) % g.KH, kw = r % g.KW;
      if (g.p.stride_w == 1)
        im2col_row<true>(xc, col + r * L, g, kh, kw);
      else
        im2col_row<false>(xc, col + r * L, g, kh, kw);
    }
  });
}

// The adjoint of im2col: gx[c, ih, iw] += col[(c, kh, kw), (oh, ow)] over every (kh, kw, oh, ow)
// that reads (c, ih, iw). Channels are independent, so they are split across threads.
template <class T>
void col2im(const T* col, T* gx, const Geom& g) {
  const int64_t L = g.l();
  cpu::parallel_for(g.cg(), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* xc = gx + c * g.H * g.W;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const T* src = col + ((c * g.KH + kh) * g.KW + kw) * L;
          auto [ow0, ow1] = valid_range(g.W, g.OW, g.p.stride_w, g.p.pad_w, kw * g.p.dilation_w);
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            int64_t ih = oh * g.p.stride_h - g.p.pad_h + kh * g.p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            T* xr = xc + ih * g.W;
            const int64_t shift = kw * g.p.dilation_w - g.p.pad_w;
            const T* s = src + oh * g.OW;
            if (g.p.stride_w == 1) {  // contiguous: a loop the compiler vectorises
              T* __restrict dst = xr + shift;
              for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] += s[ow];
            } else {
              for (int64_t ow = ow0; ow < ow1; ++ow) xr[ow * g.p.stride_w + shift] += s[ow];
            }
          }
        }
      }
    }
  });
}

// A col buffer for im2col, [Cg kH kW, OH OW]; none for a pointwise conv, which reads x itself.
template <class T>
std::vector<T> col_buffer(const Geom& g) {
  return std::vector<T>(g.pointwise() ? 0 : g.ckk() * g.l());
}

// Runs image(n, col) for every image, with a col buffer per thread (see the file comment).
template <class T, class F>
void for_each_image(const Geom& g, const F& image) {
  if (g.per_image()) {
    cpu::parallel_for(g.N, 1, [&](int64_t b, int64_t e) {
      std::vector<T> col = col_buffer<T>(g);
      for (int64_t n = b; n < e; ++n) image(n, col);
    });
  } else {
    std::vector<T> col = col_buffer<T>(g);
    for (int64_t n = 0; n < g.N; ++n) image(n, col);
  }
}

// The unrolled input of image n, group grp, [Cg kH kW, OH OW] row-major: x itself for a
// pointwise conv, else col filled by im2col.
template <class T>
const T* columns(const T* x, int64_t n, int64_t grp, const Geom& g, std::vector<T>& col) {
  const T* xg = x + (n * g.C + grp * g.cg()) * g.H * g.W;
  if (g.pointwise()) return xg;
  im2col(xg, col.data(), g);
  return col.data();
}

template <class T>
void forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
             const Geom& g) {
  const T* px = x.data<T>();
  const T* pw = w.data<T>();
  const T* pb = bias.data_or_null<T>();
  T* po = out.data<T>();
  if (g.winograd_shape() && winograd_pays(g.C, g.O))
    return winograd_conv3x3(px, pw, pb, po, {g.N, g.C, g.H, g.W, g.O, g.p.pad_h, g.p.pad_w});
  const int64_t og = g.og(), ckk = g.ckk(), L = g.l();
  for_each_image<T>(g, [&](int64_t n, std::vector<T>& col) {
    for (int64_t grp = 0; grp < g.G; ++grp) {
      T* Y = po + (n * g.O + grp * og) * L;
      gemm<T>(og, L, ckk, {pw + grp * og * ckk, ckk, 1}, {columns(px, n, grp, g, col), L, 1}, Y, L);
      if (pb)
        for (int64_t o = 0; o < og; ++o)
          for (int64_t i = 0; i < L; ++i) Y[o * L + i] += pb[grp * og + o];
    }
  });
}

template <class T>
void backward_input(const Tensor& gx, const Tensor& gy, const Tensor& w, const Geom& g) {
  const T* pgy = gy.data<T>();
  const T* pw = w.data<T>();
  T* pgx = gx.data<T>();
  // The input's gradient is grad_out convolved with the filters transposed and rotated by 180
  // degrees, padded by 2 - pad (a 3x3 window of grad_out around each input position).
  if (g.winograd_shape() && g.p.pad_h <= 2 && g.p.pad_w <= 2 && winograd_pays(g.O, g.C))
    return winograd_conv3x3(
        pgy, pw, static_cast<const T*>(nullptr), pgx,
        {g.N, g.O, g.OH, g.OW, g.C, 2 - g.p.pad_h, 2 - g.p.pad_w, /*flipped=*/true});
  const int64_t og = g.og(), ckk = g.ckk(), L = g.l();
  for_each_image<T>(g, [&](int64_t n, std::vector<T>& col) {
    for (int64_t grp = 0; grp < g.G; ++grp) {
      // W_g^T [Cg kH kW, Og] read in place: W_g's columns are its rows.
      const MatrixRef<T> Wt{pw + grp * og * ckk, 1, ckk};
      const T* dY = pgy + (n * g.O + grp * og) * L;
      T* gxg = pgx + (n * g.C + grp * g.cg()) * g.H * g.W;
      if (g.pointwise()) {
        gemm<T>(ckk, L, og, Wt, {dY, L, 1}, gxg, L);
      } else {
        gemm<T>(ckk, L, og, Wt, {dY, L, 1}, col.data(), L);
        std::fill(gxg, gxg + g.cg() * g.H * g.W, T(0));
        col2im(col.data(), gxg, g);
      }
    }
  });
}

// Images are split into P fixed chunks (P depends only on N and the thread count); each chunk
// sums its images' dW into its own buffer and the buffers are added in chunk order, so the
// result does not depend on timing.
template <class T>
void backward_weight(const Tensor& gw, const Tensor& gy, const Tensor& x, const Geom& g) {
  const T* pgy = gy.data<T>();
  const T* px = x.data<T>();
  if (g.winograd_shape() && winograd_pays(g.C, g.O))
    return winograd_conv3x3_backward_weight(px, pgy, gw.data<T>(),
                                            {g.N, g.C, g.H, g.W, g.O, g.p.pad_h, g.p.pad_w});
  const int64_t og = g.og(), ckk = g.ckk(), L = g.l(), size = g.O * ckk;
  int64_t P = g.per_image() ? std::min<int64_t>(g.N, cpu::num_threads()) : 1;
  std::vector<std::vector<T>> partial(P);
  cpu::parallel_for(P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      std::vector<T>& acc = partial[p];
      acc.assign(size, T(0));
      std::vector<T> col = col_buffer<T>(g);
      for (int64_t n = g.N * p / P; n < g.N * (p + 1) / P; ++n) {
        for (int64_t grp = 0; grp < g.G; ++grp) {
          // dW_g += dY_g col^T, col^T [OH OW, Cg kH kW] read in place.
          const T* cols = columns(px, n, grp, g, col);
          gemm<T>(og, ckk, L, {pgy + (n * g.O + grp * og) * L, L, 1}, {cols, 1, L},
                  acc.data() + grp * og * ckk, ckk, T(1), /*accumulate=*/true);
        }
      }
    }
  });
  T* dW = gw.data<T>();
  std::copy(partial[0].begin(), partial[0].end(), dW);
  for (int64_t p = 1; p < P; ++p)
    for (int64_t i = 0; i < size; ++i) dW[i] += partial[p][i];
}

// f16/bf16 compute in f32, as tensor cores accumulate in f32: `run` gets the operands widened
// to f32 and an f32 output, which is rounded into `out` once at the end.
template <class Run>
void in_f32(const Tensor& out, std::vector<Tensor> operands, Run run) {
  for (Tensor& t : operands) {
    if (!t.defined()) continue;
    Tensor wide = empty(t.shape(), {DType::f32, t.device()});
    copy(t.device(), wide, t);
    t = wide;
  }
  Tensor wide_out = empty(out.shape(), {DType::f32, out.device()});
  run(wide_out, operands);
  copy(out.device(), out, wide_out);
}

void conv2d_cpu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                Conv2dParams p) {
  if (is_16bit_float(x.dtype()))
    return in_f32(out, {x, w, bias}, [&](const Tensor& o, const std::vector<Tensor>& in) {
      conv2d_cpu(o, in[0], in[1], in[2], p);
    });
  dispatch_dtype<DTypes::Float>(
      x.dtype(), "conv2d", [&]<class T>() { forward<T>(out, x, w, bias, Geom(x, w, out, p)); });
}

void conv2d_backward_input_cpu(const Tensor& gx, const Tensor& gy, const Tensor& w,
                               Conv2dParams p) {
  if (is_16bit_float(gx.dtype()))
    return in_f32(gx, {gy, w}, [&](const Tensor& o, const std::vector<Tensor>& in) {
      conv2d_backward_input_cpu(o, in[0], in[1], p);
    });
  dispatch_dtype<DTypes::Float>(gx.dtype(), "conv2d_backward_input", [&]<class T>() {
    backward_input<T>(gx, gy, w, Geom(gx, w, gy, p));
  });
}

void conv2d_backward_weight_cpu(const Tensor& gw, const Tensor& gy, const Tensor& x,
                                Conv2dParams p) {
  if (is_16bit_float(gw.dtype()))
    return in_f32(gw, {gy, x}, [&](const Tensor& o, const std::vector<Tensor>& in) {
      conv2d_backward_weight_cpu(o, in[0], in[1], p);
    });
  dispatch_dtype<DTypes::Float>(gw.dtype(), "conv2d_backward_weight", [&]<class T>() {
    backward_weight<T>(gw, gy, x, Geom(x, gw, gy, p));
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(conv2d, CPU, conv2d_cpu);
LUMEN_REGISTER_KERNEL(conv2d_backward_input, CPU, conv2d_backward_input_cpu);
LUMEN_REGISTER_KERNEL(conv2d_backward_weight, CPU, conv2d_backward_weight_cpu);

}  // namespace lumen::kernels
