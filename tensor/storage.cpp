#include "tensor/storage.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/cpu_allocator.h"
#include "tensor/error.h"

namespace lumen {
namespace {

struct CpuBackend final : DeviceBackend {
  // 64-byte alignment keeps vector loads on cache lines.
  void* allocate(size_t nbytes, int) override { return cpu_allocate(nbytes); }
  void deallocate(void* p, size_t nbytes, int) override { cpu_deallocate(p, nbytes); }
  void copy(void* dst, Device, const void* src, Device, size_t n) override {
    std::memcpy(dst, src, n);
  }
  void memset(void* p, int byte, size_t n, int) override { std::memset(p, byte, n); }
  int device_count() override { return 1; }
  size_t cached_bytes(int) override { return cpu_cached_bytes(); }
};

// Per device: bytes in live storages and their high-water mark.
struct Usage {
  std::atomic<int64_t> allocated{0}, peak{0};
  void add(int64_t n) {
    int64_t now = allocated.fetch_add(n) + n, p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
  }
};
constexpr int kMaxDevices = 64;
Usage& usage(Device d) {
  static std::array<std::array<Usage, kMaxDevices>, Device::kNumTypes> table;
  return table[d.type][static_cast<size_t>(d.index) % kMaxDevices];
}

bool poison_allocations = false;

std::array<DeviceBackend*, Device::kNumTypes>& backends() {
  static CpuBackend cpu;
  static std::array<DeviceBackend*, Device::kNumTypes> table{&cpu, nullptr};
  return table;
}

// Owns a block of `device`'s memory that `release` gives back, counted in its memory_stats.
template <class Release>
std::shared_ptr<void> owned(void* p, size_t nbytes, Device device, Release release) {
  Usage& u = usage(device);
  u.add(static_cast<int64_t>(nbytes));
  return std::shared_ptr<void>(p, [&u, nbytes, release](void* q) {
    release(q, nbytes);
    u.allocated.fetch_sub(static_cast<int64_t>(nbytes));
  });
}

}  // namespace

void register_device_backend(Device::Type type, DeviceBackend* backend) {
  backends()[type] = backend;
}

int device_count(Device::Type type) {
  DeviceBackend* b = backends()[type];
  return b ? b->device_count() : 0;
}

DeviceBackend& device_backend(Device device) {
  DeviceBackend* b = backends()[device.type];
  LUMEN_CHECK(b, "device ", device, ": this build of lumen has no backend for it",
              device.is_cuda() ? " (configure with CUDA to get one)" : "");
  int n = b->device_count();
  LUMEN_CHECK(device.index >= 0 && device.index < n, "device ", device, " is not available (", n,
              " device(s) of this type found)");
  return *b;
}

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), version_(std::make_shared<std::atomic<uint64_t>>(0)) {
  if (nbytes == 0) return;
  DeviceBackend& b = device_backend(device);
  int index = device.index;
  data_ = owned(b.allocate(nbytes, index), nbytes, device,
                [&b, index](void* p, size_t n) { b.deallocate(p, n, index); });
  if (poison_allocations) b.memset(data_.get(), 0xFF, nbytes, index);
}

void synchronize(Device device) { device_backend(device).synchronize(device.index); }

MemoryStats memory_stats(Device device) {
  DeviceBackend& b = device_backend(device);
  const Usage& u = usage(device);
  MemoryStats s;
  s.allocated = u.allocated.load();
  s.peak_allocated = u.peak.load();
  s.reserved = s.allocated + static_cast<int64_t>(b.cached_bytes(device.index));
  return s;
}

void reset_peak_memory_stats(Device device) {
  device_backend(device);  // checks the device
  Usage& u = usage(device);
  u.peak.store(u.allocated.load());
}

Storage Storage::pinned(size_t nbytes) {
  LUMEN_CHECK(cuda_is_available(),
              "pin_memory: page-locked memory is for copies to a GPU, and no CUDA device is "
              "available");
  DeviceBackend& cuda = device_backend(Device::cuda(0));
  Storage s;
  s.nbytes_ = nbytes;
  s.device_ = Device::cpu();
  s.pinned_ = true;
  s.version_ = std::make_shared<std::atomic<uint64_t>>(0);
  if (nbytes == 0) return s;
  void* p = cuda.allocate_pinned(nbytes);
  LUMEN_CHECK(p != nullptr, "pin_memory: the CUDA backend gave no page-locked memory for ", nbytes,
              " bytes");
  s.data_ =
      owned(p, nbytes, Device::cpu(), [&cuda](void* q, size_t n) { cuda.deallocate_pinned(q, n); });
  if (poison_allocations) std::memset(p, 0xFF, nbytes);
  return s;
}

void set_poison_allocations(bool on) { poison_allocations = on; }

}  // namespace lumen
