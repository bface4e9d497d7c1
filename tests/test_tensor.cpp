#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "kernels/elementwise.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

// Every in-place write through the API counts in the storage's version, which views share and
// copies do not; out-of-place ops leave it alone.
TEST(Tensor, InPlaceWritesBumpTheStorageVersion) {
  Tensor t = zeros({3, 4});
  Tensor view = t.select(0, 1), copy = t.clone();
  const uint64_t v0 = t.version();
  t.fill_(1.0);
  EXPECT_EQ(t.version(), v0 + 1);
  view.add_(ones({4}));
  EXPECT_EQ(t.version(), v0 + 2);  // a view's write is the storage's
  EXPECT_EQ(view.version(), t.version());
  t.mul_(2.0);
  t.copy_(ones({3, 4}));
  EXPECT_EQ(t.version(), v0 + 4);
  Tensor sum = t + t;
  EXPECT_EQ(t.version(), v0 + 4);
  EXPECT_EQ(copy.version(), 0u);
  // host_values of a CPU tensor is the tensor's values.
  EXPECT_EQ(host_values(t.t()).to_vector<float>(), t.t().contiguous().to_vector<float>());
  EXPECT_FALSE(kept_host_copy(t).defined());  // only device tensors keep one
}

TEST(Tensor, FactoriesAndMetadata) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_EQ(z.numel(), 6);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(full({2}, 2.5, {.dtype = DType::f64}).to_vector<double>(),
            (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(5).dtype(), DType::i64);
  EXPECT_EQ(arange(1, 2, 0.25, {.dtype = DType::f64}).to_vector<double>(),
            (std::vector<double>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(scalar_tensor(3.0).dim(), 0);
  EXPECT_EQ(scalar_tensor(3.0).item(), 3.0);
  Tensor v = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(v.dtype(), DType::i32);
  EXPECT_EQ(v.size(-1), 2);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = arange(0, 24, 1, {.dtype = DType::f64}).view({2, 3, 4});
  Tensor t = x.transpose(0, 2);  // [4, 3, 2]
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 4, 12}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_TRUE(t.storage().same(x.storage()));
  // t[1][2][1] = x[1][2][1] = 12 + 8 + 1
  EXPECT_EQ(t.select(0, 1).select(0, 2).select(0, 1).item(), 21);
  Tensor s = x.slice(2, 1, 4, 2);  // elements 1 and 3 of the last dim
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.offset(), 1);
  EXPECT_EQ(s.to_vector<double>()[0], 1);
  EXPECT_EQ(s.to_vector<double>()[1], 3);
  Tensor n = x.narrow(1, 1, 2);
  EXPECT_EQ(n.offset(), 4);
  EXPECT_EQ(n.shape(), (Shape{2, 2, 4}));
  Tensor e = from_vector<double>({1, 2, 3}).unsqueeze(0).expand({4, -1});
  EXPECT_EQ(e.strides(), (Shape{0, 1}));
  EXPECT_EQ(e.to_vector<double>(), (std::vector<double>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(x.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze().shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(x.permute({2, 0, 1}).shape(), (Shape{4, 2, 3}));
  // Writing through a view changes the base.
  x.select(0, 1).select(0, 0).fill_(-1);
  EXPECT_EQ(x.select(0, 1).select(0, 0).sum().item(), -4);
  EXPECT_EQ(x.select(0, 0).sum().item(), 66);
}

TEST(Tensor, ViewVersusReshape) {
  Tensor x = arange(0, 6, 1, {.dtype = DType::f32}).view({2, 3});
  Tensor t = x.t();
  EXPECT_THROW_MSG(t.view({6}), "view", "[3, 2]", "reshape");
  Tensor r = t.reshape({6});  // needs a copy
  EXPECT_FALSE(r.storage().same(x.storage()));
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor v = x.reshape({3, 2});  // a view
  EXPECT_TRUE(v.storage().same(x.storage()));
  EXPECT_EQ(x.view({-1}).shape(), (Shape{6}));
  EXPECT_EQ(x.view({3, -1}).shape(), (Shape{3, 2}));
  // Splitting a dim of a non-contiguous tensor is still a view.
  Tensor y = zeros({4, 6}).t();  // [6, 4], strides [1, 6]
  EXPECT_EQ(y.view({2, 3, 4}).strides(), (Shape{3, 1, 6}));
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor k = x.clone();
  k.fill_(7);
  EXPECT_EQ(x.sum().item(), 15);
}

TEST(Tensor, ShapeErrors) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(x.view({4, 2}), "view", "[4, 2]", "[2, 3]");
  EXPECT_THROW_MSG(x.view({-1, -1}), "view", "-1");
  EXPECT_THROW_MSG(x.transpose(0, 2), "transpose", "dim 2", "2 dims");
  EXPECT_THROW_MSG(x.expand({3, 3}), "expand", "[2, 3]", "[3, 3]");
  EXPECT_THROW_MSG(x.narrow(1, 2, 2), "narrow", "size 3");
  EXPECT_THROW_MSG(x.select(0, 5), "select", "index 5");
  EXPECT_THROW_MSG(x.permute({0, 0}), "permute", "repeats");
  EXPECT_THROW_MSG(x.item(), "item", "[2, 3]");
  EXPECT_THROW_MSG(from_vector<float>({1, 2, 3}, {2, 2}), "from_vector", "[2, 2]");
  EXPECT_THROW_MSG(x.data<double>(), "data<f64>", "f32");
  EXPECT_THROW_MSG(zeros({2}).to(Device::cuda(3)), "cuda:3");
  EXPECT_THROW_MSG(Device::parse("tpu"), "tpu", "cuda:N");
  EXPECT_THROW_MSG(zeros({2}, {.dtype = DType::i64}).requires_grad_(), "requires_grad_", "i64");
}

TEST(Tensor, DtypeConversions) {
  Tensor x = from_vector<double>({1.5, -2.75, 1e-3, 70000.0, 3.0});
  EXPECT_EQ(x.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 0, 70000, 3}));
  EXPECT_EQ(x.to(DType::boolean).to_vector<bool>(),
            (std::vector<bool>{true, true, true, true, true}));
  std::vector<float> h = x.to(DType::f16).to_vector<float>();
  EXPECT_EQ(h[0], 1.5f);
  EXPECT_EQ(h[1], -2.75f);
  EXPECT_NEAR(h[2], 1e-3, 1e-3 * 1e-3);  // 10 mantissa bits
  EXPECT_TRUE(std::isinf(h[3]));         // above f16's max (65504)
  std::vector<float> b = x.to(DType::bf16).to_vector<float>();
  EXPECT_EQ(b[0], 1.5f);
  EXPECT_NEAR(b[3], 70000.0, 70000.0 / 128);  // 8 mantissa bits, f32's range
  // Float to a narrow integer goes through i64 (truncation, then modular wrap) on every backend.
  Tensor w = from_vector<float>({-1.0f, 300.7f, 2.9f, -129.5f});
  EXPECT_EQ(w.to(DType::u8).to_vector<int64_t>(), (std::vector<int64_t>{255, 44, 2, 127}));
  EXPECT_EQ(w.to(DType::i32).to_vector<int64_t>(), (std::vector<int64_t>{-1, 300, 2, -129}));
}

