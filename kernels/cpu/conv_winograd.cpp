// Winograd F(2x2, 3x3). Each 2x2 block of outputs (a tile) of output channel o is
//   Y = A^T [ sum_c (G g_oc G^T) * (B^T d_c B) ] A
// where d_c is the 4x4 input patch under the tile in channel c (rows 2 ty - pad_h .. + 3,
// columns 2 tx - pad_w .. + 3, zero in the padding), g_oc the 3x3 filter, * the elementwise
// product, and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1].
// For each position xi of the 4x4 transformed tile, the sum over c for all tiles at once is a
// GEMM: M_xi [O, tiles] = U_xi [O, C] V_xi [C, tiles]. That is 16 C O multiplies per 4 outputs
// where im2col's GEMM does 36 C O. The transforms' entries are 0, +-1 and +-1/2, so the result
// stays within a few ulp of the direct sum (tests/test_conv.cpp checks it against one).
#include "kernels/cpu/conv_winograd.h"

#include <algorithm>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"

namespace lumen::kernels {
namespace {

struct Tiles {
  int64_t OH, OW;  // output size
  int64_t TH, TW;  // tiles down and across (the last ones may hang over the output)
  int64_t n;       // tiles per image
  explicit Tiles(const Winograd3x3& s)
      : OH(s.H + 2 * s.pad_h - 2),
        OW(s.W + 2 * s.pad_w - 2),
        TH((OH + 1) / 2),
        TW((OW + 1) / 2),
        n(TH * TW) {}
};

// U_xi[o, c] = (G g G^T)[xi] for the filter g of output o and input c.
template <class T>
void transform_filters(const T* w, T* U, const Winograd3x3& s) {
  for (int64_t o = 0; o < s.O; ++o) {
    for (int64_t c = 0; c < s.C; ++c) {
      T g[3][3];
      for (int p = 0; p < 3; ++p)
        for (int q = 0; q < 3; ++q)
          g[p][q] = s.flipped ? w[((c * s.O + o) * 3 + 2 - p) * 3 + 2 - q]
                              : w[((o * s.C + c) * 3 + p) * 3 + q];
      T t[4][3];  // G g
      for (int q = 0; q < 3; ++q) {
        t[0][q] = g[0][q];
        t[1][q] = T(0.5) * (g[0][q] + g[1][q] + g[2][q]);
        t[2][q] = T(0.5) * (g[0][q] - g[1][q] + g[2][q]);
        t[3][q] = g[2][q];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        const T u[4] = {t[i][0], T(0.5) * (t[i][0] + t[i][1] + t[i][2]),
                        T(0.5) * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) U[((i * 4 + j) * s.O + o) * s.C + c] = u[j];
      }
    }
  }
}

// One channel's zero-padded rows split into even and odd columns, so that a row of tiles reads
// contiguous runs: even[r][k] = x[r - pad_h, 2k - pad_w], odd[r][k] = x[r - pad_h, 2k + 1 - pad_w].
// Positions in the padding are the same for every channel: zeroed once, never written.
template <class T>
struct SplitPlane {
  int64_t rows, cols;
  int64_t r0, r1, e0, e1, o0, o1;  // the rows, even and odd columns that read the image
  std::vector<T> even, odd;

  SplitPlane(const Winograd3x3& s, const Tiles& t)
      : rows(2 * t.TH + 2), cols(t.TW + 1), even(rows * cols, T(0)), odd(rows * cols, T(0)) {
    // [lo, hi): the k in [0, n) whose index(k) lies in [0, size) (a contiguous run).
    auto valid = [](int64_t n, int64_t size, auto index) {
      int64_t lo = n, hi = 0;
      for (int64_t k = 0; k < n; ++k)
        if (index(k) >= 0 && index(k) < size) lo = std::min(lo, k), hi = k + 1;
      return std::pair{lo, std::max(lo, hi)};
    };
    std::tie(r0, r1) = valid(rows, s.H, [&](int64_t r) { return r - s.pad_h; });
    std::tie(e0, e1) = valid(cols, s.W, [&](int64_t k) { return 2 * k - s.pad_w; });
    std::tie(o0, o1) = valid(cols, s.W, [&](int64_t k) { return 2 * k + 1 - s.pad_w; });
  }

  void load(const T* xc, const Winograd3x3& s) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = xc + (r - s.pad_h) * s.W - s.pad_w;
      T* er = even.data() + r * cols;
      T* orow = odd.data() + r * cols;
      for (int64_t k = e0; k < e1; ++k) er[k] = xr[2 * k];
      for (int64_t k = o0; k < o1; ++k) orow[k] = xr[2 * k + 1];
    }
  }
};

