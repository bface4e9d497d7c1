#include "nn/transformer_encoder_layer.h"

#include "nn/functional/dropout.h"
#include "tensor/error.h"

namespace lumen::nn {
namespace {

functional::Activation parse_activation(const std::string& name) {
  if (name == "relu") return functional::Activation::ReLU;
  if (name == "gelu") return functional::Activation::GELU;
  throw Error("TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"" + name +
              "\"");
}

}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t nhead,
                                                 TransformerEncoderLayerOptions options)
    : norm_first(options.norm_first),
      self_attn(
          d_model, nhead,
          {.dropout = options.dropout, .bias = options.bias, .batch_first = options.batch_first}),
      linear1(d_model, options.dim_feedforward > 0 ? options.dim_feedforward : 1,
              {.bias = options.bias}),
      linear2(options.dim_feedforward > 0 ? options.dim_feedforward : 1, d_model,
              {.bias = options.bias}),
      norm1(d_model, {.eps = options.layer_norm_eps, .bias = options.bias}),
      norm2(d_model, {.eps = options.layer_norm_eps, .bias = options.bias}),
      dropout(options.dropout),
      dropout1(options.dropout),
      dropout2(options.dropout),
      activation_(parse_activation(options.activation)) {
  LUMEN_CHECK(options.dim_feedforward > 0,
              "TransformerEncoderLayer: dim_feedforward must be positive, got ",
              options.dim_feedforward);
  register_module("self_attn", self_attn);
  register_module("linear1", linear1);
  register_module("dropout", dropout);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
  register_module("dropout1", dropout1);
  register_module("dropout2", dropout2);
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const MultiheadAttentionMasks& masks) {
  // residual + d(y), in one pass: y is cast to the residual's dtype first (under autocast the
  // sublayers return 16-bit, the residual stream stays f32, as PyTorch's add promotes).
  auto residual_add = [&](const Tensor& y, const Tensor& residual, const Dropout& d) {
    return functional::dropout_add(y.dtype() == residual.dtype() ? y : y.to(residual.dtype()),
                                   residual, d.p, d.is_training());
  };
  auto self_attention = [&](const Tensor& h) { return self_attn.forward(h, h, h, masks); };
  auto feed_forward = [&](const Tensor& h) {
    Tensor a = functional::linear(h, linear1.weight, linear1.bias, activation_);
    return linear2(dropout(a));
  };
  if (norm_first) {
    Tensor h = residual_add(self_attention(norm1(x)), x, dropout1);
    return residual_add(feed_forward(norm2(h)), h, dropout2);
  }
  Tensor h = norm1(residual_add(self_attention(x), x, dropout1));
  return norm2(residual_add(feed_forward(h), h, dropout2));
}

}  // namespace lumen::nn
