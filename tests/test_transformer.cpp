// TransformerEncoderLayer and TransformerEncoder against the block written out here from plain
// ops (matmul, the layer-norm formula, dropout, self-attention, itself checked against loops in
// test_attention.cpp), numerical gradients, autocast and their error paths.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "lumen/lumen.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

void expect_near(const Tensor& got, const Tensor& want, double tol) {
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], w[i], tol * (1 + std::abs(w[i]))) << "element " << i;
}

// (x - mean) / sqrt(var + eps) * weight + bias over the last dim, biased variance.
Tensor layer_norm_formula(const Tensor& x, const nn::LayerNorm& n) {
  Tensor mu = x.mean({-1}, true);
  Tensor var = ((x - mu) * (x - mu)).mean({-1}, true);
  return (x - mu) / (var + n.eps).sqrt() * n.weight + n.bias;
}

Tensor affine(const Tensor& x, const nn::Linear& l) { return matmul(x, l.weight.t()) + l.bias; }

// The block of nn/transformer_encoder_layer.h spelled out. In training it draws its dropout
// masks in the layer's order: attention weights, dropout1, dropout, dropout2.
Tensor block_formula(nn::TransformerEncoderLayer& m, const Tensor& x, const std::string& act,
                     const nn::MultiheadAttentionMasks& masks = {}) {
  const bool train = m.is_training();
  const double p = m.dropout.p;
  auto sa = [&](const Tensor& h) { return m.self_attn.forward(h, h, h, masks); };
  auto ff = [&](const Tensor& h) {
    Tensor a = affine(h, m.linear1);
    a = act == "gelu" ? gelu(a) : relu(a);
    return affine(F::dropout(a, p, train), m.linear2);
  };
  auto n1 = [&](const Tensor& h) { return layer_norm_formula(h, m.norm1); };
  auto n2 = [&](const Tensor& h) { return layer_norm_formula(h, m.norm2); };
  if (m.norm_first) {
    Tensor h = x + F::dropout(sa(n1(x)), p, train);
    return h + F::dropout(ff(n2(h)), p, train);
  }
  Tensor h = n1(x + F::dropout(sa(x), p, train));
  return n2(h + F::dropout(ff(h), p, train));
}

// Parameters away from their init (biases 0, norm weights 1), so a swapped norm or a lost
// bias changes the result.
void perturb(nn::Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  for (auto& [name, p] : m.named_parameters())
    p.copy_(p + 0.3 * randn(p.shape(), {p.dtype()}, &gen));
}

// A layer in f64 with its parameters perturbed, in eval mode (deterministic).
std::unique_ptr<nn::TransformerEncoderLayer> f64_layer(int64_t d_model, int64_t nhead,
                                                       nn::TransformerEncoderLayerOptions options,
                                                       uint64_t seed) {
  auto m = std::make_unique<nn::TransformerEncoderLayer>(d_model, nhead, options);
  m->to(DType::f64);
  perturb(*m, seed);
  m->eval();
  return m;
}

