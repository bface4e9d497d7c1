// CUDA normalisation kernels (kernels/norm.h). Layer norm: a warp or a block per row for the
// statistics and dx; dw and db are column sums over the rows, a 32 x 8 block per 32 columns.
// Batch norm: a block per channel for the statistics and the backward, elementwise apply.
// Statistics take two passes (mean, then squared deviations) in acc_t, which avoids the
// cancellation of E[x^2] - E[x]^2.
#include "kernels/cuda/block_reduce.cuh"
#if LUMEN_CUDNN
#include "kernels/cuda/cudnn_batch_norm.h"
#endif
#include "kernels/cuda/launch.cuh"
#include "kernels/norm.h"
#include "kernels/rows.h"

namespace lumen::kernels {
namespace {

using cuda::RowGroup;
using cuda::RowMode;

// mean = sum x / D, rstd = 1 / sqrt(sum (x - mean)^2 / D + eps), y = (x - mean) rstd w + b.
// W: the type of y, w and b (T, or f32 for 16-bit x under autocast).
template <class T, class W, RowMode kMode>
__global__ void layer_norm_kernel(W* y, acc_t<T>* mean, acc_t<T>* rstd, const T* x, const W* w,
                                  const W* b, int64_t m, int64_t d, acc_t<T> eps) {
  using A = acc_t<T>;
  const RowGroup<kMode> grp;
  for (int64_t r = grp.first_row(); r < m; r += grp.row_step()) {
    const T* xr = x + r * d;
    W* yr = y + r * d;
    A s = 0;
    for (int64_t j = grp.lane(); j < d; j += grp.size()) s += A(xr[j]);
    const A mu = grp.reduce(s, cuda::Plus{}) / A(d);
    A ss = 0;
    for (int64_t j = grp.lane(); j < d; j += grp.size()) {
      const A dv = A(xr[j]) - mu;
      ss += dv * dv;
    }
    const A rs = A(1) / sqrt(grp.reduce(ss, cuda::Plus{}) / A(d) + eps);
    if (grp.lane() == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int64_t j = grp.lane(); j < d; j += grp.size()) {
      A v = (A(xr[j]) - mu) * rs;
      if (w) v *= A(w[j]);
      if (b) v += A(b[j]);
      yr[j] = W(v);
    }
  }
}

// g = dy w; dx = rstd (g - <g> - xhat <g xhat>), <.> the row mean.
template <class T, class W, RowMode kMode>
__global__ void layer_norm_backward_kernel(T* gx, const W* gy, const T* x, const acc_t<T>* mean,
                                           const acc_t<T>* rstd, const W* w, int64_t m, int64_t d) {
  using A = acc_t<T>;
  const RowGroup<kMode> grp;
  for (int64_t r = grp.first_row(); r < m; r += grp.row_step()) {
    const T* xr = x + r * d;
    const W* gr = gy + r * d;
    const A mu = mean[r], rs = rstd[r];
    A sg = 0, sgx = 0;
    for (int64_t j = grp.lane(); j < d; j += grp.size()) {
      const A g = A(gr[j]) * (w ? A(w[j]) : A(1));
      sg += g;
      sgx += g * (A(xr[j]) - mu) * rs;
    }
    const A mg = grp.reduce(sg, cuda::Plus{}) / A(d), mgx = grp.reduce(sgx, cuda::Plus{}) / A(d);
    for (int64_t j = grp.lane(); j < d; j += grp.size()) {
      const A g = A(gr[j]) * (w ? A(w[j]) : A(1));
      const A xh = (A(xr[j]) - mu) * rs;
      gx[r * d + j] = T(rs * (g - mg - xh * mgx));
    }
  }
}

// dw_j = sum_r dy_rj xhat_rj, db_j = sum_r dy_rj: column sums, a (32, 8) block per 32 columns
// (cuda::column_block_sum).
template <class T, class W>
__global__ void layer_norm_weight_grad_kernel(W* gw, W* gb, const W* gy, const T* x,
                                              const acc_t<T>* mean, const acc_t<T>* rstd, int64_t m,
                                              int64_t d) {
  using A = acc_t<T>;
  const int64_t j = blockIdx.x * 32 + threadIdx.x;
  A aw = 0, ab = 0;
  if (j < d) {
    for (int64_t r = threadIdx.y; r < m; r += 8) {
      const A g = A(gy[r * d + j]);
      aw += g * (A(x[r * d + j]) - mean[r]) * rstd[r];
      ab += g;
    }
  }
  aw = cuda::column_block_sum(aw);
  ab = cuda::column_block_sum(ab);
  if (threadIdx.y != 0 || j >= d) return;
  if (gw) gw[j] = W(aw);
  if (gb) gb[j] = W(ab);
}

// x [N, C, S]: element k of channel c (k < N S) is at ((k / S) C + c) S + k % S.
struct Channels {
  int64_t n, c, s;
  __device__ int64_t at(int64_t ch, int64_t k) const { return ((k / s) * c + ch) * s + k % s; }
};

Channels channels_of(const Tensor& x) {
  Channels ch{x.size(0), x.size(1), 1};
  for (int64_t i = 2; i < x.dim(); ++i) ch.s *= x.size(i);
  return ch;
}

template <class T>
__global__ void batch_norm_stats_kernel(acc_t<T>* mean, acc_t<T>* var, const T* x, Channels ch) {
  using A = acc_t<T>;
  const int64_t count = ch.n * ch.s;
  for (int64_t c = blockIdx.x; c < ch.c; c += gridDim.x) {
    A s = 0;
    for (int64_t k = threadIdx.x; k < count; k += blockDim.x) s += A(x[ch.at(c, k)]);
    const A mu = cuda::block_reduce(s, cuda::Plus{}) / A(count);
    A ss = 0;
    for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
      const A dv = A(x[ch.at(c, k)]) - mu;
      ss += dv * dv;
    }
    ss = cuda::block_reduce(ss, cuda::Plus{});
    if (threadIdx.x == 0) {
      mean[c] = mu;
      var[c] = ss / A(count);
    }
  }
}

// y = x scale + shift, scale = invstd w, shift = b - mean scale (per channel).
template <class T>
__global__ void batch_norm_apply_kernel(int64_t n, T* y, const T* x, const acc_t<T>* mean,
                                        const acc_t<T>* invstd, const T* w, const T* b,
                                        Channels ch) {
  using A = acc_t<T>;
  for (int64_t i : cuda::grid_stride(n)) {
    const int64_t c = (i / ch.s) % ch.c;
    const A scale = invstd[c] * (w ? A(w[c]) : A(1));
    const A shift = (b ? A(b[c]) : A(0)) - mean[c] * scale;
    y[i] = T(A(x[i]) * scale + shift);
  }
}

// Per channel: dw = sum dy xhat, db = sum dy; dx = w invstd (dy - db/M - xhat dw/M) in training,
// w invstd dy in eval.
template <class T>
__global__ void batch_norm_backward_kernel(T* gx, T* gw, T* gb, const T* gy, const T* x,
                                           const acc_t<T>* mean, const acc_t<T>* invstd, const T* w,
                                           Channels ch, bool training) {
  using A = acc_t<T>;
  const int64_t count = ch.n * ch.s;
  for (int64_t c = blockIdx.x; c < ch.c; c += gridDim.x) {
    const A mu = mean[c], r = invstd[c], k = (w ? A(w[c]) : A(1)) * r;
    A sdy = 0, sdyx = 0;
    if (training || gw || gb) {
      for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
        const int64_t i = ch.at(c, e);
        const A g = A(gy[i]);
        sdy += g;
        sdyx += g * (A(x[i]) - mu) * r;
      }
      sdy = cuda::block_reduce(sdy, cuda::Plus{});
      sdyx = cuda::block_reduce(sdyx, cuda::Plus{});
    }
    if (threadIdx.x == 0) {
      if (gw) gw[c] = T(sdyx);
      if (gb) gb[c] = T(sdy);
    }
    if (!gx) continue;
    const A mdy = training ? sdy / A(count) : A(0), mdyx = training ? sdyx / A(count) : A(0);
    for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const int64_t i = ch.at(c, e);
      const A xh = (A(x[i]) - mu) * r;
      gx[i] = T(k * (A(gy[i]) - mdy - xh * mdyx));
    }
  }
}

