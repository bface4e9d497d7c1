#pragma once
// nn::Module: the owner of parameters, buffers and child modules, as torch.nn.Module.
//
// Layers keep their tensors as ordinary members and register them by address, so a layer's
// code reads `weight` while the module tree can still enumerate, move (`to`) and load it.
// Because the tree holds addresses, a Module can be neither copied nor moved: declare modules
// as members (registered with register_module(name, member)) or hold them in shared_ptrs
// (register_module(name, shared_ptr) keeps them alive).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/state.h"
#include "tensor/tensor.h"

namespace lumen::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = std::map<std::string, Tensor>;

// A state_dict as a State group (one tensor per entry), as checkpoints store it.
inline State to_state(const StateDict& dict) {
  State s;
  s.tensors.insert(dict.begin(), dict.end());
  return s;
}

// Copies `state`'s tensors into `targets` by name, casting dtype and moving device as
// Module::load_state_dict does (which is this over the module's tensors): shapes must match,
// with strict the names must match exactly, and the error lists every missing, unexpected and
// mismatched name. Nothing is copied unless every check passes.
void load_named(const NamedTensors& targets, const StateDict& state, bool strict = true);

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // Dotted names ("fc1.weight"), in registration order, depth first.
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, Module*>> named_children() const;
  // This module (name "") and every descendant, pre-order.
  std::vector<std::pair<std::string, Module*>> named_modules();
  int64_t num_parameters(bool trainable_only = false) const;

  // Parameters and persistent buffers, detached (they share storage with the module).
  StateDict state_dict() const;
  // Copies each value into the module's tensor in place (casting dtype, as PyTorch does), so
  // optimizers holding those tensors keep seeing them. Shapes must match. With strict, the
  // names must match exactly; the error lists every missing and unexpected name. Nothing is
  // modified unless every check passes.
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool mode = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

  // Moves or casts every parameter and buffer (integer buffers keep their dtype on a dtype
  // cast); parameters stay leaves that require grad.
  void to(DType dtype);
  void to(Device device);

  // The class name shown by ModelSummary and printing, and layer details ("784 -> 256").
  virtual std::string type_name() const { return "Module"; }
  virtual std::string extra_repr() const { return ""; }
  std::string repr() const;  // the module tree, one line per module, as print(model)

 protected:
  // `t` must outlive this module (a member of the subclass). Floating parameters are marked
  // requires_grad. Names may not contain '.' and are unique across parameters, buffers and
  // children.
  Tensor& register_parameter(const std::string& name, Tensor& t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor& t, bool persistent = true);
  template <class M>
  M& register_module(const std::string& name, M& child) {
    add_child(name, &child, nullptr);
    return child;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child.get(), child);
    return child;
  }

 private:
  struct TensorSlot {
    std::string name;
    Tensor* tensor;
    bool persistent;
  };
  struct ChildSlot {
    std::string name;
    Module* module;
    std::shared_ptr<Module> owned;
  };
  void check_new_name(const std::string& name) const;
  void add_child(const std::string& name, Module* child, std::shared_ptr<Module> owned);
  void collect(const std::string& prefix, bool recurse, bool params, bool only_persistent,
               NamedTensors& out) const;
  void convert(const std::function<Tensor(const Tensor&)>& fn, bool keep_integer);

  std::vector<TensorSlot> params_, buffers_;
  std::vector<ChildSlot> children_;
  bool training_ = true;
};

// A module with one input and one output: what Sequential chains.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

}  // namespace lumen::nn
