// Printing in PyTorch's style: nested brackets, a shared number format per tensor, and only
// the first and last three entries of a dim longer than six.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "autograd/grad_mode.h"
#include "tensor/tensor.h"

namespace lumen {
namespace {

void print_dim(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
               const Shape& strides, size_t d, int64_t base, bool floating, int indent) {
  int64_t n = shape[d];
  bool summarise = n > 6;
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && i == 3) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - 3;
    }
    int64_t off = base + i * strides[d];
    if (d + 1 == shape.size()) {
      char buf[32];
      double x = v[off];
      if (!floating)
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(x));
      else if (x != 0 && (std::abs(x) >= 1e5 || std::abs(x) < 1e-4))
        std::snprintf(buf, sizeof buf, "%.4e", x);
      else
        std::snprintf(buf, sizeof buf, "%.4f", x);
      os << buf;
    } else {
      print_dim(os, v, shape, strides, d + 1, off, floating, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  std::vector<double> v = to_vector<double>();
  bool floating = is_floating(dtype());
  if (dim() == 0) {
    print_dim(os, v, {1}, {1}, 0, 0, floating, 7);
    std::string s = os.str();
    os.str("");
    os << "tensor(" << s.substr(8, s.size() - 9);
  } else {
    print_dim(os, v, shape(), contiguous_strides(shape()), 0, 0, floating, 7);
  }
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype();
  if (!device().is_cpu()) os << ", device=" << device();
  if (requires_grad()) os << ", requires_grad=true";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace lumen
