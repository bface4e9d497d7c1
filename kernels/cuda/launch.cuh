#pragma once
// Shared pieces of the CUDA kernels: launch checking and the strided indexer that turns a flat
// element index into one offset per operand of a BroadcastLayout.
#include <cuda_runtime.h>

#include "kernels/broadcast_layout.h"
#include "tensor/cuda_check.h"

namespace lumen::cuda {

constexpr int kBlock = 256;

inline int blocks_for(int64_t n) {
  int64_t b = (n + kBlock - 1) / kBlock;
  return static_cast<int>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

// for (int64_t i : grid_stride(n)) visits this thread's elements of [0, n): its global index,
// then every grid's width after it.
struct GridStride {
  struct Iterator {
    int64_t i, step;
    __device__ int64_t operator*() const { return i; }
    __device__ Iterator& operator++() {
      i += step;
      return *this;
    }
    __device__ bool operator!=(const Iterator& end) const { return i < end.i; }
  };
  int64_t n;
  __device__ Iterator begin() const {
    return {blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x,
            static_cast<int64_t>(gridDim.x) * blockDim.x};
  }
  __device__ Iterator end() const { return {n, 0}; }
};
__device__ inline GridStride grid_stride(int64_t n) { return {n}; }

// Checks the launch just made (bad configuration, missing kernel image for this GPU).
#define LUMEN_CUDA_CHECK_LAUNCH() LUMEN_CUDA_CHECK(cudaGetLastError())

template <int N>
struct Indexer {
  int ndim;
  int64_t sizes[16];
  int64_t strides[N][16];

  explicit Indexer(const kernels::BroadcastLayout<N>& l) : ndim(static_cast<int>(l.shape.size())) {
    for (int d = 0; d < ndim; ++d) {
      sizes[d] = l.shape[d];
      for (int k = 0; k < N; ++k) strides[k][d] = l.strides[k][d];
    }
  }
  __device__ void offsets(int64_t i, int64_t (&off)[N]) const {
    if (ndim == 1) {  // the common case (operands of one shape, merged into one run): no division
      for (int k = 0; k < N; ++k) off[k] = i * strides[k][0];
      return;
    }
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t q = i / sizes[d], r = i - q * sizes[d];
      for (int k = 0; k < N; ++k) off[k] += r * strides[k][d];
      i = q;
    }
  }
};

// Grid-stride loop calling f(offsets) for every element of the layout.
template <int N, class F>
__global__ void strided_kernel(int64_t n, Indexer<N> ix, F f) {
  for (int64_t i : grid_stride(n)) {
    int64_t off[N];
    ix.offsets(i, off);
    f(off);
  }
}

template <int N, class F>
void launch_strided(std::array<const Tensor*, N> ops, F f) {
  kernels::BroadcastLayout<N> layout(ops);
  int64_t n = ops[0]->numel();
  if (n == 0) return;
  LUMEN_CUDA_CHECK(cudaSetDevice(ops[0]->device().index));
  strided_kernel<N><<<blocks_for(n), kBlock>>>(n, Indexer<N>(layout), f);
  LUMEN_CUDA_CHECK_LAUNCH();
}

}  // namespace lumen::cuda
