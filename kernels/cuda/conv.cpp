// CUDA 2-D convolution through cuDNN (kernels/conv.h): NCHW tensors and filters, cross-
// correlation, groups set on the descriptor. The algorithm of each (direction, dtype, shapes,
// parameters) is picked once by cuDNN's heuristics (the first that is supported) and cached
// (kernels/cuda/algo_cache.h); its workspace comes from Lumen's allocator (CUDA's stream-ordered
// pool) per call. f32 runs in strict f32 (CUDNN_FMA_MATH, no TF32), the 16-bit types on tensor
// cores with f32 compute.
#include <array>
#include <tuple>

#include "kernels/conv.h"
#include "kernels/cuda/algo_cache.h"
#include "kernels/cuda/cudnn_handle.h"
#include "kernels/elementwise.h"
#include "tensor/cuda_check.h"
#include "tensor/storage.h"

namespace lumen::kernels {
namespace {

using cuda::cudnn_handle;
using Scalars = cuda::CudnnScalars;

cudnnDataType_t cudnn_type(DType dt) { return cuda::cudnn_type(dt, "conv2d"); }
int as_int(int64_t v) { return cuda::cudnn_int(v, "conv2d"); }

// A filter and a convolution descriptor, destroyed with the object.
struct CudnnFilter {
  cudnnFilterDescriptor_t desc = nullptr;
  CudnnFilter() { LUMEN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc)); }
  CudnnFilter(const CudnnFilter&) = delete;
  CudnnFilter& operator=(const CudnnFilter&) = delete;
  ~CudnnFilter() { cudnnDestroyFilterDescriptor(desc); }
  operator cudnnFilterDescriptor_t() const { return desc; }
};
struct CudnnConvolution {
  cudnnConvolutionDescriptor_t desc = nullptr;
  CudnnConvolution() { LUMEN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc)); }
  CudnnConvolution(const CudnnConvolution&) = delete;
  CudnnConvolution& operator=(const CudnnConvolution&) = delete;
  ~CudnnConvolution() { cudnnDestroyConvolutionDescriptor(desc); }
  operator cudnnConvolutionDescriptor_t() const { return desc; }
};

// The descriptors of one convolution: x [N, Cin, H, W], w [Cout, Cin/g, kH, kW], y [N, Cout,
// OH, OW], all of one dtype. Each member is destroyed with the object (also when a later one
// fails to be made).
struct ConvDescriptors {
  cuda::CudnnTensor4d x, y;
  CudnnFilter w;
  CudnnConvolution conv;

  ConvDescriptors(const Tensor& x_t, const Tensor& w_t, const Tensor& y_t, const Conv2dParams& p)
      : x(x_t, "conv2d"), y(y_t, "conv2d") {
    const cudnnDataType_t dt = cudnn_type(x_t.dtype());
    LUMEN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.desc, dt, CUDNN_TENSOR_NCHW, as_int(w_t.size(0)),
                                                 as_int(w_t.size(1)), as_int(w_t.size(2)),
                                                 as_int(w_t.size(3))));
    const bool f64 = x_t.dtype() == DType::f64;
    LUMEN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        conv.desc, as_int(p.pad_h), as_int(p.pad_w), as_int(p.stride_h), as_int(p.stride_w),
        as_int(p.dilation_h), as_int(p.dilation_w), CUDNN_CROSS_CORRELATION,
        f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
    LUMEN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.desc, as_int(p.groups)));
    const bool half = x_t.dtype() == DType::f16 || x_t.dtype() == DType::bf16;
    LUMEN_CUDNN_CHECK(cudnnSetConvolutionMathType(
        conv.desc, half ? CUDNN_TENSOR_OP_MATH : (f64 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)));
  }
};

enum class Direction { Forward, BackwardData, BackwardFilter };

// The cache key: direction, device, dtype, x and w shapes, parameters (y's shape follows).
using AlgoKey = std::tuple<int, int, int, Shape, Shape, std::array<int64_t, 7>>;

AlgoKey algo_key(Direction d, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  return {static_cast<int>(d),
          x.device().index,
          static_cast<int>(x.dtype()),
          x.shape(),
          w.shape(),
          {p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups}};
}

// An algorithm with the math type cuDNN ranked it under: the descriptor must be set to that
// type before the workspace query and the call (cuDNN may rank an algorithm under another
// math type than the descriptor's; running it with the descriptor's is slower or fails).
struct ConvAlgo {
  int algo;
  cudnnMathType_t math;
  void apply(cudnnConvolutionDescriptor_t conv) const {
    LUMEN_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math));
  }
};

// The first algorithm cuDNN's heuristics rank that reports success, for one direction. f32
// takes FMA-math entries only (default math lets cuDNN use TF32, which rounds the inputs;
// Lumen's f32 convolutions are f32), f64 any but tensor-op ones.
template <class Perf, class Getter>
ConvAlgo pick_algo(const char* what, DType dtype, Getter get) {
  std::array<Perf, 16> perf{};
  int returned = 0;
  LUMEN_CUDNN_CHECK(get(static_cast<int>(perf.size()), &returned, perf.data()));
  // An algorithm whose workspace exceeds the free memory (the device's and the pool's cached
  // blocks) would fail to allocate it.
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    free_bytes = SIZE_MAX;
  } else {
    int dev = 0;
    LUMEN_CUDA_CHECK(cudaGetDevice(&dev));
    free_bytes += device_backend(Device::cuda(dev)).cached_bytes(dev);
  }
  for (int i = 0; i < returned; ++i) {
    const cudnnMathType_t math = perf[i].mathType;
    const bool allowed = is_16bit_float(dtype) ? true
                         : dtype == DType::f32 ? math == CUDNN_FMA_MATH
                                               : math != CUDNN_TENSOR_OP_MATH &&
                                                     math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= free_bytes && allowed)
      return {static_cast<int>(perf[i].algo), perf[i].mathType};
  }
  detail::throw_error("conv2d (CUDA): cuDNN offers no ", what, " algorithm for this convolution");
}

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(bytes)}, {DType::u8, device});
}

