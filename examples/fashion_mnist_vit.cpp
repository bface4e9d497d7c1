// Fashion-MNIST with a small vision transformer (Dosovitskiy et al., 2021): the 28x28 image cut
// into 16 patches of 7x7, each projected to 64 features (a 7x7 convolution of stride 7) plus a
// learned position embedding; 2 pre-norm encoder layers (4 heads, feed-forward 128, GELU), a
// final layer norm, the mean over the patches, then a linear classifier. AdamW, batch 128.
#include "examples/fashion_mnist_classifier.h"

using namespace lumen;

// [N, 1, 28, 28] -> [N, 16, 64]: one token per patch, its projection plus its position's
// embedding (initialised N(0, 0.02^2), as ViT's).
struct PatchEmbedding : nn::UnaryModule {
  static constexpr int64_t kPatch = 7, kTokens = (28 / kPatch) * (28 / kPatch);
  nn::Conv2d proj;
  Tensor pos_embedding;

  explicit PatchEmbedding(int64_t dim) : proj(1, dim, kPatch, {.stride = kPatch}) {
    register_module("proj", proj);
    pos_embedding = empty({1, kTokens, dim});
    register_parameter("pos_embedding", pos_embedding);
    NoGradGuard no_grad;
    nn::init::normal_(pos_embedding, 0.0, 0.02);
  }
  Tensor forward(const Tensor& x) override {
    return proj(x).flatten(2).transpose(1, 2) + pos_embedding;
  }
  std::string type_name() const override { return "PatchEmbedding"; }
};

// [N, T, E] -> [N, E]: the mean over the tokens.
struct TokenMean : nn::UnaryModule {
  Tensor forward(const Tensor& x) override { return x.mean({1}); }
  std::string type_name() const override { return "TokenMean"; }
};

int main(int argc, char** argv) {
  constexpr int64_t kDim = 64;
  fashion_mnist::Layers layers{
      std::make_shared<PatchEmbedding>(kDim),
      std::make_shared<nn::TransformerEncoder>(
          kDim, 4, 2,
          nn::TransformerEncoderOptions{.layer = {.dim_feedforward = 2 * kDim,
                                                  .dropout = 0.1,
                                                  .activation = "gelu",
                                                  .batch_first = true,
                                                  .norm_first = true},
                                        .final_norm = true}),
      std::make_shared<TokenMean>(),
      std::make_shared<nn::Linear>(kDim, 10),
  };
  return fashion_mnist::run("fashion_mnist_vit", layers, 10, argc, argv);
}
