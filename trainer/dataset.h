#pragma once
// Map-style datasets, as torch.utils.data.Dataset: a size and random access to examples.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "trainer/batch.h"

namespace lumen {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // One example: tensors without the batch dimension. Must be safe to call from several
  // loader threads at once.
  virtual Batch get(int64_t index) const = 0;
  // The batch default_collate would make of the examples at `indices`, for a dataset that can
  // gather it in one go (TensorDataset: one index_select per tensor) instead of an example at a
  // time; nullopt where it cannot, and the loader collates get()'s examples. Thread-safe as get.
  // A class that overrides get() and wants this too overrides it as well (TensorDataset's and
  // Subset's answer nullopt for a derived class, whose get() may do more than theirs).
  virtual std::optional<Batch> get_batch(const std::vector<int64_t>& indices) const {
    (void)indices;
    return std::nullopt;
  }
};

// Examples are the rows (dim 0) of equally long tensors, as torch's TensorDataset.
class TensorDataset : public Dataset {
 public:
  explicit TensorDataset(std::vector<Tensor> tensors);
  int64_t size() const override;
  Batch get(int64_t index) const override;
  std::optional<Batch> get_batch(const std::vector<int64_t>& indices) const override;
  const std::vector<Tensor>& tensors() const { return tensors_; }

 protected:
  // The rows at `indices` of every tensor, one index_select each (get_batch's answer).
  Batch gather_rows(const std::vector<int64_t>& indices) const;

 private:
  std::vector<Tensor> tensors_;
};

// The examples of another dataset at the given indices (random_split's pieces).
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices);
  int64_t size() const override;
  Batch get(int64_t index) const override;
  std::optional<Batch> get_batch(const std::vector<int64_t>& indices) const override;

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

// Splits by a seeded permutation, as torch.utils.data.random_split: one Philox permutation of
// the whole dataset (trainer/random_permutation.h), cut into consecutive pieces of `lengths`,
// which must sum to the dataset's size.
std::vector<std::shared_ptr<Dataset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                   const std::vector<int64_t>& lengths,
                                                   uint64_t seed);
// The same with fractions summing to 1 (torch accepts them in random_split): piece k gets
// floor(f_k * n) examples, and the remainder goes one each to the pieces in order.
std::vector<std::shared_ptr<Dataset>> random_split_fractions(std::shared_ptr<const Dataset> dataset,
                                                             const std::vector<double>& fractions,
                                                             uint64_t seed);

}  // namespace lumen
