// CUDA indexing kernels (kernels/index.h). Each op is a strided loop (kernels/cuda/launch.cuh)
// over a layout of views in which the indexed dim has stride 0 (x.narrow(dim, 0, 1) broadcast
// to the output's shape), so off[k] is an operand's offset without the indexed dim and the
// index value adds `value * stride(dim)`. Accumulations give each thread a column (o, i) and
// add its j in increasing order: no atomics, and the same sums as the CPU.
//
// Index values are checked before anything is written. An index copied from the host and not
// written since is checked on that host copy (kept_host_copy), without waiting for the device;
// otherwise a kernel finds the first bad row-major position (atomicMin) and one 8-byte copy
// brings it back. The error, built from a host copy of the index, reads exactly as the CPU's.
// The embedding backward sorts its rows by index instead (many rows share few indices).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/index.h"
#include "kernels/index_check.h"

namespace lumen::kernels {
namespace {

using cuda::launch_strided;

template <class I>
__global__ void first_bad_kernel(int64_t n, cuda::Indexer<1> ix, const I* idx, int64_t size,
                                 unsigned long long* first) {
  for (int64_t i : cuda::grid_stride(n)) {
    int64_t off[1];
    ix.offsets(i, off);
    const auto v = static_cast<int64_t>(idx[off[0]]);
    if (v < 0 || v >= size) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// The first row-major position of `index` whose value is outside [0, size), or -1.
template <class I>
int64_t first_bad(const Tensor& index, int64_t size) {
  const int64_t n = index.numel();
  if (n == 0) return -1;
  if (const Tensor host = kept_host_copy(index); host.defined()) {
    const I* p = host.data<I>();  // contiguous: position i is element i
    for (int64_t i = 0; i < n; ++i)
      if (p[i] < 0 || p[i] >= size) return i;
    return -1;
  }
  Tensor first = full({1}, static_cast<double>(n), {DType::i64, index.device()});
  LUMEN_CUDA_CHECK(cudaSetDevice(index.device().index));
  first_bad_kernel<I><<<cuda::blocks_for(n), cuda::kBlock>>>(
      n, cuda::Indexer<1>(BroadcastLayout<1>({&index})), index.data<I>(), size,
      reinterpret_cast<unsigned long long*>(first.data<int64_t>()));
  LUMEN_CUDA_CHECK_LAUNCH();
  const int64_t bad = first.item<int64_t>();
  return bad == n ? -1 : bad;
}

// Checks `index` against [0, shape[dim]) of the tensor it indexes (`what`: "input" or
// "destination").
template <class I>
void check_index(const char* op, const Tensor& index, int64_t dim, const Shape& shape,
                 const char* what) {
  const int64_t bad = first_bad<I>(index, shape[dim]);
  if (bad < 0) return;
  const Shape pos = unravel(bad, index.shape());
  throw_index_out_of_range(op, index_value(index.to(Device::cpu()), pos), pos, index.shape(), dim,
                           shape, what);
}

// t with size 1 (broadcast: stride 0) at `dim` and the sizes of `shape` elsewhere.
Tensor without_dim(const Tensor& t, int64_t dim, const Shape& shape) {
  Tensor v = t.detach();
  for (int64_t d = 0; d < v.dim(); ++d) v = v.narrow(d, 0, d == dim ? 1 : shape[d]);
  return v;
}

// A 1-D index laid along `dim` of a rank-`rank` tensor.
Tensor along_dim(const Tensor& index, int64_t dim, int64_t rank) {
  Shape s(rank, 1);
  s[dim] = index.numel();
  return index.detach().reshape(s);
}

template <class T, class I>
struct SelectBody {  // out[o, j, i] = x[o, index[j], i]
  T* out;
  const T* x;
  const I* idx;
  int64_t x_step;
  __device__ void operator()(const int64_t* off) const {
    out[off[0]] = x[off[1] + static_cast<int64_t>(idx[off[2]]) * x_step];
  }
};

// out[o, index[o, j, i], i] += src[o, j, i] for j = 0, 1, ...; ops: src, out, index, each
// without the indexed dim (index_add's 1-D index: a view of stride 0).
template <class T, class I>
struct AddAlongBody {
  T* out;
  const T* src;
  const I* idx;
  int64_t jn, src_step, out_step, idx_step;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    for (int64_t j = 0; j < jn; ++j) {
      T& d = out[off[1] + static_cast<int64_t>(idx[off[2] + j * idx_step]) * out_step];
      d = T(A(d) + A(src[off[0] + j * src_step]));
    }
  }
};

void index_select_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  dispatch_index("index_select", index, [&]<class I>() {
    check_index<I>("index_select", index, dim, x.shape(), "input");
    if (out.numel() == 0) return;
    const Tensor xv = without_dim(x, dim, out.shape()), iv = along_dim(index, dim, out.dim());
    dispatch_dtype<DTypes::All>(out.dtype(), "index_select", [&]<class T>() {
      // iv's own pointer: its reshape may have copied a strided index.
      launch_strided<3>({&out, &xv, &iv},
                        SelectBody<T, I>{out.data<T>(), x.data<T>(), iv.data<I>(), x.stride(dim)});
    });
  });
}

void index_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  dispatch_index("index_add", index, [&]<class I>() {
    check_index<I>("index_add", index, dim, out.shape(), "destination");
    if (src.numel() == 0) return;
    const Tensor sv = without_dim(src, dim, src.shape()), ov = without_dim(out, dim, src.shape());
    // index is read as idx[j * stride] alone: a view of stride 0 everywhere.
    const Tensor iv = along_dim(index, dim, src.dim()).narrow(dim, 0, 1).expand(sv.shape());
    dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "index_add", [&]<class T>() {
      launch_strided<3>({&sv, &ov, &iv},
                        AddAlongBody<T, I>{out.data<T>(), src.data<T>(), index.data<I>(),
                                           index.numel(), src.stride(dim), out.stride(dim),
                                           index.dim() == 0 ? 0 : index.stride(0)});
    });
  });
}

