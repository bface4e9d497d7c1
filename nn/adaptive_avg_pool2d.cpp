#include "nn/adaptive_avg_pool2d.h"

#include <vector>

#include "nn/functional/index.h"
#include "nn/functional/pool.h"
#include "nn/functional/reduction.h"
#include "tensor/error.h"

namespace lumen::nn {

namespace {

// Averages dim `d` of x into `out` bins, bin i covering [floor(i n / out), ceil((i + 1) n /
// out)). Bins may overlap by one element when out does not divide n, so each is its own slice.
Tensor adaptive_mean_along(const Tensor& x, int64_t d, int64_t out) {
  const int64_t n = x.size(d);
  if (n == out) return x;
  if (out == 1) return mean(x, {d}, true);
  std::vector<Tensor> bins;
  bins.reserve(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const int64_t start = (i * n) / out;
    const int64_t end = ((i + 1) * n + out - 1) / out;
    bins.push_back(mean(x.slice(d, start, end), {d}, true));
  }
  return cat(bins, d);
}

}  // namespace

AdaptiveAvgPool2d::AdaptiveAvgPool2d(IntPair output_size) : output_size(output_size) {
  LUMEN_CHECK(!output_size.any_below(1), "AdaptiveAvgPool2d: output_size must be positive, got ",
              output_size.str(true));
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  LUMEN_CHECK(x.defined(), "AdaptiveAvgPool2d: input is undefined");
  LUMEN_CHECK(x.dim() == 3 || x.dim() == 4,
              "AdaptiveAvgPool2d: expected 3D or 4D input ([C, H, W] or [N, C, H, W]), got "
              "shape ",
              ShapeStr{x.shape()});
  for (int64_t d = 1; d < x.dim(); ++d)
    LUMEN_CHECK(x.size(d) > 0, "AdaptiveAvgPool2d: expected non-empty dims after the first, got ",
                "shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(is_floating(x.dtype()), "AdaptiveAvgPool2d: expected a floating input, got dtype ",
              x.dtype(), " of shape ", ShapeStr{x.shape()});
  const int64_t hd = x.dim() - 2, wd = x.dim() - 1;
  const int64_t h = x.size(hd), w = x.size(wd);
  // Equal bins are one strided pooling kernel; otherwise the bins of a rectangle are products
  // of row bins and column bins, so the mean over a rectangle is the mean over its rows of the
  // mean over its columns, and the two dims are pooled one after the other.
  if (h % output_size.h == 0 && w % output_size.w == 0) {
    const functional::Size2 k{h / output_size.h, w / output_size.w};
    return functional::avg_pool2d(x, k, k);
  }
  return adaptive_mean_along(adaptive_mean_along(x, wd, output_size.w), hd, output_size.h);
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  return detail::concat("output_size=", output_size.str(true));
}

}  // namespace lumen::nn
