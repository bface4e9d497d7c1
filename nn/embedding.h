#pragma once
// Embedding: a lookup table of num_embeddings vectors of size embedding_dim, as
// torch.nn.Embedding. Its input is a tensor of indices (i32 or i64, any shape).
#include <cstdint>
#include <optional>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct EmbeddingOptions {
  // This row starts at zero and gets no gradient (negative counts from the end).
  std::optional<int64_t> padding_idx = std::nullopt;
};

class Embedding : public UnaryModule {
 public:
  // weight [num_embeddings, embedding_dim] starts N(0, 1), the padding row zero.
  Embedding(int64_t num_embeddings, int64_t embedding_dim, EmbeddingOptions options = {});

  // indices [*] -> [*, embedding_dim].
  Tensor forward(const Tensor& indices) override;
  void reset_parameters();

  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;  // "1000, 64, padding_idx=0"

  const int64_t num_embeddings, embedding_dim;
  const std::optional<int64_t> padding_idx;  // normalised to [0, num_embeddings)
  Tensor weight;
};

}  // namespace lumen::nn
