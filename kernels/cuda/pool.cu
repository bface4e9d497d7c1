// CUDA 2-D pooling (kernels/pool.h), a thread per element. Forwards: a thread per output walks
// its window. Backwards gather instead of scatter: a thread per input element (ih, iw) visits
// the outputs whose window can hold it, o = (ih + pad - a dil) / stride for each tap a that
// divides evenly, and adds their gradients in tap order, so no two threads write one element
// and the sum needs no atomics (and repeats exactly).
#include "kernels/cuda/launch.cuh"
#include "kernels/pool.h"

namespace lumen::kernels {
namespace {

struct PlaneDims {
  int64_t H, W, OH, OW;
};

// Element e of a stack of planes of `rows` x `cols`: its plane, row and column.
struct PlanePos {
  int64_t plane, row, col;
  __device__ PlanePos(int64_t e, int64_t rows, int64_t cols)
      : plane(e / (rows * cols)), row((e / cols) % rows), col(e % cols) {}
};

PlaneDims plane_dims(const Tensor& x, const Tensor& y) {
  return {x.size(-2), x.size(-1), y.size(-2), y.size(-1)};
}

// The outputs along one axis whose window tap t lands on input position `in`: o with
// o stride - pad + t dil == in, 0 <= o < out_size; -1 if none.
__device__ int64_t output_of_tap(int64_t in, int64_t t, int64_t stride, int64_t pad, int64_t dil,
                                 int64_t out_size) {
  const int64_t num = in + pad - t * dil;
  if (num < 0 || num % stride != 0) return -1;
  const int64_t o = num / stride;
  return o < out_size ? o : -1;
}

// out = max over the window's in-image taps in window order; a tap wins if it is the first,
// larger than the best, or NaN (so the last NaN wins, as on the CPU).
template <class T>
__global__ void max_pool2d_kernel(int64_t n, T* out, int64_t* indices, const T* x, PlaneDims s,
                                  Pool2dParams p) {
  using A = acc_t<T>;
  for (int64_t e : cuda::grid_stride(n)) {
    const PlanePos at(e, s.OH, s.OW);
    const int64_t i = at.row, j = at.col, plane = at.plane;
    const T* xp = x + plane * s.H * s.W;
    A best = -INFINITY;
    int64_t arg = -1;
    for (int64_t a = 0; a < p.kernel_h; ++a) {
      const int64_t ih = i * p.stride_h - p.pad_h + a * p.dilation_h;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t k = 0; k < p.kernel_w; ++k) {
        const int64_t iw = j * p.stride_w - p.pad_w + k * p.dilation_w;
        if (iw < 0 || iw >= s.W) continue;
        const A v = A(xp[ih * s.W + iw]);
        if (arg < 0 || v > best || v != v) {
          best = v;
          arg = ih * s.W + iw;
        }
      }
    }
    out[e] = T(best);
    indices[e] = arg;
  }
}

// grad_x[ih, iw] = sum of grad_out over the outputs whose recorded winner is (ih, iw).
template <class T>
__global__ void max_pool2d_backward_kernel(int64_t n, T* gx, const T* gy, const int64_t* indices,
                                           PlaneDims s, Pool2dParams p) {
  using A = acc_t<T>;
  for (int64_t e : cuda::grid_stride(n)) {
    const PlanePos at(e, s.H, s.W);
    const int64_t ih = at.row, iw = at.col, plane = at.plane;
    const int64_t self = ih * s.W + iw, base = plane * s.OH * s.OW;
    A g = 0;
    for (int64_t a = 0; a < p.kernel_h; ++a) {
      const int64_t i = output_of_tap(ih, a, p.stride_h, p.pad_h, p.dilation_h, s.OH);
      if (i < 0) continue;
      for (int64_t k = 0; k < p.kernel_w; ++k) {
        const int64_t j = output_of_tap(iw, k, p.stride_w, p.pad_w, p.dilation_w, s.OW);
        if (j >= 0 && indices[base + i * s.OW + j] == self) g += A(gy[base + i * s.OW + j]);
      }
    }
    gx[e] = T(g);
  }
}

// out = (sum of the window's in-image taps) / divisor (AvgWindow).
template <class T>
__global__ void avg_pool2d_kernel(int64_t n, T* out, const T* x, PlaneDims s, Pool2dParams p) {
  using A = acc_t<T>;
  for (int64_t e : cuda::grid_stride(n)) {
    const PlanePos at(e, s.OH, s.OW);
    const int64_t i = at.row, j = at.col, plane = at.plane;
    const T* xp = x + plane * s.H * s.W;
    const AvgWindow w(i, j, s.H, s.W, p);
    A sum = 0;
    for (int64_t ih = w.h0; ih < w.h1; ++ih)
      for (int64_t iw = w.w0; iw < w.w1; ++iw) sum += A(xp[ih * s.W + iw]);
    out[e] = T(sum / A(w.divisor));
  }
}

// grad_x[ih, iw] = sum over the outputs whose clipped window holds (ih, iw) of grad_out / divisor.
template <class T>
__global__ void avg_pool2d_backward_kernel(int64_t n, T* gx, const T* gy, PlaneDims s,
                                           Pool2dParams p) {
  using A = acc_t<T>;
  for (int64_t e : cuda::grid_stride(n)) {
    const PlanePos at(e, s.H, s.W);
    const int64_t ih = at.row, iw = at.col, plane = at.plane;
    const T* gp = gy + plane * s.OH * s.OW;
    A g = 0;
    for (int64_t a = 0; a < p.kernel_h; ++a) {
      const int64_t i = output_of_tap(ih, a, p.stride_h, p.pad_h, 1, s.OH);
      if (i < 0) continue;
      for (int64_t k = 0; k < p.kernel_w; ++k) {
        const int64_t j = output_of_tap(iw, k, p.stride_w, p.pad_w, 1, s.OW);
        if (j < 0) continue;
        const AvgWindow w(i, j, s.H, s.W, p);
        g += A(gp[i * s.OW + j]) / A(w.divisor);
      }
    }
    gx[e] = T(g);
  }
}

// Launches kernel over n elements on t's device.
template <class K, class... Args>
void launch_elements(const Tensor& t, int64_t n, K kernel, Args... args) {
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(t.device().index));
  kernel<<<cuda::blocks_for(n), cuda::kBlock>>>(n, args...);
  LUMEN_CUDA_CHECK_LAUNCH();
}