TEST(TransformerEncoderLayer, MatchesTheBlockFormulaPostAndPreNorm) {
  for (bool norm_first : {false, true})
    for (std::string act : {"relu", "gelu"}) {
      SCOPED_TRACE(std::string(norm_first ? "pre-norm " : "post-norm ") + act);
      manual_seed(1);
      auto layer = f64_layer(8, 2,
                             {.dim_feedforward = 12,
                              .activation = act,
                              .batch_first = norm_first,
                              .norm_first = norm_first},
                             3);
      nn::TransformerEncoderLayer& m = *layer;
      Generator gen(5);
      // [L, N, E] = [5, 3, 8], or [N, L, E] = [3, 5, 8] with batch_first.
      Tensor x = randn(norm_first ? Shape{3, 5, 8} : Shape{5, 3, 8}, {.dtype = DType::f64}, &gen);
      expect_near(m(x), block_formula(m, x, act), 1e-12);
      Tensor pad = from_vector<uint8_t>({0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, {3, 5})
                       .to(DType::boolean);
      nn::MultiheadAttentionMasks masks{.key_padding_mask = pad, .is_causal = norm_first};
      expect_near(m.forward(x, masks), block_formula(m, x, act, masks), 1e-12);
    }
}

TEST(TransformerEncoderLayer, DropoutDrawsTheBlocksMasksInTraining) {
  for (bool norm_first : {false, true}) {
    SCOPED_TRACE(norm_first ? "pre-norm" : "post-norm");
    manual_seed(2);
    nn::TransformerEncoderLayer m(
        8, 4, {.dim_feedforward = 16, .dropout = 0.4, .norm_first = norm_first});
    Tensor x = randn({6, 2, 8});
    manual_seed(11);
    Tensor got = m(x);
    manual_seed(11);
    expect_near(got, block_formula(m, x, "relu"), 1e-5);
    m.eval();
    Tensor eval = m(x);
    expect_near(eval, block_formula(m, x, "relu"), 1e-5);
    EXPECT_GT((eval - got).abs().max().item<double>(), 0.1) << "training must drop";
  }
}

TEST(TransformerEncoderLayer, GradientsMatchNumericalOnes) {
  for (bool norm_first : {false, true}) {
    SCOPED_TRACE(norm_first ? "pre-norm" : "post-norm");
    manual_seed(3);
    auto layer = f64_layer(
        4, 2,
        {.dim_feedforward = 6, .activation = "gelu", .batch_first = true, .norm_first = norm_first},
        4);
    nn::TransformerEncoderLayer& m = *layer;
    Generator gen(6);
    Tensor x = randn({2, 3, 4}, {.dtype = DType::f64}, &gen).requires_grad_(true);
    Tensor pad = from_vector<uint8_t>({0, 1, 0, 0, 0, 0}, {2, 3}).to(DType::boolean);
    std::vector<Tensor> inputs{x};
    for (const auto& [name, p] : m.named_parameters()) inputs.push_back(p);
    auto r = autograd::gradcheck(
        [&](const std::vector<Tensor>&) { return m.forward(x, {.key_padding_mask = pad}); },
        inputs);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

// Under autocast the sublayers return 16-bit while the residual stream stays f32 (PyTorch's
// add promotes; the fused residual add casts).
TEST(TransformerEncoderLayer, RunsUnderAutocast) {
  for (bool norm_first : {false, true}) {
    manual_seed(4);
    nn::TransformerEncoderLayer m(
        16, 4, {.dim_feedforward = 32, .batch_first = true, .norm_first = norm_first});
    m.eval();
    Tensor x = randn({2, 7, 16});
    Tensor want = m.forward(x, {.is_causal = true});
    for (DType dt : {DType::f16, DType::bf16}) {
      SCOPED_TRACE(std::string(norm_first ? "pre-norm " : "post-norm ") + dtype_name(dt));
      AutocastGuard autocast(dt);
      Tensor got = m.forward(x, {.is_causal = true});
      EXPECT_EQ(got.dtype(), DType::f32);
      expect_near(got, want, dt == DType::f16 ? 2e-2 : 1e-1);
    }
  }
}

// The options that reach the sublayers (no biases anywhere, layer_norm_eps), an attn_mask, and
// unbatched [L, E] input, each against the block formula.
TEST(TransformerEncoderLayer, OptionsMasksAndUnbatchedInput) {
  manual_seed(6);
  auto layer = f64_layer(
      6, 3, {.dim_feedforward = 10, .layer_norm_eps = 0.5, .batch_first = true, .bias = false}, 8);
  nn::TransformerEncoderLayer& m = *layer;
  EXPECT_EQ(m.norm1.eps, 0.5);
  EXPECT_EQ(m.norm2.eps, 0.5);
  Generator gen(9);
  Tensor x = randn({2, 4, 6}, {.dtype = DType::f64}, &gen);
  // A formula without biases: the layer norms' and linears' biases are undefined Tensors.
  auto no_bias_formula = [&](const Tensor& in, const nn::MultiheadAttentionMasks& masks) {
    auto ln = [](const Tensor& h, const nn::LayerNorm& n) {
      Tensor mu = h.mean({-1}, true);
      Tensor var = ((h - mu) * (h - mu)).mean({-1}, true);
      return (h - mu) / (var + n.eps).sqrt() * n.weight;
    };
    Tensor sa = m.self_attn.forward(in, in, in, masks);
    Tensor h = ln(in + sa, m.norm1);
    Tensor a = relu(matmul(h, m.linear1.weight.t()));
    return ln(h + matmul(a, m.linear2.weight.t()), m.norm2);
  };
  Tensor attn_mask = from_vector<uint8_t>({0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0}, {4, 4})
                         .to(DType::boolean);
  nn::MultiheadAttentionMasks masks{.attn_mask = attn_mask};
  expect_near(m.forward(x, masks), no_bias_formula(x, masks), 1e-12);
  Tensor one = x.select(0, 1);  // [L, E]
  expect_near(m(one), no_bias_formula(one, {}), 1e-12);
  expect_near(m(one), m(x).select(0, 1), 1e-12);
}

// Each Dropout follows its own train/eval flag, as PyTorch's submodules do: with dropout1 and
// dropout2 in eval, only the feed-forward's dropout and the attention's draw.
TEST(TransformerEncoderLayer, EachDropoutFollowsItsOwnMode) {
  manual_seed(7);
  nn::TransformerEncoderLayer m(8, 2, {.dim_feedforward = 16, .dropout = 0.5});
  m.dropout1.eval();
  m.dropout2.eval();
  Tensor x = randn({5, 2, 8});
  manual_seed(12);
  Tensor got = m(x);
  manual_seed(12);
  const double p = 0.5;
  Tensor h = layer_norm_formula(x + m.self_attn.forward(x, x, x), m.norm1);
  Tensor a = F::dropout(relu(affine(h, m.linear1)), p, true);
  expect_near(got, layer_norm_formula(h + affine(a, m.linear2), m.norm2), 1e-5);
}

TEST(TransformerEncoderLayer, HasPyTorchsNames) {
  nn::TransformerEncoderLayer m(8, 2, {.dim_feedforward = 16});
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}));
  EXPECT_EQ(m.linear1.weight.shape(), (Shape{16, 8}));
  nn::TransformerEncoderLayer no_bias(8, 2, {.dim_feedforward = 16, .bias = false});
  // in_proj_weight, out_proj.weight, linear1/2.weight, norm1/2.weight
  EXPECT_EQ(no_bias.named_parameters().size(), 6u);
}

