// CUDA 2-D convolution through cuDNN (kernels/conv.h): NCHW tensors and filters, cross-
// correlation, groups set on the descriptor. The algorithm of each (direction, dtype, shapes,
// parameters) is picked once by cuDNN's heuristics (the first that is supported) and cached
// (kernels/cuda/algo_cache.h); its workspace comes from Lumen's allocator (CUDA's stream-ordered
// pool) per call. f32 runs in strict f32 (CUDNN_FMA_MATH, no TF32), the 16-bit types on tensor
// cores with f32 compute.
#include <cudnn.h>

#include <array>
#include <tuple>

#include "kernels/conv.h"
#include "kernels/cuda/algo_cache.h"
#include "kernels/cuda/library_handle.h"
#include "tensor/cuda_check.h"

#define LUMEN_CUDNN_CHECK(call)                                                              \
  do {                                                                                       \
    cudnnStatus_t lumen_st_ = (call);                                                        \
    if (lumen_st_ != CUDNN_STATUS_SUCCESS)                                                   \
      ::lumen::detail::throw_error(#call, " failed: ", cudnnGetErrorString(lumen_st_), " (", \
                                   static_cast<int>(lumen_st_), ")");                        \
  } while (0)

namespace lumen::kernels {
namespace {

cudnnHandle_t cudnn_handle(int device) {
  return cuda::per_device_handle<cudnnHandle_t>(device, "cuDNN", [] {
    cudnnHandle_t h;
    LUMEN_CUDNN_CHECK(cudnnCreate(&h));
    LUMEN_CUDNN_CHECK(cudnnSetStream(h, 0));
    return h;
  });
}

cudnnDataType_t cudnn_type(DType dt) {
  switch (dt) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::f64:
      return CUDNN_DATA_DOUBLE;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    default:
      detail::throw_error("conv2d (CUDA): dtype ", dtype_name(dt),
                          " is not supported; expected f32, f64, f16 or bf16");
  }
}

int as_int(int64_t v) {
  LUMEN_CHECK(v <= INT32_MAX, "conv2d (CUDA): size ", v, " exceeds cuDNN's int range");
  return static_cast<int>(v);
}

// The descriptors of one convolution: x [N, Cin, H, W], w [Cout, Cin/g, kH, kW], y [N, Cout,
// OH, OW], all of one dtype. Destroyed with the object.
struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  ConvDescriptors(const Tensor& x_t, const Tensor& w_t, const Tensor& y_t, const Conv2dParams& p) {
    const cudnnDataType_t dt = cudnn_type(x_t.dtype());
    LUMEN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    LUMEN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    LUMEN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    LUMEN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    LUMEN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, dt, as_int(x_t.size(0)),
                                                 as_int(x_t.size(1)), as_int(x_t.size(2)),
                                                 as_int(x_t.size(3))));
    LUMEN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, dt, as_int(y_t.size(0)),
                                                 as_int(y_t.size(1)), as_int(y_t.size(2)),
                                                 as_int(y_t.size(3))));
    LUMEN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, CUDNN_TENSOR_NCHW, as_int(w_t.size(0)),
                                                 as_int(w_t.size(1)), as_int(w_t.size(2)),
                                                 as_int(w_t.size(3))));
    const bool f64 = x_t.dtype() == DType::f64;
    LUMEN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        conv, as_int(p.pad_h), as_int(p.pad_w), as_int(p.stride_h), as_int(p.stride_w),
        as_int(p.dilation_h), as_int(p.dilation_w), CUDNN_CROSS_CORRELATION,
        f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
    LUMEN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, as_int(p.groups)));
    const bool half = x_t.dtype() == DType::f16 || x_t.dtype() == DType::bf16;
    LUMEN_CUDNN_CHECK(cudnnSetConvolutionMathType(
        conv, half ? CUDNN_TENSOR_OP_MATH : (f64 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)));
  }
  ConvDescriptors(const ConvDescriptors&) = delete;
  ConvDescriptors& operator=(const ConvDescriptors&) = delete;
  ~ConvDescriptors() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
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

// The first algorithm cuDNN's heuristics rank that reports success, for one direction.
template <class Perf, class Getter>
int pick_algo(const char* what, Getter get) {
  std::array<Perf, 16> perf{};
  int returned = 0;
  LUMEN_CUDNN_CHECK(get(static_cast<int>(perf.size()), &returned, perf.data()));
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return static_cast<int>(perf[i].algo);
  detail::throw_error("conv2d (CUDA): cuDNN offers no ", what, " algorithm for this convolution");
}

// alpha = 1, beta = 0 (or 1): doubles for f64 descriptors, floats otherwise (cuDNN's rule).
struct Scalars {
  float f[2] = {1.0f, 0.0f};
  double d[2] = {1.0, 0.0};
  bool f64;
  explicit Scalars(DType dt, double beta = 0.0) : f64(dt == DType::f64) {
    f[1] = static_cast<float>(beta);
    d[1] = beta;
  }
  const void* alpha() const { return f64 ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* beta() const { return f64 ? static_cast<const void*>(&d[1]) : &f[1]; }
};

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(bytes)}, {DType::u8, device});
}

void conv2d_cuda(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                 Conv2dParams p) {
  if (out.numel() == 0) return;
  const int dev = x.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  cudnnHandle_t h = cudnn_handle(dev);
  ConvDescriptors d(x, w, out, p);
  const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(
      cuda::cached_choice(algo_key(Direction::Forward, x, w, p), [&] {
        return pick_algo<cudnnConvolutionFwdAlgoPerf_t>("forward", [&](int n, int* r, auto* perf) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, r, perf);
        });
      }));
  size_t ws_bytes = 0;
  LUMEN_CUDNN_CHECK(
      cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, algo, &ws_bytes));
  Tensor ws = workspace(ws_bytes, x.device());
  const Scalars s(x.dtype());
  LUMEN_CUDNN_CHECK(cudnnConvolutionForward(h, s.alpha(), d.x, x.data_ptr(), d.w, w.data_ptr(),
                                            d.conv, algo, ws_bytes ? ws.data_ptr() : nullptr,
                                            ws_bytes, s.beta(), d.y, out.data_ptr()));
  if (!bias.defined()) return;
  // out += bias broadcast over [N, ., OH, OW].
  cudnnTensorDescriptor_t bd = nullptr;
  LUMEN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
  cudnnStatus_t st = cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, cudnn_type(bias.dtype()), 1,
                                                as_int(bias.numel()), 1, 1);
  const Scalars add(x.dtype(), 1.0);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnAddTensor(h, add.alpha(), bd, bias.data_ptr(), add.beta(), d.y, out.data_ptr());
  cudnnDestroyTensorDescriptor(bd);
  LUMEN_CUDNN_CHECK(st);
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
  const auto algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(
      cuda::cached_choice(algo_key(Direction::BackwardData, gx, w, p), [&] {
        return pick_algo<cudnnConvolutionBwdDataAlgoPerf_t>("backward-data", [&](int n, int* r,
                                                                                 auto* perf) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, r, perf);
        });
      }));
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
  const auto algo = static_cast<cudnnConvolutionBwdFilterAlgo_t>(
      cuda::cached_choice(algo_key(Direction::BackwardFilter, x, gw, p), [&] {
        return pick_algo<cudnnConvolutionBwdFilterAlgoPerf_t>(
            "backward-filter", [&](int n, int* r, auto* perf) {
              return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, r,
                                                                   perf);
            });
      }));
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
