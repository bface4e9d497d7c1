#pragma once
// Parameter initialisers, as torch.nn.init. Each writes into `t` in place (under NoGradGuard,
// so it works on leaves that require grad) and returns it. Random ones draw from `gen`
// (default: the global Philox generator), so manual_seed(s) makes initialisation reproducible.
#include <optional>
#include <string>
#include <utility>

#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace lumen::nn::init {

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain):
//   linear, conv1d/2d/3d, conv_transpose1d/2d/3d, sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);
//   leaky_relu: sqrt(2 / (1 + slope^2)) with slope = param (default 0.01);  selu: 3/4.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);

// (fan_in, fan_out) = (size(1) * r, size(0) * r) where r is the product of the sizes after the
// first two (the receptive field of a convolution kernel), as
// torch.nn.init._calculate_fan_in_and_fan_out; needs at least 2 dims.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
// fan_in or fan_out by `mode` ("fan_in" or "fan_out").
int64_t calculate_correct_fan(const Tensor& t, const std::string& mode);

Tensor uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(const Tensor& t, double value);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);

// He et al. (2015): U(-bound, bound) with bound = gain * sqrt(3 / fan), gain =
// calculate_gain(nonlinearity, a), fan chosen by mode. Variance gain^2 / fan.
Tensor kaiming_uniform_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                       const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// Glorot & Bengio (2010): std = gain * sqrt(2 / (fan_in + fan_out)); uniform draws from
// U(-sqrt(3) std, sqrt(3) std), normal from N(0, std^2).
Tensor xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
Tensor xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace lumen::nn::init
