#include "nn/optim/param_state.h"

namespace lumen::optim {

std::vector<Tensor> all_params(const Optimizer& opt) {
  std::vector<Tensor> out;
  for (const ParamGroup& g : opt.param_groups())
    out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

Tensor gradient_for(const Tensor& param, const Tensor& grad, const char* type) {
  LUMEN_CHECK(grad.device() == param.device(), type, ": gradient on ", grad.device(),
              " for a parameter on ", param.device(), " of shape ", ShapeStr{param.shape()});
  LUMEN_CHECK(grad.shape() == param.shape(), type, ": gradient of shape ", ShapeStr{grad.shape()},
              " for a parameter of shape ", ShapeStr{param.shape()});
  return grad.to(param.dtype()).contiguous();
}

void check_state_shape(const Tensor& param, const Tensor& state, const char* type,
                       const char* name) {
  LUMEN_CHECK(state.shape() == param.shape(), type, ": state '", name, "' has shape ",
              ShapeStr{state.shape()}, " but its parameter now has shape ", ShapeStr{param.shape()},
              "; was the parameter replaced in param_groups()?");
}

Tensor load_state_tensor(const Tensor& param, const State& group, const std::string& name,
                         size_t index, const char* type) {
  LUMEN_CHECK(group.has_tensor(name), type, ".load_state_dict: parameter ", index,
              " has no state tensor '", name, "'");
  const Tensor& t = group.tensor(name);
  LUMEN_CHECK(t.shape() == param.shape(), type, ".load_state_dict: state '", name,
              "' of parameter ", index, " has shape ", ShapeStr{t.shape()},
              ", the parameter has shape ", ShapeStr{param.shape()});
  Tensor out = empty(param.shape(), {param.dtype(), param.device()});
  out.copy_(t);
  return out;
}

}  // namespace lumen::optim
