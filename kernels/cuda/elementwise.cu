// CUDA elementwise kernels: one grid-stride kernel over a broadcast layout, with the same
// functors as the CPU (kernels/elementwise_ops.h); 16-bit types compute in float. The small
// structs below are the per-element bodies (device lambdas cannot live in the generic lambdas
// that dispatch on dtype). Unary, unary backward and binary ops on contiguous operands of one
// shape (no broadcasting) take a packed kernel instead: 16-byte loads and stores, each thread
// a pack of 16 / sizeof(T) elements.
#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"

namespace lumen::kernels {
namespace {

using cuda::launch_strided;

template <class T, class F>
struct UnaryBody {  // o = f(a)
  T* o;
  const T* a;
  F f;
  __device__ void operator()(const int64_t* off) const { o[off[0]] = T(f(acc_t<T>(a[off[1]]))); }
};

template <class T, class F>
struct UnaryBackwardBody {  // gx = g f'(x)
  T* gx;
  const T* g;
  const T* x;
  F f;
  __device__ void operator()(const int64_t* off) const {
    gx[off[0]] = T(f.backward(acc_t<T>(g[off[1]]), acc_t<T>(x[off[2]])));
  }
};

template <class T, class F>
struct BinaryBody {  // o = f(a, b)
  T* o;
  const T* a;
  const T* b;
  F f;
  __device__ void operator()(const int64_t* off) const {
    o[off[0]] = T(f(acc_t<T>(a[off[1]]), acc_t<T>(b[off[2]])));
  }
};

template <class T>
struct CompareBody {
  bool* o;
  const T* a;
  const T* b;
  CompareOp op;
  __device__ void operator()(const int64_t* off) const {
    o[off[0]] = compare_values(op, acc_t<T>(a[off[1]]), acc_t<T>(b[off[2]]));
  }
};

template <class T>
struct WhereBody {
  T* o;
  const bool* c;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t* off) const {
    o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
};

template <class To, class From>
struct CopyBody {
  To* o;
  const From* s;
  __device__ void operator()(const int64_t* off) const { o[off[0]] = convert_to<To>(s[off[1]]); }
};

template <class T>
struct FillBody {
  T* o;
  T v;
  __device__ void operator()(const int64_t* off) const { o[off[0]] = v; }
};

template <class T>
struct RandomBody {
  T* o;
  RandomKind kind;
  double param;
  uint64_t seed, offset;
  __device__ void operator()(const int64_t* off) const {
    o[off[0]] = random_value<T>(kind, param, seed, offset, static_cast<uint64_t>(off[0]));
  }
};

template <class T>
struct DropoutBody {  // o = r + dropout(x); out is contiguous, so off[0] is the position
  T* o;
  const T* x;
  const T* r;  // null: no residual
  DropoutMask mask;
  __device__ void operator()(const int64_t* off) const {
    acc_t<T> v = mask(static_cast<uint64_t>(off[0]), acc_t<T>(x[off[1]]));
    o[off[0]] = T(r ? acc_t<T>(r[off[2]]) + v : v);
  }
};

// 16 bytes of T: what one vector load or store moves.
template <class T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

// out[i] = f(in_0[i], ..., in_{K-1}[i]) over n contiguous elements: whole packs first, one per
// thread and grid-stride step, then the n % pack elements left, one per thread.
template <class T, int K, class F>
__global__ void packed_kernel(int64_t n, T* out, std::array<const T*, K> in, F f) {
  using P = Pack<T>;
  const int64_t packs = n / P::kSize;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (int64_t p = first; p < packs; p += step) {
    P x[K], y;
    for (int k = 0; k < K; ++k) x[k] = reinterpret_cast<const P*>(in[k])[p];
    for (int e = 0; e < P::kSize; ++e) {
      acc_t<T> v[K];
      for (int k = 0; k < K; ++k) v[k] = acc_t<T>(x[k].v[e]);
      y.v[e] = T(f(v));
    }
    reinterpret_cast<P*>(out)[p] = y;
  }
  for (int64_t i = packs * P::kSize + first; i < n; i += step) {
    acc_t<T> v[K];
    for (int k = 0; k < K; ++k) v[k] = acc_t<T>(in[k][i]);
    out[i] = T(f(v));
  }
}

// The packed bodies: the op's functor on the loaded values.
template <class F>
struct PackedUnary {  // f(x)
  F f;
  template <class A>
  __device__ A operator()(const A (&v)[1]) const {
    return f(v[0]);
  }
};
template <class F>
struct PackedUnaryBackward {  // g f'(x), inputs (g, x)
  F f;
  template <class A>
  __device__ A operator()(const A (&v)[2]) const {
    return f.backward(v[0], v[1]);
  }
};
template <class F>
struct PackedBinary {  // f(a, b)
  F f;
  template <class A>
  __device__ A operator()(const A (&v)[2]) const {
    return f(v[0], v[1]);
  }
};

// Runs the packed kernel when out and every input are contiguous, of out's shape, and 16-byte
// aligned; returns false (nothing launched) otherwise.
// Whether t's first element sits on a 16-byte boundary (a vector load may start there).
bool aligned(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

template <class T, int K, class F>
bool try_packed(const Tensor& out, std::array<const Tensor*, K> in, F f) {
  if (!out.is_contiguous() || !aligned(out)) return false;
  std::array<const T*, K> ptrs;
  for (int k = 0; k < K; ++k) {
    const Tensor& t = *in[k];
    if (t.shape() != out.shape() || !t.is_contiguous() || !aligned(t)) return false;
    ptrs[k] = t.data<T>();
  }
  const int64_t n = out.numel();
  if (n == 0) return true;
  LUMEN_CUDA_CHECK(cudaSetDevice(out.device().index));
  const int64_t threads = (n + Pack<T>::kSize - 1) / Pack<T>::kSize;
  packed_kernel<T, K, F><<<cuda::blocks_for(threads), cuda::kBlock>>>(n, out.data<T>(), ptrs, f);
  LUMEN_CUDA_CHECK_LAUNCH();
  return true;
}

// out[i] = To(in[i]) over n contiguous elements, E per thread and step: E = 16 bytes of the
// wider type, so one side moves 16 bytes and the other 16 * (narrow / wide) (an f32 -> f16 cast
// loads 4 floats in one 16-byte load and stores 4 halves in one 8-byte store).
template <class To, class From>
__global__ void packed_cast_kernel(int64_t n, To* out, const From* in) {
  constexpr int E = 16 / (sizeof(To) > sizeof(From) ? sizeof(To) : sizeof(From));
  struct alignas(E * sizeof(From)) In {
    From v[E];
  };
  struct alignas(E * sizeof(To)) Out {
    To v[E];
  };
  const int64_t packs = n / E;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (int64_t p = first; p < packs; p += step) {
    const In x = reinterpret_cast<const In*>(in)[p];
    Out y;
    for (int e = 0; e < E; ++e) y.v[e] = convert_to<To>(x.v[e]);
    reinterpret_cast<Out*>(out)[p] = y;
  }
  for (int64_t i = packs * E + first; i < n; i += step) out[i] = convert_to<To>(in[i]);
}

template <class T>
constexpr bool kFloatType = std::is_same_v<T, float> || is_16bit_float_v<T>;

void unary_cuda(const Tensor& out, const Tensor& x, UnaryArgs args) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "unary", [&]<class T>() {
    visit_unary(args, [&](auto fn) {
      if (try_packed<T, 1>(out, {&x}, PackedUnary<decltype(fn)>{fn})) return;
      launch_strided<2>({&out, &x}, UnaryBody<T, decltype(fn)>{out.data<T>(), x.data<T>(), fn});
    });
  });
}

void unary_backward_cuda(const Tensor& gx, const Tensor& gy, const Tensor& x, UnaryArgs args) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "unary_backward", [&]<class T>() {
    visit_unary(args, [&](auto fn) {
      if (try_packed<T, 2>(gx, {&gy, &x}, PackedUnaryBackward<decltype(fn)>{fn})) return;
      launch_strided<3>({&gx, &gy, &x}, UnaryBackwardBody<T, decltype(fn)>{
                                            gx.data<T>(), gy.data<T>(), x.data<T>(), fn});
    });
  });
}

