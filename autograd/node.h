#pragma once
// The define-by-run graph. Each differentiable op that sees an input requiring grad records a
// Node on its output: the node holds its backward function and one edge per input, pointing to
// the node that produced that input (or to the input's AccumulateGrad sink, for a leaf).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lumen::autograd {

struct Node {
  explicit Node(std::string name) : name(std::move(name)) {}
  virtual ~Node() = default;
  // Gradients for each input, given the gradient of the output; undefined for inputs that
  // need none.
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees what the backward saved (after a backward without retain_graph).
  virtual void release() {}

  std::string name;
  std::vector<std::shared_ptr<Node>> next;  // one per input; null where no grad flows
  uint64_t sequence = 0;                    // creation order: later nodes run first
};

// Which inputs of a node need a gradient, so backward functions skip the others.
using NeedsGrad = std::vector<bool>;
// The backward of one op: input gradients from the output gradient.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad, const NeedsGrad& needs)>;

// Records `fn` as the backward of `out` = op(inputs) when grad mode is on and some input
// requires grad; returns `out`. Rule for `fn`: capture saved outputs as out.detach() (a
// captured `out` would own its own node: a cycle).
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn);

// True when an op on these inputs would record a node.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// While one lives on this thread and grad mode is off, record() notes whether an op had an
// input that requires grad, recording nothing: a forward run without a graph learns whether
// its result would have needed one (checkpoint's forward). Probes nest; an inner one's finding
// is the outer one's too.
class RequiresGradProbe {
 public:
  RequiresGradProbe();
  ~RequiresGradProbe();
  RequiresGradProbe(const RequiresGradProbe&) = delete;
  RequiresGradProbe& operator=(const RequiresGradProbe&) = delete;
  bool hit() const { return hit_; }

 private:
  friend Tensor record(const char*, Tensor, const std::vector<Tensor>&, BackwardFn);
  RequiresGradProbe* outer_;
  bool hit_ = false;
};

}  // namespace lumen::autograd
