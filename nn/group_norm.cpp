#include "nn/group_norm.h"

#include "nn/functional/norm.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, GroupNormOptions options)
    : num_groups(num_groups), num_channels(num_channels), eps(options.eps), affine(options.affine) {
  LUMEN_CHECK(num_groups > 0 && num_channels > 0 && num_channels % num_groups == 0,
              "GroupNorm: num_channels (", num_channels, ") must be a positive multiple of ",
              "num_groups (", num_groups, ")");
  LUMEN_CHECK(eps >= 0, "GroupNorm: eps must be >= 0, got ", eps);
  if (affine) {
    weight = empty({num_channels});
    bias = empty({num_channels});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void GroupNorm::reset_parameters() {
  if (!affine) return;
  init::ones_(weight);
  init::zeros_(bias);
}

Tensor GroupNorm::forward(const Tensor& x) {
  LUMEN_CHECK(x.defined() && x.dim() >= 2 && x.size(1) == num_channels, type_name(),
              ": expected an input [N, ", num_channels, ", *], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  return functional::group_norm(x, num_groups, weight, bias, eps);
}

std::string GroupNorm::extra_repr() const {
  return detail::concat(num_groups, ", ", num_channels, ", eps=", python_float(eps),
                        ", affine=", python_bool(affine));
}

}  // namespace lumen::nn
