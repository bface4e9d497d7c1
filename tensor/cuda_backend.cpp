// The CUDA device backend: memory from CUDA's stream-ordered pool allocator, copies through
// the runtime. Registered at load time; without a GPU (or driver) it reports 0 devices and the
// CPU paths work as usual.
#include <cuda_runtime.h>

#include "tensor/cuda_check.h"
#include "tensor/storage.h"

namespace lumen {
namespace {

struct CudaBackend final : DeviceBackend {
  void* allocate(size_t nbytes, int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, nbytes, 0);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      detail::throw_error("cuda:", index, ": out of memory allocating ", nbytes, " bytes (", free_b,
                          " bytes free of ", total_b, ")");
    }
    LUMEN_CUDA_CHECK(err);
    return p;
  }
  void deallocate(void* p, size_t, int index) override {
    cudaSetDevice(index);
    cudaFreeAsync(p, 0);  // no throwing from a deleter
  }
  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) override {
    cudaMemcpyKind kind = src_dev.is_cpu()   ? cudaMemcpyHostToDevice
                          : dst_dev.is_cpu() ? cudaMemcpyDeviceToHost
                                             : cudaMemcpyDeviceToDevice;
    LUMEN_CUDA_CHECK(cudaSetDevice(dst_dev.is_cuda() ? dst_dev.index : src_dev.index));
    LUMEN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kind, 0));
    LUMEN_CUDA_CHECK(cudaStreamSynchronize(0));
  }
  void memset(void* p, int byte, size_t n, int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    LUMEN_CUDA_CHECK(cudaMemsetAsync(p, byte, n, 0));
  }
  int device_count() override {
    // Without a driver this is cudaErrorInsufficientDriver (35), not cudaErrorNoDevice.
    static int count = [] {
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
      }
      return n;
    }();
    return count;
  }
};

CudaBackend backend;
const bool registered = (register_device_backend(Device::CUDA, &backend), true);

}  // namespace
}  // namespace lumen
