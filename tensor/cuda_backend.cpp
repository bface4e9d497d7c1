// The CUDA device backend: memory from CUDA's stream-ordered pool allocator, copies through
// the runtime. Registered at load time; without a GPU (or driver) it reports 0 devices and the
// CPU paths work as usual.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "tensor/cuda_check.h"
#include "tensor/storage.h"

namespace lumen {
namespace {

// The default pool gives freed memory back to the driver at every synchronisation unless its
// release threshold says to keep it; a training loop frees and reallocates the same sizes every
// step, so the pool keeps everything (as PyTorch's caching allocator does).
void keep_pool_memory(int index) {
  static std::once_flag once[64];
  std::call_once(once[index % 64], [index] {
    cudaMemPool_t pool;
    LUMEN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
    uint64_t keep = UINT64_MAX;
    LUMEN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  });
}

struct CudaBackend final : DeviceBackend {
  void* allocate(size_t nbytes, int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    keep_pool_memory(index);
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
    // Only the host must wait: a copy to the device is ordered before every later kernel on
    // the stream, and a pageable host source has been staged by the time cudaMemcpyAsync
    // returns (Lumen's host memory is pageable), so it may be freed at once. Not waiting lets
    // the host queue the next kernels while the device works.
    if (dst_dev.is_cpu()) LUMEN_CUDA_CHECK(cudaStreamSynchronize(0));
  }
  void memset(void* p, int byte, size_t n, int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    LUMEN_CUDA_CHECK(cudaMemsetAsync(p, byte, n, 0));
  }
  // What the pool holds beyond live allocations: its reserved memory minus what is in use.
  size_t cached_bytes(int index) override {
    cudaMemPool_t pool;
    uint64_t reserved = 0, used = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, index) != cudaSuccess ||
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) !=
            cudaSuccess ||
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return reserved > used ? static_cast<size_t>(reserved - used) : 0;
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
