#include "nn/transformer_encoder.h"

#include "tensor/error.h"

namespace lumen::nn {

TransformerEncoder::TransformerEncoder(int64_t d_model, int64_t nhead, int64_t num_layers,
                                       TransformerEncoderOptions options) {
  LUMEN_CHECK(num_layers > 0, "TransformerEncoder: num_layers must be positive, got ", num_layers);
  for (int64_t i = 0; i < num_layers; ++i)
    layers.push_back(std::make_shared<TransformerEncoderLayer>(d_model, nhead, options.layer));
  register_module("layers", layers);
  if (options.final_norm) {
    norm = std::make_shared<LayerNorm>(
        d_model, LayerNormOptions{.eps = options.layer.layer_norm_eps, .bias = options.layer.bias});
    register_module("norm", norm);
  }
}

Tensor TransformerEncoder::forward(const Tensor& x, const MultiheadAttentionMasks& masks) {
  Tensor h = x;
  for (const auto& m : layers.modules())
    h = static_cast<TransformerEncoderLayer&>(*m).forward(h, masks);
  return norm ? (*norm)(h) : h;
}

}  // namespace lumen::nn
