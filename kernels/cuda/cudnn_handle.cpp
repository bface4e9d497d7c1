#include "kernels/cuda/cudnn_handle.h"

#include "kernels/cuda/library_handle.h"

namespace lumen::cuda {

cudnnHandle_t cudnn_handle(int device) {
  return per_device_handle<cudnnHandle_t>(device, "cuDNN", [] {
    cudnnHandle_t h;
    LUMEN_CUDNN_CHECK(cudnnCreate(&h));
    LUMEN_CUDNN_CHECK(cudnnSetStream(h, 0));
    return h;
  });
}

cudnnDataType_t cudnn_type(DType dt, const char* op) {
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
      detail::throw_error(op, " (CUDA): dtype ", dtype_name(dt),
                          " is not supported; expected f32, f64, f16 or bf16");
  }
}

int cudnn_int(int64_t v, const char* op) {
  LUMEN_CHECK(v <= INT32_MAX, op, " (CUDA): size ", v, " exceeds cuDNN's int range");
  return static_cast<int>(v);
}

CudnnTensor4d::CudnnTensor4d(cudnnDataType_t dt, int64_t n, int64_t c, int64_t h, int64_t w,
                             const char* op) {
  const int dims[4] = {cudnn_int(n, op), cudnn_int(c, op), cudnn_int(h, op), cudnn_int(w, op)};
  LUMEN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
  const cudnnStatus_t st =
      cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, dt, dims[0], dims[1], dims[2], dims[3]);
  if (st != CUDNN_STATUS_SUCCESS) cudnnDestroyTensorDescriptor(desc);
  LUMEN_CUDNN_CHECK(st);
}

}  // namespace lumen::cuda
