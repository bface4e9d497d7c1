#pragma once
// Every CUDA runtime call is checked; a failure names the call, the code and its message.
#include <cuda_runtime.h>

#include "tensor/error.h"

#define LUMEN_CUDA_CHECK(call)                                                             \
  do {                                                                                     \
    cudaError_t lumen_err_ = (call);                                                       \
    if (lumen_err_ != cudaSuccess)                                                         \
      ::lumen::detail::throw_error(#call, " failed: ", cudaGetErrorName(lumen_err_), " (", \
                                   static_cast<int>(lumen_err_),                           \
                                   "): ", cudaGetErrorString(lumen_err_));                 \
  } while (0)
