#pragma once
// One transformer encoder block (Vaswani et al., 2017), as torch.nn.TransformerEncoderLayer:
//   post-norm (default):   x = norm1(x + SA(x));   x = norm2(x + FF(x))
//   pre-norm (norm_first): x = x + SA(norm1(x));   x = x + FF(norm2(x))
// with SA(x) = dropout1(self_attn(x, x, x)), FF(x) = dropout2(linear2(dropout(act(linear1(x))))).
// Submodules carry PyTorch's names (self_attn, linear1, linear2, norm1, norm2, dropout,
// dropout1, dropout2), so state dicts map one to one. The residual adds run fused with their
// dropout (dropout_add), and linear1 with its activation (the GEMM's epilogue).
#include <cstdint>
#include <string>

#include "nn/dropout.h"
#include "nn/functional/linalg.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/multihead_attention.h"

namespace lumen::nn {

struct TransformerEncoderLayerOptions {
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;             // on the attention weights and in the three Dropouts
  std::string activation = "relu";  // "relu" or "gelu" (erf)
  double layer_norm_eps = 1e-5;
  bool batch_first = false;  // x [N, L, E] instead of [L, N, E]
  bool norm_first = false;   // pre-norm
  bool bias = true;          // in the linears, the attention and the layer norms
};

class TransformerEncoderLayer : public UnaryModule {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t nhead,
                          TransformerEncoderLayerOptions options = {});

  // x [L, N, E] ([N, L, E] with batch_first, [L, E] unbatched) -> the same shape. The masks
  // are MultiheadAttention's (PyTorch's src_mask is attn_mask, src_key_padding_mask is
  // key_padding_mask).
  Tensor forward(const Tensor& x, const MultiheadAttentionMasks& masks);
  Tensor forward(const Tensor& x) override { return forward(x, {}); }

  std::string type_name() const override { return "TransformerEncoderLayer"; }

  const bool norm_first;
  MultiheadAttention self_attn;
  Linear linear1, linear2;
  LayerNorm norm1, norm2;
  Dropout dropout, dropout1, dropout2;

 private:
  functional::Activation activation_;
};

}  // namespace lumen::nn
