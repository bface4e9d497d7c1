#include "nn/optim/optimizer.h"

#include <algorithm>
#include <set>

#include "tensor/error.h"

namespace lumen::optim {
namespace {

// Keys that learning-rate schedulers write into groups (torch's OneCycleLR and LRScheduler do
// the same), so a group taken over from another optimizer may carry them.
bool is_scheduler_key(const std::string& key) {
  return key == "initial_lr" || key == "max_lr" || key == "min_lr" || key == "base_momentum" ||
         key == "max_momentum" || key == "swa_lr";
}

std::string join_keys(const std::map<std::string, double>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
  return s;
}

}  // namespace

void Optimizer::zero_grad() {
  for (ParamGroup& g : groups_)
    for (const Tensor& p : g.params) p.set_grad(Tensor());
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

int64_t Optimizer::num_params() const {
  int64_t n = 0;
  for (const ParamGroup& g : groups_) n += static_cast<int64_t>(g.params.size());
  return n;
}

void Optimizer::init_groups(std::vector<ParamGroup> groups,
                            const std::map<std::string, double>& defaults) {
  defaults_ = defaults;
  std::set<const TensorImpl*> seen;
  int64_t total = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    prepare_group(groups[gi], gi, seen);
    total += static_cast<int64_t>(groups[gi].params.size());
  }
  LUMEN_CHECK(total > 0, type_name(), ": got an empty parameter list");
  groups_ = std::move(groups);
}

void Optimizer::add_param_group(ParamGroup group) {
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) seen.insert(p.impl());
  LUMEN_CHECK(!group.params.empty(), type_name(), ".add_param_group: the group has no parameters");
  prepare_group(group, groups_.size(), seen);
  groups_.push_back(std::move(group));
}

void Optimizer::prepare_group(ParamGroup& g, size_t gi, std::set<const TensorImpl*>& seen) const {
  const std::string type = type_name();
  for (const auto& [key, value] : g.options)
    LUMEN_CHECK(defaults_.count(key) != 0 || is_scheduler_key(key), type, ": unknown option '", key,
                "' in parameter group ", gi, " (", type, " options: ", join_keys(defaults_), ")");
  for (const auto& [key, value] : defaults_) g.options.emplace(key, value);
  for (size_t pi = 0; pi < g.params.size(); ++pi) {
    const Tensor& p = g.params[pi];
    LUMEN_CHECK(p.defined(), type, ": parameter ", pi, " of group ", gi, " is undefined");
    LUMEN_CHECK(is_floating(p.dtype()), type, ": can only optimize floating tensors, but ",
                "parameter ", pi, " of group ", gi, " has dtype ", p.dtype());
    LUMEN_CHECK(p.is_leaf(), type, ": can't optimize a non-leaf tensor (parameter ", pi,
                " of group ", gi, " of shape ", ShapeStr{p.shape()},
                " is the result of an op); pass the leaf, or detach() it");
    LUMEN_CHECK(seen.insert(p.impl()).second, type, ": parameter ", pi, " of group ", gi,
                " appears more than once among the parameters");
  }
  check_group(g, gi);
}

State Optimizer::base_state_dict() const {
  State s;
  s.attrs["type"] = type_name();
  s.attrs["step"] = step_count_;
  std::vector<int64_t> sizes;
  for (size_t g = 0; g < groups_.size(); ++g) {
    sizes.push_back(static_cast<int64_t>(groups_[g].params.size()));
    for (const auto& [key, value] : groups_[g].options)
      s.attrs["group" + std::to_string(g) + "." + key] = value;
  }
  s.attrs["group_sizes"] = sizes;
  return s;
}

void Optimizer::load_base_state_dict(const State& state) {
  const std::string type = type_name();
  const std::string& saved_type = state.get_string("type");
  LUMEN_CHECK(saved_type == type, type, ".load_state_dict: the state is of a ", saved_type,
              " optimizer, expected ", type);
  const std::vector<int64_t>& sizes = state.get_ints("group_sizes");
  LUMEN_CHECK(sizes.size() == groups_.size(), type, ".load_state_dict: the state has ",
              sizes.size(), " parameter groups, this optimizer has ", groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g)
    LUMEN_CHECK(sizes[g] == static_cast<int64_t>(groups_[g].params.size()), type,
                ".load_state_dict: parameter group ", g, " has ", sizes[g],
                " parameters in the state, ", groups_[g].params.size(), " in this optimizer");
  const int64_t n = num_params();
  for (const auto& [name, sub] : state.groups) {
    bool numeric = !name.empty() && std::all_of(name.begin(), name.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
    LUMEN_CHECK(numeric && name.size() < 19 && std::stoll(name) < n, type,
                ".load_state_dict: state group '", name,
                "' does not name a parameter (expected an index in [0, ", n, "))");
  }
  // Options: every option of this optimizer must be in the state (a missing one means the
  // state is from another version or was edited); extra ones (scheduler keys) are taken too.
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "group" + std::to_string(g) + ".";
    for (const auto& [key, value] : groups_[g].options)
      LUMEN_CHECK(state.has_attr(prefix + key), type, ".load_state_dict: missing attribute '",
                  prefix, key, "'");
    for (const auto& [attr, value] : state.attrs)
      if (attr.compare(0, prefix.size(), prefix) == 0)
        groups_[g].options[attr.substr(prefix.size())] = state.get_double(attr);
  }
  step_count_ = state.get_int("step");
}

}  // namespace lumen::optim
