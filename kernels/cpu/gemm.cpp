// CPU GEMM after Goto and BLIS: C = alpha A B (+ C).
//
// The loop nest blocks the product so each operand streams from the cache level it fits:
//   for jc in N by NC:             B block [KC, NC] packed once, lives in L3
//     for pc in K by KC:
//       pack B[pc:, jc:] into panels of NR columns, k-major  (KC x NR each, L1)
//       for ic in M by MC:         A block [MC, KC] packed, lives in L2
//         pack A[ic:, pc:] into panels of MR rows, k-major   (KC x MR each; see PanelA)
//         for each MR x NR tile: the micro-kernel, C_tile (+)= sum_k a[:, k] b[k, :]
// The micro-kernel keeps the MR x NR tile of C in registers (MR rows of two vectors) and, for
// each k, loads two vectors of b and broadcasts each of the MR values of a: 2 MR fused
// multiply-adds per 2 loads and MR broadcasts (an edge panel of at most one vector of columns
// takes a one-vector kernel). Packing reads the operands through any strides
// (transposed views included) and zero-pads the last panels, so the micro-kernel never sees an
// edge; a partial tile goes through a small buffer instead.
//
// Threads: a product above ~64^3 multiply-adds per thread, called outside a parallel region, is
// cut into one independent product per thread along N (in NR columns) or M (in MR rows); each
// thread packs its own operands, so no barrier is needed, and the side is chosen so that the
// operand every thread packs in full is the smaller one. Every C element is one chain of
// fused multiply-adds over k in order, whatever the split: results repeat bit for bit.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/parallel.h"

namespace lumen::kernels {
namespace {

// One register of W lanes of T as a GCC vector type (__m256 and __m512 are such types), with
// the few operations the micro-kernel needs. Only the fused multiply-add takes the instruction
// set's intrinsic: in ISO C++ mode the compiler does not contract a * b + c.
template <class T, int Bytes>
struct VecOf {
  typedef T R __attribute__((vector_size(Bytes)));
  // The same register read or written at any T's address: unaligned, aliasing T.
  typedef T Unaligned __attribute__((vector_size(Bytes), aligned(alignof(T)), may_alias));
  static constexpr int W = Bytes / sizeof(T);
  static R load(const T* p) { return *reinterpret_cast<const Unaligned*>(p); }
  static void store(T* p, R v) { *reinterpret_cast<Unaligned*>(p) = v; }
  static R broadcast(T x) { return x - R{}; }  // x - 0 is x exactly, signed zeros included
  static R fma(R a, R b, R c) {
    [[maybe_unused]] constexpr bool f32 = std::is_same_v<T, float>;
#if defined(__AVX512F__)
    if constexpr (Bytes == 64 && f32) return _mm512_fmadd_ps(a, b, c);
    if constexpr (Bytes == 64 && !f32) return _mm512_fmadd_pd(a, b, c);
#endif
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (Bytes == 32 && f32) return _mm256_fmadd_ps(a, b, c);
    if constexpr (Bytes == 32 && !f32) return _mm256_fmadd_pd(a, b, c);
#endif
    return a * b + c;  // other CPUs: two roundings
  }
};
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
template <class T>
using Vec = VecOf<T, kVectorBytes>;

template <class T>
struct Blocking {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = 6, NR = 2 * W;
  // A micro-panel of B (KC x NR, 1 KiB per column) and one of A (KC x MR) fill two thirds of a
  // 32 KiB L1 with AVX2 (most of AVX-512 CPUs' 48 KiB); the A block (MC x KC, 120 KiB) a
  // quarter of a 512 KiB L2.
  static constexpr int64_t KC = 1024 / sizeof(T), MC = 120, NC = 2048;
};

// dst[k * dst_stride + j] = src[j * src_stride + k] for j < Rows (at most 8) and k < 8: the three
// rounds of the classic AVX transpose (unpack pairs, shuffle quads, swap 128-bit halves), rows
// past Rows read as zeros. Each k stores 8 floats, in order of k: with dst_stride < 8 a store's
// tail (zeros) runs into the next k's start, which the next store then writes, and the last one
// writes 8 - dst_stride floats past the block, which the caller must own.
#if defined(__AVX2__)
template <int Rows>
inline void transpose_8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i)
    r[i] = i < Rows ? _mm256_loadu_ps(src + i * src_stride) : _mm256_setzero_ps();
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
  for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + k * dst_stride, t[k]);
}
#endif

