#include <omp.h>

#include <random>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

using nn::functional::embedding;

Tensor idx(std::vector<int64_t> v, Shape shape = {}) { return from_vector(v, std::move(shape)); }
Tensor f64(std::vector<double> v, Shape shape = {}) { return from_vector(v, std::move(shape)); }

// Index inputs hold values in [0, high); sizes above `high` force duplicate indices, so the
// accumulating backwards are exercised.
LUMEN_OP_CASES(index){{
    {"cat_dim0",
     {Input::real({2, 3}), Input::real({4, 3}), Input::real({1, 3})},
     [](const auto& v) {
       return cat({v[0], v[1], v[2]}, 0);
     }},
    {"cat_dim1_odd",
     {Input::real({3, 2, 5}), Input::real({3, 1, 5}), Input::real({3, 4, 5})},
     [](const auto& v) {
       return cat({v[0], v[1], v[2]}, 1);
     }},
    {"cat_negative_dim",
     {Input::real({2, 3}), Input::real({2, 5})},
     [](const auto& v) {
       return cat({v[0], v[1]}, -1);
     }},
    {"cat_with_constant",
     {Input::real({3, 3}), Input::constant({2, 3})},
     [](const auto& v) {
       return cat({v[1], v[0]}, 0);
     }},
    {"stack_dim0",
     {Input::real({3, 5}), Input::real({3, 5}), Input::real({3, 5})},
     [](const auto& v) {
       return stack({v[0], v[1], v[2]}, 0);
     }},
    {"stack_dim_last",
     {Input::real({2, 3}), Input::real({2, 3})},
     [](const auto& v) {
       return stack({v[0], v[1]}, -1);
     }},
    {"stack_1d",
     {Input::real({7}), Input::real({7})},
     [](const auto& v) {
       return stack({v[0], v[1]}, 1);
     }},
    {"index_select_dim0",
     {Input::real({5, 3}), Input::index({7}, 5)},
     [](const auto& v) { return index_select(v[0], 0, v[1]); }},
    {"index_select_dim1",
     {Input::real({3, 4, 5}), Input::index({6}, 4)},
     [](const auto& v) { return index_select(v[0], 1, v[1]); }},
    {"index_select_last",
     {Input::real({2, 3, 7}), Input::index({9}, 7)},
     [](const auto& v) { return index_select(v[0], -1, v[1]); }},
    {"index_select_1d",
     {Input::real({6}), Input::index({11}, 6)},
     [](const auto& v) { return index_select(v[0], 0, v[1]); }},
    {"index_add_dim0",
     {Input::real({5, 3}), Input::index({7}, 5), Input::real({7, 3})},
     [](const auto& v) { return index_add(v[0], 0, v[1], v[2]); }},
    {"index_add_dim1",
     {Input::real({2, 4, 3}), Input::index({5}, 4), Input::real({2, 5, 3})},
     [](const auto& v) { return index_add(v[0], 1, v[1], v[2]); }},
    {"gather_dim0",
     {Input::real({4, 3}), Input::index({6, 3}, 4)},
     [](const auto& v) { return gather(v[0], 0, v[1]); }},
    {"gather_dim1_smaller_index",
     {Input::real({3, 5, 2}), Input::index({2, 7, 2}, 5)},
     [](const auto& v) { return gather(v[0], 1, v[1]); }},
    {"gather_last",
     {Input::real({3, 5}), Input::index({3, 8}, 5)},
     [](const auto& v) { return gather(v[0], -1, v[1]); }},
    {"scatter_add_dim0",
     {Input::real({4, 3}), Input::index({6, 3}, 4), Input::real({6, 3})},
     [](const auto& v) { return scatter_add(v[0], 0, v[1], v[2]); }},
    {"scatter_add_larger_source",
     {Input::real({3, 5}), Input::index({2, 7}, 5), Input::real({3, 8})},
     [](const auto& v) { return scatter_add(v[0], 1, v[1], v[2]); }},
    {"embedding_2d_indices",
     {Input::index({2, 3}, 5), Input::real({5, 4})},
     [](const auto& v) { return embedding(v[0], v[1]); }},
    {"embedding_1d_indices",
     {Input::index({9}, 4), Input::real({4, 3})},
     [](const auto& v) { return embedding(v[0], v[1]); }},
    {"embedding_0d_index",
     {Input::index({}, 4), Input::real({4, 3})},
     [](const auto& v) { return embedding(v[0], v[1]); }},
    // The padding row (never indexed here, so its numerical gradient is 0 too) gets none.
    {"embedding_padding",
     {Input::index({3, 5}, 4), Input::real({5, 3})},
     [](const auto& v) { return embedding(v[0], v[1], -1); }},
}};

