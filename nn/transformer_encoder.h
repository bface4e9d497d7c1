#pragma once
// A stack of num_layers TransformerEncoderLayers, then an optional LayerNorm, as
// torch.nn.TransformerEncoder. State dict keys match PyTorch's ("layers.0.self_attn.
// in_proj_weight", ..., "norm.weight"). Unlike PyTorch, which deep-copies one layer (so every
// layer starts from the same weights), each layer is initialised on its own.
#include <cstdint>
#include <memory>
#include <string>

#include "nn/layer_norm.h"
#include "nn/module.h"
#include "nn/sequential.h"
#include "nn/transformer_encoder_layer.h"

namespace lumen::nn {

struct TransformerEncoderOptions {
  TransformerEncoderLayerOptions layer = {};
  // A LayerNorm over the last layer's output (pre-norm stacks need one: their layers end on
  // a residual add).
  bool final_norm = false;
};

class TransformerEncoder : public UnaryModule {
 public:
  TransformerEncoder(int64_t d_model, int64_t nhead, int64_t num_layers,
                     TransformerEncoderOptions options = {});

  // x as TransformerEncoderLayer's; every layer sees the same masks.
  Tensor forward(const Tensor& x, const MultiheadAttentionMasks& masks);
  Tensor forward(const Tensor& x) override { return forward(x, {}); }

  // The i-th layer (negative i counts from the end).
  TransformerEncoderLayer& layer(int64_t i) const { return layers.at<TransformerEncoderLayer>(i); }

  std::string type_name() const override { return "TransformerEncoder"; }

  Sequential layers;
  std::shared_ptr<LayerNorm> norm;  // null without final_norm
};

}  // namespace lumen::nn
