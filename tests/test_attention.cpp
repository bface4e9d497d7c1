// Scaled dot-product attention and MultiheadAttention against naive f64 loops written here,
// numerical gradients (the harness cases), and their error paths.
#include <cmath>
#include <limits>
#include <vector>

#include "lumen/lumen.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;
constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor sdpa(const std::vector<Tensor>& v, F::AttentionOptions o = {}) {
  return F::scaled_dot_product_attention(v[0], v[1], v[2], o);
}

// Both implementations: the fused kernel (what the CPU runs) and the composite (what a device
// without one runs, and dropout).
using AttentionFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&,
                               const F::AttentionOptions&);
const AttentionFn kPaths[] = {F::scaled_dot_product_attention,
                              F::detail::scaled_dot_product_attention_math};

LUMEN_OP_CASES(attention){{
    {"sdpa",
     {Input::real({2, 3, 5, 4}), Input::real({2, 3, 6, 4}), Input::real({2, 3, 6, 3})},
     [](const auto& v) { return sdpa(v); }},
    {"sdpa_2d",
     {Input::real({7, 8}), Input::real({9, 8}), Input::real({9, 5})},
     [](const auto& v) { return sdpa(v, {.scale = 0.7}); }},
    {"sdpa_causal",
     {Input::real({2, 6, 4}), Input::real({2, 4, 4}), Input::real({2, 4, 5})},
     [](const auto& v) { return sdpa(v, {.is_causal = true}); }},
    {"sdpa_causal_wide",
     {Input::real({3, 4, 8}), Input::real({3, 7, 8}), Input::real({3, 7, 2})},
     [](const auto& v) { return sdpa(v, {.is_causal = true}); }},
    // Random bool masks leave some rows with no key at all (zeros, no gradient).
    {"sdpa_bool_mask",
     {Input::real({2, 2, 5, 3}), Input::real({2, 2, 4, 3}), Input::real({2, 2, 4, 3}),
      Input::mask({2, 1, 5, 4})},
     [](const auto& v) { return sdpa(v, {.attn_mask = v[3]}); }},
    {"sdpa_float_mask",
     {Input::real({2, 5, 3}), Input::real({2, 6, 3}), Input::real({2, 6, 4}),
      Input::constant({5, 6}), Input::mask({5, 6})},
     [](const auto& v) { return sdpa(v, {.attn_mask = masked_fill(v[3], v[4], -kInf)}); }},
    // A learned bias as the mask: its gradient too (the composite path).
    {"sdpa_learned_bias",
     {Input::real({2, 5, 3}), Input::real({2, 6, 3}), Input::real({2, 6, 4}), Input::real({5, 6})},
     [](const auto& v) { return sdpa(v, {.attn_mask = v[3]}); }},
    // A generator made in the function: every call draws the same mask.
    {"sdpa_dropout",
     {Input::real({2, 7, 4}), Input::real({2, 5, 4}), Input::real({2, 5, 3})},
     [](const auto& v) {
       Generator gen(5);
       return sdpa(v, {.dropout_p = 0.25, .generator = &gen});
     }},
    // k and v shared by every head: their gradients sum over the heads.
    {"sdpa_broadcast",
     {Input::real({2, 3, 5, 4}), Input::real({2, 1, 6, 4}), Input::real({1, 6, 3})},
     [](const auto& v) { return sdpa(v); }},
}};

struct Reference {
  std::vector<double> q, k, v;  // [B, L, E], [B, S, E], [B, S, Ev], row-major
  int64_t B, L, S, E, Ev;
  // allowed(b, i, j) and bias(b, i, j): the mask as the loops see it.
  std::function<bool(int64_t, int64_t, int64_t)> allowed = [](int64_t, int64_t, int64_t) {
    return true;
  };
  std::function<double(int64_t, int64_t, int64_t)> bias = [](int64_t, int64_t, int64_t) {
    return 0.0;
  };
  double scale = 1.0;

