#pragma once
// A batch is the list of tensors a collate function stacks from examples: for a classifier
// b[0] holds the inputs [N, ...] and b[1] the targets [N]; Lightning's (x, y) tuple.
#include <vector>

#include "tensor/tensor.h"

namespace lumen {

using Batch = std::vector<Tensor>;

}  // namespace lumen
