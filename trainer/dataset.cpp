#include "trainer/dataset.h"

#include <cmath>
#include <numeric>
#include <typeinfo>
#include <utility>

#include "autograd/grad_mode.h"
#include "nn/functional/index.h"
#include "tensor/error.h"
#include "trainer/random_permutation.h"

namespace lumen {

TensorDataset::TensorDataset(std::vector<Tensor> tensors) : tensors_(std::move(tensors)) {
  LUMEN_CHECK(!tensors_.empty(), "TensorDataset: expected at least one tensor");
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& t = tensors_[k];
    LUMEN_CHECK(t.defined(), "TensorDataset: tensor ", k, " is an undefined tensor");
    LUMEN_CHECK(t.dim() >= 1, "TensorDataset: tensor ", k,
                " is 0-d; expected one row (dim 0) per example");
    LUMEN_CHECK(t.size(0) == tensors_[0].size(0), "TensorDataset: tensor ", k, " has ", t.size(0),
                " rows (shape ", ShapeStr{t.shape()}, ") but tensor 0 has ", tensors_[0].size(0),
                " (shape ", ShapeStr{tensors_[0].shape()},
                "); every tensor needs one row per example");
  }
}

int64_t TensorDataset::size() const { return tensors_[0].size(0); }

Batch TensorDataset::get(int64_t index) const {
  LUMEN_CHECK(index >= 0 && index < size(), "TensorDataset::get: index ", index,
              " is out of range for a dataset of ", size(), " examples");
  Batch example;
  example.reserve(tensors_.size());
  // Row views (no copy): the collate function copies them into the batch.
  for (const Tensor& t : tensors_) example.push_back(t.select(0, index));
  return example;
}

std::optional<Batch> TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  if (typeid(*this) != typeid(TensorDataset) || indices.empty()) return std::nullopt;
  return gather_rows(indices);
}

Batch TensorDataset::gather_rows(const std::vector<int64_t>& indices) const {
  const int64_t n = size();
  for (size_t k = 0; k < indices.size(); ++k)
    LUMEN_CHECK(indices[k] >= 0 && indices[k] < n, "TensorDataset::get_batch: index ", indices[k],
                " (position ", k, ") is out of range for a dataset of ", n, " examples");
  NoGradGuard no_grad;
  const Tensor rows = from_vector<int64_t>(indices, {static_cast<int64_t>(indices.size())});
  Batch batch;
  batch.reserve(tensors_.size());
  for (const Tensor& t : tensors_)
    batch.push_back(index_select(t, 0, t.device().is_cpu() ? rows : rows.to(t.device())));
  return batch;
}

Subset::Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  LUMEN_CHECK(base_ != nullptr, "Subset: the base dataset is null");
  int64_t n = base_->size();
  for (size_t k = 0; k < indices_.size(); ++k)
    LUMEN_CHECK(indices_[k] >= 0 && indices_[k] < n, "Subset: index ", indices_[k], " (position ",
                k, ") is out of range for a base dataset of ", n, " examples");
}

int64_t Subset::size() const { return static_cast<int64_t>(indices_.size()); }

Batch Subset::get(int64_t index) const {
  LUMEN_CHECK(index >= 0 && index < size(), "Subset::get: index ", index,
              " is out of range for a subset of ", size(), " examples");
  return base_->get(indices_[static_cast<size_t>(index)]);
}

std::optional<Batch> Subset::get_batch(const std::vector<int64_t>& indices) const {
  if (typeid(*this) != typeid(Subset)) return std::nullopt;
  std::vector<int64_t> base_indices(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    LUMEN_CHECK(indices[k] >= 0 && indices[k] < size(), "Subset::get_batch: index ", indices[k],
                " (position ", k, ") is out of range for a subset of ", size(), " examples");
    base_indices[k] = indices_[static_cast<size_t>(indices[k])];
  }
  return base_->get_batch(base_indices);
}

std::vector<std::shared_ptr<Dataset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                   const std::vector<int64_t>& lengths,
                                                   uint64_t seed) {
  LUMEN_CHECK(dataset != nullptr, "random_split: the dataset is null");
  int64_t n = dataset->size(), total = 0;
  for (size_t k = 0; k < lengths.size(); ++k) {
    LUMEN_CHECK(lengths[k] >= 0, "random_split: length ", k, " is ", lengths[k],
                "; expected lengths >= 0");
    total += lengths[k];
  }
  LUMEN_CHECK(total == n, "random_split: lengths ", ShapeStr{lengths}, " sum to ", total,
              " but the dataset has ", n, " examples; they must sum to its size");
  // As torch: one permutation of the whole dataset, cut into consecutive pieces.
  std::vector<int64_t> perm = philox_permutation(n, seed, kSplitStream);
  std::vector<std::shared_ptr<Dataset>> pieces;
  auto start = perm.begin();
  for (int64_t len : lengths) {
    pieces.push_back(std::make_shared<Subset>(dataset, std::vector<int64_t>(start, start + len)));
    start += len;
  }
  return pieces;
}

std::vector<std::shared_ptr<Dataset>> random_split_fractions(std::shared_ptr<const Dataset> dataset,
                                                             const std::vector<double>& fractions,
                                                             uint64_t seed) {
  LUMEN_CHECK(dataset != nullptr, "random_split_fractions: the dataset is null");
  double sum = 0;
  for (size_t k = 0; k < fractions.size(); ++k) {
    LUMEN_CHECK(fractions[k] >= 0 && fractions[k] <= 1, "random_split_fractions: fraction ", k,
                " is ", fractions[k], "; expected a value in [0, 1]");
    sum += fractions[k];
  }
  LUMEN_CHECK(std::abs(sum - 1.0) <= 1e-9, "random_split_fractions: fractions sum to ", sum,
              "; expected 1");
  // torch's rule: floor(f * n) each, then the remainder one by one, round-robin from the first.
  int64_t n = dataset->size(), total = 0;
  std::vector<int64_t> lengths;
  for (double f : fractions) {
    lengths.push_back(static_cast<int64_t>(std::floor(f * static_cast<double>(n))));
    total += lengths.back();
  }
  for (size_t k = 0; total < n; k = (k + 1) % lengths.size(), ++total) ++lengths[k];
  return random_split(std::move(dataset), lengths, seed);
}

}  // namespace lumen
