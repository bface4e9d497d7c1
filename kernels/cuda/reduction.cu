// CUDA reductions (kernels/reduction.h): one block per output element (a sum over leading dims,
// whose outputs are adjacent in memory, takes a column kernel instead, and a few sums over many
// elements are split across blocks). The block's threads
// take the reduced elements k = t, t + blockDim, ... (in the order kernels/reduction_plan.h lays
// them out), each folds its share into a register, and a shuffle reduction
// (kernels/cuda/block_reduce.cuh) combines the threads. Sums accumulate in sum_t (f64 for
// floating types, i64 for integers), as on the CPU.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/reduction.h"
#include "kernels/reduction_plan.h"

namespace lumen::kernels {
namespace {

using cuda::ArgValue;

constexpr int kMaxDims = 16;

// The Plan in kernel arguments: where output o starts in x and in out, and where reduced
// element k lies from there.
struct ReduceIndexer {
  int n_outer = 0, n_rows = 0;
  int64_t outer[kMaxDims], outer_x[kMaxDims], outer_out[kMaxDims];
  int64_t rows[kMaxDims], rows_x[kMaxDims];
  int64_t cols, cols_x;

  explicit ReduceIndexer(const reduction::Plan& p)
      : n_outer(static_cast<int>(p.outer.size())),
        n_rows(static_cast<int>(p.rows.size())),
        cols(p.cols),
        cols_x(p.cols_x) {
    for (int d = 0; d < n_outer; ++d) {
      outer[d] = p.outer[d];
      outer_x[d] = p.outer_x[d];
      outer_out[d] = p.outer_out[d];
    }
    for (int d = 0; d < n_rows; ++d) {
      rows[d] = p.rows[d];
      rows_x[d] = p.rows_x[d];
    }
  }
  __device__ void outer_offsets(int64_t o, int64_t& in, int64_t& out) const {
    in = out = 0;
    for (int d = n_outer - 1; d >= 0; --d) {
      int64_t q = o / outer[d], r = o - q * outer[d];
      in += r * outer_x[d];
      out += r * outer_out[d];
      o = q;
    }
  }
  __device__ int64_t element_offset(int64_t k) const {
    int64_t r = k / cols, off = (k - r * cols) * cols_x;
    for (int d = n_rows - 1; d >= 0; --d) {
      int64_t q = r / rows[d];
      off += (r - q * rows[d]) * rows_x[d];
      r = q;
    }
    return off;
  }
};

template <class T>
__global__ void sum_kernel(T* out, const T* x, ReduceIndexer ix, int64_t n_out, int64_t n_in,
                           bool mean) {
  using S = sum_t<T>;
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    int64_t base, ob;
    ix.outer_offsets(o, base, ob);
    S s = 0;
    for (int64_t k = threadIdx.x; k < n_in; k += blockDim.x)
      s += static_cast<S>(acc_t<T>(x[base + ix.element_offset(k)]));
    s = cuda::block_reduce(s, cuda::Plus{});
    if (mean) s /= static_cast<S>(n_in);
    if (threadIdx.x == 0) out[ob] = T(static_cast<acc_t<T>>(s));
  }
}

// A sum whose kept elements are adjacent in x (the kept dims merge into one of stride 1): the
// bias gradient's sum over the rows of [N, C], or any reduction over leading dims. Output c is
// sum_k x[offset(k) + c]; a (32, 8) block takes 32 adjacent outputs, so a warp reads 32 adjacent
// elements (one block per output would read them 32 sectors apart).
template <class T>
__global__ void column_sum_kernel(T* out, int64_t out_stride, const T* x, ReduceIndexer ix,
                                  int64_t n_out, int64_t n_in, bool mean) {
  using S = sum_t<T>;
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  S s = 0;
  if (c < n_out)
    for (int64_t k = threadIdx.y; k < n_in; k += 8)
      s += static_cast<S>(acc_t<T>(x[ix.element_offset(k) + c]));
  s = cuda::column_block_sum(s);
  if (threadIdx.y != 0 || c >= n_out) return;
  if (mean) s /= static_cast<S>(n_in);
  out[c * out_stride] = T(static_cast<acc_t<T>>(s));
}

// A few outputs over many elements (a full sum, a gradient norm's sum of squares) would leave
// all but n_out SMs idle with one block per output: each output's elements are cut into
// `parts` contiguous ranges of k, one block each, whose sums land in partial[o parts + j]; a
// second kernel adds each output's parts in order (the result is the same on every run).
template <class T>
__global__ void partial_sum_kernel(sum_t<T>* partial, const T* x, ReduceIndexer ix, int64_t n_out,
                                   int64_t n_in, int64_t parts) {
  using S = sum_t<T>;
  const int64_t len = (n_in + parts - 1) / parts;
  for (int64_t b = blockIdx.x; b < n_out * parts; b += gridDim.x) {
    const int64_t o = b / parts, j = b - o * parts;
    int64_t base, ob;
    ix.outer_offsets(o, base, ob);
    const int64_t stop = min(n_in, (j + 1) * len);
    S s = 0;
    for (int64_t k = j * len + threadIdx.x; k < stop; k += blockDim.x)
      s += static_cast<S>(acc_t<T>(x[base + ix.element_offset(k)]));
    s = cuda::block_reduce(s, cuda::Plus{});
    if (threadIdx.x == 0) partial[b] = s;
  }
}

template <class T>
__global__ void finish_sum_kernel(T* out, const sum_t<T>* partial, ReduceIndexer ix, int64_t n_out,
                                  int64_t n_in, int64_t parts, bool mean) {
  using S = sum_t<T>;
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    S s = 0;
    for (int64_t j = threadIdx.x; j < parts; j += blockDim.x) s += partial[o * parts + j];
    s = cuda::block_reduce(s, cuda::Plus{});
    if (mean) s /= static_cast<S>(n_in);
    int64_t base, ob;
    ix.outer_offsets(o, base, ob);
    if (threadIdx.x == 0) out[ob] = T(static_cast<acc_t<T>>(s));
  }
}

