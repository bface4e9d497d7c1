#include "nn/avg_pool2d.h"

#include "nn/functional/pool.h"
#include "tensor/error.h"

namespace lumen::nn {

AvgPool2d::AvgPool2d(IntPair kernel_size, AvgPool2dOptions options)
    : kernel_size(kernel_size),
      stride(options.stride.value_or(kernel_size)),
      padding(options.padding),
      count_include_pad(options.count_include_pad) {
  LUMEN_CHECK(!kernel_size.any_below(1), "AvgPool2d: kernel_size must be positive, got ",
              kernel_size.str());
  LUMEN_CHECK(!stride.any_below(1), "AvgPool2d: stride must be positive, got ", stride.str());
  LUMEN_CHECK(
      !padding.any_below(0) && 2 * padding.h <= kernel_size.h && 2 * padding.w <= kernel_size.w,
      "AvgPool2d: padding must be non-negative and at most half the kernel size, got ",
      "padding=", padding.str(), " for kernel_size=", kernel_size.str());
}

Tensor AvgPool2d::forward(const Tensor& x) {
  return functional::avg_pool2d(x, kernel_size.array(), stride.array(), padding.array(),
                                count_include_pad);
}

std::string AvgPool2d::extra_repr() const {
  return detail::concat("kernel_size=", kernel_size.str(true), ", stride=", stride.str(true),
                        ", padding=", padding.str(true));
}

}  // namespace lumen::nn