  // softmax over the allowed keys (a row with none is 0), times v.
  std::vector<double> out() const {
    std::vector<double> o(B * L * Ev, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> s(S, -kInf);
        double m = -kInf;
        for (int64_t j = 0; j < S; ++j) {
          if (!allowed(b, i, j)) continue;
          double dot = 0;
          for (int64_t e = 0; e < E; ++e) dot += q[(b * L + i) * E + e] * k[(b * S + j) * E + e];
          s[j] = dot * scale + bias(b, i, j);
          m = std::max(m, s[j]);
        }
        if (m == -kInf) continue;
        double z = 0;
        for (int64_t j = 0; j < S; ++j) z += std::exp(s[j] - m);
        for (int64_t j = 0; j < S; ++j)
          for (int64_t e = 0; e < Ev; ++e)
            o[(b * L + i) * Ev + e] += std::exp(s[j] - m) / z * v[(b * S + j) * Ev + e];
      }
    return o;
  }
};

void expect_near(const Tensor& got, const std::vector<double>& want, double tol) {
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], want[i], tol * (1 + std::abs(want[i]))) << "element " << i;
}

TEST(Attention, MatchesLoopsWithCausalMaskAndScale) {
  Generator gen(1);
  const int64_t B = 3, L = 5, S = 7, E = 4, Ev = 6;
  Tensor q = randn({B, L, E}, {}, &gen), k = randn({B, S, E}, {}, &gen),
         v = randn({B, S, Ev}, {}, &gen);
  Reference ref{
      q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), B, L, S, E, Ev};
  ref.scale = 1 / std::sqrt(4.0);
  const std::vector<double> plain = ref.out();
  ref.allowed = [](int64_t, int64_t i, int64_t j) { return j <= i; };
  ref.scale = 0.3;
  const std::vector<double> causal = ref.out();
  for (AttentionFn attention : kPaths) {
    expect_near(attention(q, k, v, {}), plain, 1e-5);
    expect_near(attention(q, k, v, {.is_causal = true, .scale = 0.3}), causal, 1e-5);
  }
  // More queries than keys: rows i >= S see every key.
  const int64_t L2 = 9;
  Tensor q2 = randn({B, L2, E}, {}, &gen);
  Reference tall{
      q2.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), B, L2, S, E, Ev};
  tall.allowed = [](int64_t, int64_t i, int64_t j) { return j <= i; };
  tall.scale = 0.5;
  for (AttentionFn attention : kPaths)
    expect_near(attention(q2, k, v, {.is_causal = true}), tall.out(), 1e-5);
}

TEST(Attention, EmptyQueriesOrKeys) {
  Tensor q = randn({2, 3, 4}), k = randn({2, 5, 4}), v = randn({2, 5, 3});
  EXPECT_EQ(F::scaled_dot_product_attention(randn({2, 0, 4}), k, v).shape(), (Shape{2, 0, 3}));
  // No key at all: every row is fully masked, so zeros.
  Tensor none = F::scaled_dot_product_attention(q, randn({2, 0, 4}), randn({2, 0, 3}));
  EXPECT_EQ(none.shape(), (Shape{2, 3, 3}));
  EXPECT_EQ(none.abs().max().item(), 0.0);
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(randn({2, 3, 0}), randn({2, 5, 0}), v),
                   "embedding size E", "must be > 0");
}

TEST(Attention, BoolMaskTrueAttendsAndFullyMaskedRowsGiveZeros) {
  Generator gen(2);
  const int64_t B = 2, L = 4, S = 5, E = 3, Ev = 2;
  Tensor q = randn({B, L, E}, {}, &gen), k = randn({B, S, E}, {}, &gen),
         v = randn({B, S, Ev}, {}, &gen);
  // Per batch and query: row 1 of batch 0 masks every key.
  std::vector<uint8_t> m(B * L * S);
  for (int64_t t = 0; t < B * L * S; ++t) m[t] = (t * 7 % 3) != 0;
  for (int64_t j = 0; j < S; ++j) m[1 * S + j] = 0;
  Tensor mask = from_vector<uint8_t>(m, {B, L, S}).to(DType::boolean);
  k.requires_grad_(true);
  v.requires_grad_(true);
  Reference ref{
      q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), B, L, S, E, Ev};
  ref.scale = 1 / std::sqrt(3.0);
  ref.allowed = [&](int64_t b, int64_t i, int64_t j) { return m[(b * L + i) * S + j] != 0; };
  q.requires_grad_(true);
  for (AttentionFn attention : kPaths) {
    Tensor out = attention(q, k, v, {.attn_mask = mask});
    expect_near(out, ref.out(), 1e-5);
    out.sum().backward();
    // The dead row has no gradient, and nothing is NaN.
    std::vector<double> gq = q.grad().to_vector<double>();
    for (int64_t e = 0; e < E; ++e) EXPECT_EQ(gq[1 * E + e], 0.0);
    for (double g : gq) EXPECT_TRUE(std::isfinite(g));
    for (const Tensor* t : {&k, &v})
      for (double g : t->grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(g));
    q.set_grad({});
    k.set_grad({});
    v.set_grad({});
  }
}