void binary_cuda(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "binary", [&]<class T>() {
    visit_binary(op, [&](auto fn) {
      if (try_packed<T, 2>(out, {&a, &b}, PackedBinary<decltype(fn)>{fn})) return;
      launch_strided<3>({&out, &a, &b},
                        BinaryBody<T, decltype(fn)>{out.data<T>(), a.data<T>(), b.data<T>(), fn});
    });
  });
}

void add_act_cuda(const Tensor& out, const Tensor& a, const Tensor& b, UnaryArgs act) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "add_act", [&]<class T>() {
    visit_unary(act, [&](auto fn) {
      using F = ew::AddThen<decltype(fn)>;
      if (try_packed<T, 2>(out, {&a, &b}, PackedBinary<F>{F{fn}})) return;
      launch_strided<3>({&out, &a, &b},
                        BinaryBody<T, F>{out.data<T>(), a.data<T>(), b.data<T>(), F{fn}});
    });
  });
}

void compare_cuda(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  dispatch_dtype<DTypes::All>(a.dtype(), "compare", [&]<class T>() {
    launch_strided<3>({&out, &a, &b},
                      CompareBody<T>{out.data<bool>(), a.data<T>(), b.data<T>(), op});
  });
}

void where_cuda(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  dispatch_dtype<DTypes::All>(out.dtype(), "where", [&]<class T>() {
    launch_strided<4>({&out, &cond, &a, &b},
                      WhereBody<T>{out.data<T>(), cond.data<bool>(), a.data<T>(), b.data<T>()});
  });
}

