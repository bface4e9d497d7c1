#pragma once
// cuDNN for the ops that use it (conv2d, batch norm): one handle per device bound to the stream
// the kernels run on, checked calls, Lumen's dtypes as cuDNN's, and the alpha/beta scalars.
#include <cudnn.h>

#include "tensor/cuda_check.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"

#define LUMEN_CUDNN_CHECK(call)                                                              \
  do {                                                                                       \
    cudnnStatus_t lumen_st_ = (call);                                                        \
    if (lumen_st_ != CUDNN_STATUS_SUCCESS)                                                   \
      ::lumen::detail::throw_error(#call, " failed: ", cudnnGetErrorString(lumen_st_), " (", \
                                   static_cast<int>(lumen_st_), ")");                        \
  } while (0)

namespace lumen::cuda {

cudnnHandle_t cudnn_handle(int device);

// f32, f64, f16, bf16 as cuDNN's types; any other dtype is an error naming `op`.
cudnnDataType_t cudnn_type(DType dt, const char* op);

// An int argument of a cuDNN call; a larger size is an error naming `op`.
int cudnn_int(int64_t v, const char* op);

// alpha = 1, beta = 0: doubles for f64 tensors, floats otherwise (cuDNN's rule).
struct CudnnScalars {
  float f[2] = {1.0f, 0.0f};
  double d[2] = {1.0, 0.0};
  bool f64;
  explicit CudnnScalars(DType dt) : f64(dt == DType::f64) {}
  const void* alpha() const { return f64 ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* beta() const { return f64 ? static_cast<const void*>(&d[1]) : &f[1]; }
};

// A 4-d NCHW tensor descriptor, destroyed with the object.
struct CudnnTensor4d {
  cudnnTensorDescriptor_t desc = nullptr;
  CudnnTensor4d(cudnnDataType_t dt, int64_t n, int64_t c, int64_t h, int64_t w, const char* op);
  // A contiguous 4-d tensor's own dtype and shape.
  CudnnTensor4d(const Tensor& t, const char* op)
      : CudnnTensor4d(cudnn_type(t.dtype(), op), t.size(0), t.size(1), t.size(2), t.size(3), op) {}
  CudnnTensor4d(const CudnnTensor4d&) = delete;
  CudnnTensor4d& operator=(const CudnnTensor4d&) = delete;
  ~CudnnTensor4d() { cudnnDestroyTensorDescriptor(desc); }
  operator cudnnTensorDescriptor_t() const { return desc; }
};

}  // namespace lumen::cuda