TEST(Attention, FloatMaskIsAddedToTheScores) {
  Generator gen(3);
  const int64_t B = 2, L = 3, S = 4, E = 5, Ev = 3;
  Tensor q = randn({B, L, E}, {}, &gen), k = randn({B, S, E}, {}, &gen),
         v = randn({B, S, Ev}, {}, &gen), bias = randn({L, S}, {}, &gen);
  std::vector<double> bv = bias.to_vector<double>();
  Reference ref{
      q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), B, L, S, E, Ev};
  ref.scale = 1 / std::sqrt(5.0);
  ref.bias = [&](int64_t, int64_t i, int64_t j) { return bv[i * S + j]; };
  for (AttentionFn attention : kPaths)
    expect_near(attention(q, k, v, {.attn_mask = bias}), ref.out(), 1e-5);
}

// The fused kernel's gradients against the composite's, in f64 on shapes that span several
// query blocks of the kernel (64 rows), with each kind of mask and with dropout.
TEST(Attention, FusedGradientsMatchTheCompositeAcrossBlocks) {
  Generator gen(8);
  const int64_t B = 2, H = 3, L = 150, S = 97, E = 8, Ev = 5;
  auto make = [&](Shape s) { return randn(s, {.dtype = DType::f64}, &gen).requires_grad_(true); };
  Tensor q = make({B, H, L, E}), k = make({B, H, S, E}), v = make({B, H, S, Ev});
  Tensor keep = rand({B, 1, L, S}, {.dtype = DType::f64}, &gen) > scalar_tensor(0.2, {DType::f64});
  Tensor bias = randn({L, S}, {.dtype = DType::f64}, &gen);
  // Per head, broadcast over the batch, with every seventh row fully masked.
  std::vector<uint8_t> per_head(H * L * S);
  for (size_t t = 0; t < per_head.size(); ++t)
    per_head[t] = (t / S) % L % 7 != 0 && (t * 2654435761u) % 5 != 0;
  Tensor heads = from_vector<uint8_t>(per_head, {1, H, L, S}).to(DType::boolean);
  Generator drop(0);  // reseeded for each path: both draw the same dropout mask
  std::vector<F::AttentionOptions> cases{{},
                                         {.is_causal = true},
                                         {.attn_mask = keep},
                                         {.attn_mask = heads},
                                         {.attn_mask = bias, .scale = -0.4},
                                         {.dropout_p = 0.3, .is_causal = true, .generator = &drop}};
  for (size_t c = 0; c < cases.size(); ++c) {
    std::vector<std::vector<double>> results;
    for (AttentionFn attention : kPaths) {
      drop.manual_seed(11);
      Tensor out = attention(q, k, v, cases[c]);
      Generator same(3);  // one weighting of the outputs for both paths
      Tensor r = randn(out.shape(), {.dtype = DType::f64}, &same);
      (out * r).sum().backward();
      results.push_back(out.to_vector<double>());
      for (Tensor* t : {&q, &k, &v}) {
        results.push_back(t->grad().to_vector<double>());
        t->set_grad({});
      }
    }
    for (size_t i = 0; i < 4; ++i)
      for (size_t e = 0; e < results[i].size(); ++e)
        ASSERT_NEAR(results[i][e], results[4 + i][e], 1e-12 * (1 + std::abs(results[4 + i][e])))
            << "case " << c << ", output " << i << " (0: out, 1-3: dq, dk, dv), element " << e;
  }
}

TEST(Attention, DropoutDropsAttentionWeightsWithDropoutsMask) {
  Generator gen(4);
  Tensor q = randn({2, 6, 4}, {}, &gen), k = randn({2, 5, 4}, {}, &gen),
         v = randn({2, 5, 3}, {}, &gen);
  Generator a(99), b(99);
  Tensor got = F::scaled_dot_product_attention(q, k, v, {.dropout_p = 0.3, .generator = &a});
  Tensor p = softmax(matmul(q, k.transpose(1, 2)) * 0.5, -1);
  Tensor want = matmul(F::dropout(p, 0.3, true, &b), v);
  expect_near(got, want.to_vector<double>(), 1e-5);
  Tensor plain = F::scaled_dot_product_attention(q, k, v);
  EXPECT_GT((got - plain).abs().max().item(), 1e-3);  // something was dropped
}

