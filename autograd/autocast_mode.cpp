#include "autograd/autocast_mode.h"

#include <memory>
#include <mutex>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/node.h"

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
namespace {

// Kept 16-bit copies of parameters, by parameter. `owner` tells a live parameter from a new
// tensor that reuses a dead one's address.
struct WeightCopy {
  std::weak_ptr<TensorImpl> owner;
  uint64_t version;
  Tensor low;
};

struct WeightCopies {
  std::mutex mutex;
  std::unordered_map<const TensorImpl*, WeightCopy> map;
  size_t prune_at = 64;

  // The entry of `param` if its owner is alive and it is current, else nullptr (lock held).
  WeightCopy* current(const Tensor& param) {
    auto it = map.find(param.impl());
    if (it == map.end()) return nullptr;
    WeightCopy& c = it->second;
    if (c.owner.lock() != param.impl_ptr() || c.version != param.version() ||
        c.low.shape() != param.shape() || c.low.device() != param.device())
      return nullptr;
    return &c;
  }
  // Forgets the copies of parameters that no longer exist (lock held).
  void prune() {
    if (map.size() < prune_at) return;
    std::erase_if(map, [](const auto& kv) { return kv.second.owner.expired(); });
    prune_at = 2 * map.size() + 64;
  }
};

WeightCopies& weight_copies() {
  static WeightCopies copies;
  return copies;
}

bool is_parameter(const Tensor& t) { return t.is_leaf() && t.requires_grad(); }

}  // namespace

Tensor to_lower_precision(const Tensor& t) {
  if (!autocast_on || !t.defined() || t.dtype() != DType::f32) return t;
  if (!is_parameter(t) || !t.is_contiguous()) return t.to(autocast_type);
  Tensor low;
  {
    WeightCopies& wc = weight_copies();
    std::lock_guard<std::mutex> lock(wc.mutex);
    WeightCopy* c = wc.current(t);
    if (c && c->low.dtype() == autocast_type) {
      low = c->low;
    } else {
      {
        NoGradGuard no_grad;
        low = t.detach().to(autocast_type);
      }
      wc.prune();
      wc.map[t.impl()] = {t.impl_ptr(), t.version(), low};
    }
  }
  // A fresh handle on the copy carries this use's graph node (the kept one never does).
  return autograd::record("to", low.detach(), {t}, [](const Tensor& g, const autograd::NeedsGrad&) {
    return std::vector<Tensor>{g.to(DType::f32)};
  });
}

Tensor current_weight_copy(const Tensor& param) {
  WeightCopies& wc = weight_copies();
  std::lock_guard<std::mutex> lock(wc.mutex);
  WeightCopy* c = wc.current(param);
  return c ? c->low : Tensor();
}

void weight_copy_updated(const Tensor& param) {
  WeightCopies& wc = weight_copies();
  std::lock_guard<std::mutex> lock(wc.mutex);
  auto it = wc.map.find(param.impl());
  if (it != wc.map.end() && it->second.owner.lock() == param.impl_ptr())
    it->second.version = param.version();
}

void clear_weight_copies() {
  WeightCopies& wc = weight_copies();
  std::lock_guard<std::mutex> lock(wc.mutex);
  wc.map.clear();
  wc.prune_at = 64;
}

bool reads_as_f32(const Tensor& t) {
  return autocast_on && t.defined() && is_16bit_float(t.dtype());
}

Tensor to_f32(const Tensor& t) { return reads_as_f32(t) ? t.to(DType::f32) : t; }

}  // namespace autocast
}  // namespace lumen