void conv2d_cuda(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                 Conv2dParams p) {
  if (out.numel() == 0) return;
  const int dev = x.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  cudnnHandle_t h = cudnn_handle(dev);
  // out += bias broadcast over [N, ., OH, OW], by our broadcasting add (cuDNN 9 deprecates
  // cudnnAddTensor, and its bf16 support is not documented).
  auto add_bias = [&] {
    if (bias.defined())
      binary(out.device(), out, out, bias.view({bias.numel(), 1, 1}), BinaryOp::Add);
  };
  if (x.numel() == 0 || w.numel() == 0) {  // no input channels: the bias alone (cuDNN takes no 0)
    LUMEN_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.numel() * out.element_size(), 0));
    return add_bias();
  }
  ConvDescriptors d(x, w, out, p);
  const ConvAlgo choice = cuda::cached_choice(algo_key(Direction::Forward, x, w, p), [&] {
    return pick_algo<cudnnConvolutionFwdAlgoPerf_t>(
        "forward", x.dtype(), [&](int n, int* r, auto* perf) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, r, perf);
        });
  });
  choice.apply(d.conv);
  const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(choice.algo);
  size_t ws_bytes = 0;
  LUMEN_CUDNN_CHECK(
      cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, algo, &ws_bytes));
  Tensor ws = workspace(ws_bytes, x.device());
  const Scalars s(x.dtype());
  LUMEN_CUDNN_CHECK(cudnnConvolutionForward(h, s.alpha(), d.x, x.data_ptr(), d.w, w.data_ptr(),
                                            d.conv, algo, ws_bytes ? ws.data_ptr() : nullptr,
                                            ws_bytes, s.beta(), d.y, out.data_ptr()));
  add_bias();
}

void conv2d_backward_input_cuda(const Tensor& gx, const Tensor& gy, const Tensor& w,
                                Conv2dParams p) {
  if (gx.numel() == 0) return;
  const int dev = gx.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  if (gy.numel() == 0 || w.numel() == 0) {
    LUMEN_CUDA_CHECK(cudaMemsetAsync(gx.data_ptr(), 0, gx.numel() * gx.element_size(), 0));
    return;
  }
  cudnnHandle_t h = cudnn_handle(dev);
  ConvDescriptors d(gx, w, gy, p);
  const ConvAlgo choice = cuda::cached_choice(algo_key(Direction::BackwardData, gx, w, p), [&] {
    return pick_algo<cudnnConvolutionBwdDataAlgoPerf_t>(
        "backward-data", gx.dtype(), [&](int n, int* r, auto* perf) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, r, perf);
        });
  });
  choice.apply(d.conv);
  const auto algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algo);
  size_t ws_bytes = 0;
  LUMEN_CUDNN_CHECK(
      cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, algo, &ws_bytes));
  Tensor ws = workspace(ws_bytes, gx.device());
  const Scalars s(gx.dtype());
  LUMEN_CUDNN_CHECK(cudnnConvolutionBackwardData(
      h, s.alpha(), d.w, w.data_ptr(), d.y, gy.data_ptr(), d.conv, algo,
      ws_bytes ? ws.data_ptr() : nullptr, ws_bytes, s.beta(), d.x, gx.data_ptr()));
}

void conv2d_backward_weight_cuda(const Tensor& gw, const Tensor& gy, const Tensor& x,
                                 Conv2dParams p) {
  if (gw.numel() == 0) return;
  const int dev = gw.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  if (gy.numel() == 0 || x.numel() == 0) {
    LUMEN_CUDA_CHECK(cudaMemsetAsync(gw.data_ptr(), 0, gw.numel() * gw.element_size(), 0));
    return;
  }
  cudnnHandle_t h = cudnn_handle(dev);
  ConvDescriptors d(x, gw, gy, p);
  const ConvAlgo choice = cuda::cached_choice(algo_key(Direction::BackwardFilter, x, gw, p), [&] {
    return pick_algo<cudnnConvolutionBwdFilterAlgoPerf_t>(
        "backward-filter", x.dtype(), [&](int n, int* r, auto* perf) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, r,
                                                               perf);
        });
  });
  choice.apply(d.conv);
  const auto algo = static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algo);
  size_t ws_bytes = 0;
  LUMEN_CUDNN_CHECK(
      cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, algo, &ws_bytes));
  Tensor ws = workspace(ws_bytes, gw.device());
  const Scalars s(gw.dtype());
  LUMEN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      h, s.alpha(), d.x, x.data_ptr(), d.y, gy.data_ptr(), d.conv, algo,
      ws_bytes ? ws.data_ptr() : nullptr, ws_bytes, s.beta(), d.w, gw.data_ptr()));
}

}  // namespace

LUMEN_REGISTER_KERNEL(conv2d, CUDA, conv2d_cuda);
LUMEN_REGISTER_KERNEL(conv2d_backward_input, CUDA, conv2d_backward_input_cuda);
LUMEN_REGISTER_KERNEL(conv2d_backward_weight, CUDA, conv2d_backward_weight_cuda);

}  // namespace lumen::kernels
