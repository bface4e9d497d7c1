#include "trainer/stateful.h"

#include "io/checkpoint.h"
#include "tensor/error.h"
#include "trainer/fabric.h"

namespace lumen {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

// A deep copy: an optimizer's state_dict holds its live tensors.
State cloned(const State& state) {
  State out;
  out.attrs = state.attrs;
  for (const auto& [name, t] : state.tensors) out.tensors[name] = t.clone();
  for (const auto& [name, g] : state.groups) out.groups[name] = cloned(g);
  return out;
}

const char* attr_type(const AttrValue& v) {
  return std::visit(
      Overloaded{[](int64_t) { return "an integer"; }, [](double) { return "a double"; },
                 [](const std::string&) { return "a string"; },
                 [](const auto&) { return "a list"; }},
      v);
}

}  // namespace

Stateful::Stateful(const FabricOptimizer& optimizer) : target_(&optimizer.optimizer()) {}

bool Stateful::is_value() const {
  return std::holds_alternative<int64_t*>(target_) || std::holds_alternative<int*>(target_) ||
         std::holds_alternative<double*>(target_) || std::holds_alternative<std::string*>(target_);
}

std::string Stateful::kind() const {
  return std::visit(
      Overloaded{
          [](nn::Module*) { return "a module"; }, [](optim::Optimizer*) { return "an optimizer"; },
          [](optim::LRScheduler*) { return "a scheduler"; },
          [](FabricDataLoader*) { return "a data loader"; }, [](State*) { return "a State"; },
          [](int64_t*) { return "an integer"; }, [](int*) { return "an integer"; },
          [](double*) { return "a double"; }, [](std::string*) { return "a string"; }},
      target_);
}

void Stateful::save(State& root, const std::string& name) const {
  std::visit(Overloaded{[&](nn::Module* m) { root.groups[name] = nn::to_state(m->state_dict()); },
                        [&](optim::Optimizer* o) { root.groups[name] = o->state_dict(); },
                        [&](optim::LRScheduler* s) { root.groups[name] = s->state_dict(); },
                        [&](FabricDataLoader* l) { root.groups[name] = l->state_dict(); },
                        [&](State* s) { root.groups[name] = *s; },
                        [&](int64_t* v) { root.attrs[name] = *v; },
                        [&](int* v) { root.attrs[name] = static_cast<int64_t>(*v); },
                        [&](double* v) { root.attrs[name] = *v; },
                        [&](std::string* v) { root.attrs[name] = *v; }},
             target_);
}

std::vector<std::string> Stateful::problems(const State& root, const std::string& name,
                                            bool strict) const {
  if (is_value()) {
    if (!root.has_attr(name)) {
      if (root.has_group(name)) return {"\"" + name + "\" is a group, not " + kind()};
      return {"missing \"" + name + "\""};
    }
    const AttrValue& v = root.attrs.at(name);
    bool ok = std::visit(
        Overloaded{[&](int64_t*) { return std::holds_alternative<int64_t>(v); },
                   [&](int*) {  // and the value must fit in an int
                     return std::holds_alternative<int64_t>(v) &&
                            std::get<int64_t>(v) == static_cast<int>(std::get<int64_t>(v));
                   },
                   [&](double*) {
                     return std::holds_alternative<double>(v) || std::holds_alternative<int64_t>(v);
                   },
                   [&](std::string*) { return std::holds_alternative<std::string>(v); },
                   [](auto*) { return false; }},
        target_);
    if (!ok) return {"\"" + name + "\" is " + attr_type(v) + " in the file, expected " + kind()};
    return {};
  }
  if (!root.has_group(name)) {
    if (root.has_attr(name)) return {"\"" + name + "\" is a value, not " + kind()};
    return {"missing \"" + name + "\""};
  }
  std::vector<std::string> out;
  if (std::holds_alternative<FabricDataLoader*>(target_)) {
    // What DataLoader::load_state_dict reads, checked here so that loading it cannot fail.
    const State& g = root.group(name);
    for (const char* key : {"seed", "epoch", "batches_consumed"})
      if (!g.has_attr(key) || !std::holds_alternative<int64_t>(g.attrs.at(key)))
        out.push_back("\"" + name + "\": no integer attribute " + key);
    if (out.empty() && (g.get_int("epoch") < -1 || g.get_int("batches_consumed") < 0))
      out.push_back("\"" + name + "\": epoch " + std::to_string(g.get_int("epoch")) +
                    " or batches_consumed " + std::to_string(g.get_int("batches_consumed")) +
                    " out of range");
  }
  if (auto* const* m = std::get_if<nn::Module*>(&target_)) {
    for (std::string& d : io::state_differences(nn::to_state((*m)->state_dict()), root.group(name),
                                                {.expected = "module", .got = "checkpoint"})) {
      bool presence = d.starts_with("missing ") || d.starts_with("unexpected ");
      if (strict || !presence) out.push_back("\"" + name + "\": " + d);
    }
  }
  return out;
}

void Stateful::load(const State& root, const std::string& name, bool strict) const {
  std::visit(Overloaded{[&](nn::Module* m) {
                          const State& g = root.group(name);
                          m->load_state_dict(nn::StateDict(g.tensors.begin(), g.tensors.end()),
                                             strict);
                        },
                        [&](optim::Optimizer* o) { o->load_state_dict(root.group(name)); },
                        [&](optim::LRScheduler* s) { s->load_state_dict(root.group(name)); },
                        [&](FabricDataLoader* l) { l->load_state_dict(root.group(name)); },
                        [&](State* s) { *s = root.group(name); },
                        [&](int64_t* v) { *v = root.get_int(name); },
                        [&](int* v) { *v = static_cast<int>(root.get_int(name)); },
                        [&](double* v) { *v = root.get_double(name); },
                        [&](std::string* v) { *v = root.get_string(name); }},
             target_);
}

bool Stateful::can_fail_to_load() const {
  return std::holds_alternative<optim::Optimizer*>(target_) ||
         std::holds_alternative<optim::LRScheduler*>(target_);
}

State Stateful::snapshot() const {
  return std::visit(Overloaded{[](optim::Optimizer* o) { return cloned(o->state_dict()); },
                               [](optim::LRScheduler* s) { return s->state_dict(); },
                               [](auto*) { return State{}; }},
                    target_);
}

void Stateful::restore(const State& snapshot) const {
  std::visit(Overloaded{[&](optim::Optimizer* o) { o->load_state_dict(snapshot); },
                        [&](optim::LRScheduler* s) { s->load_state_dict(snapshot); }, [](auto*) {}},
             target_);
}

}  // namespace lumen
