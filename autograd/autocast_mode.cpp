#include "autograd/autocast_mode.h"

namespace lumen {

namespace {
thread_local bool autocast_on = false;
thread_local DType autocast_type = DType::f16;
}  // namespace

bool AutocastMode::is_enabled() { return autocast_on; }
DType AutocastMode::dtype() { return autocast_type; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : prev_enabled_(autocast_on), prev_dtype_(autocast_type) {
  LUMEN_CHECK(is_16bit_float(dtype), "AutocastGuard: the autocast dtype must be f16 or bf16, got ",
              dtype);
  autocast_on = enabled;
  autocast_type = dtype;
}

AutocastGuard::~AutocastGuard() {
  autocast_on = prev_enabled_;
  autocast_type = prev_dtype_;
}

namespace autocast {

Tensor to_lower_precision(const Tensor& t) {
  if (!autocast_on || !t.defined() || t.dtype() != DType::f32) return t;
  return t.to(autocast_type);
}

Tensor to_f32(const Tensor& t) {
  if (!autocast_on || !t.defined() || !is_16bit_float(t.dtype())) return t;
  return t.to(DType::f32);
}

}  // namespace autocast
}  // namespace lumen