TEST(Index, CatForward) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2});
  Tensor b = f64({5, 6}, {1, 2});
  Tensor c = f64({7, 8}, {2, 1});
  Tensor r0 = cat({a, b}, 0);
  EXPECT_EQ(r0.shape(), (Shape{3, 2}));
  EXPECT_EQ(r0.to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor r1 = cat({a, c}, -1);
  EXPECT_EQ(r1.shape(), (Shape{2, 3}));
  EXPECT_EQ(r1.to_vector<double>(), (std::vector<double>{1, 2, 7, 3, 4, 8}));
  // Non-contiguous input: a transposed is [[1, 3], [2, 4]].
  EXPECT_EQ(cat({a.t(), b}, 0).to_vector<double>(), (std::vector<double>{1, 3, 2, 4, 5, 6}));
  // Mixed dtypes promote: i64 with f32 gives f32.
  Tensor m = cat({from_vector<int64_t>({1, 2}), from_vector<float>({0.5f}, {1})}, 0);
  EXPECT_EQ(m.dtype(), DType::f32);
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{1, 2, 0.5f}));
  // Integers stay integers; 1-D empty tensors are skipped as in PyTorch.
  Tensor e = cat({idx({4, 5}, {1, 2}), zeros({0}, {.dtype = DType::i64}), idx({6, 7}, {1, 2})}, 0);
  EXPECT_EQ(e.dtype(), DType::i64);
  EXPECT_EQ(e.shape(), (Shape{2, 2}));
  EXPECT_EQ(e.to_vector<int64_t>(), (std::vector<int64_t>{4, 5, 6, 7}));
  // A size-0 part along dim is fine.
  EXPECT_EQ(cat({a, zeros({0, 2}, {.dtype = DType::f64})}, 0).to_vector<double>(),
            a.to_vector<double>());
}

TEST(Index, CatBackwardSlices) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2});
  Tensor c = f64({7, 8}, {2, 1});
  a.requires_grad_();
  c.requires_grad_();
  Tensor w = f64({10, 20, 30, 40, 50, 60}, {2, 3});
  (cat({a, c}, 1) * w).sum().backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{10, 20, 40, 50}));
  EXPECT_EQ(c.grad().to_vector<double>(), (std::vector<double>{30, 60}));
  // An f32 input concatenated with f64 gets its gradient in f32.
  Tensor f = from_vector<float>({1.f, 2.f}, {1, 2});
  f.requires_grad_();
  (cat({f, a.detach()}, 0) * f64({1, 2, 3, 4, 5, 6}, {3, 2})).sum().backward();
  EXPECT_EQ(f.grad().dtype(), DType::f32);
  EXPECT_EQ(f.grad().to_vector<float>(), (std::vector<float>{1, 2}));
}

