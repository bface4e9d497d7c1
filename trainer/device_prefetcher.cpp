#include "trainer/device_prefetcher.h"

#include <utility>

namespace lumen {

DevicePrefetcher::DevicePrefetcher(DataLoader& loader, Device device, int64_t limit,
                                   std::optional<bool> lookahead)
    : loader_(loader),
      device_(device),
      limit_(limit),
      lookahead_(lookahead.value_or(device.is_cuda())) {}

DevicePrefetcher::~DevicePrefetcher() {
  if (!ahead_ || !ahead_->batch) return;
  try {
    join_prefetches(device_);
  } catch (...) {  // a destructor does not throw; the device error shows at the next call
  }
}

DevicePrefetcher::Ahead DevicePrefetcher::fetch() {
  Ahead a;
  if (taken_ >= limit_) return a;
  Batch moved;  // outside the try: on an error it must outlive the join below
  try {
    std::optional<Batch> b = loader_.next();
    if (!b) return a;
    ++taken_;
    a.host = std::move(*b);
    for (Tensor& t : a.host) {
      if (!t.defined() || t.device() == device_) {
        moved.push_back(t);
        continue;
      }
      // From pageable memory CUDA waits for the copy stream (which waits for the compute
      // stream) before it stages the copy, so the host would stall until the step in flight
      // ends; a pinned copy (a host memcpy into a cached block) keeps the copy asynchronous.
      if (device_.is_cuda() && t.device().is_cpu() && !t.is_pinned()) t = t.pin_memory();
      moved.push_back(prefetch_to(t, device_));
    }
    a.batch = std::move(moved);
  } catch (...) {
    if (a.host.empty()) ++taken_;  // the loader counts a failed batch as consumed
    a.error = std::current_exception();
    if (!moved.empty()) {  // the copies already started finish before their blocks are freed
      try {
        join_prefetches(device_);
      } catch (...) {  // the copy error is a.error's consequence; that one is reported
      }
    }
  }
  return a;
}

std::optional<Batch> DevicePrefetcher::next() {
  Ahead cur = ahead_ ? std::move(*ahead_) : fetch();
  ahead_.reset();
  if (!cur.batch && !cur.error) {  // the end, for this call and every later one
    ahead_ = std::move(cur);
    return std::nullopt;
  }
  // This batch's copies are ordered before every kernel queued from now on; its host tensors
  // may go (a pinned block is reused only after the compute stream passes this point).
  join_prefetches(device_);
  cur.host.clear();
  // Start the following batch now, so its copy runs under this batch's kernels.
  if (lookahead_) ahead_ = fetch();
  if (cur.error) std::rethrow_exception(cur.error);
  return std::move(cur.batch);
}

}  // namespace lumen
