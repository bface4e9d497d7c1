#pragma once
// Group normalisation (Wu & He, 2018), as torch.nn.GroupNorm: the C channels of x [N, C, *] in
// num_groups groups, each sample's group normalised with its own mean and biased variance, then
// a per-channel weight and bias. Unlike BatchNorm it does not depend on the batch, so it suits
// small per-device batches.
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct GroupNormOptions {
  double eps = 1e-5;
  bool affine = true;  // learnable weight (ones) and bias (zeros) [C]
};

class GroupNorm : public UnaryModule {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, GroupNormOptions options = {});

  Tensor forward(const Tensor& x) override;  // [N, C, *] -> the same shape
  void reset_parameters();

  std::string type_name() const override { return "GroupNorm"; }
  std::string extra_repr() const override;  // "4, 32, eps=1e-05, affine=True"

  const int64_t num_groups, num_channels;
  const double eps;
  const bool affine;
  Tensor weight, bias;  // [C], when affine
};

}  // namespace lumen::nn