void gather_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  dispatch_index("gather", index, [&]<class I>() {
    check_index<I>("gather", index, dim, x.shape(), "input");
    if (index.numel() == 0) return;
    const Tensor xv = without_dim(x, dim, index.shape()).expand(index.shape());
    dispatch_dtype<DTypes::All>(out.dtype(), "gather", [&]<class T>() {
      launch_strided<3>({&out, &xv, &index}, SelectBody<T, I>{out.data<T>(), x.data<T>(),
                                                              index.data<I>(), x.stride(dim)});
    });
  });
}

void scatter_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  dispatch_index("scatter_add", index, [&]<class I>() {
    check_index<I>("scatter_add", index, dim, out.shape(), "destination");
    if (index.numel() == 0) return;
    const Tensor sv = without_dim(src, dim, index.shape()),
                 ov = without_dim(out, dim, index.shape());
    const Tensor iv = without_dim(index, dim, index.shape());
    dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "scatter_add", [&]<class T>() {
      launch_strided<3>(
          {&sv, &ov, &iv},
          AddAlongBody<T, I>{out.data<T>(), src.data<T>(), index.data<I>(), index.size(dim),
                             src.stride(dim), out.stride(dim), index.stride(dim)});
    });
  });
}

// Embedding: the layout is out's [..., D] with the index broadcast over D (op 1) and weight's
// column offsets (op 2: weight.select(0, 0), broadcast over the index dims; 0-d indices give a
// [D] out).
template <class T, class I>
struct EmbeddingBody {
  T* out;
  const T* w;
  const I* idx;
  int64_t w_row;
  __device__ void operator()(const int64_t* off) const {
    out[off[0]] = w[off[2] + static_cast<int64_t>(idx[off[1]]) * w_row];
  }
};

// grad_weight[v, d] += sum of grad[r, d] over the rows r with indices[r] = v, in increasing r.
// The rows are first sorted by index (a stable radix sort of (index, r) pairs), so each index's
// rows form one run of `order`; the thread of (run start, column d) sums its run in order and
// owns its output element: no atomics, the same result on every run. A warp takes 32 adjacent
// columns of one run, so its reads of grad are coalesced.
__global__ void iota_kernel(int64_t* p, int64_t n) {
  for (int64_t i : cuda::grid_stride(n)) p[i] = i;
}

template <class T, class I>
__global__ void embedding_backward_kernel(int64_t d_cols, T* gw, int64_t gw_row, int64_t gw_col,
                                          const T* grad, const I* sorted, const int64_t* order,
                                          int64_t n, int64_t padding_idx) {
  using A = acc_t<T>;
  const int64_t d = blockIdx.x * 32 + threadIdx.x;
  if (d >= d_cols) return;
  for (int64_t s = blockIdx.y * 8 + threadIdx.y; s < n; s += gridDim.y * 8) {
    const auto v = static_cast<int64_t>(sorted[s]);
    if ((s > 0 && static_cast<int64_t>(sorted[s - 1]) == v) || v == padding_idx) continue;
    A sum = 0;
    for (int64_t e = s; e < n && static_cast<int64_t>(sorted[e]) == v; ++e)
      sum += A(grad[order[e] * d_cols + d]);
    T& dst = gw[v * gw_row + d * gw_col];
    dst = T(A(dst) + sum);
  }
}