// The fused kernel reads strided views in place: heads as transposed views of [B, L, H, D]
// buffers (k and v narrowed out of one packed buffer, as MultiheadAttention's projections are),
// a last dim that is not adjacent (copied first). Same numbers as on contiguous copies, to the
// bit, forward and backward; the output of a [B, L, H, D]-laid-out q is laid out the same, so
// its transpose back is contiguous.
TEST(Attention, FusedKernelReadsStridedViewsInPlace) {
  Generator gen(31);
  const int64_t B = 2, L = 70, S = 9, H = 3, D = 5;
  Tensor qbuf = randn({B, L, H, D}, {.dtype = DType::f64}, &gen);
  Tensor kvbuf = randn({B, S, 2 * H * D}, {.dtype = DType::f64}, &gen);
  Tensor q = qbuf.transpose(1, 2).requires_grad_(false);
  Tensor k = kvbuf.narrow(2, 0, H * D).reshape({B, S, H, D}).transpose(1, 2);
  Tensor v =
      randn({B, H, D, S}, {.dtype = DType::f64}, &gen).transpose(-2, -1);  // last dim strided
  Tensor pad =
      from_vector<uint8_t>({1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, {B, 1, 1, S})
          .to(DType::boolean);
  for (F::AttentionOptions o : {F::AttentionOptions{}, F::AttentionOptions{.is_causal = true},
                                F::AttentionOptions{.attn_mask = pad}}) {
    std::vector<Tensor> views{q, k, v}, copies{q.contiguous(), k.contiguous(), v.contiguous()};
    for (auto* set : {&views, &copies})
      for (Tensor& t : *set) t = t.detach().requires_grad_(true);
    Tensor a = F::scaled_dot_product_attention(views[0], views[1], views[2], o);
    Tensor b = F::scaled_dot_product_attention(copies[0], copies[1], copies[2], o);
    EXPECT_TRUE(a.transpose(1, 2).is_contiguous()) << "out laid out as q's [B, L, H, D]";
    EXPECT_EQ(a.to_vector<double>(), b.to_vector<double>());
    // The output's gradient arrives transposed ([B, L, H, D] memory), as MultiheadAttention's.
    Tensor r = randn({B, L, H, D}, {.dtype = DType::f64}, &gen);
    (a.transpose(1, 2) * r).sum().backward();
    (b.transpose(1, 2) * r).sum().backward();
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(views[i].grad().to_vector<double>(), copies[i].grad().to_vector<double>())
          << "gradient of input " << i;
  }
}

// Packed projections give what the three heads' views give, to the bit, forward and backward
// (its one-node backward against three narrows' summed gradients), masks and dropout included.
TEST(Attention, PackedSelfAttentionIsTheHeadsViews) {
  Generator gen(41);
  const int64_t N = 2, L = 67, H = 3, D = 4;
  Tensor base = randn({N, L, 3 * H * D}, {.dtype = DType::f64}, &gen);
  Tensor bias = randn({N, 1, 1, L}, {.dtype = DType::f64}, &gen);
  Generator drop(0);
  for (F::AttentionOptions o :
       {F::AttentionOptions{}, F::AttentionOptions{.is_causal = true},
        F::AttentionOptions{.attn_mask = bias, .dropout_p = 0.3, .generator = &drop}}) {
    Tensor a_in = base.clone().requires_grad_(true), b_in = base.clone().requires_grad_(true);
    drop.manual_seed(5);
    Tensor a = F::scaled_dot_product_attention_packed(a_in, H, o);
    drop.manual_seed(5);
    auto head = [&](int64_t i) {
      return b_in.narrow(2, i * H * D, H * D).reshape({N, L, H, D}).transpose(1, 2);
    };
    Tensor b = F::scaled_dot_product_attention(head(0), head(1), head(2), o);
    ASSERT_EQ(a.shape(), (Shape{N, H, L, D}));
    EXPECT_EQ(a.to_vector<double>(), b.to_vector<double>());
    Tensor r = randn(a.shape(), {.dtype = DType::f64}, &gen);
    (a * r).sum().backward();
    (b * r).sum().backward();
    EXPECT_EQ(a_in.grad().to_vector<double>(), b_in.grad().to_vector<double>());
  }
  EXPECT_THROW_MSG(F::scaled_dot_product_attention_packed(base, 5),
                   "qkv must be [N, L, 3 * num_heads * D]");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention_packed(randn({2, 36}), 3),
                   "qkv must be [N, L, 3 * num_heads * D]");
}

