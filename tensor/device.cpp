#include "tensor/device.h"

#include "tensor/error.h"

namespace lumen {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
      s.find_first_not_of("0123456789", 5) == std::string::npos)
    return cuda(std::stoi(s.substr(5)));
  detail::throw_error("device: cannot parse \"", s,
                      "\" (expected \"cpu\", \"cuda\" or \"cuda:N\")");
}

std::string Device::str() const { return type == CPU ? "cpu" : "cuda:" + std::to_string(index); }

}  // namespace lumen