// V_xi[., tile] for one row of TW tiles: e and o point at the row's first padded row, the 16
// outputs are `plane` apart. Columns 2t .. 2t + 3 of the patch are even[t], odd[t], even[t + 1],
// odd[t + 1].
template <class T>
void transform_input_row(const T* __restrict e, const T* __restrict o, int64_t cols, int64_t TW,
                         T* __restrict v, int64_t plane) {
  const T *e0 = e, *e1 = e + cols, *e2 = e + 2 * cols, *e3 = e + 3 * cols;
  const T *o0 = o, *o1 = o + cols, *o2 = o + 2 * cols, *o3 = o + 3 * cols;
  // The 16 output rows never overlap the inputs or each other: omp simd says so (GCC would
  // otherwise give up on checking 16 store streams at run time).
#pragma omp simd
  for (int64_t t = 0; t < TW; ++t) {
    // B^T d, one patch column at a time.
    const T c0[4] = {e0[t] - e2[t], e1[t] + e2[t], e2[t] - e1[t], e1[t] - e3[t]};
    const T c1[4] = {o0[t] - o2[t], o1[t] + o2[t], o2[t] - o1[t], o1[t] - o3[t]};
    const T c2[4] = {e0[t + 1] - e2[t + 1], e1[t + 1] + e2[t + 1], e2[t + 1] - e1[t + 1],
                     e1[t + 1] - e3[t + 1]};
    const T c3[4] = {o0[t + 1] - o2[t + 1], o1[t + 1] + o2[t + 1], o2[t + 1] - o1[t + 1],
                     o1[t + 1] - o3[t + 1]};
    // (B^T d) B: the same combination of the columns.
    for (int i = 0; i < 4; ++i) {
      v[(4 * i + 0) * plane + t] = c0[i] - c2[i];
      v[(4 * i + 1) * plane + t] = c1[i] + c2[i];
      v[(4 * i + 2) * plane + t] = c2[i] - c1[i];
      v[(4 * i + 3) * plane + t] = c1[i] - c3[i];
    }
  }
}

// A row of TW tiles of one output channel: m points at M_0[o, first tile], the 16 inputs are
// `plane` apart; out[a][b][t] is output (2 ty + a, 2t + b) plus the bias.
template <class T>
void transform_output_row(const T* __restrict m, int64_t plane, int64_t TW, T bias,
                          T* __restrict top_even, T* __restrict top_odd, T* __restrict bottom_even,
                          T* __restrict bottom_odd) {
#pragma omp simd
  for (int64_t t = 0; t < TW; ++t) {
    T s0[4], s1[4];  // A^T m
    for (int j = 0; j < 4; ++j) {
      const T m0 = m[j * plane + t], m1 = m[(4 + j) * plane + t];
      const T m2 = m[(8 + j) * plane + t], m3 = m[(12 + j) * plane + t];
      s0[j] = m0 + m1 + m2;
      s1[j] = m1 - m2 - m3;
    }
    // (A^T m) A
    top_even[t] = s0[0] + s0[1] + s0[2] + bias;
    top_odd[t] = s0[1] - s0[2] - s0[3] + bias;
    bottom_even[t] = s1[0] + s1[1] + s1[2] + bias;
    bottom_odd[t] = s1[1] - s1[2] - s1[3] + bias;
  }
}

// An output row from its even and odd columns.
template <class T>
void interleave(const T* __restrict even, const T* __restrict odd, int64_t OW, T* __restrict y) {
  for (int64_t t = 0; t < OW / 2; ++t) {
    y[2 * t] = even[t];
    y[2 * t + 1] = odd[t];
  }
  if (OW % 2) y[OW - 1] = even[OW / 2];
}

// V_xi[c, b n + tile] for images n0 .. n0 + nb - 1 of x (L = nb n columns).
template <class T>
void transform_input_block(const T* x, int64_t n0, int64_t nb, const Winograd3x3& s, const Tiles& t,
                           SplitPlane<T>& split, T* V) {
  const int64_t L = nb * t.n;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t c = 0; c < s.C; ++c) {
      split.load(x + ((n0 + b) * s.C + c) * s.H * s.W, s);
      for (int64_t ty = 0; ty < t.TH; ++ty)
        transform_input_row(split.even.data() + 2 * ty * split.cols,
                            split.odd.data() + 2 * ty * split.cols, split.cols, t.TW,
                            V + c * L + b * t.n + ty * t.TW, s.C * L);
    }
  }
}

