#include "nn/embedding.h"

#include "autograd/grad_mode.h"
#include "nn/functional/index.h"
#include "nn/init.h"
#include "tensor/error.h"

namespace lumen::nn {

namespace {
std::optional<int64_t> normalized_padding_idx(std::optional<int64_t> idx, int64_t num) {
  LUMEN_CHECK(num > 0, "Embedding: num_embeddings must be positive, got ", num);
  if (!idx) return idx;
  LUMEN_CHECK(*idx >= -num && *idx < num, "Embedding: padding_idx must lie in [", -num, ", ", num,
              ") for num_embeddings=", num, ", got ", *idx);
  return *idx < 0 ? *idx + num : *idx;
}
}  // namespace

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, EmbeddingOptions options)
    : num_embeddings(num_embeddings),
      embedding_dim(embedding_dim),
      padding_idx(normalized_padding_idx(options.padding_idx, num_embeddings)) {
  LUMEN_CHECK(embedding_dim > 0, "Embedding: embedding_dim must be positive, got ", embedding_dim);
  weight = empty({num_embeddings, embedding_dim});
  register_parameter("weight", weight);
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  if (padding_idx) {
    NoGradGuard no_grad;
    weight.select(0, *padding_idx).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  return functional::embedding(indices, weight, padding_idx);
}

std::string Embedding::extra_repr() const {
  std::string s = detail::concat(num_embeddings, ", ", embedding_dim);
  if (padding_idx) s += detail::concat(", padding_idx=", *padding_idx);
  return s;
}

}  // namespace lumen::nn
