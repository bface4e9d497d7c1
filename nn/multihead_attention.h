#pragma once
// Multi-head attention, as torch.nn.MultiheadAttention (query, key and value of embed_dim):
//   head_h = attention(query Wq_h^T + bq_h, key Wk_h^T + bk_h, value Wv_h^T + bv_h)
//   out = concat(head_1, ..., head_H) Wo^T + bo
// each head over embed_dim / num_heads features, by scaled_dot_product_attention. Parameters
// carry PyTorch's names, so state dicts map one to one: in_proj_weight [3E, E] (Wq, Wk, Wv
// stacked), in_proj_bias [3E], out_proj.weight [E, E], out_proj.bias [E].
#include <cstdint>
#include <string>

#include "nn/linear.h"
#include "nn/module.h"

namespace lumen::nn {

struct MultiheadAttentionOptions {
  double dropout = 0.0;      // on the attention weights, in training
  bool bias = true;          // in_proj_bias and out_proj.bias
  bool batch_first = false;  // inputs [N, L, E] instead of PyTorch's default [L, N, E]
};

// The masks of one forward. PyTorch's MultiheadAttention conventions: a bool mask is true where
// attention is NOT allowed; a floating one (of the query's dtype) is added to the scores.
struct MultiheadAttentionMasks {
  Tensor key_padding_mask = {};  // [N, S] (or [S] unbatched): keys to ignore per sequence
  Tensor attn_mask = {};         // [L, S], or [N * num_heads, L, S] per sequence and head
  // Query i attends to keys j <= i. Unlike PyTorch's hint of the same name, it needs no
  // attn_mask (and is refused together with one).
  bool is_causal = false;
};

class MultiheadAttention : public Module {
 public:
  // in_proj_weight starts xavier_uniform_, the biases at 0, out_proj.weight as a Linear's.
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, MultiheadAttentionOptions options = {});

  // query [L, N, E], key and value [S, N, E] ([N, L, E] and [N, S, E] with batch_first;
  // [L, E] and [S, E] unbatched) -> [L, N, E] (the query's layout). The attention weights
  // are not returned (PyTorch's need_weights = false).
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const MultiheadAttentionMasks& masks = {});
  void reset_parameters();

  std::string type_name() const override { return "MultiheadAttention"; }

  const int64_t embed_dim, num_heads, head_dim;
  const double dropout;
  const bool batch_first;
  Tensor in_proj_weight, in_proj_bias;  // in_proj_bias undefined without bias
  Linear out_proj;
};

}  // namespace lumen::nn
