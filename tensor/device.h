#pragma once
#include <cstdint>
#include <ostream>
#include <string>

namespace lumen {

struct Device {
  enum Type : uint8_t { CPU = 0, CUDA = 1 };
  static constexpr int kNumTypes = 2;
  Type type = CPU;
  int index = 0;

  static constexpr Device cpu() { return {CPU, 0}; }
  static constexpr Device cuda(int i = 0) { return {CUDA, i}; }
  // "cpu", "cuda", "cuda:1"; throws lumen::Error on anything else.
  static Device parse(const std::string& s);

  bool is_cpu() const { return type == CPU; }
  bool is_cuda() const { return type == CUDA; }
  std::string str() const;
  friend bool operator==(const Device&, const Device&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace lumen
