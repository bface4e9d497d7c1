#pragma once
// Indexing kernels: reads at indices (index_select, gather) and their adjoints, accumulations at
// indices (index_add, scatter_add). The caller (nn/functional/index.cpp) allocates `out`,
// checks ranks, shapes, dtypes and devices; every tensor may have any strides. Index tensors
// are i32 or i64. Kernels check each index value against the indexed dim before writing
// anything and throw lumen::Error naming the value, its position and the valid range.
//
// Notation: a tensor indexed along `dim` is seen as [outer, size, inner], with o running over
// the dims before `dim` and i over the dims after it.
#include "kernels/dispatch.h"

namespace lumen::kernels {

// out[o, j, i] = x[o, index[j], i]; index is 1-D, out has x's shape with size(dim) = len(index).
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, int64_t dim,
                               const Tensor& index)>
    index_select{"index_select"};

// out[o, index[j], i] += src[o, j, i]; src has out's shape with size(dim) = len(index).
// Duplicate indices accumulate, in increasing j, so results do not depend on the thread count.
inline constinit OpKernel<void(const Tensor& out, int64_t dim, const Tensor& index,
                               const Tensor& src)>
    index_add{"index_add"};

// out[o, j, i] = x[o, index[o, j, i], i]; out has index's shape, which is no larger than x's on
// every dim but `dim` (PyTorch's gather).
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, int64_t dim,
                               const Tensor& index)>
    gather{"gather"};

// out[o, index[o, j, i], i] += src[o, j, i]; src has index's shape, no larger than out's on
// every dim but `dim`. Duplicates accumulate in increasing j, as in index_add.
inline constinit OpKernel<void(const Tensor& out, int64_t dim, const Tensor& index,
                               const Tensor& src)>
    scatter_add{"scatter_add"};

// out[n, :] = weight[indices[n], :] for every element n of indices (any shape); weight is
// [V, D] and out has shape indices.shape + [D].
inline constinit OpKernel<void(const Tensor& out, const Tensor& weight, const Tensor& indices)>
    embedding{"embedding"};

// grad_weight[indices[n], :] += grad[n, :] for every n whose index is not padding_idx (negative:
// none); grad has shape indices.shape + [D]. Each row sums its contributions in increasing n
// (for 16-bit weights the CPU rounds after each addition, CUDA sums in f32 and rounds once).
inline constinit OpKernel<void(const Tensor& grad_weight, const Tensor& grad, const Tensor& indices,
                               int64_t padding_idx)>
    embedding_backward{"embedding_backward"};

}  // namespace lumen::kernels
