#pragma once
// One cuBLAS handle per device, created on first use and bound to the stream the kernels run
// on (the default stream); cuBLAS calls are checked like CUDA runtime calls.
#include <cublas_v2.h>

#include "tensor/cuda_check.h"

#define LUMEN_CUBLAS_CHECK(call)                                                             \
  do {                                                                                       \
    cublasStatus_t lumen_st_ = (call);                                                       \
    if (lumen_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::lumen::detail::throw_error(#call, " failed: ", cublasGetStatusName(lumen_st_), " (", \
                                   static_cast<int>(lumen_st_),                              \
                                   "): ", cublasGetStatusString(lumen_st_));                 \
  } while (0)

namespace lumen::cuda {

cublasHandle_t cublas_handle(int device);

}  // namespace lumen::cuda