// Half <-> float against exhaustive properties: every f16 bit pattern round-trips, and
// rounding is to nearest even.
TEST(Tensor, HalfConversionIsExact) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    uint16_t h = static_cast<uint16_t>(bits);
    float f = Half::to_float(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(Half::from_float(f), h) << bits;
  }
  EXPECT_EQ(Half::from_float(1.0f + 1.0f / 2048), Half::from_float(1.0f));  // tie to even
  EXPECT_EQ(float(Half(1.0f + 3.0f / 2048)), 1.0f + 4.0f / 2048);           // tie to even
  EXPECT_EQ(float(Half(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(float(Half(65520.0f))));
  EXPECT_EQ(float(Half(5.9604645e-08f)), 5.9604645e-08f);  // smallest subnormal
  EXPECT_EQ(float(BFloat16(1.0f + 1.0f / 256)), 1.0f);     // tie to even
  EXPECT_EQ(float(BFloat16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
}

// The portable conversions (device code, hosts without F16C) agree with the ones the host
// uses (F16C instructions on x86-64-v3): every f16 pattern, and floats around every rounding
// boundary (ties, overflow, subnormals) plus random bit patterns.
TEST(Tensor, PortableHalfConversionMatchesTheHosts) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    uint16_t h = static_cast<uint16_t>(bits);
    float f = Half::to_float(h), g = Half::to_float_portable(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(g)) << bits;
      continue;
    }
    EXPECT_EQ(float_bits(f), float_bits(g)) << bits;
    // The midpoint to the next pattern, and its neighbours: the tie cases.
    uint32_t fb = float_bits(f);
    for (uint32_t d : {0x0fffu, 0x1000u, 0x1001u}) {
      float x = bits_float(fb + d);
      if (std::isnan(x)) continue;
      EXPECT_EQ(Half::from_float(x), Half::from_float_portable(x)) << bits << " + " << d;
    }
  }
  std::mt19937 rng(3);
  for (int i = 0; i < (1 << 16); ++i) {
    uint32_t b = rng();
    float x = bits_float(b);
    if (std::isnan(x))
      EXPECT_TRUE(std::isnan(Half::to_float(Half::from_float_portable(x))));
    else
      EXPECT_EQ(Half::from_float(x), Half::from_float_portable(x)) << b;
  }
}

