#pragma once
// CPU iteration over a BroadcastLayout: runs of the innermost dim, split across threads.
#include <array>

#include "kernels/broadcast_layout.h"
#include "kernels/cpu/parallel.h"

// On a loop body (a lambda: `[&](...) LUMEN_FLATTEN {...}`): inline every call in it, however
// large, so an inner loop that calls a functor still vectorises.
#define LUMEN_FLATTEN __attribute__((flatten))

namespace lumen::cpu {

template <int N>
struct StridedLoop : kernels::BroadcastLayout<N> {
  using kernels::BroadcastLayout<N>::BroadcastLayout;
  using kernels::BroadcastLayout<N>::shape;
  using kernels::BroadcastLayout<N>::strides;
  using kernels::BroadcastLayout<N>::numel;

  // Calls run(offsets, inner_strides, n) for runs of the innermost dim covering elements
  // [begin, end) in row-major order; offsets are in elements from each operand's data_ptr.
  template <class Run>
  void for_range(int64_t begin, int64_t end, const Run& run) const {
    int nd = static_cast<int>(shape.size());
    int64_t inner = shape[nd - 1];
    std::array<int64_t, N> inner_stride;
    for (int k = 0; k < N; ++k) inner_stride[k] = strides[k][nd - 1];
    int64_t idx[16];  // multi-index of `begin` over the outer dims
    int64_t rest = begin / inner;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = rest % shape[d];
      rest /= shape[d];
    }
    int64_t pos = begin % inner, i = begin;
    while (i < end) {
      std::array<int64_t, N> off;
      for (int k = 0; k < N; ++k) {
        off[k] = pos * inner_stride[k];
        for (int d = 0; d < nd - 1; ++d) off[k] += idx[d] * strides[k][d];
      }
      int64_t n = std::min(inner - pos, end - i);
      run(off, inner_stride, n);
      i += n;
      pos = 0;
      for (int d = nd - 2; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }

  // The same over all elements, split across threads.
  template <class Run>
  void parallel(const Run& run, int64_t grain = 32768) const {
    parallel_for(numel(), grain, [&](int64_t b, int64_t e) { for_range(b, e, run); });
  }
};

}  // namespace lumen::cpu
