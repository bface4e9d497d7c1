#include "nn/init.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/functional/elementwise.h"
#include "tensor/error.h"

namespace lumen::nn::init {

namespace {

void check_floating(const Tensor& t, const char* op) {
  LUMEN_CHECK(t.defined(), "init.", op, ": got an undefined tensor");
  LUMEN_CHECK(is_floating(t.dtype()), "init.", op, ": expects a floating tensor, got dtype ",
              t.dtype(), " of shape ", ShapeStr{t.shape()});
}

// Draws in the tensor's dtype when it is f32 or f64, else in f32 (then rounded), so a half
// parameter gets the same numbers as its f32 twin would.
DType draw_dtype(const Tensor& t) { return t.dtype() == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace

double calculate_gain(const std::string& nonlinearity, std::optional<double> param) {
  static const char* const kLinear[] = {"linear",           "conv1d",           "conv2d",
                                        "conv3d",           "conv_transpose1d", "conv_transpose2d",
                                        "conv_transpose3d", "sigmoid"};
  for (const char* name : kLinear)
    if (nonlinearity == name) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    const double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nonlinearity == "selu") return 3.0 / 4.0;
  detail::throw_error("init.calculate_gain: unsupported nonlinearity '", nonlinearity,
                      "'; expected linear, conv1d, conv2d, conv3d, conv_transpose1d, ",
                      "conv_transpose2d, conv_transpose3d, sigmoid, tanh, relu, leaky_relu or "
                      "selu");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  LUMEN_CHECK(t.defined(), "init: fan in and fan out of an undefined tensor");
  LUMEN_CHECK(t.dim() >= 2,
              "init: fan in and fan out can not be computed for a tensor with fewer than 2 "
              "dimensions, got shape ",
              ShapeStr{t.shape()});
  int64_t receptive_field = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive_field *= t.size(d);
  return {t.size(1) * receptive_field, t.size(0) * receptive_field};
}

int64_t calculate_correct_fan(const Tensor& t, const std::string& mode) {
  LUMEN_CHECK(mode == "fan_in" || mode == "fan_out", "init: mode '", mode,
              "' is not supported; use fan_in or fan_out");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return mode == "fan_in" ? fan_in : fan_out;
}

Tensor uniform_(const Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "uniform_");
  LUMEN_CHECK(a <= b, "init.uniform_: expects a <= b, got a = ", a, ", b = ", b);
  NoGradGuard no_grad;
  Tensor u = rand(t.shape(), {.dtype = draw_dtype(t), .device = t.device()}, gen);
  t.copy_(u * (b - a) + a);
  return t;
}

Tensor normal_(const Tensor& t, double mean, double std, Generator* gen) {
  check_floating(t, "normal_");
  LUMEN_CHECK(std >= 0, "init.normal_: expects std >= 0, got ", std);
  NoGradGuard no_grad;
  Tensor z = randn(t.shape(), {.dtype = draw_dtype(t), .device = t.device()}, gen);
  t.copy_(z * std + mean);
  return t;
}

Tensor constant_(const Tensor& t, double value) {
  LUMEN_CHECK(t.defined(), "init.constant_: got an undefined tensor");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

// A tensor with no elements has no fan; PyTorch warns and leaves it as it is.
Tensor kaiming_uniform_(const Tensor& t, double a, const std::string& mode,
                        const std::string& nonlinearity, Generator* gen) {
  check_floating(t, "kaiming_uniform_");
  const int64_t fan = calculate_correct_fan(t, mode);
  if (t.numel() == 0) return t;
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& t, double a, const std::string& mode,
                       const std::string& nonlinearity, Generator* gen) {
  check_floating(t, "kaiming_normal_");
  const int64_t fan = calculate_correct_fan(t, mode);
  if (t.numel() == 0) return t;
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
  return normal_(t, 0.0, std, gen);
}

Tensor xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_uniform_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  const double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_normal_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  if (t.numel() == 0) return t;
  const double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(t, 0.0, std, gen);
}

}  // namespace lumen::nn::init