// The span conversions (8 per F16C instruction) give the scalar conversions' bits, for every
// f16 pattern and for floats at f16 and bf16 rounding boundaries; lengths leave a scalar tail.
TEST(Tensor, SpanConversionsMatchTheScalarOnes) {
  std::vector<Half> all(0x10000 + 5);
  for (size_t i = 0; i < all.size(); ++i) all[i].bits = static_cast<uint16_t>(i);
  std::vector<float> wide(all.size());
  widen_n(all.data(), wide.data(), static_cast<int64_t>(all.size()));
  for (size_t i = 0; i < all.size(); ++i) {
    float f = Half::to_float(all[i].bits);
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(wide[i])) << i;
    else
      EXPECT_EQ(float_bits(wide[i]), float_bits(f)) << i;
  }
  std::mt19937 rng(5);
  std::vector<float> x(4099);
  for (size_t i = 0; i < x.size(); ++i)  // random bits, then f16 and bf16 ties and neighbours
    x[i] = i % 3 == 0   ? bits_float(rng())
           : i % 3 == 1 ? bits_float(float_bits(Half::to_float(rng() & 0xffffu)) + 0x0fffu + i % 2)
                        : bits_float((rng() & 0xffff0000u) + 0x7fffu + i % 2);
  std::vector<Half> h(x.size());
  std::vector<BFloat16> b(x.size());
  narrow_n(x.data(), h.data(), static_cast<int64_t>(x.size()));
  narrow_n(x.data(), b.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i].bits, Half::from_float(x[i])) << x[i];
    EXPECT_EQ(b[i].bits, BFloat16::from_float(x[i])) << x[i];
  }
  // Tensor::to takes them for contiguous tensors.
  Tensor t = from_vector<float>(x);
  std::vector<uint16_t> th(x.size());
  Tensor t16 = t.to(DType::f16);
  std::memcpy(th.data(), t16.data_ptr(), th.size() * 2);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(th[i], h[i].bits) << x[i];
}

// Permuted tensors made contiguous (with and without a dtype change): every element where index
// arithmetic on the source says it goes, with outer dims on both sides of the source's
// contiguous one.
TEST(Tensor, PermutedCopiesMatchIndexArithmetic) {
  const Shape shape = {3, 37, 70};
  Tensor x = randn(shape);
  std::vector<float> v = x.to_vector<float>();
  auto at = [&](int64_t i, int64_t j, int64_t k) { return v[(i * 37 + j) * 70 + k]; };
  for (const Shape& perm : {Shape{2, 0, 1}, Shape{0, 2, 1}, Shape{1, 2, 0}, Shape{2, 1, 0}}) {
    for (DType to : {DType::f32, DType::f64}) {
      Tensor y = x.permute(perm).to(to).contiguous();
      ASSERT_TRUE(y.is_contiguous());
      std::vector<double> got = y.to_vector<double>();
      int64_t n = 0;
      std::array<int64_t, 3> idx{};  // the source index of y's element n
      for (idx[perm[0]] = 0; idx[perm[0]] < shape[perm[0]]; ++idx[perm[0]])
        for (idx[perm[1]] = 0; idx[perm[1]] < shape[perm[1]]; ++idx[perm[1]])
          for (idx[perm[2]] = 0; idx[perm[2]] < shape[perm[2]]; ++idx[perm[2]])
            ASSERT_EQ(got[n++], double(at(idx[0], idx[1], idx[2])))
                << ShapeStr{perm} << " " << to << " at " << n - 1;
    }
  }
  Tensor m = randn({65, 33});
  std::vector<float> mv = m.to_vector<float>(), tv = m.t().contiguous().to_vector<float>();
  for (int64_t i = 0; i < 65; ++i)
    for (int64_t j = 0; j < 33; ++j) ASSERT_EQ(tv[j * 65 + i], mv[i * 33 + j]);
}

