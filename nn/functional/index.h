#pragma once
// Indexing and data movement with autograd: concatenation, selection and gathering along a dim,
// their adjoints (index_add, scatter_add), and embedding lookup. Index tensors are i32 or i64
// and must lie on the data's device; an index outside its dim throws naming the value, its
// position and the valid range.
#include <optional>
#include <vector>

#include "tensor/tensor.h"

namespace lumen {

// Joins tensors along `dim` (negative counts from the end). All have one rank and equal sizes
// except along `dim`; 1-D empty tensors are skipped, as in PyTorch. Dtypes promote to a common
// one; all must be on one device. Backward: each input gets its slice of the gradient.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Joins equal-shaped tensors along a new dim `dim` in [-(rank + 1), rank + 1).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// The values of one-element tensors, in order, as f64: read back in one copy when they share a
// device (one wait for a GPU, not one per tensor), one by one otherwise.
std::vector<double> scalar_values(const std::vector<Tensor>& scalars);

// out[..., j, ...] = x[..., index[j], ...] along `dim`; index is 1-D (or 0-d, one element).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x with src[..., j, ...] added to row index[j] along `dim` (duplicates accumulate); src has x's
// shape with size(dim) = len(index) and x's dtype. Out of place.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

// PyTorch's gather: out has index's shape and out[p] = x[p with coordinate `dim` replaced by
// index[p]]. index has x's rank and is no larger than x on every dim but `dim`.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// x with src[p] added at (p with coordinate `dim` replaced by index[p]) for every p of index
// (duplicates accumulate): the adjoint of gather. index has x's rank, is no larger than src on
// every dim and no larger than x on every dim but `dim`; src has x's dtype. Out of place.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

namespace nn::functional {
// Rows of `weight` ([num_embeddings, embedding_dim]) picked by `indices` (any shape): the output
// has shape indices.shape + [embedding_dim]. The row padding_idx (negative counts from the end)
// gets no gradient, as in PyTorch.
Tensor embedding(const Tensor& indices, const Tensor& weight,
                 std::optional<int64_t> padding_idx = std::nullopt);
}  // namespace nn::functional

}  // namespace lumen