TEST(Index, StackForwardBackward) {
  Tensor a = f64({1, 2, 3});
  Tensor b = f64({4, 5, 6});
  Tensor s0 = stack({a, b}, 0);
  EXPECT_EQ(s0.shape(), (Shape{2, 3}));
  EXPECT_EQ(s0.to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor s1 = stack({a, b}, -1);
  EXPECT_EQ(s1.shape(), (Shape{3, 2}));
  EXPECT_EQ(s1.to_vector<double>(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  Tensor m = f64({1, 2, 3, 4}, {2, 2});
  Tensor s2 = stack({m, m.t()}, 1);  // [2, 2, 2]: row i holds m[i] then m.t()[i]
  EXPECT_EQ(s2.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(s2.to_vector<double>(), (std::vector<double>{1, 2, 1, 3, 3, 4, 2, 4}));
  a.requires_grad_();
  b.requires_grad_();
  (stack({a, b}, 1) * f64({1, 2, 3, 4, 5, 6}, {3, 2})).sum().backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{1, 3, 5}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
}

// x[r, c] = 10 r + c, 4 x 3.
Tensor table() { return f64({0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32}, {4, 3}); }

TEST(Index, IndexSelectForwardAndDuplicateBackward) {
  Tensor x = table();
  Tensor r = index_select(x, 0, idx({3, 0, 3}));
  EXPECT_EQ(r.shape(), (Shape{3, 3}));
  EXPECT_EQ(r.to_vector<double>(), (std::vector<double>{30, 31, 32, 0, 1, 2, 30, 31, 32}));
  Tensor c = index_select(x, 1, from_vector<int32_t>({2, 2, 0}));
  EXPECT_EQ(c.to_vector<double>(),
            (std::vector<double>{2, 2, 0, 12, 12, 10, 22, 22, 20, 32, 32, 30}));
  // Non-contiguous input: x.t() is [3, 4], x.t()[r, c] = 10 c + r.
  EXPECT_EQ(index_select(x.t(), 1, idx({1, 1})).to_vector<double>(),
            (std::vector<double>{10, 10, 11, 11, 12, 12}));
  // 0-d index picks one row.
  EXPECT_EQ(index_select(x, 0, scalar_tensor(2, {.dtype = DType::i64})).to_vector<double>(),
            (std::vector<double>{20, 21, 22}));

  // d/dx sum(w * x[index]): row 3 collects w rows 0 and 2, row 0 w row 1, rows 1, 2 nothing.
  x.requires_grad_();
  Tensor w = f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {3, 3});
  (index_select(x, 0, idx({3, 0, 3})) * w).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(),
            (std::vector<double>{4, 5, 6, 0, 0, 0, 0, 0, 0, 8, 10, 12}));
}

TEST(Index, IndexAddForwardBackward) {
  Tensor x = table();
  Tensor src = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor r = index_add(x, 0, idx({1, 1}), src);  // row 1 gets both source rows
  EXPECT_EQ(r.to_vector<double>(),
            (std::vector<double>{0, 1, 2, 15, 18, 21, 20, 21, 22, 30, 31, 32}));
  EXPECT_EQ(x.to_vector<double>()[3], 10);  // out of place
  Tensor s = index_add(zeros({2, 3}, {.dtype = DType::f64}), 1, idx({2, 0, 2}),
                       f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_EQ(s.to_vector<double>(), (std::vector<double>{2, 0, 4, 5, 0, 10}));
  x.requires_grad_();
  src.requires_grad_();
  Tensor w = f64({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {4, 3});
  (index_add(x, 0, idx({3, 1}), src) * w).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), w.to_vector<double>());
  EXPECT_EQ(src.grad().to_vector<double>(), (std::vector<double>{10, 11, 12, 4, 5, 6}));
}

TEST(Index, GatherForwardAndDuplicateBackward) {
  Tensor t = f64({1, 2, 3, 4}, {2, 2});
  // torch.gather(t, 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]]
  Tensor g1 = gather(t, 1, idx({0, 0, 1, 0}, {2, 2}));
  EXPECT_EQ(g1.to_vector<double>(), (std::vector<double>{1, 1, 4, 3}));
  // torch.gather(t, 0, [[1, 0], [1, 1]]) = [[3, 2], [3, 4]]
  EXPECT_EQ(gather(t, 0, idx({1, 0, 1, 1}, {2, 2})).to_vector<double>(),
            (std::vector<double>{3, 2, 3, 4}));
  // An index smaller than x off dim reads only its own coordinates: x = table() [4, 3],
  // index [2, 2] along dim 1 -> rows 0 and 1 only.
  EXPECT_EQ(gather(table(), 1, from_vector<int32_t>({2, 0, 1, 1}, {2, 2})).to_vector<double>(),
            (std::vector<double>{2, 0, 11, 11}));
  // Non-contiguous input: t.t() = [[1, 3], [2, 4]].
  EXPECT_EQ(gather(t.t(), 1, idx({1, 1, 0, 1}, {2, 2})).to_vector<double>(),
            (std::vector<double>{3, 3, 2, 4}));

  // d/dt sum(w * gather(t, 1, [[0, 0], [1, 0]])): t[0, 0] collects w[0, 0] + w[0, 1] = 3,
  // t[1, 1] gets w[1, 0] = 4 and t[1, 0] gets w[1, 1] = 5.
  t.requires_grad_();
  (gather(t, 1, idx({0, 0, 1, 0}, {2, 2})) * f64({1, 2, 4, 5}, {2, 2})).sum().backward();
  EXPECT_EQ(t.grad().to_vector<double>(), (std::vector<double>{3, 0, 5, 4}));
}

TEST(Index, ScatterAddForwardBackward) {
  Tensor x = zeros({2, 4}, {.dtype = DType::f64});
  Tensor src = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  // Row 0: 1 -> col 3, 2 -> col 3, 3 -> col 0. Row 1: 4 -> col 1, 5 -> col 1, 6 -> col 1.
  Tensor index = idx({3, 3, 0, 1, 1, 1}, {2, 3});
  Tensor r = scatter_add(x, 1, index, src);
  EXPECT_EQ(r.to_vector<double>(), (std::vector<double>{3, 0, 0, 3, 0, 15, 0, 0}));
  x.requires_grad_();
  src.requires_grad_();
  (scatter_add(x, 1, index, src) * f64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4})).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}));
  // src[p] reads the weight at its destination.
  EXPECT_EQ(src.grad().to_vector<double>(), (std::vector<double>{4, 4, 1, 6, 6, 6}));
}

