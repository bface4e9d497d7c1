#pragma once
// A tree of named tensors and attributes: the one shape in which every stateful piece of a
// training run (module, optimizer, scheduler, callback, trainer loop, RNG, data order) hands
// its state to the checkpoint writer and takes it back. It maps one to one onto HDF5: a State
// is a group, `tensors` its datasets, `attrs` its attributes, `groups` its subgroups.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "tensor/tensor.h"

namespace lumen {

using AttrValue =
    std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>>;

struct State {
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, Tensor> tensors;
  std::map<std::string, State> groups;

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  bool has_tensor(const std::string& key) const { return tensors.count(key) != 0; }
  bool has_group(const std::string& key) const { return groups.count(key) != 0; }

  // Typed reads; a missing key or another type throws a lumen::Error naming the key and the
  // expected type. get_double also accepts an integer attribute.
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<int64_t>& get_ints(const std::string& key) const;
  const std::vector<double>& get_doubles(const std::string& key) const;
  const Tensor& tensor(const std::string& key) const;
  const State& group(const std::string& key) const;
};

}  // namespace lumen