unsigned channel_blocks(int64_t c) { return static_cast<unsigned>(std::min<int64_t>(c, 65535)); }

void layer_norm_cuda(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                     const Tensor& weight, const Tensor& bias, int64_t d, double eps) {
  const int64_t m = d == 0 ? 0 : x.numel() / d;
  if (m == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "layer_norm", [&]<class T>() {
    using A = acc_t<T>;
    dispatch_widened<T>(y.dtype(), [&]<class W>() {
      const RowMode mode = cuda::row_mode(m, d);
      cuda::with_row_mode<false>(mode, [&]<RowMode M>() {
        layer_norm_kernel<T, W, M><<<cuda::row_blocks(mode, m), cuda::kBlock>>>(
            y.data<W>(), mean.data<A>(), rstd.data<A>(), x.data<T>(), weight.data_or_null<W>(),
            bias.data_or_null<W>(), m, d, A(eps));
      });
      LUMEN_CUDA_CHECK_LAUNCH();
    });
  });
}

void layer_norm_backward_cuda(const Tensor& gx, const Tensor& gw, const Tensor& gb,
                              const Tensor& gy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, int64_t d) {
  const int64_t m = d == 0 ? 0 : x.numel() / d;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "layer_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    dispatch_widened<T>(gy.dtype(), [&]<class W>() {
      if (gx.defined() && m > 0) {
        const RowMode mode = cuda::row_mode(m, d);
        cuda::with_row_mode<false>(mode, [&]<RowMode M>() {
          layer_norm_backward_kernel<T, W, M><<<cuda::row_blocks(mode, m), cuda::kBlock>>>(
              gx.data<T>(), gy.data<W>(), x.data<T>(), mean.data<A>(), rstd.data<A>(),
              weight.data_or_null<W>(), m, d);
        });
        LUMEN_CUDA_CHECK_LAUNCH();
      }
      if ((gw.defined() || gb.defined()) && d > 0) {
        // m == 0 still writes zeros.
        layer_norm_weight_grad_kernel<T, W><<<static_cast<unsigned>((d + 31) / 32), dim3(32, 8)>>>(
            gw.data_or_null<W>(), gb.data_or_null<W>(), gy.data<W>(), x.data<T>(), mean.data<A>(),
            rstd.data<A>(), m, d);
        LUMEN_CUDA_CHECK_LAUNCH();
      }
    });
  });
}