TEST(Index, EmbeddingForwardBackward) {
  Tensor w = f64({0, 1, 2, 3, 4, 5, 6, 7}, {4, 2});
  Tensor ids = idx({1, 3, 1, 0}, {2, 2});
  Tensor e = embedding(ids, w);
  EXPECT_EQ(e.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(e.to_vector<double>(), (std::vector<double>{2, 3, 6, 7, 2, 3, 0, 1}));
  EXPECT_EQ(embedding(from_vector<int32_t>({2}), w).to_vector<double>(),
            (std::vector<double>{4, 5}));
  Tensor e0 = embedding(scalar_tensor(3, {.dtype = DType::i64}), w);  // 0-d indices
  EXPECT_EQ(e0.shape(), (Shape{2}));
  EXPECT_EQ(e0.to_vector<double>(), (std::vector<double>{6, 7}));

  // Gradient weights g[n, :] = (n + 1) * [1, 10] for n = 0..3 (positions of ids).
  Tensor g = f64({1, 10, 2, 20, 3, 30, 4, 40}, {2, 2, 2});
  w.requires_grad_();
  (embedding(ids, w) * g).sum().backward();
  // Row 1 appears at positions 0 and 2: (1 + 3) * [1, 10]; row 3 at 1, row 0 at 3, row 2 never.
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{4, 40, 4, 40, 0, 0, 2, 20}));

  // With padding_idx 1 (also as -3), row 1 keeps its forward value but gets no gradient.
  for (int64_t pad : {1, -3}) {
    Tensor wp = w.detach().clone();
    wp.requires_grad_();
    Tensor ep = embedding(ids, wp, pad);
    EXPECT_EQ(ep.to_vector<double>(), e.to_vector<double>());
    (ep * g).sum().backward();
    EXPECT_EQ(wp.grad().to_vector<double>(), (std::vector<double>{4, 40, 0, 0, 0, 0, 2, 20}));
  }
}

