// The backward engine: counts, for each node reachable from the root, how many edges lead into
// it; then runs nodes whose count reached zero, newest first, summing the gradients that
// several uses of a tensor send to its node.
#include <atomic>
#include <queue>
#include <unordered_map>

#include "autograd/anomaly_mode.h"
#include "autograd/autocast_mode.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "nn/functional/elementwise.h"

namespace lumen {

namespace {
thread_local bool grad_enabled = true;
std::atomic<uint64_t> next_sequence{0};
}  // namespace

bool GradMode::is_enabled() { return grad_enabled; }
void GradMode::set_enabled(bool enabled) { grad_enabled = enabled; }

namespace autograd {
namespace {

struct FunctionNode final : Node {
  FunctionNode(const char* name, BackwardFn fn, NeedsGrad needs)
      : Node(name), fn(std::move(fn)), needs(std::move(needs)) {}
  std::vector<Tensor> apply(const Tensor& grad) override {
    LUMEN_CHECK(fn, "backward through ", name, " a second time: the graph was freed by the ",
                "first backward (pass retain_graph = true to keep it)");
    return fn(grad, needs);
  }
  void release() override { fn = nullptr; }
  BackwardFn fn;
  NeedsGrad needs;
};

// The sink of a leaf: runs the leaf's hooks, adds the gradient into leaf.grad(), then runs its
// post-accumulate hooks. The engine sums a leaf's incoming gradients first, so this runs once
// per leaf per backward.
struct AccumulateGrad final : Node {
  explicit AccumulateGrad(std::weak_ptr<TensorImpl> leaf)
      : Node("AccumulateGrad"), leaf(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad) override {
    auto impl = leaf.lock();
    if (!impl) return {};
    Tensor g = grad;
    for (auto& hook : impl->hooks) {
      Tensor r = hook(g);
      if (r.defined()) g = r;
    }
    Tensor t(impl);
    // grad() never aliases another tensor, so a later in-place update of it (an optimizer's,
    // clipping's) reaches nothing else. The first gradient is taken over when nothing else can
    // see it, as PyTorch does: the engine's reference (and ours, if no hook replaced it) are
    // the only ones to it and to its memory, which it spans densely. Otherwise it is copied
    // (contiguous() of a strided gradient is already a fresh copy).
    Tensor fresh;
    if (impl->grad.defined()) {
      fresh = impl->grad + g;
    } else if (g.impl_ptr().use_count() == (g.same(grad) ? 2 : 1) && g.storage().is_sole_owner() &&
               g.is_contiguous() && g.offset() == 0 &&
               g.storage().nbytes() == static_cast<size_t>(g.numel()) * g.element_size()) {
      fresh = g;
    } else {
      fresh = g.contiguous();
      if (fresh.same(g)) fresh = g.clone();
    }
    t.set_grad(fresh);
    for (auto& hook : impl->post_accumulate_hooks)
      if (hook) hook(t);
    return {};
  }
  std::weak_ptr<TensorImpl> leaf;
};

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  TensorImpl* impl = t.impl();
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    impl->grad_accumulator = acc;
  }
  return acc;
}

}  // namespace

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {
thread_local RequiresGradProbe* active_probe = nullptr;
}  // namespace

RequiresGradProbe::RequiresGradProbe() : outer_(active_probe) { active_probe = this; }
RequiresGradProbe::~RequiresGradProbe() {
  active_probe = outer_;
  if (outer_ && hit_) outer_->hit_ = true;
}

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!GradMode::is_enabled()) {
    if (active_probe && !active_probe->hit_)
      for (const Tensor& t : inputs)
        if (t.defined() && t.requires_grad()) active_probe->hit_ = true;
    return out;
  }
  if (!any_requires_grad(inputs)) return out;
  NeedsGrad needs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    needs[i] = inputs[i].defined() && inputs[i].requires_grad();
  auto node = std::make_shared<FunctionNode>(name, std::move(fn), needs);
  node->sequence = next_sequence++;
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

