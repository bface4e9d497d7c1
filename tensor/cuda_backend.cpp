// The CUDA device backend: memory from CUDA's stream-ordered pool allocator, copies through
// the runtime. Registered at load time; without a GPU (or driver) it reports 0 devices and the
// CPU paths work as usual.
#include <cuda_runtime.h>

#include <atomic>
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

// A page-locked block's release: an event recorded on the compute stream of the training
// device (last_device_) when it was freed, that device's (events belong to one), or none (free
// at once).
struct PinnedRelease {
  cudaEvent_t event = nullptr;
  int device = -1;
};

struct CudaBackend final : DeviceBackend {
  std::mutex pinned_mutex_;
  std::map<size_t, std::vector<std::pair<void*, PinnedRelease>>> free_pinned_;
  std::map<void*, PinnedRelease> pinned_in_use_;
  // The device memory was last allocated on (the one a process trains on).
  std::atomic<int> last_device_{0};

  void* allocate(size_t nbytes, int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    last_device_.store(index, std::memory_order_relaxed);
    keep_pool_memory(index);
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, nbytes, 0);
    bool too_big = false;  // beyond the device's whole memory: out of memory, whatever the code
    if (err != cudaSuccess && err != cudaErrorMemoryAllocation) {
      size_t free_b = 0, total_b = 0;
      too_big = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && nbytes > total_b;
      if (too_big) {
        cudaGetLastError();
        err = cudaErrorMemoryAllocation;
      }
    }
    if (err == cudaErrorMemoryAllocation && !too_big) {
      // The pool keeps freed blocks; none may fit this size. Give them back and retry once.
      cudaGetLastError();
      cudaMemPool_t pool;
      if (cudaStreamSynchronize(0) == cudaSuccess &&
          cudaDeviceGetDefaultMemPool(&pool, index) == cudaSuccess &&
          cudaMemPoolTrimTo(pool, 0) == cudaSuccess)
        err = cudaMallocAsync(&p, nbytes, 0);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemoryError(detail::concat("cuda:", index, ": out of memory allocating ", nbytes,
                                            " bytes (", free_b, " bytes free of ", total_b,
                                            ", after returning the pool's cached blocks)"));
    }
    LUMEN_CUDA_CHECK(err);
    return p;
  }
  void deallocate(void* p, size_t, int index) override {
    // No throwing from a deleter; a failure must not linger as the thread's last error either
    // (a later launch check would report it as its own).
    if (cudaSetDevice(index) != cudaSuccess || cudaFreeAsync(p, 0) != cudaSuccess)
      cudaGetLastError();
  }
  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) override {
    cudaMemcpyKind kind = src_dev.is_cpu()   ? cudaMemcpyHostToDevice
                          : dst_dev.is_cpu() ? cudaMemcpyDeviceToHost
                                             : cudaMemcpyDeviceToDevice;
    // Between two GPUs each device has its own compute stream: the source's kernels must have
    // written src before the copy reads it, and src may be freed on the source's stream once
    // this returns. Both waits are on the host (a rare path: one process, several GPUs).
    const bool across = src_dev.is_cuda() && dst_dev.is_cuda() && src_dev.index != dst_dev.index;
    if (across) {
      LUMEN_CUDA_CHECK(cudaSetDevice(src_dev.index));
      LUMEN_CUDA_CHECK(cudaStreamSynchronize(0));
    }
    LUMEN_CUDA_CHECK(cudaSetDevice(dst_dev.is_cuda() ? dst_dev.index : src_dev.index));
    // Pool memory (cudaMallocAsync) is accessible from its own device only, unless
    // cudaMemPoolSetAccess grants more: between GPUs only the peer copy works (as in PyTorch's
    // cudaMallocAsync backend).
    if (across)
      LUMEN_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, n, 0));
    else
      LUMEN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kind, 0));
    // Only the host must wait: a copy to the device is ordered before every later kernel on
    // the stream, and a pageable host source has been staged by the time cudaMemcpyAsync
    // returns (Lumen's host memory is pageable), so it may be freed at once. Not waiting lets
    // the host queue the next kernels while the device works.
    if (dst_dev.is_cpu() || across) LUMEN_CUDA_CHECK(cudaStreamSynchronize(0));
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
  // Loader threads pin and free blocks with CUDA's default device current: both functions make
  // the device in use current first, so a process that trains on cuda:1 opens no context on
  // cuda:0 and records its events where its copies run.
  void* allocate_pinned(size_t nbytes) override {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    LUMEN_CUDA_CHECK(cudaSetDevice(last_device_.load(std::memory_order_relaxed)));
    auto& blocks = free_pinned_[nbytes];
    for (auto it = blocks.begin(); it != blocks.end(); ++it) {
      if (it->second.event && !cuda_event_done(it->second.event)) continue;
      void* p = it->first;
      pinned_in_use_[p] = it->second;
      blocks.erase(it);
      return p;
    }
    void* p = nullptr;  // portable: pinned for every device's copies
    cudaError_t err = cudaHostAlloc(&p, nbytes, cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw OutOfMemoryError(detail::concat(
          "pin_memory: out of page-locked host memory allocating ", nbytes, " bytes"));
    }
    LUMEN_CUDA_CHECK(err);
    pinned_in_use_[p] = PinnedRelease{};
    return p;
  }
  void deallocate_pinned(void* p, size_t nbytes) override {
    std::lock_guard<std::mutex> lock(pinned_mutex_);
    PinnedRelease r = pinned_in_use_.at(p);
    pinned_in_use_.erase(p);
    const int device = last_device_.load(std::memory_order_relaxed);
    cudaError_t err = cudaSetDevice(device);
    if (err == cudaSuccess && r.event && r.device != device) {
      cudaEventDestroy(r.event);
      r.event = nullptr;
    }
    if (err == cudaSuccess && !r.event)
      err = cudaEventCreateWithFlags(&r.event, cudaEventDisableTiming);
    if (err == cudaSuccess) {
      r.device = device;
      err = cudaEventRecord(r.event, 0);
    }
    if (err != cudaSuccess) {  // no throwing from a deleter: wait here instead, then it is free
      cudaGetLastError();
      cudaDeviceSynchronize();
      cudaGetLastError();
      if (r.event) cudaEventDestroy(r.event);
      r = PinnedRelease{};
    }
    free_pinned_[nbytes].emplace_back(p, r);
  }
  void synchronize(int index) override {
    LUMEN_CUDA_CHECK(cudaSetDevice(index));
    LUMEN_CUDA_CHECK(cudaDeviceSynchronize());
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
