#pragma once
// Scaled dot-product attention (Vaswani et al., 2017), as
// torch.nn.functional.scaled_dot_product_attention:
//   out = dropout(softmax(q k^T * scale + mask)) v
// with q [..., L, E], k [..., S, E], v [..., S, Ev] and out [..., L, Ev]; the leading (batch)
// dims broadcast. On the CPU a fused kernel computes it a block of query rows at a time, without
// the whole [..., L, S] score matrix (kernels/attention.h). Like PyTorch's fused kernels it reads
// strided q, k and v in place (the views it saves share the inputs' memory) and lays the output
// out as q: heads viewed from a [B, L, H, D] buffer give an output in [B, L, H, D] memory, not a
// contiguous one. A row whose every key is masked out gives zeros (PyTorch's math path does the
// same since 2.5), and no gradient.
#include <optional>

#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace lumen::nn::functional {

struct AttentionOptions {
  // Broadcast to [..., L, S]. bool: true where the query may attend to the key (PyTorch's
  // SDPA convention; nn::MultiheadAttention's masks mean the opposite). Floating (f32 or q's
  // dtype): added to the scores (-inf excludes); a mask that requires grad gets its gradient.
  Tensor attn_mask = {};
  double dropout_p = 0.0;  // applied to the attention weights; in [0, 1)
  // Query i attends to keys j <= i (the top-left aligned lower triangle, also when L != S).
  // Not together with attn_mask.
  bool is_causal = false;
  std::optional<double> scale = std::nullopt;  // default 1 / sqrt(E)
  Generator* generator = nullptr;              // dropout's; default the global one
};

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options = {});

// Self-attention over packed projections, as MultiheadAttention's: qkv [N, L, 3 E] holds q, k
// and v side by side ([N, L, E] each, E = num_heads D), each split into num_heads heads of D
// features. Returns [N, num_heads, L, D]: scaled_dot_product_attention of the three heads'
// views, whose gradients the fused kernel writes into one [N, L, 3 E] tensor (three narrows of
// qkv would each make a zero-filled one, to be summed).
Tensor scaled_dot_product_attention_packed(const Tensor& qkv, int64_t num_heads,
                                           const AttentionOptions& options = {});

// The causal mask's excluded entries as a bool [L, S] on `device`: true where key j > query i
// (nn::MultiheadAttention's convention for a bool mask; the complement of SDPA's).
Tensor causal_exclusions(int64_t L, int64_t S, Device device);

namespace detail {
// The composite of matmul, softmax and dropout that runs where the fused kernel does not (no
// kernel for the device, broadcast batch dims); for the tests to check both paths.
Tensor scaled_dot_product_attention_math(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const AttentionOptions& options = {});
}  // namespace detail

}  // namespace lumen::nn::functional
