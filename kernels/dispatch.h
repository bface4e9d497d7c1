#pragma once
// The op registry: one OpKernel object per op, holding one function per device type.
// Backends fill their slot at load time with LUMEN_REGISTER_KERNEL in their own .cpp/.cu file,
// so an op's CPU and CUDA kernels never know about each other, and calling an op on a device
// with no kernel says so instead of crashing.
#include <array>
#include <type_traits>

#include "tensor/tensor.h"

namespace lumen::kernels {

template <class Sig>
class OpKernel;

template <class... Args>
class OpKernel<void(Args...)> {
 public:
  using Fn = void (*)(Args...);
  constexpr explicit OpKernel(const char* name) : name_(name) {}

  const char* name() const { return name_; }
  void set(Device::Type type, Fn fn) { table_[type] = fn; }
  bool has(Device::Type type) const { return table_[type] != nullptr; }
  // Runs the kernel of `device`'s type.
  void operator()(Device device, Args... args) const {
    Fn fn = table_[device.type];
    LUMEN_CHECK(fn, name_, ": no kernel for device ", device, " in this build");
    fn(args...);
  }

 private:
  const char* name_;
  std::array<Fn, Device::kNumTypes> table_{};
};

// Calls f.template operator()<W>() with W the element type of the f32 side of an op whose
// 16-bit input meets f32 outputs (autocast's fused f32 ops: cross entropy's loss, layer norm's
// output and parameters): float where T is 16-bit and `dtype` is f32, else T itself.
template <class T, class F>
void dispatch_widened(DType dtype, F&& f) {
  if constexpr (is_16bit_float_v<T>) {
    if (dtype == DType::f32) return f.template operator()<float>();
  }
  f.template operator()<T>();
}

struct KernelRegistrar {
  template <class Op, class Fn>
  KernelRegistrar(Op& op, Device::Type type, Fn fn) {
    op.set(type, fn);
  }
};

}  // namespace lumen::kernels

#define LUMEN_CONCAT_(a, b) a##b
#define LUMEN_CONCAT(a, b) LUMEN_CONCAT_(a, b)
// LUMEN_REGISTER_KERNEL(binary, CPU, binary_cpu) puts binary_cpu in kernels::binary's CPU slot.
#define LUMEN_REGISTER_KERNEL(op, type, fn)                                                     \
  [[maybe_unused]] static ::lumen::kernels::KernelRegistrar LUMEN_CONCAT(lumen_reg_, __LINE__)( \
      ::lumen::kernels::op, ::lumen::Device::type, fn)
