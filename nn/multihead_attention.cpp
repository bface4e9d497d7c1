#include "nn/multihead_attention.h"

#include <limits>

#include "autograd/grad_mode.h"
#include "nn/functional/attention.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/linalg.h"
#include "nn/init.h"

namespace lumen::nn {
namespace {

constexpr const char* kOp = "MultiheadAttention";

// A PyTorch-convention mask as an additive one of `dtype`: a bool mask's true entries become
// -inf, a floating one is used as it is.
Tensor additive_mask(const Tensor& mask, DType dtype, const char* name) {
  if (mask.dtype() == DType::boolean)
    return masked_fill(zeros(mask.shape(), {dtype, mask.device()}), mask,
                       -std::numeric_limits<double>::infinity());
  LUMEN_CHECK(mask.dtype() == dtype, kOp, ": ", name, " must be bool or of the query's dtype ",
              dtype, ", got ", mask.dtype());
  return mask;
}

}  // namespace

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads,
                                       MultiheadAttentionOptions options)
    : embed_dim(embed_dim),
      num_heads(num_heads),
      head_dim(num_heads > 0 ? embed_dim / num_heads : 0),
      dropout(options.dropout),
      batch_first(options.batch_first),
      out_proj(embed_dim > 0 ? embed_dim : 1, embed_dim > 0 ? embed_dim : 1,
               {.bias = options.bias}) {
  LUMEN_CHECK(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0, kOp,
              ": embed_dim must be a positive multiple of num_heads, got embed_dim=", embed_dim,
              ", num_heads=", num_heads);
  LUMEN_CHECK(dropout >= 0 && dropout < 1, kOp, ": dropout must lie in [0, 1), got ", dropout);
  in_proj_weight = empty({3 * embed_dim, embed_dim});
  register_parameter("in_proj_weight", in_proj_weight);
  if (options.bias) {
    in_proj_bias = empty({3 * embed_dim});
    register_parameter("in_proj_bias", in_proj_bias);
  }
  register_module("out_proj", out_proj);
  reset_parameters();
}

void MultiheadAttention::reset_parameters() {
  NoGradGuard no_grad;
  init::xavier_uniform_(in_proj_weight);
  if (in_proj_bias.defined()) {
    in_proj_bias.zero_();
    out_proj.bias.zero_();
  }
}

Tensor MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                   const MultiheadAttentionMasks& masks) {
  LUMEN_CHECK(query.defined() && key.defined() && value.defined(), kOp,
              ": got an undefined query, key or value");
  const bool batched = query.dim() == 3;
  LUMEN_CHECK(
      (query.dim() == 2 || batched) && key.dim() == query.dim() && value.dim() == query.dim(), kOp,
      ": query, key and value must all be 3-D (batched) or all 2-D (unbatched), got ",
      ShapeStr{query.shape()}, ", ", ShapeStr{key.shape()}, ", ", ShapeStr{value.shape()});
  // To [N, L, E].
  auto batch_major = [&](const Tensor& t) {
    return !batched ? t.unsqueeze(0) : batch_first ? t : t.transpose(0, 1);
  };
  Tensor q = batch_major(query), k = batch_major(key), v = batch_major(value);
  const int64_t N = q.size(0), L = q.size(1), S = k.size(1), E = embed_dim, H = num_heads;
  LUMEN_CHECK(q.size(2) == E && k.size(2) == E && v.size(2) == E, kOp,
              ": query, key and value must have embed_dim = ", E, " features, got ",
              ShapeStr{query.shape()}, ", ", ShapeStr{key.shape()}, ", ", ShapeStr{value.shape()});
  LUMEN_CHECK(k.size(0) == N && v.size(0) == N && v.size(1) == S, kOp,
              ": key and value must have the query's batch size and one sequence length, got "
              "query ",
              ShapeStr{query.shape()}, ", key ", ShapeStr{key.shape()}, ", value ",
              ShapeStr{value.shape()}, (batch_first ? " (batch_first)" : ""));

  Tensor mask;  // additive, broadcast to [N, H, L, S]
  const DType dtype = query.dtype();
  if (masks.attn_mask.defined()) {
    LUMEN_CHECK(!masks.is_causal, kOp, ": give either is_causal or attn_mask, not both");
    const Tensor& m = masks.attn_mask;
    const bool per_head = m.dim() == 3 && m.size(0) == N * H && m.size(1) == L && m.size(2) == S;
    LUMEN_CHECK((m.dim() == 2 && m.size(0) == L && m.size(1) == S) || per_head, kOp,
                ": attn_mask must be [L, S] = [", L, ", ", S, "] or [N * num_heads, L, S] = [",
                N * H, ", ", L, ", ", S, "], got ", ShapeStr{m.shape()});
    mask = additive_mask(m, dtype, "attn_mask");
    if (per_head) mask = mask.view({N, H, L, S});
  } else if (masks.is_causal && masks.key_padding_mask.defined()) {
    mask = additive_mask(functional::causal_exclusions(L, S, q.device()), dtype, "is_causal");
  }
  if (masks.key_padding_mask.defined()) {
    const Tensor& m = masks.key_padding_mask;
    LUMEN_CHECK((batched && m.dim() == 2 && m.size(0) == N && m.size(1) == S) ||
                    (!batched && m.dim() == 1 && m.size(0) == S),
                kOp, ": key_padding_mask must be [N, S] = [", N, ", ", S,
                "] (or [S] unbatched), got ", ShapeStr{m.shape()});
    Tensor pad = additive_mask(m, dtype, "key_padding_mask").view({N, 1, 1, S});
    mask = mask.defined() ? mask + pad : pad;
  }
  functional::AttentionOptions attention{.attn_mask = mask,
                                         .dropout_p = is_training() ? dropout : 0.0,
                                         .is_causal = masks.is_causal && !mask.defined()};
  Tensor o;
  if (query.same(key) && key.same(value)) {  // one GEMM for the three projections
    o = functional::scaled_dot_product_attention_packed(
        functional::linear(q, in_proj_weight, in_proj_bias), H, attention);
  } else {
    auto part = [&](const Tensor& t, int64_t i) {
      return t.defined() ? t.narrow(0, i * E, E) : Tensor();
    };
    // [N, len, E] -> [N, H, len, head_dim]
    auto heads = [&](const Tensor& t, int64_t len) {
      return t.reshape({N, len, H, head_dim}).transpose(1, 2);
    };
    Tensor qp = functional::linear(q, part(in_proj_weight, 0), part(in_proj_bias, 0));
    Tensor kp = functional::linear(k, part(in_proj_weight, 1), part(in_proj_bias, 1));
    Tensor vp = functional::linear(v, part(in_proj_weight, 2), part(in_proj_bias, 2));
    o = functional::scaled_dot_product_attention(heads(qp, L), heads(kp, S), heads(vp, S),
                                                 attention);
  }
  Tensor out = out_proj(o.transpose(1, 2).reshape({N, L, E}));
  return !batched ? out.squeeze(0) : batch_first ? out : out.transpose(0, 1);
}

}  // namespace lumen::nn