void max_pool2d_cuda(const Tensor& out, const Tensor& indices, const Tensor& x, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "max_pool2d", [&]<class T>() {
    launch_elements(x, out.numel(), max_pool2d_kernel<T>, out.data<T>(), indices.data<int64_t>(),
                    x.data<T>(), plane_dims(x, out), p);
  });
}

void max_pool2d_backward_cuda(const Tensor& gx, const Tensor& gy, const Tensor& indices,
                              Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "max_pool2d_backward", [&]<class T>() {
    launch_elements(gx, gx.numel(), max_pool2d_backward_kernel<T>, gx.data<T>(), gy.data<T>(),
                    indices.data<int64_t>(), plane_dims(gx, gy), p);
  });
}

void avg_pool2d_cuda(const Tensor& out, const Tensor& x, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(x.dtype(), "avg_pool2d", [&]<class T>() {
    launch_elements(x, out.numel(), avg_pool2d_kernel<T>, out.data<T>(), x.data<T>(),
                    plane_dims(x, out), p);
  });
}

void avg_pool2d_backward_cuda(const Tensor& gx, const Tensor& gy, Pool2dParams p) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "avg_pool2d_backward", [&]<class T>() {
    launch_elements(gx, gx.numel(), avg_pool2d_backward_kernel<T>, gx.data<T>(), gy.data<T>(),
                    plane_dims(gx, gy), p);
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(max_pool2d, CUDA, max_pool2d_cuda);
LUMEN_REGISTER_KERNEL(max_pool2d_backward, CUDA, max_pool2d_backward_cuda);
LUMEN_REGISTER_KERNEL(avg_pool2d, CUDA, avg_pool2d_cuda);
LUMEN_REGISTER_KERNEL(avg_pool2d_backward, CUDA, avg_pool2d_backward_cuda);

}  // namespace lumen::kernels
