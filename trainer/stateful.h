#pragma once
// What Fabric::save writes and Fabric::load restores in place: named references to the pieces of
// a training run, as the dict given to Lightning's fabric.save(path, state).
//
//   int64_t epoch = 0;
//   fabric.save(path, {{"model", net}, {"optimizer", opt}, {"epoch", epoch}});
//   fabric.load(path, {{"model", net}, {"optimizer", opt}, {"epoch", epoch}});  // epoch updated
//
// Modules, optimizers, schedulers, Fabric loaders and State trees are groups of the file; plain
// values (integers, doubles, strings) are attributes. The referenced objects must outlive it.
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "nn/module.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"
#include "nn/state.h"

namespace lumen {

template <class M>
class FabricModule;
class FabricOptimizer;
class FabricDataLoader;

class Stateful {
 public:
  // Implicit on purpose, so {{"model", net}, ...} reads as a dict.
  Stateful(nn::Module& module) : target_(&module) {}                // NOLINT
  Stateful(optim::Optimizer& optimizer) : target_(&optimizer) {}    // NOLINT
  Stateful(optim::LRScheduler& scheduler) : target_(&scheduler) {}  // NOLINT
  Stateful(FabricDataLoader& loader) : target_(&loader) {}          // NOLINT
  Stateful(State& state) : target_(&state) {}                       // NOLINT
  Stateful(int64_t& value) : target_(&value) {}                     // NOLINT
  Stateful(int& value) : target_(&value) {}                         // NOLINT
  Stateful(double& value) : target_(&value) {}                      // NOLINT
  Stateful(std::string& value) : target_(&value) {}                 // NOLINT
  Stateful(const FabricOptimizer& optimizer);                       // NOLINT
  template <class M>
  Stateful(const FabricModule<M>& module)  // NOLINT
      : target_(static_cast<nn::Module*>(&module.module())) {}

  bool is_value() const;     // an attribute of the file, not a group
  std::string kind() const;  // "module", "optimizer", ..., for messages

  // Writes the object as root.groups[name] or root.attrs[name].
  void save(State& root, const std::string& name) const;
  // What would stop load() from taking root's entry `name`, one line each (empty: nothing):
  // a missing entry, a group where an attribute is expected or the reverse, an attribute of
  // another type, a module's missing, unexpected (when strict), reshaped or retyped tensors, or
  // a loader's missing or negative position. Optimizers and schedulers check their own state
  // when they load it.
  std::vector<std::string> problems(const State& root, const std::string& name, bool strict) const;
  void load(const State& root, const std::string& name, bool strict) const;
  // Whether load() checks the state itself and may throw after problems() found none:
  // optimizers and schedulers. Modules, loaders, State trees and plain values cannot.
  bool can_fail_to_load() const;
  // For those: a copy of the object's state, to give back with restore() when a later entry
  // fails to load.
  State snapshot() const;
  void restore(const State& snapshot) const;

 private:
  std::variant<nn::Module*, optim::Optimizer*, optim::LRScheduler*, FabricDataLoader*, State*,
               int64_t*, int*, double*, std::string*>
      target_;
};

using FabricState = std::map<std::string, Stateful>;

}  // namespace lumen