// Packs B[0:kc, 0:n] into panels of P columns, each k-major (panel[k * P + j]), zero-padded:
// B's panels with P = NR, and A's with P = MR from A^T (A's rows are the columns of A^T).
template <int P, class T>
void pack_panels(int64_t kc, int64_t n, MatrixRef<T> b, T* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += P, dst += kc * P) {
    const int np = static_cast<int>(std::min<int64_t>(P, n - j0));
    const T* src = b.p + j0 * b.col_stride;
    if (np < P) std::fill(dst, dst + kc * P, T(0));
    if (b.col_stride == 1 && np == P) {  // a whole panel row: fixed-size vector moves
      for (int64_t k = 0; k < kc; ++k)
        std::memcpy(dst + k * P, src + k * b.row_stride, P * sizeof(T));
    } else if (b.col_stride == 1) {
      for (int64_t k = 0; k < kc; ++k)
        for (int j = 0; j < np; ++j) dst[k * P + j] = src[k * b.row_stride + j];
    } else if (b.row_stride == 1) {  // columns contiguous (a transposed view): read each once
      int64_t k0 = 0;
#if defined(__AVX2__)
      // 8 x 8 blocks in registers; a scalar loop's stores go one at a time. A's panels of
      // P = MR < 8 rows store 8 floats per k, so their buffer has room past its last panel.
      if constexpr (std::is_same_v<T, float> && P % 8 == 0) {
        if (np == P)
          for (; k0 + 8 <= kc; k0 += 8)
            for (int j = 0; j < P; j += 8)
              transpose_8x8<8>(src + j * b.col_stride + k0, b.col_stride, dst + k0 * P + j, P);
      } else if constexpr (std::is_same_v<T, float> && P < 8) {
        if (np == P)
          for (; k0 + 8 <= kc; k0 += 8) transpose_8x8<P>(src + k0, b.col_stride, dst + k0 * P, P);
      }
#endif
      for (int j = 0; j < np; ++j)
        for (int64_t k = k0; k < kc; ++k) dst[k * P + j] = src[j * b.col_stride + k];
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int j = 0; j < np; ++j) dst[k * P + j] = src[k * b.row_stride + j * b.col_stride];
    }
  }
}

// A's MR x kc panel as the micro-kernel reads it: packed (element (i, k) at p[k * MR + i]), or
// in place through A's strides, where packing would cost more than it saves: a product of one
// or two column panels reads each A panel once or twice, and packing it is a pass of its own
// (half the time of a 16 x 16 x 16 product).
template <class T>
struct PanelA {
  const T* p;
  int64_t row_stride, col_stride;  // in place only
};

// C[0:mr, 0:nr] (+)= alpha * sum_k A(i, k) b[k * NR + j], over a packed panel of B, with
// Vecs vectors of columns: two, or one for an edge panel of at most W columns (a product whose
// N is 16 k + 2 would otherwise spend a whole panel's work on two columns).
template <class T, bool kPackedA, int Vecs>
void micro_kernel(int64_t kc, PanelA<T> a, const T* __restrict b, T* c, int64_t ldc, T alpha,
                  bool accumulate, int mr, int nr) {
  using V = Vec<T>;
  using B = Blocking<T>;
  constexpr int MR = B::MR, NR = B::NR, W = B::W;
  typename V::R acc[Vecs][MR];
  for (int v = 0; v < Vecs; ++v)
    for (int i = 0; i < MR; ++i) acc[v][i] = V::broadcast(T(0));
  for (int i = 0; i < mr; ++i) {  // C's rows lie far apart: fetch them behind the loop
    __builtin_prefetch(c + i * ldc);
    __builtin_prefetch(c + i * ldc + nr - 1);
  }
  // Each k: Vecs vectors of b, MR broadcasts of a, Vecs MR fused multiply-adds.
  auto step = [&](const T* bk, auto a_of) {
    typename V::R bv[Vecs];
    for (int v = 0; v < Vecs; ++v) bv[v] = V::load(bk + v * W);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const typename V::R ai = V::broadcast(a_of(i));
      for (int v = 0; v < Vecs; ++v) acc[v][i] = V::fma(ai, bv[v], acc[v][i]);
    }
  };
  if constexpr (kPackedA) {
    const T* __restrict pa = a.p;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k, pa += MR, b += NR) step(b, [&](int i) { return pa[i]; });
  } else {
    // Rows past mr read row mr - 1 again (in bounds); their sums are never stored.
    const T* row[MR];
    for (int i = 0; i < MR; ++i) row[i] = a.p + std::min(i, mr - 1) * a.row_stride;
    for (int64_t k = 0; k < kc; ++k, b += NR) {
      const int64_t at = k * a.col_stride;
      step(b, [&](int i) { return row[i][at]; });
    }
  }
  // c = alpha acc, or c = alpha acc + c in one rounding. A partial tile goes through a buffer
  // with the same vector arithmetic, so an element rounds alike wherever the tiles fall.
  const typename V::R va = V::broadcast(alpha);
  auto write = [&](T* dst, int64_t ld) {
    for (int i = 0; i < MR; ++i, dst += ld)
      for (int v = 0; v < Vecs; ++v)
        V::store(dst + v * W,
                 accumulate ? V::fma(va, acc[v][i], V::load(dst + v * W)) : acc[v][i] * va);
  };
  if (mr == MR && nr == Vecs * W) return write(c, ldc);
  alignas(64) T tile[MR * NR];
  if (accumulate) {
    std::fill(tile, tile + MR * NR, T(0));
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j) tile[i * NR + j] = c[i * ldc + j];
  }
  write(tile, NR);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = tile[i * NR + j];
}

