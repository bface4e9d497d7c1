// CUDA loss kernels (kernels/loss.h). Cross entropy's forward gives each sample's row of C
// logits (kernels/rows.h, class dim 1) a warp, a block or a thread (cuda::row_mode); its backward
// is elementwise given the saved lse. BCE is elementwise over a broadcast layout. The per-element
// math is shared with the CPU (kernels/loss_math.h).
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/loss.h"
#include "kernels/loss_math.h"
#include "kernels/rows.h"

namespace lumen::kernels {
namespace {

using cuda::RowGroup;
using cuda::RowMode;

// lse = m + log sum_c exp(x_c - m) (m the row max: no exp overflows);
// loss = (1 - e)(lse - x_y) + e/C sum_c (lse - x_c), 0 where y == ignore_index.
template <class T, class L, RowMode kMode>
__global__ void cross_entropy_kernel(L* loss, acc_t<T>* lse, const T* x, const int64_t* target,
                                     Rows rs, int64_t ignore_index, acc_t<T> e) {
  using A = acc_t<T>;
  const RowGroup<kMode> grp;
  for (int64_t r = grp.first_row(); r < rs.count(); r += grp.row_step()) {
    const T* xr = x + rs.base(r);
    A m, s;
    cuda::row_max_sum_exp(grp, xr, rs.d, rs.inner, m, s);
    const A l = m + ::log(s);
    // Only with smoothing: e * mean would turn a -inf logit into NaN even for e = 0.
    A total = 0;
    if (e != A(0)) {
      for (int64_t j = grp.lane(); j < rs.d; j += grp.size()) total += l - A(xr[j * rs.inner]);
      total = grp.reduce(total, cuda::Plus{});
    }
    if (grp.lane() != 0) continue;
    lse[r] = l;
    const int64_t y = target[r];
    if (y == ignore_index) {
      loss[r] = L(0);
      continue;
    }
    A v = (A(1) - e) * (l - A(xr[y * rs.inner]));
    if (e != A(0)) v += e / A(rs.d) * total;
    loss[r] = L(v);
  }
}

// Element (n, c, s) of the logits belongs to row r = n S + s.
template <class T, class L>
__global__ void cross_entropy_backward_kernel(int64_t n, T* gx, const L* g, const T* x,
                                              const int64_t* target, const acc_t<T>* lse, Rows rs,
                                              int64_t ignore_index, acc_t<T> e, acc_t<T> off) {
  using A = acc_t<T>;
  for (int64_t i : cuda::grid_stride(n)) {
    const int64_t s = i % rs.inner, c = (i / rs.inner) % rs.d,
                  r = i / (rs.inner * rs.d) * rs.inner + s;
    const int64_t y = target[r];
    gx[i] = y == ignore_index
                ? T(0)
                : T(A(g[r]) * loss_math::cross_entropy_grad(A(x[i]), lse[r], c == y, e, off));
  }
}

// pos_weight p is read through the layout's fourth operand, or is 1 when absent (p == nullptr).
template <class T>
struct BceBody {
  T* out;
  const T *x, *y, *p;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    out[off[0]] = T(loss_math::bce_logits(A(x[off[1]]), A(y[off[2]]), p ? A(p[off[3]]) : A(1)));
  }
};

// Layout operands x, y, g[, p]; x and the gradients are contiguous with x's shape, so x's
// offset indexes the gradients too.
template <class T>
struct BceBackwardBody {
  T *gx, *gy, *gp;
  const T *x, *y, *g, *p;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    const auto d = loss_math::bce_logits_grads(A(g[off[2]]), A(x[off[0]]), A(y[off[1]]),
                                               p ? A(p[off[3]]) : A(1), gy || gp);
    if (gx) gx[off[0]] = T(d.x);
    if (gy) gy[off[0]] = T(d.y);
    if (gp) gp[off[0]] = T(d.p);
  }
};

void cross_entropy_cuda(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                        const Tensor& target, int64_t ignore_index, double smoothing) {
  const Rows rs = rows_of(logits.shape(), 1);
  if (rs.count() == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(logits.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(logits.dtype(), "cross_entropy", [&]<class T>() {
    using A = acc_t<T>;
    const RowMode mode = cuda::row_mode(rs.count(), rs.d, rs.inner);
    dispatch_widened<T>(loss.dtype(), [&]<class L>() {
      cuda::with_row_mode(mode, [&]<RowMode M>() {
        cross_entropy_kernel<T, L, M><<<cuda::row_blocks(mode, rs.count()), cuda::kBlock>>>(
            loss.data<L>(), lse.data<A>(), logits.data<T>(), target.data<int64_t>(), rs,
            ignore_index, A(smoothing));
      });
      LUMEN_CUDA_CHECK_LAUNCH();
    });
  });
}

void cross_entropy_backward_cuda(const Tensor& grad_logits, const Tensor& grad_loss,
                                 const Tensor& logits, const Tensor& target, const Tensor& lse,
                                 int64_t ignore_index, double smoothing) {
  const Rows rs = rows_of(logits.shape(), 1);
  const int64_t n = logits.numel();
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(logits.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    using A = acc_t<T>;
    dispatch_widened<T>(grad_loss.dtype(), [&]<class L>() {
      cross_entropy_backward_kernel<T, L><<<cuda::blocks_for(n), cuda::kBlock>>>(
          n, grad_logits.data<T>(), grad_loss.data<L>(), logits.data<T>(), target.data<int64_t>(),
          lse.data<A>(), rs, ignore_index, A(smoothing),
          A(smoothing) / A(std::max<int64_t>(rs.d, 1)));
      LUMEN_CUDA_CHECK_LAUNCH();
    });
  });
}

void bce_logits_cuda(const Tensor& out, const Tensor& x, const Tensor& y, const Tensor& pw) {
  dispatch_dtype<DTypes::FloatAndHalf>(
      x.dtype(), "binary_cross_entropy_with_logits", [&]<class T>() {
        if (pw.defined())
          cuda::launch_strided<4>({&out, &x, &y, &pw}, BceBody<T>{out.data<T>(), x.data<T>(),
                                                                  y.data<T>(), pw.data<T>()});
        else
          cuda::launch_strided<3>({&out, &x, &y},
                                  BceBody<T>{out.data<T>(), x.data<T>(), y.data<T>(), nullptr});
      });
}

void bce_logits_backward_cuda(const Tensor& gx, const Tensor& gy, const Tensor& gp, const Tensor& g,
                              const Tensor& x, const Tensor& y, const Tensor& pw) {
  dispatch_dtype<DTypes::FloatAndHalf>(
      x.dtype(), "binary_cross_entropy_with_logits_backward", [&]<class T>() {
        BceBackwardBody<T> body{gx.data_or_null<T>(), gy.data_or_null<T>(), gp.data_or_null<T>(),
                                x.data<T>(),          y.data<T>(),          g.data<T>(),
                                pw.data_or_null<T>()};
        if (pw.defined())
          cuda::launch_strided<4>({&x, &y, &g, &pw}, body);
        else
          cuda::launch_strided<3>({&x, &y, &g}, body);
      });
}

}  // namespace

LUMEN_REGISTER_KERNEL(cross_entropy, CUDA, cross_entropy_cuda);
LUMEN_REGISTER_KERNEL(cross_entropy_backward, CUDA, cross_entropy_backward_cuda);
LUMEN_REGISTER_KERNEL(bce_logits, CUDA, bce_logits_cuda);
LUMEN_REGISTER_KERNEL(bce_logits_backward, CUDA, bce_logits_backward_cuda);

}  // namespace lumen::kernels
