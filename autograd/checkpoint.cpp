#include "autograd/checkpoint.h"

#include <optional>
#include <utility>

#include "autograd/autocast_mode.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/error.h"
#include "tensor/generator.h"

namespace lumen {

Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                  const std::vector<Tensor>& inputs, CheckpointOptions options) {
  LUMEN_CHECK(static_cast<bool>(fn), "checkpoint: the function is empty");
  const std::pair<uint64_t, uint64_t> rng_state = default_generator().state();
  const bool autocast = AutocastMode::is_enabled();
  const DType autocast_dtype = AutocastMode::dtype();
  // Without grad mode nothing is recorded (an enclosing checkpoint's probe still sees fn's ops).
  if (!GradMode::is_enabled()) {
    Tensor plain = fn(inputs);
    LUMEN_CHECK(plain.defined(), "checkpoint: the function returned an undefined tensor");
    return plain;
  }
  Tensor out;
  bool needs_graph = autograd::any_requires_grad(inputs);
  {
    // No graph, so fn's intermediates go as soon as fn is done with them; the probe tells
    // whether its result depends on something that requires grad (a parameter fn uses).
    NoGradGuard no_grad;
    autograd::RequiresGradProbe probe;
    out = fn(inputs);
    needs_graph = needs_graph || probe.hit();
  }
  LUMEN_CHECK(out.defined(), "checkpoint: the function returned an undefined tensor");
  if (!needs_graph || !is_floating(out.dtype())) return out;
  out = out.detach();  // a TensorImpl of its own for the node (fn may return one of its inputs)

  // The node's inputs: the user's, and where none requires grad (parameters alone do) a leaf
  // that does, so that the node is recorded and the recomputation reaches the parameters.
  std::vector<Tensor> node_inputs = inputs;
  if (!autograd::any_requires_grad(inputs)) node_inputs.push_back(zeros({}).requires_grad_());
  std::vector<Tensor> saved;
  for (const Tensor& t : inputs) saved.push_back(t.defined() ? t.detach() : t);
  const Shape shape = out.shape();
  return autograd::record(
      "checkpoint", out, node_inputs,
      [fn, saved, rng_state, autocast, autocast_dtype, shape, options](
          const Tensor& grad, const autograd::NeedsGrad& needs) {
        std::vector<Tensor> replay;
        for (size_t i = 0; i < saved.size(); ++i) {
          replay.push_back(saved[i].defined() ? saved[i].detach() : Tensor());
          if (needs[i]) replay[i].requires_grad_();
        }
        Tensor again;
        {
          EnableGradGuard grad_mode;
          AutocastGuard autocast_mode(autocast_dtype, autocast);
          // The forward's draws again (dropout masks), then the generator where it was.
          std::optional<GeneratorStateGuard> rng;
          if (options.preserve_rng_state) {
            rng.emplace();
            default_generator().set_state(rng_state.first, rng_state.second);
          }
          again = fn(replay);
        }
        LUMEN_CHECK(again.defined() && again.shape() == shape,
                    "checkpoint: the recomputation in the backward returned ",
                    again.defined() ? "shape " + shape_str(again.shape()) : "an undefined tensor",
                    " where the forward returned shape ", shape_str(shape),
                    "; the function must compute the same thing each time");
        if (again.requires_grad()) again.backward(grad.to(again.dtype()));
        std::vector<Tensor> grads(needs.size());
        for (size_t i = 0; i < saved.size(); ++i)
          if (needs[i]) grads[i] = replay[i].grad();
        return grads;
      });
}

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input,
                  CheckpointOptions options) {
  LUMEN_CHECK(static_cast<bool>(fn), "checkpoint: the function is empty");
  return checkpoint([fn](const std::vector<Tensor>& in) { return fn(in[0]); }, {input}, options);
}

}  // namespace lumen
