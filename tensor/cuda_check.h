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

namespace lumen {

// Whether the work recorded before `event` has finished. cudaEventQuery's "not ready" is also
// left as the thread's last error, which the next launch check (cudaGetLastError) would report
// as a failure: it is cleared here, as PyTorch's CUDAEvent::query does.
inline bool cuda_event_done(cudaEvent_t event) {
  const cudaError_t q = cudaEventQuery(event);
  if (q == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  LUMEN_CUDA_CHECK(q);
  return true;
}

}  // namespace lumen