TEST(Attention, AutocastRunsTheProductsIn16Bits) {
  Generator gen(5);
  Tensor q = randn({2, 8, 16}, {}, &gen), k = randn({2, 8, 16}, {}, &gen),
         v = randn({2, 8, 16}, {}, &gen);
  Tensor want = F::scaled_dot_product_attention(q, k, v, {.is_causal = true});
  for (DType dt : {DType::f16, DType::bf16}) {
    AutocastGuard autocast(dt);
    Tensor got = F::scaled_dot_product_attention(q, k, v, {.is_causal = true});
    EXPECT_EQ(got.dtype(), dt);
    expect_near(got.to(DType::f32), want.to_vector<double>(), dt == DType::f16 ? 5e-3 : 3e-2);
  }
}

TEST(Attention, RejectsBadInputs) {
  Tensor q = randn({2, 3, 4}), k = randn({2, 5, 4}), v = randn({2, 5, 6});
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(q, randn({2, 5, 3}), v), "k's last dim (3)",
                   "E = 4");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(q, k, randn({2, 4, 6})), "as many rows as k",
                   "S = 5");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(q, k, v.to(DType::f64)), "one floating dtype");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(randn({4}), k, v), "at least 2 dims");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(q, k, v, {.attn_mask = randn({3, 4})}),
                   "attn_mask of shape [3, 4]", "[2, 3, 5]");
  EXPECT_THROW_MSG(
      F::scaled_dot_product_attention(q, k, v, {.attn_mask = randn({3, 5}), .is_causal = true}),
      "either is_causal or attn_mask");
  EXPECT_THROW_MSG(
      F::scaled_dot_product_attention(q, k, v, {.attn_mask = zeros({3, 5}, {DType::i64})}),
      "attn_mask must be bool, f32 or of q's dtype");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(q, k, v, {.dropout_p = 1.0}),
                   "dropout_p must lie in [0, 1)");
  EXPECT_THROW_MSG(F::scaled_dot_product_attention(randn({3, 3, 4}), k, v), "broadcast");
}

// MultiheadAttention by loops: per head h, attention over features [h D, (h + 1) D) of the
// projections, then the output projection. x*: [N][len][E] in f64.
std::vector<double> mha_reference(nn::MultiheadAttention& m, const Tensor& query, const Tensor& key,
                                  const Tensor& value,
                                  const std::function<bool(int64_t, int64_t, int64_t)>& allowed) {
  const int64_t N = query.size(0), L = query.size(1), S = key.size(1), E = m.embed_dim,
                H = m.num_heads, D = m.head_dim;
  std::vector<double> W = m.in_proj_weight.to_vector<double>(),
                      bi = m.in_proj_bias.to_vector<double>(),
                      Wo = m.out_proj.weight.to_vector<double>(),
                      bo = m.out_proj.bias.to_vector<double>();
  auto project = [&](const Tensor& x, int64_t which) {
    std::vector<double> xv = x.to_vector<double>(), y(xv.size());
    for (int64_t r = 0; r < x.numel() / E; ++r)
      for (int64_t o = 0; o < E; ++o) {
        double s = bi[which * E + o];
        for (int64_t c = 0; c < E; ++c) s += W[(which * E + o) * E + c] * xv[r * E + c];
        y[r * E + o] = s;
      }
    return y;
  };
  std::vector<double> qp = project(query, 0), kp = project(key, 1), vp = project(value, 2);
  std::vector<double> heads(N * L * E, 0.0);
  for (int64_t h = 0; h < H; ++h) {
    auto pick = [&](const std::vector<double>& x, int64_t len) {
      std::vector<double> y(N * len * D);
      for (int64_t r = 0; r < N * len; ++r)
        for (int64_t d = 0; d < D; ++d) y[r * D + d] = x[r * E + h * D + d];
      return y;
    };
    Reference ref{pick(qp, L), pick(kp, S), pick(vp, S), N, L, S, D, D};
    ref.scale = 1 / std::sqrt(static_cast<double>(D));
    ref.allowed = allowed;
    std::vector<double> o = ref.out();
    for (int64_t r = 0; r < N * L; ++r)
      for (int64_t d = 0; d < D; ++d) heads[r * E + h * D + d] = o[r * D + d];
  }
  std::vector<double> out(N * L * E);
  for (int64_t r = 0; r < N * L; ++r)
    for (int64_t o = 0; o < E; ++o) {
      double s = bo[o];
      for (int64_t c = 0; c < E; ++c) s += Wo[o * E + c] * heads[r * E + c];
      out[r * E + o] = s;
    }
  return out;
}

