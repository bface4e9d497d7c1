#pragma once
// Multi-tensor launches: one kernel covers a list of tensor groups (a parameter with its
// gradient and state tensors, or a lone gradient), whose pointers and sizes travel in the
// kernel's arguments, up to kMaxGroups per launch. The groups are laid end to end as one flat
// range [0, total); block b owns elements [b kChunk, (b + 1) kChunk) of it, which may span
// several groups, and calls f(lists, t, i) for element i of group t. f returns true to raise
// the launch's flag (unscale_grads' found_inf); the block ORs its threads' answers and one
// thread writes the flag, so blocks that raise nothing never touch it.
#include <algorithm>
#include <array>
#include <vector>

#include "kernels/cuda/launch.cuh"

namespace lumen::cuda {

// K pointers and one end per group: with K <= 6, under 3 KiB of the 4 KiB argument space.
constexpr int kMaxGroups = 48;
constexpr int64_t kChunk = 64 * kBlock;

template <int K>
struct TensorLists {
  void* data[K][kMaxGroups];  // data[k][t]: tensor k of group t (nullptr: absent)
  int64_t end[kMaxGroups];    // end[t] = elements of groups 0..t (prefix sums)
  int count = 0;
};

// Calls f(t, i) for element i of group t, for every element of the flat range this block owns
// that this thread takes.
template <int K, class F>
__device__ void for_block_chunk(const TensorLists<K>& lists, F&& f) {
  const int64_t begin = blockIdx.x * kChunk;
  const int64_t stop = min(begin + kChunk, lists.end[lists.count - 1]);
  int t = 0;
  while (lists.end[t] <= begin) ++t;
  for (; t < lists.count; ++t) {
    const int64_t first = t == 0 ? 0 : lists.end[t - 1];
    if (first >= stop) break;
    const int64_t lo = max(begin, first), hi = min(stop, lists.end[t]);
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) f(t, i - first);
  }
}

template <int K, class F>
__global__ void multi_tensor_kernel(TensorLists<K> lists, F f, float* flag) {
  bool raised = false;
  for_block_chunk(lists, [&](int t, int64_t i) { raised |= f(lists, t, i); });
  if (flag != nullptr && __syncthreads_or(raised) && threadIdx.x == 0) *flag = 1.0f;
}

// Packs groups of K tensors (the tensors of a group have one numel; an undefined tensor passes
// nullptr) into lists of up to kMaxGroups, skipping empty groups, and calls
// launch(lists, blocks) for each, blocks = the number of kChunk chunks it covers.
template <int K, class Launch>
void pack_multi_tensor(const std::vector<std::array<const Tensor*, K>>& groups, Launch launch) {
  for (size_t first = 0; first < groups.size(); first += kMaxGroups) {
    TensorLists<K> lists;
    int64_t total = 0;
    for (size_t g = first; g < std::min(groups.size(), first + kMaxGroups); ++g) {
      const int64_t n = groups[g][0]->numel();
      if (n == 0) continue;
      total += n;
      for (int k = 0; k < K; ++k)
        lists.data[k][lists.count] = groups[g][k]->defined() ? groups[g][k]->data_ptr() : nullptr;
      lists.end[lists.count++] = total;
    }
    if (total == 0) continue;
    launch(lists, static_cast<unsigned>((total + kChunk - 1) / kChunk));
  }
}

// One multi_tensor_kernel launch per kMaxGroups groups, on the current device.
template <int K, class F>
void launch_multi_tensor(const std::vector<std::array<const Tensor*, K>>& groups, F f,
                         float* flag = nullptr) {
  pack_multi_tensor<K>(groups, [&](const TensorLists<K>& lists, unsigned blocks) {
    multi_tensor_kernel<K, F><<<blocks, kBlock>>>(lists, f, flag);
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lumen::cuda