// The bits a radix sort of indices in [0, rows) has to look at.
int key_bits(int64_t rows) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) < rows) ++bits;
  return bits;
}

template <class I>
void check_embedding(const char* op, const Tensor& indices, const Tensor& weight) {
  const int64_t bad = first_bad<I>(indices, weight.size(0));
  if (bad < 0) return;
  const Shape pos = unravel(bad, indices.shape());
  throw_embedding_index_out_of_range(op, index_value(indices.to(Device::cpu()), pos), pos, indices,
                                     weight);
}

void embedding_cuda(const Tensor& out, const Tensor& weight, const Tensor& indices) {
  dispatch_index("embedding", indices, [&]<class I>() {
    check_embedding<I>("embedding", indices, weight);
    if (out.numel() == 0) return;
    const Tensor iv = indices.detach().unsqueeze(-1).expand(out.shape());
    const Tensor wv = weight.detach().select(0, 0).expand(out.shape());
    dispatch_dtype<DTypes::All>(out.dtype(), "embedding", [&]<class T>() {
      launch_strided<3>({&out, &iv, &wv}, EmbeddingBody<T, I>{out.data<T>(), weight.data<T>(),
                                                              indices.data<I>(), weight.stride(0)});
    });
  });
}

void embedding_backward_cuda(const Tensor& gw, const Tensor& grad, const Tensor& indices,
                             int64_t padding_idx) {
  dispatch_index("embedding_backward", indices, [&]<class I>() {
    check_embedding<I>("embedding_backward", indices, gw);
    const int64_t n = indices.numel(), d_cols = gw.size(1);
    if (n == 0 || d_cols == 0) return;
    const Tensor idx = indices.detach().contiguous();
    const Tensor g = grad.detach().contiguous();
    LUMEN_CUDA_CHECK(cudaSetDevice(gw.device().index));
    const Device dev = gw.device();
    Tensor sorted = empty({n}, {indices.dtype(), dev}), order = empty({n}, {DType::i64, dev}),
           rows = empty({n}, {DType::i64, dev});
    iota_kernel<<<cuda::blocks_for(n), cuda::kBlock>>>(rows.data<int64_t>(), n);
    LUMEN_CUDA_CHECK_LAUNCH();
    // Checked indices lie in [0, V): only their low bits need sorting.
    const int end_bit = key_bits(gw.size(0));
    LUMEN_CHECK(n <= INT32_MAX, "embedding_backward (CUDA): ", n,
                " indices exceed CUB's int range");
    const int items = static_cast<int>(n);
    size_t temp_bytes = 0;
    LUMEN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, idx.data<I>(),
                                                     sorted.data<I>(), rows.data<int64_t>(),
                                                     order.data<int64_t>(), items, 0, end_bit));
    Tensor temp = empty({static_cast<int64_t>(std::max<size_t>(temp_bytes, 1))}, {DType::u8, dev});
    LUMEN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, idx.data<I>(),
                                                     sorted.data<I>(), rows.data<int64_t>(),
                                                     order.data<int64_t>(), items, 0, end_bit));
    const dim3 grid(static_cast<unsigned>((d_cols + 31) / 32),
                    static_cast<unsigned>(std::min<int64_t>((n + 7) / 8, 65535)));
    dispatch_dtype<DTypes::FloatAndHalf>(gw.dtype(), "embedding_backward", [&]<class T>() {
      embedding_backward_kernel<T, I>
          <<<grid, dim3(32, 8)>>>(d_cols, gw.data<T>(), gw.stride(0), gw.stride(1), g.data<T>(),
                                  sorted.data<I>(), order.data<int64_t>(), n, padding_idx);
      LUMEN_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(index_select, CUDA, index_select_cuda);
LUMEN_REGISTER_KERNEL(index_add, CUDA, index_add_cuda);
LUMEN_REGISTER_KERNEL(gather, CUDA, gather_cuda);
LUMEN_REGISTER_KERNEL(scatter_add, CUDA, scatter_add_cuda);
LUMEN_REGISTER_KERNEL(embedding, CUDA, embedding_cuda);
LUMEN_REGISTER_KERNEL(embedding_backward, CUDA, embedding_backward_cuda);

}  // namespace lumen::kernels
