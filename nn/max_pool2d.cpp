#include "nn/max_pool2d.h"

#include "nn/functional/pool.h"
#include "tensor/error.h"

namespace lumen::nn {

MaxPool2d::MaxPool2d(IntPair kernel_size, MaxPool2dOptions options)
    : kernel_size(kernel_size),
      stride(options.stride.value_or(kernel_size)),
      padding(options.padding),
      dilation(options.dilation) {
  LUMEN_CHECK(!kernel_size.any_below(1), "MaxPool2d: kernel_size must be positive, got ",
              kernel_size.str());
  LUMEN_CHECK(!stride.any_below(1), "MaxPool2d: stride must be positive, got ", stride.str());
  LUMEN_CHECK(!dilation.any_below(1), "MaxPool2d: dilation must be positive, got ", dilation.str());
  LUMEN_CHECK(
      !padding.any_below(0) && 2 * padding.h <= kernel_size.h && 2 * padding.w <= kernel_size.w,
      "MaxPool2d: padding must be non-negative and at most half the kernel size, got ",
      "padding=", padding.str(), " for kernel_size=", kernel_size.str());
}

Tensor MaxPool2d::forward(const Tensor& x) {
  return functional::max_pool2d(x, kernel_size.array(), stride.array(), padding.array(),
                                dilation.array());
}

std::string MaxPool2d::extra_repr() const {
  return detail::concat("kernel_size=", kernel_size.str(true), ", stride=", stride.str(true),
                        ", padding=", padding.str(true), ", dilation=", dilation.str(true),
                        ", ceil_mode=False");
}

}  // namespace lumen::nn
