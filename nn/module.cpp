#include "nn/module.h"

#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "tensor/error.h"

namespace lumen::nn {

void Module::check_new_name(const std::string& name) const {
  LUMEN_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: name '", name,
              "' must be non-empty and contain no '.'");
  auto taken = [&](const auto& slots) {
    for (const auto& s : slots)
      if (s.name == name) return true;
    return false;
  };
  LUMEN_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "Module: name '", name,
              "' is already registered in this ", type_name());
}

Tensor& Module::register_parameter(const std::string& name, Tensor& t, bool requires_grad) {
  check_new_name(name);
  LUMEN_CHECK(t.defined(), "Module::register_parameter: '", name, "' is an undefined tensor");
  if (requires_grad && is_floating(t.dtype()) && !t.requires_grad()) t.requires_grad_(true);
  params_.push_back({name, &t, true});
  return t;
}

Tensor& Module::register_buffer(const std::string& name, Tensor& t, bool persistent) {
  check_new_name(name);
  LUMEN_CHECK(t.defined(), "Module::register_buffer: '", name, "' is an undefined tensor");
  buffers_.push_back({name, &t, persistent});
  return t;
}

void Module::add_child(const std::string& name, Module* child, std::shared_ptr<Module> owned) {
  check_new_name(name);
  LUMEN_CHECK(child != nullptr && child != this, "Module::register_module: '", name,
              "' must be another, existing module");
  children_.push_back({name, child, std::move(owned)});
}

void Module::collect(const std::string& prefix, bool recurse, bool params, bool only_persistent,
                     NamedTensors& out) const {
  for (const auto& s : params ? params_ : buffers_)
    if (!only_persistent || s.persistent) out.emplace_back(prefix + s.name, *s.tensor);
  if (recurse)
    for (const auto& c : children_)
      c.module->collect(prefix + c.name + ".", true, params, only_persistent, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", recurse, true, false, out);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", recurse, false, false, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& c : children_) out.emplace_back(c.name, c.module);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& c : children_)
    for (auto& [name, m] : c.module->named_modules())
      out.emplace_back(name.empty() ? c.name : c.name + "." + name, m);
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

StateDict Module::state_dict() const {
  NamedTensors all;
  collect("", true, true, false, all);
  collect("", true, false, true, all);
  StateDict out;
  for (auto& [name, t] : all) out.emplace(name, t.detach());
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NamedTensors mine;
  collect("", true, true, false, mine);
  collect("", true, false, true, mine);
  load_named(mine, state, strict);
}

void load_named(const NamedTensors& mine, const StateDict& state, bool strict) {
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> known;
  for (const auto& [name, t] : mine) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
    } else if (!it->second.defined() || it->second.shape() != t.shape()) {
      mismatched.push_back(name + ": checkpoint " +
                           (it->second.defined() ? shape_str(it->second.shape()) : "undefined") +
                           ", module " + shape_str(t.shape()));
    }
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  LUMEN_CHECK(mismatched.empty(), "load_state_dict: shape mismatch for ", join(mismatched));
  LUMEN_CHECK(!strict || (missing.empty() && unexpected.empty()),
              "load_state_dict (strict): missing keys [", join(missing), "], unexpected keys [",
              join(unexpected), "]");
  NoGradGuard no_grad;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it != state.end()) t.copy_(it->second.to(t.device()));
  }
}

void Module::train(bool mode) {
  training_ = mode;
  for (auto& c : children_) c.module->train(mode);
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.set_grad(Tensor());
}

void Module::convert(const std::function<Tensor(const Tensor&)>& fn, bool keep_integer) {
  NoGradGuard no_grad;
  auto apply = [&](Tensor& t, bool param) {
    if (keep_integer && !is_floating(t.dtype())) return;
    bool rg = t.requires_grad();
    t = fn(t).detach();
    if (param && rg) t.requires_grad_(true);
  };
  for (auto& s : params_) apply(*s.tensor, true);
  for (auto& s : buffers_) apply(*s.tensor, false);
  for (auto& c : children_) c.module->convert(fn, keep_integer);
}

void Module::to(DType dtype) {
  convert([dtype](const Tensor& t) { return t.to(dtype); }, true);
}

void Module::to(Device device) {
  convert([device](const Tensor& t) { return t.to(device); }, false);
}

std::string Module::repr() const {
  std::ostringstream os;
  os << type_name() << "(" << extra_repr();
  if (!children_.empty()) {
    os << "\n";
    for (const auto& c : children_) {
      std::string sub = c.module->repr(), indented;
      for (char ch : sub) {
        indented += ch;
        if (ch == '\n') indented += "  ";
      }
      os << "  (" << c.name << "): " << indented << "\n";
    }
  }
  os << ")";
  return os.str();
}

}  // namespace lumen::nn
