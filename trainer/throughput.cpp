#include "trainer/throughput.h"

#include "tensor/error.h"

namespace lumen {
namespace {

// Lightning's _MonotonicWindow: a bounded window of increasing values.
void push_increasing(std::deque<double>& window, double value, int64_t max_size, const char* what) {
  LUMEN_CHECK(window.empty() || value > window.back(), "Throughput.update: ", what,
              " must increase from one update to the next, got ", value, " after ",
              window.empty() ? 0.0 : window.back());
  window.push_back(value);
  if (static_cast<int64_t>(window.size()) > max_size) window.pop_front();
}

bool full(const std::deque<double>& window, int64_t size) {
  return static_cast<int64_t>(window.size()) == size;
}

}  // namespace

Throughput::Throughput(ThroughputOptions options) : options_(std::move(options)) {
  LUMEN_CHECK(options_.window_size >= 2, "Throughput: window_size must be >= 2, got ",
              options_.window_size);
  LUMEN_CHECK(options_.world_size >= 1, "Throughput: world_size must be >= 1, got ",
              options_.world_size);
  LUMEN_CHECK(!options_.available_flops || *options_.available_flops > 0,
              "Throughput: available_flops must be positive or unset");
}

void Throughput::reset() {
  time_.clear();
  batches_.clear();
  samples_.clear();
  lengths_.clear();
  flops_.clear();
}

void Throughput::update(double time, int64_t batches, int64_t samples,
                        std::optional<int64_t> lengths, std::optional<double> flops) {
  LUMEN_CHECK(samples >= batches, "Throughput.update: expected samples (", samples,
              ") to be greater or equal than batches (", batches, ")");
  const int64_t n = options_.window_size;
  push_increasing(time_, time, n, "time");
  push_increasing(batches_, static_cast<double>(batches), n, "batches");
  push_increasing(samples_, static_cast<double>(samples), n, "samples");
  if (lengths) {
    LUMEN_CHECK(*lengths >= samples, "Throughput.update: expected lengths (", *lengths,
                ") to be greater or equal than samples (", samples, ")");
    push_increasing(lengths_, static_cast<double>(*lengths), n, "lengths");
  }
  if (flops) {
    // All ranks' FLOPs, as Lightning (every rank runs the same model on as large a batch).
    flops_.push_back(*flops * static_cast<double>(options_.world_size));
    if (static_cast<int64_t>(flops_.size()) > n) flops_.pop_front();
  }
}

std::map<std::string, double> Throughput::compute() const {
  std::map<std::string, double> m;
  if (time_.empty()) return m;
  const std::string device = "device" + options_.separator;
  const double world = static_cast<double>(options_.world_size);
  const bool global = options_.world_size > 1;
  m["time"] = time_.back();
  m["batches"] = batches_.back();
  m["samples"] = samples_.back();
  if (!lengths_.empty()) m["lengths"] = lengths_.back();
  const int64_t n = options_.window_size;
  const double elapsed = time_.back() - time_.front();
  if (full(time_, n)) {
    const double batches_per_sec = (batches_.back() - batches_.front()) / elapsed;
    const double samples_per_sec = (samples_.back() - samples_.front()) / elapsed;
    m[device + "batches_per_sec"] = batches_per_sec;
    m[device + "samples_per_sec"] = samples_per_sec;
    if (global) {
      m["batches_per_sec"] = batches_per_sec * world;
      m["samples_per_sec"] = samples_per_sec * world;
    }
    if (full(lengths_, n)) {
      const double items_per_sec = (lengths_.back() - lengths_.front()) / elapsed;
      m[device + "items_per_sec"] = items_per_sec;
      if (global) m["items_per_sec"] = items_per_sec * world;
    }
  }
  if (full(flops_, n)) {
    double window_flops = 0;
    for (size_t i = 1; i < flops_.size(); ++i) window_flops += flops_[i];
    const double flops_per_sec = window_flops / elapsed;
    if (global) m["flops_per_sec"] = flops_per_sec;
    m[device + "flops_per_sec"] = flops_per_sec / world;
    if (options_.available_flops)
      m[device + "mfu"] = flops_per_sec / world / *options_.available_flops;
  }
  return m;
}

}  // namespace lumen
