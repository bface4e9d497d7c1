#pragma once
// CPU parallelism: OpenMP threads over index ranges. Chunking depends only on n and the thread
// count, never on timing, so results (including reductions combined in chunk order) repeat
// bit for bit from run to run on the same machine.
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace lumen::cpu {

inline int num_threads() { return omp_get_max_threads(); }

// Runs f(begin, end) over [0, n) in contiguous chunks of at least `grain` elements.
template <class F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  int64_t chunks = std::min<int64_t>(num_threads(), (n + grain - 1) / std::max<int64_t>(grain, 1));
  if (chunks <= 1 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(static_cast <int>(chunks))
  {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

}  // namespace lumen::cpu