TEST(TransformerEncoderLayer, RejectsBadOptions) {
  EXPECT_THROW_MSG(nn::TransformerEncoderLayer(8, 2, {.activation = "tanh"}),
                   "activation must be \"relu\" or \"gelu\", got \"tanh\"");
  EXPECT_THROW_MSG(nn::TransformerEncoderLayer(8, 2, {.dim_feedforward = 0}),
                   "dim_feedforward must be positive, got 0");
  EXPECT_THROW_MSG(nn::TransformerEncoderLayer(6, 4), "positive multiple of num_heads");
  nn::TransformerEncoderLayer m(8, 2, {.batch_first = true});
  EXPECT_THROW_MSG(m(randn({2, 5, 6})), "embed_dim = 8");
}

TEST(TransformerEncoder, StacksLayersThenTheFinalNorm) {
  manual_seed(5);
  nn::TransformerEncoder enc(
      8, 2, 3,
      {.layer = {.dim_feedforward = 16, .batch_first = true, .norm_first = true},
       .final_norm = true});
  perturb(enc, 7);
  enc.eval();
  Tensor x = randn({2, 5, 8});
  nn::MultiheadAttentionMasks masks{.is_causal = true};
  Tensor want = x;
  for (int64_t i = 0; i < 3; ++i) want = enc.layer(i).forward(want, masks);
  want = layer_norm_formula(want, *enc.norm);
  expect_near(enc.forward(x, masks), want, 1e-5);
  // Layers are initialised each on their own.
  nn::TransformerEncoder fresh(8, 2, 2);
  EXPECT_GT(
      (fresh.layer(0).linear1.weight - fresh.layer(1).linear1.weight).abs().max().item<double>(),
      0.0);
}

TEST(TransformerEncoder, HasPyTorchsNamesAndRejectsNoLayers) {
  nn::TransformerEncoder enc(8, 2, 2, {.final_norm = true});
  auto state = enc.state_dict();
  EXPECT_TRUE(state.count("layers.0.self_attn.in_proj_weight"));
  EXPECT_TRUE(state.count("layers.1.norm2.bias"));
  EXPECT_TRUE(state.count("norm.weight"));
  EXPECT_EQ(state.size(), 2 * 12 + 2u);
  EXPECT_FALSE(nn::TransformerEncoder(8, 2, 1).norm);
  EXPECT_THROW_MSG(nn::TransformerEncoder(8, 2, 0), "num_layers must be positive, got 0");
}

// The whole encoder on the GPU against the CPU, training mode with dropout: both devices draw
// the same Philox masks from the same generator state (the CPU's fused attention kernel keeps
// the weights the CUDA composite's dropout keeps), so outputs and every gradient agree to f32
// rounding. Masks, the fused linear + GELU, dropout_add and layer norm all run on the device.
TEST(TransformerCuda, EncoderTrainsLikeTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  auto build = [] {
    manual_seed(9);
    return std::make_unique<nn::TransformerEncoder>(
        16, 4, 2,
        nn::TransformerEncoderOptions{.layer = {.dim_feedforward = 24,
                                                .dropout = 0.2,
                                                .activation = "gelu",
                                                .batch_first = true,
                                                .norm_first = true},
                                      .final_norm = true});
  };
  auto cpu = build(), gpu = build();
  gpu->to(Device::cuda());
  Tensor x = randn({3, 7, 16}).requires_grad_(true);
  Tensor xg = x.detach().to(Device::cuda()).requires_grad_(true);
  Tensor pad = from_vector<uint8_t>({0, 0, 0, 0, 0, 1, 1,  //
                                     0, 0, 0, 0, 0, 0, 0,  //
                                     1, 0, 0, 0, 0, 0, 0},
                                    {3, 7})
                   .to(DType::boolean);
  manual_seed(21);
  Tensor want = cpu->forward(x, {.key_padding_mask = pad, .is_causal = true});
  manual_seed(21);
  Tensor got = gpu->forward(xg, {.key_padding_mask = pad.to(Device::cuda()), .is_causal = true});
  ASSERT_EQ(got.device(), Device::cuda());
  expect_near(got.to(Device::cpu()), want, 1e-4);
  Tensor r = randn(want.shape());
  (want * r).sum().backward();
  (got * r.to(Device::cuda())).sum().backward();
  expect_near(xg.grad().to(Device::cpu()), x.grad(), 1e-4);
  auto cpu_params = cpu->named_parameters(), gpu_params = gpu->named_parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    SCOPED_TRACE(cpu_params[i].first);
    expect_near(gpu_params[i].second.grad().to(Device::cpu()), cpu_params[i].second.grad(), 1e-4);
  }
}

}  // namespace
}  // namespace lumen::testing
