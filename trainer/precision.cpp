#include "trainer/precision.h"

#include <iostream>

#include "tensor/error.h"

namespace lumen {

Precision parse_precision(const std::string& flag, const std::string& who) {
  std::string p = flag;
  if (p == "16" || p == "bf16") {
    std::cerr << "Warning: `precision=" << p
              << "` is supported for historical reasons but its usage is discouraged. Please "
                 "set your precision to "
              << p << "-mixed instead!\n";
    p += "-mixed";
  }
  if (p == "32") p = "32-true";
  LUMEN_CHECK(p == "32-true" || p == "16-mixed" || p == "bf16-mixed", who, ": precision \"", flag,
              "\" is not supported; expected \"32-true\" (or \"32\"), \"16-mixed\" or "
              "\"bf16-mixed\"");
  Precision out;
  out.name = p;
  if (p == "16-mixed") out.autocast_dtype = DType::f16;
  if (p == "bf16-mixed") out.autocast_dtype = DType::bf16;
  return out;
}

}  // namespace lumen