// Z_xi[., tile] = (A dy A^T)[xi] for one row of TW tiles of grad_out: the tile's 2x2 block is
// (top even, top odd; bottom even, bottom odd)[t], zero past the output's edge. A (p, q) pair
// times A is (p, p + q, p - q, -q), once down and once across.
template <class T>
void transform_grad_row(const T* __restrict te, const T* __restrict to, const T* __restrict be,
                        const T* __restrict bo, int64_t TW, T* __restrict z, int64_t plane) {
#pragma omp simd
  for (int64_t t = 0; t < TW; ++t) {
    const T even[4] = {te[t], te[t] + be[t], te[t] - be[t], -be[t]};  // A dy, column 2t
    const T odd[4] = {to[t], to[t] + bo[t], to[t] - bo[t], -bo[t]};   // column 2t + 1
    for (int i = 0; i < 4; ++i) {
      z[(4 * i + 0) * plane + t] = even[i];
      z[(4 * i + 1) * plane + t] = even[i] + odd[i];
      z[(4 * i + 2) * plane + t] = even[i] - odd[i];
      z[(4 * i + 3) * plane + t] = -odd[i];
    }
  }
}

// An output row's even and odd columns, zero past OW (the last tile's odd column when OW is odd).
template <class T>
void deinterleave(const T* __restrict y, int64_t OW, int64_t TW, T* __restrict even,
                  T* __restrict odd) {
  for (int64_t t = 0; t < TW; ++t) {
    even[t] = y[2 * t];
    odd[t] = 2 * t + 1 < OW ? y[2 * t + 1] : T(0);
  }
}

// Images per block of GEMMs: about a hundred tiles or more keep the GEMM's panels busy; more
// images would spill the transformed blocks out of L2.
int64_t images_per_block(const Tiles& t) { return std::clamp<int64_t>(128 / t.n, 1, 4); }

// A thread's buffers for blocks of B images: the split input plane, the transformed inputs V
// [16, C, B tiles], the 16 planes of O rows (the GEMMs' M, or grad_out's Z), four output rows.
// All are written in full before they are read: no zeroing.
template <class T>
struct Workspace {
  SplitPlane<T> split;
  std::unique_ptr<T[]> V, M, rows;
  T *top_even, *top_odd, *bottom_even, *bottom_odd;
  Workspace(const Winograd3x3& s, const Tiles& t, int64_t B)
      : split(s, t),
        V(std::make_unique_for_overwrite<T[]>(16 * s.C * B * t.n)),
        M(std::make_unique_for_overwrite<T[]>(16 * s.O * B * t.n)),
        rows(std::make_unique_for_overwrite<T[]>(4 * t.TW)),
        top_even(rows.get()),
        top_odd(top_even + t.TW),
        bottom_even(top_odd + t.TW),
        bottom_odd(bottom_even + t.TW) {}
};

}  // namespace

template <class T>
void winograd_conv3x3(const T* x, const T* w, const T* bias, T* y, const Winograd3x3& s) {
  const Tiles t(s);
  std::vector<T> U(16 * s.O * s.C);
  transform_filters(w, U.data(), s);
  const int64_t B = images_per_block(t), blocks = (s.N + B - 1) / B;
  cpu::parallel_for(blocks, 1, [&](int64_t blk0, int64_t blk1) {
    Workspace<T> ws(s, t, B);
    T *V = ws.V.get(), *M = ws.M.get();
    T *te = ws.top_even, *to = ws.top_odd, *be = ws.bottom_even, *bo = ws.bottom_odd;
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t n0 = blk * B, nb = std::min(B, s.N - n0), L = nb * t.n;
      transform_input_block(x, n0, nb, s, t, ws.split, V);
      for (int xi = 0; xi < 16; ++xi) {
        gemm<T>(s.O, L, s.C, {U.data() + xi * s.O * s.C, s.C, 1}, {V + xi * s.C * L, L, 1},
                M + xi * s.O * L, L);
      }
      for (int64_t b = 0; b < nb; ++b) {
        for (int64_t o = 0; o < s.O; ++o) {
          T* yo = y + ((n0 + b) * s.O + o) * t.OH * t.OW;
          for (int64_t ty = 0; ty < t.TH; ++ty) {
            transform_output_row(M + o * L + b * t.n + ty * t.TW, s.O * L, t.TW,
                                 bias ? bias[o] : T(0), te, to, be, bo);
            interleave(te, to, t.OW, yo + 2 * ty * t.OW);
            if (2 * ty + 1 < t.OH) interleave(be, bo, t.OW, yo + (2 * ty + 1) * t.OW);
          }
        }
      }
    }
  });
}

