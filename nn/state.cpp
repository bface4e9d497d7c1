#include "nn/state.h"

#include "tensor/error.h"

namespace lumen {
namespace {

const char* type_name(const AttrValue& v) {
  static constexpr const char* names[] = {"int", "double", "string", "int list", "double list"};
  return names[v.index()];
}

template <class T>
const T& get_as(const State& s, const std::string& key, const char* expected) {
  auto it = s.attrs.find(key);
  LUMEN_CHECK(it != s.attrs.end(), "state: missing attribute '", key, "' (expected ", expected,
              ")");
  const T* v = std::get_if<T>(&it->second);
  LUMEN_CHECK(v != nullptr, "state: attribute '", key, "' is a ", type_name(it->second),
              ", expected ", expected);
  return *v;
}

}  // namespace

int64_t State::get_int(const std::string& key) const { return get_as<int64_t>(*this, key, "int"); }

double State::get_double(const std::string& key) const {
  auto it = attrs.find(key);
  if (it != attrs.end())
    if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return get_as<double>(*this, key, "double");
}

const std::string& State::get_string(const std::string& key) const {
  return get_as<std::string>(*this, key, "string");
}

const std::vector<int64_t>& State::get_ints(const std::string& key) const {
  return get_as<std::vector<int64_t>>(*this, key, "int list");
}

const std::vector<double>& State::get_doubles(const std::string& key) const {
  return get_as<std::vector<double>>(*this, key, "double list");
}

const Tensor& State::tensor(const std::string& key) const {
  auto it = tensors.find(key);
  LUMEN_CHECK(it != tensors.end(), "state: missing tensor '", key, "'");
  return it->second;
}

const State& State::group(const std::string& key) const {
  auto it = groups.find(key);
  LUMEN_CHECK(it != groups.end(), "state: missing group '", key, "'");
  return it->second;
}

}  // namespace lumen
