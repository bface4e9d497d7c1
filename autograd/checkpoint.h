#pragma once
// Activation checkpointing, as torch.utils.checkpoint.checkpoint (its reentrant form): the
// forward runs fn(inputs) without recording the graph, so none of its intermediate tensors is
// kept; the backward runs fn again, with the random generator and autocast as they were in the
// forward, and backpropagates through that recomputation. Memory falls from every activation
// inside fn to its inputs, for one more forward of fn per backward. The usual use is one call
// per block of a deep network (a transformer layer, a residual block).
//
// fn may use tensors other than its inputs (a module's parameters): their gradients accumulate
// into their grad() during the recomputation. Like PyTorch's reentrant checkpoint, a parameter
// used both inside and outside fn gets two accumulations in one backward (DDP counts a
// parameter once per backward); and running statistics that fn updates (batch norm) update
// again in the recomputation.
//
// The output requires grad when an input does or fn's ops read something that does (the forward
// runs without a graph under an autograd::RequiresGradProbe). The backward calls fn later: what it
// captures must still be alive then (a module's members are; a local of the forward that is gone is
// not). The recomputation rewinds the process-wide generator while it runs, so another thread
// drawing from it at that moment (a loader worker's augmentation) would draw numbers twice.
#include <functional>
#include <vector>

#include "tensor/tensor.h"

namespace lumen {

struct CheckpointOptions {
  // Restore the default generator's state for the recomputation, so dropout draws the same
  // masks (PyTorch's preserve_rng_state).
  bool preserve_rng_state = true;
};

Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                  const std::vector<Tensor>& inputs, CheckpointOptions options = {});
// One input: checkpoint([&](const Tensor& h) { return block(h); }, x).
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input,
                  CheckpointOptions options = {});

}  // namespace lumen