// How many parts each output's elements are cut into: enough blocks for every SM several
// times over, each part still thousands of elements (1 when one block per output suffices).
int64_t sum_parts(int64_t n_out, int64_t n_in) {
  constexpr int64_t kTargetBlocks = 1024, kMinPart = 4096;
  if (n_out >= kTargetBlocks / 4) return 1;
  return std::clamp<int64_t>(std::min(kTargetBlocks / n_out, n_in / kMinPart), 1, 1024);
}

// The better of two candidates: NaN wins (the first NaN among several), then the larger
// (smaller) value, then the first index, as the CPU kernel's left-to-right scan picks.
template <class A, bool kMax>
struct PickExtreme {
  __device__ ArgValue<A> operator()(ArgValue<A> a, ArgValue<A> b) const {
    bool a_nan = a.v != a.v, b_nan = b.v != b.v;
    if (a_nan || b_nan) return a_nan && (!b_nan || a.k < b.k) ? a : b;
    if (a.v == b.v) return a.k < b.k ? a : b;
    return (kMax ? a.v > b.v : a.v < b.v) ? a : b;
  }
};

// A thread with no elements holds k = n_in (loses every tie) and the first element's value
// (never beats a real candidate).
template <class T, bool kMax>
__global__ void extreme_kernel(T* out, int64_t* out_index, const T* x, ReduceIndexer ix,
                               int64_t n_out, int64_t n_in) {
  using A = acc_t<T>;
  const PickExtreme<A, kMax> pick;
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    int64_t base, ob;
    ix.outer_offsets(o, base, ob);
    ArgValue<A> best{A(x[base]), n_in};
    for (int64_t k = threadIdx.x; k < n_in; k += blockDim.x)
      best = pick(best, ArgValue<A>{A(x[base + ix.element_offset(k)]), k});
    best = cuda::block_reduce(best, pick);
    if (threadIdx.x != 0) continue;
    if (out_index)
      out_index[ob] = best.k;
    else
      out[ob] = T(best.v);
  }
}

void reduce_cuda(const Tensor& out, const Tensor& x, ReduceOp op) {
  if (x.numel() == 0) return;
  const reduction::Plan plan = reduction::make_plan(out, x);
  LUMEN_CHECK(plan.outer.size() <= kMaxDims && plan.rows.size() <= kMaxDims,
              "reduce (CUDA): at most ", kMaxDims, " kept and ", kMaxDims,
              " reduced dims, got a tensor of shape ", ShapeStr{x.shape()});
  const ReduceIndexer ix(plan);
  const int64_t n_out = numel_of(plan.outer), n_in = numel_of(plan.rows) * plan.cols;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(n_out, 65535 * 8));
  LUMEN_CUDA_CHECK(cudaSetDevice(x.device().index));
  dispatch_dtype<DTypes::Arithmetic>(x.dtype(), "reduce", [&]<class T>() {
    const T* px = x.data<T>();
    const bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
    T* po = arg ? nullptr : out.data<T>();
    int64_t* pi = arg ? out.data<int64_t>() : nullptr;
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Mean:
        if (const int64_t parts = sum_parts(n_out, n_in); parts > 1) {
          using S = sum_t<T>;
          Tensor partial =
              empty({n_out * parts}, {std::is_integral_v<S> ? DType::i64 : DType::f64, x.device()});
          partial_sum_kernel<T><<<static_cast<unsigned>(n_out * parts), cuda::kBlock>>>(
              partial.data<S>(), px, ix, n_out, n_in, parts);
          LUMEN_CUDA_CHECK_LAUNCH();
          finish_sum_kernel<T><<<blocks, cuda::kBlock>>>(po, partial.data<S>(), ix, n_out, n_in,
                                                         parts, op == ReduceOp::Mean);
        } else if (plan.outer.size() == 1 && plan.outer_x[0] == 1 && n_out <= 65535 * 32) {
          column_sum_kernel<T><<<static_cast<unsigned>((n_out + 31) / 32), dim3(32, 8)>>>(
              po, plan.outer_out[0], px, ix, n_out, n_in, op == ReduceOp::Mean);
        } else {
          sum_kernel<T><<<blocks, cuda::kBlock>>>(po, px, ix, n_out, n_in, op == ReduceOp::Mean);
        }
        break;
      case ReduceOp::Max:
      case ReduceOp::ArgMax:
        extreme_kernel<T, true><<<blocks, cuda::kBlock>>>(po, pi, px, ix, n_out, n_in);
        break;
      case ReduceOp::Min:
      case ReduceOp::ArgMin:
        extreme_kernel<T, false><<<blocks, cuda::kBlock>>>(po, pi, px, ix, n_out, n_in);
        break;
    }
    LUMEN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(reduce, CUDA, reduce_cuda);

}  // namespace lumen::kernels