TEST(Tensor, RandomIsSeededAndCounterBased) {
  Generator a(99), b(99), c(100);
  Tensor x = randn({1000}, {}, &a), y = randn({1000}, {}, &b), z = randn({1000}, {}, &c);
  EXPECT_EQ(x.to_vector<float>(), y.to_vector<float>());
  EXPECT_NE(x.to_vector<float>(), z.to_vector<float>());
  // The second draw continues the stream: not the same numbers again.
  EXPECT_NE(randn({1000}, {}, &a).to_vector<float>(), x.to_vector<float>());
  // Moments of 100k normals and uniforms (5 sigma bounds).
  Generator g(5);
  Tensor n = randn({100000}, {.dtype = DType::f64}, &g);
  EXPECT_NEAR(n.mean().item(), 0.0, 5 / std::sqrt(1e5));
  EXPECT_NEAR((n * n).mean().item(), 1.0, 5 * std::sqrt(2.0 / 1e5));
  Tensor u = rand({100000}, {.dtype = DType::f64}, &g);
  EXPECT_NEAR(u.mean().item(), 0.5, 5 * std::sqrt(1.0 / 12 / 1e5));
  EXPECT_GE(u.min().item(), 0.0);
  EXPECT_LT(u.max().item(), 1.0);
  // Philox4x32-10 known-answer test (Random123 kat_vectors: counter 0, key 0).
  PhiloxOut k = philox4x32(0, 0);
  EXPECT_EQ(k.w[0], 0x6627e8d5u);
  EXPECT_EQ(k.w[1], 0xe169c58du);
  EXPECT_EQ(k.w[2], 0xbc57ac4cu);
  EXPECT_EQ(k.w[3], 0x9b00dbd8u);
}

// Every element of rand, randn and a Bernoulli fill against Philox's words turned into numbers
// here, element by element (the CPU fills a block's elements together): odd lengths, a draw
// that does not start at offset 0, thread chunks, every floating dtype.
TEST(Tensor, RandomFillsFollowThePhiloxFormulas) {
  const double two53 = 1.1102230246251565e-16;  // 2^-53
  auto f64_of = [&](uint32_t hi, uint32_t lo) {
    return static_cast<double>(((uint64_t{hi} << 32) | lo) >> 11) * two53;
  };
  auto expected = [&](kernels::RandomKind kind, DType dt, uint64_t seed, uint64_t offset,
                      uint64_t i) {
    if (kind == kernels::RandomKind::Normal) {
      PhiloxOut o = philox4x32(offset + i / 2, seed);
      double r = std::sqrt(-2.0 * std::log(f64_of(o.w[0], o.w[1]) + two53));
      double a = 6.283185307179586 * f64_of(o.w[2], o.w[3]);
      return i % 2 == 0 ? r * std::cos(a) : r * std::sin(a);
    }
    if (kind == kernels::RandomKind::Uniform && dt == DType::f64) {
      PhiloxOut o = philox4x32(offset + i / 2, seed);
      return f64_of(o.w[2 * (i % 2)], o.w[2 * (i % 2) + 1]);
    }
    const double u = (philox4x32(offset + i / 4, seed).w[i % 4] >> 8) * 0x1p-24;
    return kind == kernels::RandomKind::Uniform ? u : (u < 0.3 ? 1.0 : 0.0);
  };
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{40001}}) {
      Generator g(21);
      rand({3}, {}, &g);  // the next draw starts past block 0
      for (auto kind : {kernels::RandomKind::Uniform, kernels::RandomKind::Normal,
                        kernels::RandomKind::Bernoulli}) {
        const uint64_t seed = g.seed(), offset = g.offset();
        Tensor t;
        if (kind == kernels::RandomKind::Uniform) {
          t = rand({n}, {.dtype = dt}, &g);
        } else if (kind == kernels::RandomKind::Normal) {
          t = randn({n}, {.dtype = dt}, &g);
        } else {
          t = empty({n}, {.dtype = dt});
          kernels::random_fill(t.device(), t, kind, 0.3, seed, offset);
        }
        // Rounded to dt as the fill rounds its double: through f32 for f32, f16 and bf16.
        std::vector<double> v(n);
        for (int64_t i = 0; i < n; ++i) {
          v[i] = expected(kind, dt, seed, offset, i);
          if (dt != DType::f64) v[i] = static_cast<float>(v[i]);
        }
        Tensor want = from_vector<double>(v).to(dt);
        ASSERT_EQ(t.to_vector<double>(), want.to_vector<double>())
            << dt << " n " << n << " kind " << static_cast<int>(kind);
      }
    }
  }
}

TEST(Tensor, Printing) {
  Tensor x = from_vector<float>({1, 2.5f, -3, 4}, {2, 2});
  EXPECT_EQ(x.str(),
            "tensor([[1.0000, 2.5000],\n        [-3.0000, 4.0000]], shape=[2, 2], dtype=f32)");
  EXPECT_EQ(arange(3).str(), "tensor([0, 1, 2], shape=[3], dtype=i64)");
  EXPECT_EQ(scalar_tensor(2).str(), "tensor(2.0000, shape=[], dtype=f32)");
  std::ostringstream os;
  os << arange(10);
  EXPECT_EQ(os.str(), "tensor([0, 1, 2, ..., 7, 8, 9], shape=[10], dtype=i64)");
}

}  // namespace
}  // namespace lumen::testing