// The weights' gradient: with d the input tiles and dy the grad_out tiles, Y = A^T [U * V] A
// gives dL/dU_xi = sum over tiles of (A dy A^T)[xi] V_xi, a GEMM per xi, dU_xi [O, C] =
// Z_xi [O, tiles] V_xi^T, and dL/dg = G^T dU G. Images are split into P fixed chunks (P from N
// and the thread count only) whose dU are added in chunk order: the same result on every run.
template <class T>
void winograd_conv3x3_backward_weight(const T* x, const T* gy, T* gw, const Winograd3x3& s) {
  const Tiles t(s);
  const int64_t B = images_per_block(t), blocks = (s.N + B - 1) / B;
  const int64_t P = std::min<int64_t>(blocks, cpu::num_threads()), U = 16 * s.O * s.C;
  std::vector<T> dU(P * U, T(0));
  cpu::parallel_for(P, 1, [&](int64_t p0, int64_t p1) {
    Workspace<T> ws(s, t, B);
    T *V = ws.V.get(), *Z = ws.M.get();
    T *te = ws.top_even, *to = ws.top_odd, *be = ws.bottom_even, *bo = ws.bottom_odd;
    for (int64_t p = p0; p < p1; ++p) {
      T* acc = dU.data() + p * U;
      for (int64_t blk = blocks * p / P; blk < blocks * (p + 1) / P; ++blk) {
        const int64_t n0 = blk * B, nb = std::min(B, s.N - n0), L = nb * t.n;
        transform_input_block(x, n0, nb, s, t, ws.split, V);
        for (int64_t b = 0; b < nb; ++b) {
          for (int64_t o = 0; o < s.O; ++o) {
            const T* g = gy + ((n0 + b) * s.O + o) * t.OH * t.OW;
            for (int64_t ty = 0; ty < t.TH; ++ty) {
              deinterleave(g + 2 * ty * t.OW, t.OW, t.TW, te, to);
              if (2 * ty + 1 < t.OH)
                deinterleave(g + (2 * ty + 1) * t.OW, t.OW, t.TW, be, bo);
              else
                std::fill(be, be + 2 * t.TW, T(0));  // be and bo
              transform_grad_row(te, to, be, bo, t.TW, Z + o * L + b * t.n + ty * t.TW, s.O * L);
            }
          }
        }
        for (int xi = 0; xi < 16; ++xi) {
          // V_xi^T [tiles, C] read in place.
          gemm<T>(s.O, s.C, L, {Z + xi * s.O * L, L, 1}, {V + xi * s.C * L, 1, L},
                  acc + xi * s.O * s.C, s.C, T(1), /*accumulate=*/true);
        }
      }
    }
  });
  for (int64_t p = 1; p < P; ++p)
    for (int64_t i = 0; i < U; ++i) dU[i] += dU[p * U + i];
  // dg = G^T dU G with G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1].
  for (int64_t o = 0; o < s.O; ++o) {
    for (int64_t c = 0; c < s.C; ++c) {
      T d[4][4];
      for (int xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = dU[(xi * s.O + o) * s.C + c];
      T r[3][4];  // G^T d
      for (int j = 0; j < 4; ++j) {
        r[0][j] = d[0][j] + T(0.5) * (d[1][j] + d[2][j]);
        r[1][j] = T(0.5) * (d[1][j] - d[2][j]);
        r[2][j] = T(0.5) * (d[1][j] + d[2][j]) + d[3][j];
      }
      T* g = gw + (o * s.C + c) * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T d) G
        g[i * 3 + 0] = r[i][0] + T(0.5) * (r[i][1] + r[i][2]);
        g[i * 3 + 1] = T(0.5) * (r[i][1] - r[i][2]);
        g[i * 3 + 2] = T(0.5) * (r[i][1] + r[i][2]) + r[i][3];
      }
    }
  }
}

template void winograd_conv3x3<float>(const float*, const float*, const float*, float*,
                                      const Winograd3x3&);
template void winograd_conv3x3<double>(const double*, const double*, const double*, double*,
                                       const Winograd3x3&);
template void winograd_conv3x3_backward_weight<float>(const float*, const float*, float*,
                                                      const Winograd3x3&);
template void winograd_conv3x3_backward_weight<double>(const double*, const double*, double*,
                                                       const Winograd3x3&);

}  // namespace lumen::kernels
