#pragma once
// The handle of a CUDA library (cuBLAS, cuDNN) for each device, created on first use on that
// device (create(device) makes it and binds it to the stream the kernels run on) and kept for
// the life of the process. One table per handle type and call site.
#include <array>
#include <mutex>

#include "tensor/cuda_check.h"

namespace lumen::cuda {

template <class Handle, class Create>
Handle per_device_handle(int device, const char* library, Create create) {
  static std::mutex mutex;
  static std::array<Handle, 64> handles{};
  LUMEN_CHECK(device >= 0 && device < 64, library, ": device index ", device, " out of range");
  std::lock_guard<std::mutex> lock(mutex);
  if (!handles[device]) {
    LUMEN_CUDA_CHECK(cudaSetDevice(device));
    handles[device] = create();
  }
  return handles[device];
}

}  // namespace lumen::cuda
