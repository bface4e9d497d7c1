#include "nn/conv1d.h"

#include <cmath>

#include "nn/functional/conv.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

Conv1d::Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
               Conv1dOptions options)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(options.stride),
      padding(options.padding),
      dilation(options.dilation),
      groups(options.groups) {
  LUMEN_CHECK(in_channels > 0 && out_channels > 0,
              "Conv1d: in_channels and out_channels must be positive, got in_channels=",
              in_channels, ", out_channels=", out_channels);
  LUMEN_CHECK(groups > 0, "Conv1d: groups must be a positive integer, got ", groups);
  LUMEN_CHECK(in_channels % groups == 0 && out_channels % groups == 0, "Conv1d: in_channels (",
              in_channels, ") and out_channels (", out_channels, ") must be divisible by groups (",
              groups, ")");
  LUMEN_CHECK(kernel_size > 0, "Conv1d: kernel_size must be positive, got ", kernel_size);
  LUMEN_CHECK(stride > 0, "Conv1d: stride must be positive, got ", stride);
  LUMEN_CHECK(padding >= 0, "Conv1d: padding must be non-negative, got ", padding);
  LUMEN_CHECK(dilation > 0, "Conv1d: dilation must be positive, got ", dilation);
  weight = empty({out_channels, in_channels / groups, kernel_size});
  register_parameter("weight", weight);
  if (options.bias) {
    bias = empty({out_channels});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Conv1d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv1d::forward(const Tensor& x) {
  LUMEN_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 3) && x.size(x.dim() - 2) == in_channels,
              "Conv1d: expected an input [N, ", in_channels, ", L] or [", in_channels, ", L], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  return functional::conv1d(x, weight, bias, stride, padding, dilation, groups);
}

std::string Conv1d::extra_repr() const {
  std::string s =
      detail::concat(in_channels, ", ", out_channels, ", kernel_size=", python_tuple({kernel_size}),
                     ", stride=", python_tuple({stride}));
  if (padding != 0) s += detail::concat(", padding=", python_tuple({padding}));
  if (dilation != 1) s += detail::concat(", dilation=", python_tuple({dilation}));
  if (groups != 1) s += detail::concat(", groups=", groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

}  // namespace lumen::nn