// Accumulations must not depend on the thread count: compare 1 thread against all, and both
// against the sequential sum in increasing position order, bit for bit.
TEST(Index, AccumulationIsDeterministic) {
  const int64_t v = 7, d = 300, n = 5000;
  std::mt19937 rng(3);
  std::vector<int64_t> ids(n);
  for (auto& i : ids) i = static_cast<int64_t>(rng() % v);
  Tensor g = randn({n, d});
  std::vector<float> gv = g.to_vector<float>();
  std::vector<float> want(v * d, 0.f);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) want[ids[j] * d + c] += gv[j * d + c];

  auto run = [&](int threads) {
    int prev = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor w = zeros({v, d});
    w.requires_grad_();
    Tensor x = zeros({v, d});
    x.requires_grad_();
    (index_select(w, 0, idx(ids)) * g).sum().backward();
    (embedding(idx(ids), x) * g).sum().backward();
    omp_set_num_threads(prev);
    return std::make_pair(w.grad().to_vector<float>(), x.grad().to_vector<float>());
  };
  auto one = run(1), all = run(std::max(2, omp_get_max_threads()));
  EXPECT_EQ(one.first, want);
  EXPECT_EQ(all.first, want);
  EXPECT_EQ(one.second, want);
  EXPECT_EQ(all.second, want);

  // gather's backward (scatter_add) along dim 0 of a [v, d] input.
  std::vector<int64_t> gi(n * 4);
  for (auto& i : gi) i = static_cast<int64_t>(rng() % v);
  Tensor gg = randn({n, 4});
  std::vector<float> ggv = gg.to_vector<float>();
  std::vector<float> want2(v * 4, 0.f);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < 4; ++c) want2[gi[j * 4 + c] * 4 + c] += ggv[j * 4 + c];
  for (int threads : {1, std::max(2, omp_get_max_threads())}) {
    int prev = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor x = zeros({v, 4});
    x.requires_grad_();
    (gather(x, 0, idx(gi, {n, 4})) * gg).sum().backward();
    omp_set_num_threads(prev);
    EXPECT_EQ(x.grad().to_vector<float>(), want2) << threads << " threads";
  }
}

// Larger random cases against plain loops, with a non-contiguous input and i32 indices.
TEST(Index, GatherMatchesReference) {
  const int64_t a = 37, b = 53, k = 61;
  Tensor x = randn({b, a}).t();  // [a, b], strides (1, a)
  std::vector<float> xv = x.to_vector<float>();
  std::mt19937 rng(5);
  std::vector<int32_t> iv(a * k);
  for (auto& i : iv) i = static_cast<int32_t>(rng() % b);
  std::vector<float> got = gather(x, 1, from_vector(iv, {a, k})).to_vector<float>();
  std::vector<float> sel = index_select(x, 1, from_vector(iv, {a * k})).to_vector<float>();
  for (int64_t r = 0; r < a; ++r)
    for (int64_t c = 0; c < k; ++c) {
      ASSERT_EQ(got[r * k + c], xv[r * b + iv[r * k + c]]) << r << ", " << c;
    }
  for (int64_t r = 0; r < a; ++r)
    for (int64_t j = 0; j < a * k; ++j) ASSERT_EQ(sel[r * a * k + j], xv[r * b + iv[j]]);
}

// Operands whose dims around `dim` do not collapse into one strided run (offset tables), in
// the forward and in the backward (a permuted gradient), against contiguous copies.
TEST(Index, NonCollapsibleStrides) {
  Tensor base = randn({6, 4, 5}, {.dtype = DType::f64});
  Tensor x = base.permute({1, 2, 0});  // [4, 5, 6], strides (5, 1, 20)
  Tensor xc = x.contiguous();
  Tensor sel = idx({3, 0, 3, 1, 2});
  EXPECT_EQ(index_select(x, 0, sel).to_vector<double>(),
            index_select(xc, 0, sel).to_vector<double>());
  Tensor gi = (rand({4, 5, 6}, {.dtype = DType::f64}) * 4.0).to(DType::i64);
  EXPECT_EQ(gather(x, 0, gi).to_vector<double>(), gather(xc, 0, gi).to_vector<double>());
  Tensor gi_perm = gi.permute({2, 0, 1}).contiguous().permute({1, 2, 0});  // same values
  EXPECT_EQ(gather(x, 0, gi_perm).to_vector<double>(), gather(xc, 0, gi).to_vector<double>());

  // Gradients flowing back through permute arrive with permuted strides.
  Tensor w = randn({6, 5, 5}, {.dtype = DType::f64});
  auto grads = [&](const Tensor& input, const Tensor& index, bool use_gather) {
    Tensor leaf = input.detach().clone();
    leaf.requires_grad_();
    Tensor y = use_gather ? gather(leaf, 0, index) : index_select(leaf, 0, index);
    (y.permute({2, 0, 1}) * (use_gather ? w.narrow(1, 0, 4).narrow(2, 0, 5) : w)).sum().backward();
    return leaf.grad().to_vector<double>();
  };
  EXPECT_EQ(grads(x, sel, false), grads(xc, sel, false));
  EXPECT_EQ(grads(x, gi_perm, true), grads(xc, gi, true));
}

