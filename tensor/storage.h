#pragma once
// Storage: a refcounted block of bytes on one device. Tensors are views into storages, so
// several tensors (a tensor and its transposes, slices, reshapes) can share one.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace lumen {

// What a device type provides to the tensor layer. The CPU backend is built in; the CUDA one
// registers itself when the library is built with CUDA (tensor/cuda_backend.cpp).
struct DeviceBackend {
  virtual ~DeviceBackend() = default;
  virtual void* allocate(size_t nbytes, int index) = 0;
  virtual void deallocate(void* p, size_t nbytes, int index) = 0;  // nbytes as allocated
  // Copies nbytes between two devices, at least one of them of this backend's type. A host
  // destination is readable at return; a device destination is readable by every later
  // operation on that device (its stream orders them after the copy). The source may be freed
  // at return.
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) = 0;
  // A host-to-device copy on the device's copy stream, so it runs while the kernels already
  // queued on the compute stream do. dst (just allocated) is written only after the compute
  // work queued before this call, which may still use its memory's previous owner. Kernels may
  // read dst only after join_copies; the source must live until then. Default: copy().
  virtual void copy_ahead(void* dst, int index, const void* src, size_t nbytes) {
    copy(dst, Device{Device::CUDA, index}, src, Device::cpu(), nbytes);
  }
  // Orders all later work on the compute stream of `index` after the copy_ahead calls so far.
  virtual void join_copies(int index) { (void)index; }
  // Returns once the work queued on device `index` so far is done.
  virtual void synchronize(int index) { (void)index; }
  virtual void memset(void* p, int byte, size_t nbytes, int index) = 0;
  virtual int device_count() = 0;
  // Bytes the backend holds for device `index` beyond those allocated to live storages (freed
  // blocks it keeps for reuse).
  virtual size_t cached_bytes(int index) = 0;
  // Page-locked host memory, which this backend's devices copy from and to asynchronously
  // (CUDA: cudaHostAlloc); nullptr from a backend that has none. A freed block is reused only
  // once the device work queued before its release is done (a copy may still be reading it).
  virtual void* allocate_pinned(size_t nbytes) {
    (void)nbytes;
    return nullptr;
  }
  virtual void deallocate_pinned(void* p, size_t nbytes) {
    (void)p;
    (void)nbytes;
  }
};

// Memory of one device, as torch.cuda.memory_allocated / max_memory_allocated /
// memory_reserved give it: bytes in live storages, the most there have been since the start or
// the last reset_peak_memory_stats, and those plus what the allocator keeps cached.
struct MemoryStats {
  int64_t allocated = 0, peak_allocated = 0, reserved = 0;
};
MemoryStats memory_stats(Device device);
// Waits for the work queued on the device so far (torch.cuda.synchronize); nothing on the CPU,
// whose ops are done when they return.
void synchronize(Device device);
void reset_peak_memory_stats(Device device);

// Tests turn this on so every new allocation is filled with 0xFF bytes (NaN for floats, -1 for
// integers): a kernel that leaves an output element unwritten then fails its comparison.
void set_poison_allocations(bool on);

void register_device_backend(Device::Type type, DeviceBackend* backend);
// The backend for `type`; throws lumen::Error if none is registered or `index` is out of range.
DeviceBackend& device_backend(Device device);
int device_count(Device::Type type);  // 0 when the backend is absent or has no device
inline bool cuda_is_available() { return device_count(Device::CUDA) > 0; }

class Storage {
 public:
  Storage() = default;
  Storage(size_t nbytes, Device device);
  // Host memory page-locked by the CUDA backend, for asynchronous copies to a GPU; throws when
  // there is no GPU.
  static Storage pinned(size_t nbytes);

  void* data() const { return data_.get(); }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool defined() const { return data_ != nullptr || nbytes_ == 0; }
  bool same(const Storage& o) const { return data_ == o.data_; }
  bool is_pinned() const { return pinned_; }
  // No other Storage (a view's, a copy's) shares this memory.
  bool is_sole_owner() const { return data_.use_count() == 1; }
  // Counts the in-place writes to this storage made through Lumen's API (Tensor's fill_, copy_,
  // add_, mul_, the optimizers, the Trainer's parameter broadcast), shared by every copy
  // of the Storage, as PyTorch's version counter: a value derived from the storage (autocast's
  // cached 16-bit weight copies) is current while the version is the one it was made at.
  uint64_t version() const { return version_ ? version_->load(std::memory_order_relaxed) : 0; }
  void bump_version() const {
    if (version_) version_->fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::shared_ptr<void> data_;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
  std::shared_ptr<std::atomic<uint64_t>> version_;  // null in an empty Storage()
};

}  // namespace lumen