TEST(MultiheadAttention, HasPyTorchsParametersAndInit) {
  manual_seed(0);
  nn::MultiheadAttention m(8, 2);
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight",
                                             "out_proj.bias"}));
  EXPECT_EQ(m.in_proj_weight.shape(), (Shape{24, 8}));
  EXPECT_EQ(m.in_proj_bias.abs().max().item(), 0.0);
  EXPECT_EQ(m.out_proj.bias.abs().max().item(), 0.0);
  // xavier_uniform_ over [3E, E]: bound sqrt(6 / (3E + E)).
  EXPECT_LE(m.in_proj_weight.abs().max().item(), std::sqrt(6.0 / 32) + 1e-7);
  EXPECT_EQ(m.head_dim, 4);
  EXPECT_THROW_MSG(nn::MultiheadAttention(10, 3), "positive multiple of num_heads",
                   "embed_dim=10, num_heads=3");
}

TEST(MultiheadAttention, MatchesLoopsInEveryLayoutAndWithMasks) {
  manual_seed(1);
  const int64_t N = 2, L = 5, S = 6, E = 8;
  nn::MultiheadAttention m(E, 2);
  {
    NoGradGuard no_grad;  // nonzero biases, so their slices are checked too
    m.in_proj_bias.copy_(randn({3 * E}));
    m.out_proj.bias.copy_(randn({E}));
  }
  Generator gen(6);
  Tensor x = randn({N, L, E}, {}, &gen), kv = randn({N, S, E}, {}, &gen),
         val = randn({N, S, E}, {}, &gen);
  auto all = [](int64_t, int64_t, int64_t) { return true; };

  nn::MultiheadAttention first(E, 2, {.batch_first = true});
  first.load_state_dict(m.state_dict());
  expect_near(first.forward(x, kv, val), mha_reference(m, x, kv, val, all), 1e-5);
  // [L, N, E] by default: the same numbers, transposed.
  Tensor seq = m.forward(x.transpose(0, 1), kv.transpose(0, 1), val.transpose(0, 1));
  EXPECT_EQ(seq.shape(), (Shape{L, N, E}));
  expect_near(seq.transpose(0, 1).contiguous(), mha_reference(m, x, kv, val, all), 1e-5);
  // Self-attention (one tensor, one GEMM) equals the same values passed as three tensors.
  expect_near(first.forward(x, x, x), mha_reference(m, x, x, x, all), 1e-5);
  expect_near(first.forward(x, x.clone(), x.clone()), mha_reference(m, x, x, x, all), 1e-5);
  // Unbatched.
  Tensor x0 = x.select(0, 0), kv0 = kv.select(0, 0), val0 = val.select(0, 0);
  Tensor one = first.forward(x0, kv0, val0);
  EXPECT_EQ(one.shape(), (Shape{L, E}));
  expect_near(one, mha_reference(m, x0.unsqueeze(0), kv0.unsqueeze(0), val0.unsqueeze(0), all),
              1e-5);

  // PyTorch's convention: true = not allowed. Sequence 1 pads its last two keys.
  Tensor pad =
      from_vector<uint8_t>({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, {N, S}).to(DType::boolean);
  auto unpadded = [](int64_t b, int64_t, int64_t j) { return b == 0 || j < 4; };
  expect_near(first.forward(x, kv, val, {.key_padding_mask = pad}),
              mha_reference(m, x, kv, val, unpadded), 1e-5);
  auto causal = [](int64_t, int64_t i, int64_t j) { return j <= i; };
  expect_near(first.forward(x, kv, val, {.is_causal = true}), mha_reference(m, x, kv, val, causal),
              1e-5);
  Tensor future = gt(arange(S).view({1, S}), arange(L).view({L, 1}));
  expect_near(first.forward(x, kv, val, {.attn_mask = future}),
              mha_reference(m, x, kv, val, causal), 1e-5);
  auto both = [&](int64_t b, int64_t i, int64_t j) { return causal(b, i, j) && unpadded(b, i, j); };
  expect_near(first.forward(x, kv, val, {.key_padding_mask = pad, .is_causal = true}),
              mha_reference(m, x, kv, val, both), 1e-5);
  expect_near(first.forward(x, kv, val, {.key_padding_mask = pad, .attn_mask = future}),
              mha_reference(m, x, kv, val, both), 1e-5);
}

TEST(MultiheadAttention, GradientsMatchNumericalOnes) {
  manual_seed(2);
  nn::MultiheadAttention m(6, 3, {.batch_first = true});
  m.to(DType::f64);
  Generator gen(7);
  Tensor x = randn({2, 4, 6}, {.dtype = DType::f64}, &gen).requires_grad_(true);
  Tensor kv = randn({2, 3, 6}, {.dtype = DType::f64}, &gen).requires_grad_(true);
  Tensor pad = from_vector<uint8_t>({0, 0, 1, 0, 0, 0}, {2, 3}).to(DType::boolean);
  std::vector<Tensor> inputs{x, kv};
  for (const auto& [name, p] : m.named_parameters()) inputs.push_back(p);
  auto r = autograd::gradcheck(
      [&](const std::vector<Tensor>&) { return m.forward(x, kv, kv, {.key_padding_mask = pad}); },
      inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(MultiheadAttention, RunsUnderAutocastWithMasks) {
  manual_seed(3);
  nn::MultiheadAttention m(16, 4, {.batch_first = true});
  Tensor x = randn({2, 6, 16});
  Tensor pad =
      from_vector<uint8_t>({0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, {2, 6}).to(DType::boolean);
  Tensor want = m.forward(x, x, x, {.key_padding_mask = pad, .is_causal = true});
  for (DType dt : {DType::f16, DType::bf16}) {
    AutocastGuard autocast(dt);
    Tensor got = m.forward(x, x, x, {.key_padding_mask = pad, .is_causal = true});
    EXPECT_EQ(got.dtype(), dt);
    expect_near(got.to(DType::f32), want.to_vector<double>(), dt == DType::f16 ? 1e-2 : 5e-2);
  }
}

// One GEMM for the three projections only when query, key and value are one tensor: a key that
// shares x's memory but not its graph (a detached x) must not send gradient into x.
TEST(MultiheadAttention, SelfAttentionIsDecidedByIdentityNotMemory) {
  manual_seed(4);
  nn::MultiheadAttention m(8, 2, {.batch_first = true});
  Tensor x = randn({2, 5, 8}).requires_grad_(true);
  m.forward(x, x.detach(), x.detach()).sum().backward();
  std::vector<double> shared = x.grad().to_vector<double>();
  x.set_grad({});
  m.forward(x, x.detach().clone(), x.detach().clone()).sum().backward();
  std::vector<double> separate = x.grad().to_vector<double>();
  for (size_t i = 0; i < shared.size(); ++i) EXPECT_EQ(shared[i], separate[i]) << i;
}

TEST(MultiheadAttention, RejectsBadShapes) {
  nn::MultiheadAttention m(8, 2, {.batch_first = true});
  Tensor x = randn({2, 5, 8});
  EXPECT_THROW_MSG(m.forward(x, randn({2, 5, 4}), x), "embed_dim = 8");
  EXPECT_THROW_MSG(m.forward(x, randn({3, 5, 8}), randn({3, 5, 8})), "batch size");
  EXPECT_THROW_MSG(m.forward(x, x, randn({2, 5, 8, 1})), "3-D (batched) or all 2-D");
  EXPECT_THROW_MSG(m.forward(x, x, x, {.key_padding_mask = zeros({2, 4}, {DType::boolean})}),
                   "key_padding_mask must be [N, S] = [2, 5]");
  EXPECT_THROW_MSG(m.forward(x, x, x, {.attn_mask = zeros({4, 5}, {DType::boolean})}),
                   "attn_mask must be [L, S] = [5, 5]");
  EXPECT_THROW_MSG(
      m.forward(x, x, x, {.attn_mask = zeros({5, 5}, {DType::boolean}), .is_causal = true}),
      "either is_causal or attn_mask");
}

}  // namespace
}  // namespace lumen::testing