namespace {

// Anomaly mode's check of what node `n` returned (PyTorch's validate_outputs under anomaly
// mode): NaN in any element of a floating gradient is an error. (x != x) is true only at NaN.
void check_for_nan(const Node& n, const std::vector<Tensor>& input_grads) {
  for (size_t i = 0; i < input_grads.size(); ++i) {
    const Tensor& g = input_grads[i];
    if (!g.defined() || g.numel() == 0 || !is_floating(g.dtype())) continue;
    const bool nan = ne(g, g).to(DType::f32).max().item<float>() > 0;
    LUMEN_CHECK(!nan, "autograd anomaly detection: function '", n.name,
                "' returned NaN values in its ", i, "th output (the gradient of its input ", i,
                ", of shape ", ShapeStr{g.shape()},
                "); the NaN starts in that op's forward or in the gradient it received");
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_root, bool retain_graph) {
  NoGradGuard no_grad;
  // Each backward computes in the dtypes its forward chose, whatever autocast says now.
  AutocastGuard no_autocast(AutocastMode::dtype(), false);
  std::shared_ptr<Node> root_node = gradient_edge(root);
  if (!root_node) return;

  // Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{root_node.get()}, order;
  deps[root_node.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (auto& e : n->next) {
      if (!e) continue;
      if (deps.find(e.get()) == deps.end()) {
        deps[e.get()] = 0;
        stack.push_back(e.get());
      }
      ++deps[e.get()];
    }
  }

  auto later_first = [](Node* a, Node* b) { return a->sequence < b->sequence; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  std::unordered_map<Node*, Tensor> grads;
  grads[root_node.get()] = grad_root;
  ready.push(root_node.get());
  // A backward function that throws (anomaly detection, a failed kernel) still frees the
  // graph, as a finished backward does.
  try {
    while (!ready.empty()) {
      Node* n = ready.top();
      ready.pop();
      auto it = grads.find(n);
      // A node that no gradient reached (every path into it gave none) still releases its edges.
      std::vector<Tensor> input_grads;
      if (it != grads.end()) {
        Tensor g = std::move(it->second);
        grads.erase(it);
        input_grads = n->apply(g);
        if (AnomalyMode::is_enabled()) check_for_nan(*n, input_grads);
      }
      for (size_t i = 0; i < n->next.size(); ++i) {
        Node* next = n->next[i].get();
        if (!next) continue;
        if (i < input_grads.size() && input_grads[i].defined()) {
          Tensor& acc = grads[next];
          acc = acc.defined() ? acc + input_grads[i] : input_grads[i];
        }
        if (--deps[next] == 0) ready.push(next);
      }
    }
  } catch (...) {
    if (!retain_graph)
      for (Node* n : order) n->release();
    throw;
  }
  if (!retain_graph)
    for (Node* n : order) n->release();
}

}  // namespace autograd

namespace {
std::atomic<bool> anomaly_enabled{false};
}  // namespace

bool AnomalyMode::is_enabled() { return anomaly_enabled.load(std::memory_order_relaxed); }
void AnomalyMode::set_enabled(bool enabled) {
  anomaly_enabled.store(enabled, std::memory_order_relaxed);
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  LUMEN_CHECK(requires_grad(), "backward: tensor does not require grad (no input of the ",
              "computation had requires_grad set, or it ran under NoGradGuard)");
  Tensor g = gradient;
  if (!g.defined()) {
    LUMEN_CHECK(numel() == 1, "backward: a gradient must be given for a non-scalar output of ",
                "shape ", ShapeStr{shape()}, " (or reduce it to one element first)");
    g = ones(shape(), {dtype(), device()});
  } else {
    LUMEN_CHECK(g.shape() == shape(), "backward: gradient shape ", ShapeStr{g.shape()},
                " does not match output shape ", ShapeStr{shape()});
  }
  autograd::run_backward(*this, g, retain_graph);
}

}  // namespace lumen