TEST(Index, Errors) {
  Tensor x = zeros({5, 3});
  EXPECT_THROW_MSG(cat({}, 0), "cat", "non-empty");
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({2, 3}), zeros({2, 4})}, 0), "cat", "tensor 2",
                   "[2, 4]", "[2, 3]", "dim 1");
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({3})}, 0), "cat", "tensor 1", "[3]", "rank");
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({2, 3})}, 2), "cat");
  EXPECT_THROW_MSG(cat({scalar_tensor(1.0)}, 0), "cat", "0-d");
  EXPECT_THROW_MSG(stack({}, 0), "stack", "non-empty");
  EXPECT_THROW_MSG(stack({zeros({2, 3}), zeros({3, 2})}, 0), "stack", "tensor 1", "[3, 2]",
                   "[2, 3]");

  EXPECT_THROW_MSG(index_select(x, 0, idx({1, 5})), "index_select", "index 5", "position [1]",
                   "0 <= index < 5", "[5, 3]");
  EXPECT_THROW_MSG(index_select(x, 1, idx({-1})), "index_select", "index -1", "< 3");
  EXPECT_THROW_MSG(index_select(x, 0, from_vector<float>({1.f})), "index_select", "i32 or i64",
                   "f32");
  EXPECT_THROW_MSG(index_select(x, 0, idx({0, 1}, {1, 2})), "index_select", "1-D", "[1, 2]");
  EXPECT_THROW_MSG(index_select(x, 2, idx({0})), "index_select");
  EXPECT_THROW_MSG(index_add(x, 0, idx({0, 1}), zeros({2, 4})), "index_add", "[2, 4]",
                   "expected source shape [2, 3]");
  EXPECT_THROW_MSG(index_add(x, 0, idx({0}), zeros({1, 3}, {.dtype = DType::f64})), "index_add",
                   "f64", "f32");
  EXPECT_THROW_MSG(index_add(x, 0, idx({7}), zeros({1, 3})), "index_add", "index 7",
                   "0 <= index < 5");

  EXPECT_THROW_MSG(gather(x, 1, idx({0, 1})), "gather", "rank 2", "[2]", "[5, 3]");
  EXPECT_THROW_MSG(gather(x, 1, idx({0, 3}, {1, 2})), "gather", "index 3", "position [0, 1]",
                   "0 <= index < 3");
  EXPECT_THROW_MSG(gather(x, 1, zeros({6, 1}, {.dtype = DType::i64})), "gather", "[6, 1]", "dim 0",
                   "6 > 5");
  EXPECT_THROW_MSG(scatter_add(x, 0, idx({9}, {1, 1}), zeros({1, 1})), "scatter_add", "index 9",
                   "0 <= index < 5");
  EXPECT_THROW_MSG(scatter_add(x, 0, idx({0, 0}, {1, 2}), zeros({1, 1})), "scatter_add",
                   "source of shape [1, 1]", "dim 1");

  Tensor w = zeros({4, 2});
  EXPECT_THROW_MSG(embedding(idx({0, 4}), w), "embedding", "index 4", "position [1]",
                   "0 <= index < 4", "[4, 2]");
  EXPECT_THROW_MSG(embedding(idx({0}), zeros({4})), "embedding", "2-D", "[4]");
  EXPECT_THROW_MSG(embedding(from_vector<double>({0.0}), w), "embedding", "i32 or i64", "f64");
  EXPECT_THROW_MSG(embedding(idx({0}), w, 4), "embedding", "padding_idx 4",
                   "-4 <= padding_idx < 4");
}

}  // namespace
}  // namespace lumen::testing