// The running statistics and invstd from the batch's mean and variance (kernels/norm.h).
template <class T>
__global__ void batch_norm_finish_kernel(int64_t c, const acc_t<T>* mean, acc_t<T>* var_to_invstd,
                                         acc_t<T>* running_mean, acc_t<T>* running_var,
                                         int64_t count, double momentum, double eps) {
  for (int64_t i : cuda::grid_stride(c))
    batch_norm_finish_channel<acc_t<T>>(
        mean[i], var_to_invstd[i], running_mean ? running_mean + i : nullptr,
        running_var ? running_var + i : nullptr, count, momentum, eps);
}

void batch_norm_apply_cuda(const Tensor& y, const Tensor& x, const Tensor& mean,
                           const Tensor& invstd, const Tensor& weight, const Tensor& bias) {
  const int64_t n = x.numel();
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm", [&]<class T>() {
    using A = acc_t<T>;
    batch_norm_apply_kernel<T><<<cuda::blocks_for(n), cuda::kBlock>>>(
        n, y.data<T>(), x.data<T>(), mean.data<A>(), invstd.data<A>(), weight.data_or_null<T>(),
        bias.data_or_null<T>(), channels_of(x));
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

// cuDNN where it takes the input (f32, f64), else statistics, finish and apply kernels.
void batch_norm_training_cuda(const Tensor& y, const Tensor& mean, const Tensor& invstd,
                              const Tensor& running_mean, const Tensor& running_var,
                              const Tensor& x, const Tensor& weight, const Tensor& bias,
                              double momentum, double eps) {
#if LUMEN_CUDNN
  if (cuda::cudnn_batch_norm_training(y, mean, invstd, running_mean, running_var, x, weight, bias,
                                      momentum, eps))
    return;
#endif
  const Channels ch = channels_of(x);
  if (ch.c == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm", [&]<class T>() {
    using A = acc_t<T>;
    batch_norm_stats_kernel<T>
        <<<channel_blocks(ch.c), cuda::kBlock>>>(mean.data<A>(), invstd.data<A>(), x.data<T>(), ch);
    LUMEN_CUDA_CHECK_LAUNCH();
    batch_norm_finish_kernel<T><<<cuda::blocks_for(ch.c), cuda::kBlock>>>(
        ch.c, mean.data<A>(), invstd.data<A>(), running_mean.data_or_null<A>(),
        running_var.data_or_null<A>(), ch.n * ch.s, momentum, eps);
    LUMEN_CUDA_CHECK_LAUNCH();
  });
  batch_norm_apply_cuda(y, x, mean, invstd, weight, bias);
}

void batch_norm_backward_cuda(const Tensor& gx, const Tensor& gw, const Tensor& gb,
                              const Tensor& gy, const Tensor& x, const Tensor& mean,
                              const Tensor& invstd, const Tensor& weight, bool training,
                              double eps) {
#if LUMEN_CUDNN
  if (training && cuda::cudnn_batch_norm_backward(gx, gw, gb, gy, x, mean, invstd, weight, eps))
    return;
#else
  (void)eps;
#endif
  const Channels ch = channels_of(x);
  if (ch.c == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "batch_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    batch_norm_backward_kernel<T><<<channel_blocks(ch.c), cuda::kBlock>>>(
        gx.data_or_null<T>(), gw.data_or_null<T>(), gb.data_or_null<T>(), gy.data<T>(), x.data<T>(),
        mean.data<A>(), invstd.data<A>(), weight.data_or_null<T>(), ch, training);
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(layer_norm, CUDA, layer_norm_cuda);
LUMEN_REGISTER_KERNEL(layer_norm_backward, CUDA, layer_norm_backward_cuda);
LUMEN_REGISTER_KERNEL(batch_norm_training, CUDA, batch_norm_training_cuda);
LUMEN_REGISTER_KERNEL(batch_norm_apply, CUDA, batch_norm_apply_cuda);
LUMEN_REGISTER_KERNEL(batch_norm_backward, CUDA, batch_norm_backward_cuda);

}  // namespace lumen::kernels