void copy_cuda(const Tensor& out, const Tensor& src) {
  const bool packable = out.is_contiguous() && src.is_contiguous() && out.shape() == src.shape() &&
                        aligned(out) && aligned(src);
  dispatch_dtype<DTypes::All>(out.dtype(), "copy", [&]<class To>() {
    dispatch_dtype<DTypes::All>(src.dtype(), "copy", [&]<class From>() {
      // The casts of mixed precision (f32 <-> f16 / bf16) take vector loads and stores.
      if constexpr (kFloatType<To> && kFloatType<From> && !std::is_same_v<To, From>) {
        if (packable) {
          const int64_t n = out.numel();
          if (n == 0) return;
          LUMEN_CUDA_CHECK(cudaSetDevice(out.device().index));
          constexpr int64_t E = 16 / std::max(sizeof(To), sizeof(From));
          packed_cast_kernel<To, From><<<cuda::blocks_for((n + E - 1) / E), cuda::kBlock>>>(
              n, out.data<To>(), src.data<From>());
          LUMEN_CUDA_CHECK_LAUNCH();
          return;
        }
      }
      launch_strided<2>({&out, &src}, CopyBody<To, From>{out.data<To>(), src.data<From>()});
    });
  });
}

void fill_cuda(const Tensor& out, double value) {
  dispatch_dtype<DTypes::All>(out.dtype(), "fill", [&]<class T>() {
    launch_strided<1>({&out}, FillBody<T>{out.data<T>(), convert_to<T>(value)});
  });
}

void random_fill_cuda(const Tensor& out, RandomKind kind, double param, uint64_t seed,
                      uint64_t offset) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "random_fill", [&]<class T>() {
    launch_strided<1>({&out}, RandomBody<T>{out.data<T>(), kind, param, seed, offset});
  });
}

void dropout_cuda(const Tensor& out, const Tensor& x, const Tensor& residual, DropoutMask mask) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "dropout", [&]<class T>() {
    // Without a residual, x stands in for it in the layout (its pointer is not passed).
    const Tensor& r = residual.defined() ? residual : x;
    launch_strided<3>({&out, &x, &r},
                      DropoutBody<T>{out.data<T>(), x.data<T>(), residual.data_or_null<T>(), mask});
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(unary, CUDA, unary_cuda);
LUMEN_REGISTER_KERNEL(unary_backward, CUDA, unary_backward_cuda);
LUMEN_REGISTER_KERNEL(binary, CUDA, binary_cuda);
LUMEN_REGISTER_KERNEL(add_act, CUDA, add_act_cuda);
LUMEN_REGISTER_KERNEL(compare, CUDA, compare_cuda);
LUMEN_REGISTER_KERNEL(where, CUDA, where_cuda);
LUMEN_REGISTER_KERNEL(copy, CUDA, copy_cuda);
LUMEN_REGISTER_KERNEL(fill, CUDA, fill_cuda);
LUMEN_REGISTER_KERNEL(random_fill, CUDA, random_fill_cuda);
LUMEN_REGISTER_KERNEL(dropout, CUDA, dropout_cuda);

}  // namespace lumen::kernels