// One thread's product, through the loop nest above.
template <class T>
void gemm_serial(int64_t M, int64_t N, int64_t K, MatrixRef<T> a, MatrixRef<T> b, T* c, int64_t ldc,
                 T alpha, bool accumulate) {
  using B = Blocking<T>;
  constexpr int MR = B::MR, NR = B::NR;
  // Per-thread packing buffers, kept between calls (OpenMP's threads live as long as the
  // process): a product allocates nothing once the buffers have grown.
  thread_local std::vector<T> packed_a, packed_b;
  packed_a.resize(B::MC * B::KC + 8);  // + 8: see pack_panels
  packed_b.resize(B::KC * (B::NC + NR));
  for (int64_t jc = 0; jc < N; jc += B::NC) {
    const int64_t nc = std::min(B::NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += B::KC) {
      const int64_t kc = std::min(B::KC, K - pc);
      const bool add = accumulate || pc > 0;
      pack_panels<NR>(kc, nc,
                      {b.p + pc * b.row_stride + jc * b.col_stride, b.row_stride, b.col_stride},
                      packed_b.data());
      const bool pack = nc > 2 * NR;  // see PanelA
      for (int64_t ic = 0; ic < M; ic += B::MC) {
        const int64_t mc = std::min(B::MC, M - ic);
        const T* a_block = a.p + ic * a.row_stride + pc * a.col_stride;
        if (pack)
          pack_panels<MR>(kc, mc, MatrixRef<T>{a_block, a.row_stride, a.col_stride}.transposed(),
                          packed_a.data());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          for (int64_t ir = 0; ir < mc; ir += MR) {
            T* c_tile = c + (ic + ir) * ldc + jc + jr;
            const T* b_panel = packed_b.data() + jr * kc;
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
            const PanelA<T> a_panel =
                pack ? PanelA<T>{packed_a.data() + ir * kc, 0, 0}
                     : PanelA<T>{a_block + ir * a.row_stride, a.row_stride, a.col_stride};
            const bool wide = nr > B::W;
            if (pack && wide)
              micro_kernel<T, true, 2>(kc, a_panel, b_panel, c_tile, ldc, alpha, add, mr, nr);
            else if (pack)
              micro_kernel<T, true, 1>(kc, a_panel, b_panel, c_tile, ldc, alpha, add, mr, nr);
            else if (wide)
              micro_kernel<T, false, 2>(kc, a_panel, b_panel, c_tile, ldc, alpha, add, mr, nr);
            else
              micro_kernel<T, false, 1>(kc, a_panel, b_panel, c_tile, ldc, alpha, add, mr, nr);
          }
        }
      }
    }
  }
}

}  // namespace

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixRef<T> a, MatrixRef<T> b, T* c, int64_t ldc,
          T alpha, bool accumulate) {
  using B = Blocking<T>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, T(0));
    return;
  }
  // Each thread's share must be at least ~64^3 multiply-adds to pay for waking it.
  const double madds = double(M) * double(N) * double(K);
  const int64_t by_work = static_cast<int64_t>(madds / 262144.0);
  // Every thread packs all of the operand on the side not split: split N (each thread packs
  // all of A, M x K) when M < N, else M (all of B, K x N), as long as N has a tile per thread.
  const bool split_n = M < N && (N + B::NR - 1) / B::NR >= cpu::num_threads();
  const int64_t tiles = split_n ? (N + B::NR - 1) / B::NR : (M + B::MR - 1) / B::MR;
  const int64_t parts = std::clamp<int64_t>(by_work, 1, tiles);
  cpu::parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    // Tiles [begin, end) of the split side, out of `parts` equal shares of `tiles`.
    const int64_t t0 = tiles * begin / parts, t1 = tiles * end / parts;
    if (split_n) {
      const int64_t j0 = t0 * B::NR, j1 = std::min(N, t1 * B::NR);
      gemm_serial<T>(M, j1 - j0, K, a, {b.p + j0 * b.col_stride, b.row_stride, b.col_stride},
                     c + j0, ldc, alpha, accumulate);
    } else {
      const int64_t i0 = t0 * B::MR, i1 = std::min(M, t1 * B::MR);
      gemm_serial<T>(i1 - i0, N, K, {a.p + i0 * a.row_stride, a.row_stride, a.col_stride}, b,
                     c + i0 * ldc, ldc, alpha, accumulate);
    }
  });
}

template void gemm<float>(int64_t, int64_t, int64_t, MatrixRef<float>, MatrixRef<float>, float*,
                          int64_t, float, bool);
template void gemm<double>(int64_t, int64_t, int64_t, MatrixRef<double>, MatrixRef<double>, double*,
                           int64_t, double, bool);

}  // namespace lumen::kernels
