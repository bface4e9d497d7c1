#pragma once
// Warp and block reductions. A warp combines its 32 values in five shuffle steps (lane l takes
// lane l + 16, then l + 8, ..., so lane 0 ends with all 32); a block combines its warps' results
// through shared memory. `op` must be associative and commutative up to the caller's needs (the
// arg reductions break ties by index, so their order does not matter).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/launch.cuh"

namespace lumen::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

template <class V>
__device__ __forceinline__ V shfl_down(V v, int delta) {
  return __shfl_down_sync(kFullMask, v, delta);
}

// A value and the index it came from (argmax/argmin).
template <class A>
struct ArgValue {
  A v;
  int64_t k;
};
template <class A>
__device__ __forceinline__ ArgValue<A> shfl_down(ArgValue<A> a, int delta) {
  return {__shfl_down_sync(kFullMask, a.v, delta), __shfl_down_sync(kFullMask, a.k, delta)};
}

// Lane 0 gets op over the warp's 32 values (every lane must take part).
template <class V, class Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
  for (int d = 16; d > 0; d >>= 1) v = op(v, shfl_down(v, d));
  return v;
}

// Every thread of the block gets op over the block's values. blockDim.x must be a multiple of
// 32 and at most 1024, and every thread must call it (it synchronises the block).
template <class V, class Op>
__device__ V block_reduce(V v, Op op) {
  __shared__ V warp_values[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_reduce(v, op);
  __syncthreads();  // a previous call's readers are done with warp_values
  if (lane == 0) warp_values[warp] = v;
  __syncthreads();
  v = warp_values[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) v = op(v, warp_values[w]);
  return v;
}

struct Plus {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a + b;
  }
};

}  // namespace lumen::cuda

namespace lumen::cuda {

// Rows (kernels/rows.h) are handled by groups of threads: a warp per row for rows of up to
// kWarpRowMax elements (kBlock / 32 rows per block), the whole block per row for longer ones,
// and a thread per row where short rows interleave (`inner` apart, inner >= 32) and are many: then
// the 32 threads of a warp read 32 adjacent elements, where a warp on one row would read 32
// elements `inner` apart. Each group loops over rows first_row(), first_row() + row_step(), ...
constexpr int64_t kWarpRowMax = 1024;

enum class RowMode { Thread, Warp, Block };

template <RowMode kMode>
struct RowGroup {
  __device__ int lane() const {
    return kMode == RowMode::Thread ? 0 : kMode == RowMode::Warp ? threadIdx.x % 32 : threadIdx.x;
  }
  __device__ int size() const {
    return kMode == RowMode::Thread ? 1 : kMode == RowMode::Warp ? 32 : blockDim.x;
  }
  __device__ int64_t first_row() const {
    const auto block = static_cast<int64_t>(blockIdx.x);
    return kMode == RowMode::Thread ? block * blockDim.x + threadIdx.x
           : kMode == RowMode::Warp ? block * (blockDim.x / 32) + threadIdx.x / 32
                                    : block;
  }
  __device__ int64_t row_step() const {
    const auto grid = static_cast<int64_t>(gridDim.x);
    return kMode == RowMode::Thread ? grid * blockDim.x
           : kMode == RowMode::Warp ? grid * (blockDim.x / 32)
                                    : grid;
  }
  // op over the group's values, in every thread of the group.
  template <class V, class Op>
  __device__ V reduce(V v, Op op) const {
    if constexpr (kMode == RowMode::Thread)
      return v;
    else if constexpr (kMode == RowMode::Warp)
      return __shfl_sync(kFullMask, warp_reduce(v, op), 0);
    else
      return block_reduce(v, op);
  }
};

// The group for `rows` rows of d elements, `inner` apart (1: contiguous rows).
// A thread per row only for short rows (a thread walks its row alone) and enough of them to
// fill the GPU's SMs several times over.
inline RowMode row_mode(int64_t rows, int64_t d, int64_t inner = 1) {
  if (inner >= 32 && d <= 256 && rows >= 65536) return RowMode::Thread;
  return d <= kWarpRowMax ? RowMode::Warp : RowMode::Block;
}

// Blocks of kBlock threads for `rows` rows in groups of `mode`.
inline unsigned row_blocks(RowMode mode, int64_t rows) {
  const int64_t per_block = mode == RowMode::Thread ? kBlock
                            : mode == RowMode::Warp ? kBlock / 32
                                                    : 1;
  const int64_t b = (rows + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

// Runs f.template operator()<M>() with the mode as a compile-time M (the kernel's template
// argument). kThreadRows = false for callers whose rows are always contiguous (inner = 1, never
// RowMode::Thread), so no kernel is instantiated for that mode.
template <bool kThreadRows = true, class F>
void with_row_mode(RowMode mode, F&& f) {
  switch (mode) {
    case RowMode::Thread:
      if constexpr (kThreadRows)
        return f.template operator()<RowMode::Thread>();
      else
        detail::throw_error("with_row_mode: a thread per row for contiguous rows");
    case RowMode::Warp:
      return f.template operator()<RowMode::Warp>();
    case RowMode::Block:
      return f.template operator()<RowMode::Block>();
  }
}

// max that lets NaN through (a NaN anywhere makes the result NaN).
struct MaxNan {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a != a ? a : (b != b ? b : (a > b ? a : b));
  }
};

// The log-sum-exp pieces of one row of d elements `stride` apart, in every thread of the group:
// m = the row max (NaN wins; 0 for a row of all -inf, so the exps give 0 and then NaN, as on
// the CPU) and s = sum_j exp(x_j - m). Subtracting m keeps every exp argument <= 0.
template <class A, class T, RowMode kMode>
__device__ void row_max_sum_exp(const RowGroup<kMode>& grp, const T* xr, int64_t d, int64_t stride,
                                A& m, A& s) {
  m = -INFINITY;
  for (int64_t j = grp.lane(); j < d; j += grp.size()) m = MaxNan{}(m, A(xr[j * stride]));
  m = grp.reduce(m, MaxNan{});
  if (isinf(m) && m < 0) m = A(0);
  s = 0;
  for (int64_t j = grp.lane(); j < d; j += grp.size()) s += exp(A(xr[j * stride]) - m);
  s = grp.reduce(s, Plus{});
}

// Column sums with a (32, 8) block: threadIdx.x picks one of 32 adjacent columns (a warp reads
// 32 adjacent elements of a row), threadIdx.y every 8th row. Each thread passes its partial sum;
// threadIdx.y == 0 gets its column's total (the other threads get their own value back). Safe
// to call several times in one kernel.
template <class A>
__device__ A column_block_sum(A v) {
  __shared__ A part[8][33];  // 33: no bank conflicts between the 8 rows
  __syncthreads();           // a previous call's readers are done
  part[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.y == 0)
    for (int k = 1; k < 8; ++k) v += part[k][threadIdx.x];
  return v;
}

}  // namespace lumen::cuda
