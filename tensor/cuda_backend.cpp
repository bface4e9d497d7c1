// The CUDA device backend: memory from CUDA's stream-ordered pool allocator, copies through
// the runtime. Registered at load time; without a GPU (or driver) it reports 0 devices and the
// CPU paths work as usual.
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

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

// The copy stream of each device, created on first use. Non-blocking: the legacy default
// stream (the compute stream) does not implicitly wait for it or it for the compute stream;
// the events below order them where needed.
cudaStream_t copy_stream(int index) {
  static std::mutex mutex;
  static cudaStream_t streams[64] = {};
  std::lock_guard<std::mutex> lock(mutex);
  if (!streams[index % 64])
    LUMEN_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[index % 64], cudaStreamNonBlocking));
  return streams[index % 64];
}

// Makes `waiter` wait for the work queued on `signaller` so far (an event recorded there; it is
// released by CUDA once it has completed).
void stream_wait(cudaStream_t waiter, cudaStream_t signaller) {
  cudaEvent_t ev;
  LUMEN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t err = cudaEventRecord(ev, signaller);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(waiter, ev, 0);
  cudaEventDestroy(ev);
  LUMEN_CUDA_CHECK(err);
}

struct CudaBackend final : DeviceBackend {
  std::mutex pinned_mutex_;
  std::map<size_t, std::vector<std::pair<void*, cudaEvent_t>>> free_pinned_;
  std::map<void*, cudaEvent_t> pinned_events_;  // blocks in use

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
  // dst came from the pool in compute-stream order: the copy stream first waits for the compute
  // work queued so far (a kernel of the previous step may still read the block's old contents).
  // From pinned memory the copy is fully asynchronous; from pageable memory CUDA stages the
  // source before returning (after that wait).
  void copy_ahead(void* dst, int index, const void* src, size_t n) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    cudaStream_t s = copy_stream(index);
    stream_wait(s, 0);
    LUMEN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
  }
  void join_copies(int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    stream_wait(0, copy_stream(index));
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
  // Page-locked blocks are cached by size: cudaFreeHost would wait for the whole device, and a
  // loader pins a batch of the same size every step. A freed block carries an event recorded
  // on the stream at its release; it is handed out again only once that event has completed,
  // so an asynchronous copy still reading it is never overwritten.
  void* allocate_pinned(size_t nbytes) override {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    auto& blocks = free_pinned_[nbytes];
    for (auto it = blocks.begin(); it != blocks.end(); ++it) {
      cudaError_t done = cudaEventQuery(it->second);
      if (done == cudaErrorNotReady) continue;
      LUMEN_CUDA_CHECK(done);
      void* p = it->first;
      pinned_events_[p] = it->second;
      blocks.erase(it);
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaHostAlloc(&p, nbytes, cudaHostAllocDefault);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      detail::throw_error("pin_memory: out of page-locked host memory allocating ", nbytes,
                          " bytes");
    }
    LUMEN_CUDA_CHECK(err);
    cudaEvent_t ev;
    LUMEN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    pinned_events_[p] = ev;
    return p;
  }
  void deallocate_pinned(void* p, size_t nbytes) override {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    cudaEvent_t ev = pinned_events_.at(p);
    pinned_events_.erase(p);
    cudaEventRecord(ev, 0);  // no throwing from a deleter; a failed record leaves ev complete
    free_pinned_[nbytes].emplace_back(p, ev);
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
