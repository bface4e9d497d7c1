// The CPU GEMM (kernels/cpu/gemm.cpp) against the definition summed in f64: every edge of its
// blocking (partial MR x NR tiles, K across KC blocks, K = 0), operands in both layouts,
// alpha and accumulation, and the split over threads, which must not change a bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"

using lumen::kernels::gemm;
using lumen::kernels::MatrixRef;

namespace {

template <class T>
struct Product {
  int64_t M, N, K;
  bool a_transposed, b_transposed;
  std::vector<T> a, b;
  MatrixRef<T> A() const {
    return a_transposed ? MatrixRef<T>{a.data(), 1, M} : MatrixRef<T>{a.data(), K, 1};
  }
  MatrixRef<T> B() const {
    return b_transposed ? MatrixRef<T>{b.data(), 1, K} : MatrixRef<T>{b.data(), N, 1};
  }
  Product(int64_t m, int64_t n, int64_t k, bool ta, bool tb, std::mt19937& rng)
      : M(m), N(n), K(k), a_transposed(ta), b_transposed(tb), a(m * k), b(k * n) {
    std::uniform_real_distribution<double> u(-1, 1);
    for (T& x : a) x = static_cast<T>(u(rng));
    for (T& x : b) x = static_cast<T>(u(rng));
  }
  // alpha sum_k A(i, k) B(k, j) (+ c0), in f64.
  double want(int64_t i, int64_t j, double alpha, double c0) const {
    const MatrixRef<T> ra = A(), rb = B();
    double s = 0;
    for (int64_t k = 0; k < K; ++k)
      s += double(ra.p[i * ra.row_stride + k * ra.col_stride]) *
           double(rb.p[k * rb.row_stride + j * rb.col_stride]);
    return alpha * s + c0;
  }
};

// C = alpha A B (+ C) for one shape and layout, against the definition; C's rows are ldc = N + 3
// apart and the gaps must stay untouched.
template <class T>
void check_one(const Product<T>& p, T alpha, bool accumulate, double tol, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  const int64_t M = p.M, N = p.N, K = p.K, ldc = N + 3;
  std::vector<T> c(M * ldc);
  for (T& x : c) x = static_cast<T>(u(rng));
  const std::vector<T> c0 = c;
  gemm<T>(M, N, K, p.A(), p.B(), c.data(), ldc, alpha, accumulate);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const T got = c[i * ldc + j];
      if (j >= N) {
        ASSERT_EQ(got, c0[i * ldc + j]) << "wrote past column N";
        continue;
      }
      const double want = p.want(i, j, alpha, accumulate ? double(c0[i * ldc + j]) : 0);
      ASSERT_NEAR(got, want, tol * double(K + 1))
          << M << "x" << N << "x" << K << " A^T " << p.a_transposed << " B^T " << p.b_transposed
          << " alpha " << alpha << " accumulate " << accumulate << " at " << i << "," << j;
    }
  }
}

template <class T>
void check_against_f64(double tol) {
  std::mt19937 rng(7);
  // MR = 6 and NR = 2 vectors: sizes below, at and past a tile, and edge panels narrower
  // than, as wide as and wider than one vector (8 floats or 4 doubles with AVX2), with A read
  // in place (N <= 2 NR) and packed (40, 67); K past the 256 / 128 of KC.
  for (int64_t M : {1, 6, 7, 61})
    for (int64_t N : {1, 8, 12, 14, 17, 25, 40, 67})
      for (int64_t K : {0, 1, 9, 300})
        for (int layout = 0; layout < 4; ++layout)
          for (T alpha : {T(1), T(0.75)})
            for (bool accumulate : {false, true})
              check_one(Product<T>(M, N, K, layout & 1, layout & 2, rng), alpha, accumulate, tol,
                        rng);
}

// The outer blocks on one thread: M past MC (120 rows), N past NC (2048 columns), both layouts
// of A, accumulating into C.
template <class T>
void check_large_blocks(double tol) {
  std::mt19937 rng(11);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  for (int layout = 0; layout < 4; ++layout)
    check_one(Product<T>(130, 2100, 9, layout & 1, layout & 2, rng), T(0.75), true, tol, rng);
  omp_set_num_threads(threads);
}

TEST(Gemm, FloatMatchesTheDefinitionInF64) { check_against_f64<float>(2e-6); }

TEST(Gemm, DoubleMatchesTheDefinitionInF64) { check_against_f64<double>(1e-14); }

TEST(Gemm, OuterBlocksMatchTheDefinitionInF64) {
  check_large_blocks<float>(2e-6);
  check_large_blocks<double>(1e-14);
}

// Large enough to split over the threads (along M, then along N); the split changes which tiles
// are partial, and each element must still come out bit for bit as from one thread, in every
// layout, accumulating into C with its rows strided. The split products are also checked
// against the definition.
template <class T>
void check_thread_split(double tol) {
  std::mt19937 rng(3);
  for (auto [M, N, K] : {std::array<int64_t, 3>{301, 130, 700}, {70, 517, 300}}) {
    for (int layout = 0; layout < 4; ++layout) {
      Product<T> p(M, N, K, layout & 1, layout & 2, rng);
      const int64_t ldc = N + 5;
      std::vector<T> c0(M * ldc);
      for (size_t i = 0; i < c0.size(); ++i) c0[i] = T(std::sin(double(i)));
      std::vector<T> one = c0, many = c0;
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      gemm<T>(M, N, K, p.A(), p.B(), one.data(), ldc, T(0.5), true);
      omp_set_num_threads(std::max(threads, 3));
      gemm<T>(M, N, K, p.A(), p.B(), many.data(), ldc, T(0.5), true);
      omp_set_num_threads(threads);
      ASSERT_EQ(one, many) << M << "x" << N << "x" << K << " layout " << layout;
      for (int64_t i : {int64_t{0}, M / 2, M - 1})
        for (int64_t j : {int64_t{0}, N / 2, N - 1})
          EXPECT_NEAR(many[i * ldc + j], p.want(i, j, 0.5, double(c0[i * ldc + j])),
                      tol * double(K + 1));
    }
  }
}

}  // namespace

TEST(Gemm, ThreadSplitGivesTheSameBits) {
  check_thread_split<float>(2e-6);
  check_thread_split<double>(1e-14);
}

// Columns 16..23 of a 40-column product go through the two-vector micro-kernel; the same
// columns as an 8-column product through the one-vector kernel of edge panels. Each element is
// the same chain of fused multiply-adds either way: the same bits.
TEST(Gemm, EdgePanelKernelGivesTheSameBits) {
  std::mt19937 rng(5);
  for (bool a_transposed : {false, true}) {
    const Product<float> p(13, 40, 37, a_transposed, false, rng);
    std::vector<float> full(13 * 40), part(13 * 8);
    gemm<float>(13, 40, 37, p.A(), p.B(), full.data(), 40);
    gemm<float>(13, 8, 37, p.A(), MatrixRef<float>{p.b.data() + 16, 40, 1}, part.data(), 8);
    for (int64_t i = 0; i < 13; ++i)
      for (int64_t j = 0; j < 8; ++j)
        ASSERT_EQ(part[i * 8 + j], full[i * 40 + 16 + j]) << i << "," << j;
  }
}
