#include "trainer/metric_aggregator.h"

#include <algorithm>

#include "nn/functional/index.h"
#include "tensor/error.h"

namespace lumen {

std::string MetricMeta::forked_name(bool step_view) const {
  if (!forked()) return name;
  return name + (step_view ? "_step" : "_epoch");
}

MetricAggregator::Entry& MetricAggregator::entry_for(const MetricMeta& meta, int64_t batch_size) {
  LUMEN_CHECK(
      meta.reduce == "mean" || meta.reduce == "sum" || meta.reduce == "max" || meta.reduce == "min",
      "log('", meta.name, "'): reduce must be \"mean\", \"sum\", \"max\" or \"min\", got \"",
      meta.reduce, "\"");
  LUMEN_CHECK(batch_size > 0, "log('", meta.name, "'): batch_size must be positive, got ",
              batch_size);
  std::string key = meta.fx + "." + meta.name;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    it = entries_.emplace(key, Entry{.meta = meta}).first;
  } else {
    LUMEN_CHECK(it->second.meta == meta, "You called log('", meta.name, "', ...) twice in ",
                meta.fx, " with different options (on_step, on_epoch, prog_bar, logger, reduce)");
  }
  return it->second;
}

void MetricAggregator::update(Entry& e, double value, int64_t batch_size) {
  const std::string& reduce = e.meta.reduce;
  e.last = value;
  if (e.updates == 0) {
    e.accumulated = reduce == "mean" ? value * static_cast<double>(batch_size) : value;
  } else if (reduce == "mean") {
    e.accumulated += value * static_cast<double>(batch_size);
  } else if (reduce == "sum") {
    e.accumulated += value;
  } else if (reduce == "max") {
    e.accumulated = std::max(e.accumulated, value);
  } else {
    e.accumulated = std::min(e.accumulated, value);
  }
  e.weight += static_cast<double>(batch_size);
  ++e.updates;
}

void MetricAggregator::log(const MetricMeta& meta, double value, int64_t batch_size) {
  Entry& e = entry_for(meta, batch_size);
  resolve();  // earlier tensor values of this key come first
  update(e, value, batch_size);
}

void MetricAggregator::log(const MetricMeta& meta, const Tensor& value, int64_t batch_size) {
  entry_for(meta, batch_size);
  LUMEN_CHECK(value.defined() && value.numel() == 1, "log('", meta.name,
              "'): expected a one-element tensor");
  // A copy, so a later in-place change of the logged tensor does not reach the metric.
  Tensor v = value.detach().reshape({});
  v = v.dtype() == DType::f64 ? v.clone() : v.to(DType::f64);
  pending_.push_back({meta.fx + "." + meta.name, std::move(v), batch_size});
}

void MetricAggregator::resolve() const {
  if (pending_.empty()) return;
  std::vector<Tensor> values_on_device;
  for (const Pending& p : pending_) values_on_device.push_back(p.value);
  const std::vector<double> values = scalar_values(values_on_device);
  for (size_t i = 0; i < pending_.size(); ++i)
    update(entries_.at(pending_[i].key), values[i], pending_[i].batch_size);
  pending_.clear();
}

bool MetricAggregator::logs_steps() const {
  for (const auto& [key, e] : entries_)
    if (e.meta.on_step && e.meta.logger) return true;
  return false;
}

double MetricAggregator::epoch_value(const Entry& e) {
  return e.meta.reduce == "mean" ? e.accumulated / e.weight : e.accumulated;
}

MetricViews MetricAggregator::metrics(bool on_step) const {
  resolve();
  MetricViews views;
  for (const auto& [key, e] : entries_) {
    (void)key;
    if (e.updates == 0) continue;
    if (on_step ? !e.meta.on_step : !e.meta.on_epoch) continue;
    double value = on_step ? e.last : epoch_value(e);
    std::string forked = e.meta.forked_name(on_step);
    if (e.meta.logger) views.log[forked] = value;
    // Lightning: callback metrics never take step values of evaluation loops, and get both
    // the plain and the forked name.
    if (training_ || !on_step) {
      views.callback[e.meta.name] = value;
      views.callback[forked] = value;
    }
    if (e.meta.prog_bar) views.pbar[forked] = value;
  }
  return views;
}

State MetricAggregator::state_dict() const {
  resolve();
  State state;
  int64_t i = 0;
  for (const auto& [key, e] : entries_) {
    (void)key;
    State s;
    s.attrs["fx"] = e.meta.fx;
    s.attrs["name"] = e.meta.name;
    s.attrs["on_step"] = int64_t{e.meta.on_step};
    s.attrs["on_epoch"] = int64_t{e.meta.on_epoch};
    s.attrs["prog_bar"] = int64_t{e.meta.prog_bar};
    s.attrs["logger"] = int64_t{e.meta.logger};
    s.attrs["reduce"] = e.meta.reduce;
    s.attrs["last"] = e.last;
    s.attrs["accumulated"] = e.accumulated;
    s.attrs["weight"] = e.weight;
    s.attrs["updates"] = e.updates;
    state.groups[std::to_string(i++)] = std::move(s);
  }
  return state;
}

void MetricAggregator::load_state_dict(const State& state) {
  entries_.clear();
  pending_.clear();
  for (const auto& [index, s] : state.groups) {
    (void)index;
    Entry e;
    e.meta.fx = s.get_string("fx");
    e.meta.name = s.get_string("name");
    e.meta.on_step = s.get_int("on_step") != 0;
    e.meta.on_epoch = s.get_int("on_epoch") != 0;
    e.meta.prog_bar = s.get_int("prog_bar") != 0;
    e.meta.logger = s.get_int("logger") != 0;
    e.meta.reduce = s.get_string("reduce");
    e.last = s.get_double("last");
    e.accumulated = s.get_double("accumulated");
    e.weight = s.get_double("weight");
    e.updates = s.get_int("updates");
    entries_[e.meta.fx + "." + e.meta.name] = e;
  }
}

}  // namespace lumen
