#include "nn/conv2d.h"

#include <cmath>

#include "nn/functional/conv.h"
#include "nn/init.h"
#include "tensor/error.h"

namespace lumen::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size,
               Conv2dOptions options)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size.h, kernel_size.w),
      stride(options.stride.h, options.stride.w),
      padding(options.padding.h, options.padding.w),
      dilation(options.dilation.h, options.dilation.w),
      groups(options.groups) {
  LUMEN_CHECK(in_channels > 0 && out_channels > 0,
              "Conv2d: in_channels and out_channels must be positive, got in_channels=",
              in_channels, ", out_channels=", out_channels);
  LUMEN_CHECK(groups > 0, "Conv2d: groups must be a positive integer, got ", groups);
  LUMEN_CHECK(in_channels % groups == 0, "Conv2d: in_channels (", in_channels,
              ") must be divisible by groups (", groups, ")");
  LUMEN_CHECK(out_channels % groups == 0, "Conv2d: out_channels (", out_channels,
              ") must be divisible by groups (", groups, ")");
  LUMEN_CHECK(!this->kernel_size.any_below(1), "Conv2d: kernel_size must be positive, got ",
              this->kernel_size.str());
  LUMEN_CHECK(!stride.any_below(1), "Conv2d: stride must be positive, got ", stride.str());
  LUMEN_CHECK(!padding.any_below(0), "Conv2d: padding must be non-negative, got ", padding.str());
  LUMEN_CHECK(!dilation.any_below(1), "Conv2d: dilation must be positive, got ", dilation.str());
  weight = empty({out_channels, in_channels / groups, kernel_size.h, kernel_size.w});
  register_parameter("weight", weight);
  if (options.bias) {
    bias = empty({out_channels});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  return functional::conv2d(x, weight, bias, stride.array(), padding.array(), dilation.array(),
                            groups);
}

std::string Conv2d::extra_repr() const {
  std::string s = detail::concat(in_channels, ", ", out_channels,
                                 ", kernel_size=", kernel_size.str(), ", stride=", stride.str());
  if (!padding.all(0)) s += detail::concat(", padding=", padding.str());
  if (!dilation.all(1)) s += detail::concat(", dilation=", dilation.str());
  if (groups != 1) s += detail::concat(", groups=", groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

}  // namespace lumen::nn
