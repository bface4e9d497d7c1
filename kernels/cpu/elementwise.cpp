// CPU elementwise kernels: a StridedLoop over out and its inputs, the functor from
// kernels/elementwise_ops.h in the inner loop. 16-bit types load to float and store back.
// The loop bodies are flattened: every call in them is inlined (GELU's backward is too big for
// GCC's own limits), or the loop would not vectorise.
#include "kernels/elementwise.h"
#include "kernels/cpu/philox_words.h"
#include "kernels/cpu/strided_loop.h"

namespace lumen::kernels {
namespace {

template <class T, class F>
void unary_loop(const Tensor& out, const Tensor& x, const F& f) {
  using A = acc_t<T>;
  T* o = out.data<T>();
  const T* a = x.data<T>();
  cpu::StridedLoop<2>({&out, &x}).parallel([&](auto off, auto st, int64_t n) LUMEN_FLATTEN {
    T* po = o + off[0];
    const T* pa = a + off[1];
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = T(f(A(pa[i])));
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * st[0]] = T(f(A(pa[i * st[1]])));
    }
  });
}

template <class T, class F>
void binary_loop(const Tensor& out, const Tensor& x, const Tensor& y, const F& f) {
  using A = acc_t<T>;
  T* o = out.data<T>();
  const T* a = x.data<T>();
  const T* b = y.data<T>();
  cpu::StridedLoop<3>({&out, &x, &y}).parallel([&](auto off, auto st, int64_t n) LUMEN_FLATTEN {
    T* po = o + off[0];
    const T* pa = a + off[1];
    const T* pb = b + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = T(f(A(pa[i]), A(pb[i])));
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // tensor op scalar/row
      A bv = A(pb[0]);
      for (int64_t i = 0; i < n; ++i) po[i] = T(f(A(pa[i]), bv));
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * st[0]] = T(f(A(pa[i * st[1]]), A(pb[i * st[2]])));
    }
  });
}

void unary_cpu(const Tensor& out, const Tensor& x, UnaryArgs args) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "unary", [&]<class T>() {
    visit_unary(args, [&](auto fn) { unary_loop<T>(out, x, fn); });
  });
}

void unary_backward_cpu(const Tensor& gx, const Tensor& gy, const Tensor& x, UnaryArgs args) {
  dispatch_dtype<DTypes::FloatAndHalf>(gx.dtype(), "unary_backward", [&]<class T>() {
    visit_unary(args, [&](auto fn) {
      binary_loop<T>(gx, gy, x, [fn](auto g, auto v) { return fn.backward(g, v); });
    });
  });
}

void binary_cpu(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "binary", [&]<class T>() {
    visit_binary(op, [&](auto fn) { binary_loop<T>(out, a, b, fn); });
  });
}

void add_act_cpu(const Tensor& out, const Tensor& a, const Tensor& b, UnaryArgs act) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "add_act", [&]<class T>() {
    visit_unary(act, [&](auto fn) { binary_loop<T>(out, a, b, ew::AddThen<decltype(fn)>{fn}); });
  });
}

void compare_cpu(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  bool* o = out.data<bool>();
  dispatch_dtype<DTypes::All>(a.dtype(), "compare", [&]<class T>() {
    using A = acc_t<T>;
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    cpu::StridedLoop<3>({&out, &a, &b}).parallel([&](auto off, auto st, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] =
            compare_values(op, A(pa[off[1] + i * st[1]]), A(pb[off[2] + i * st[2]]));
    });
  });
}

void where_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const bool* c = cond.data<bool>();
  dispatch_dtype<DTypes::All>(out.dtype(), "where", [&]<class T>() {
    T* o = out.data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    cpu::StridedLoop<4>({&out, &cond, &a, &b}).parallel([&](auto off, auto st, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] =
            c[off[1] + i * st[1]] ? pa[off[2] + i * st[2]] : pb[off[3] + i * st[3]];
    });
  });
}

void copy_cpu(const Tensor& out, const Tensor& src) {
  dispatch_dtype<DTypes::All>(out.dtype(), "copy", [&]<class To>() {
    dispatch_dtype<DTypes::All>(src.dtype(), "copy", [&]<class From>() {
      To* o = out.data<To>();
      const From* s = src.data<From>();
      cpu::StridedLoop<2>({&out, &src}).parallel([&](auto off, auto st, int64_t n) {
        To* po = o + off[0];
        const From* ps = s + off[1];
        if (st[0] == 1 && st[1] == 1) {
          if constexpr (std::is_same_v<To, float> && is_16bit_float_v<From>)
            widen_n(ps, po, n);
          else if constexpr (is_16bit_float_v<To> && std::is_same_v<From, float>)
            narrow_n(ps, po, n);
          else
            for (int64_t i = 0; i < n; ++i) po[i] = convert_to<To>(ps[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) po[i * st[0]] = convert_to<To>(ps[i * st[1]]);
        }
      });
    });
  });
}

void fill_cpu(const Tensor& out, double value) {
  dispatch_dtype<DTypes::All>(out.dtype(), "fill", [&]<class T>() {
    T* o = out.data<T>();
    T v = convert_to<T>(value);
    cpu::StridedLoop<1>({&out}).parallel([&](auto off, auto st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = v;
    });
  });
}

// Block by block (random_value's layout): each Philox block is drawn once for its K elements,
// and a full block's values are computed side by side, where the compiler shares a normal
// pair's log and sqrt between its two elements. Same numbers as random_value per element.
template <class T, RandomKind kind>
void random_fill_by_block(T* o, int64_t n, double param, uint64_t seed, uint64_t offset) {
  constexpr int K = random_per_block<T>(kind);
  const int64_t blocks = (n + K - 1) / K;
  cpu::parallel_for(blocks, 4096, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const PhiloxOut w = philox4x32(offset + static_cast<uint64_t>(blk), seed);
      T* dst = o + blk * K;
      if (blk * K + K <= n) {
        T v[K];
        for (int j = 0; j < K; ++j) v[j] = random_in_block<T>(kind, param, w, j);
        for (int j = 0; j < K; ++j) dst[j] = v[j];
      } else {
        for (int j = 0; j < n - blk * K; ++j) dst[j] = random_in_block<T>(kind, param, w, j);
      }
    }
  });
}

void random_fill_cpu(const Tensor& out, RandomKind kind, double param, uint64_t seed,
                     uint64_t offset) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "random_fill", [&]<class T>() {
    T* o = out.data<T>();
    const int64_t n = out.numel();
    if (kind == RandomKind::Uniform)
      random_fill_by_block<T, RandomKind::Uniform>(o, n, param, seed, offset);
    else if (kind == RandomKind::Normal)
      random_fill_by_block<T, RandomKind::Normal>(o, n, param, seed, offset);
    else
      random_fill_by_block<T, RandomKind::Bernoulli>(o, n, param, seed, offset);
  });
}

// Element pos keeps by its Philox word (DropoutMask). Unit-stride runs draw their words in
// bulk and apply the mask in a loop the compiler vectorises; other runs draw per element.
void dropout_cpu(const Tensor& out, const Tensor& x, const Tensor& residual, DropoutMask mask) {
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "dropout", [&]<class T>() {
    using A = acc_t<T>;
    T* o = out.data<T>();
    const T* px = x.data<T>();
    const T* pr = residual.data_or_null<T>();  // null: no residual
    // Without a residual, x stands in for it in the layout (as in the CUDA kernel).
    const Tensor& r = residual.defined() ? residual : x;
    cpu::StridedLoop<3>({&out, &x, &r}).parallel([&](auto off, auto st, int64_t n) {
      // out is contiguous: its offset is the element's position.
      if (st[1] != 1 || (pr && st[2] != 1)) {
        for (int64_t i = 0; i < n; ++i) {
          const A v = mask(static_cast<uint64_t>(off[0] + i), A(px[off[1] + i * st[1]]));
          o[off[0] + i] = T(pr ? A(pr[off[2] + i * st[2]]) + v : v);
        }
        return;
      }
      constexpr int64_t kChunk = 1024;
      uint32_t words[kChunk];
      T* oc = o + off[0];
      const T* xc = px + off[1];
      const T* rc = pr ? pr + off[2] : nullptr;
      for (int64_t c = 0; c < n; c += kChunk) {
        const int64_t m = std::min(kChunk, n - c);
        cpu::philox_position_words(mask.seed, mask.offset, static_cast<uint64_t>(off[0] + c), m,
                                   words);
        if (rc) {
          for (int64_t j = 0; j < m; ++j)
            oc[c + j] = T(A(rc[c + j]) + mask.given(words[j], A(xc[c + j])));
        } else {
          for (int64_t j = 0; j < m; ++j) oc[c + j] = T(mask.given(words[j], A(xc[c + j])));
        }
      }
    });
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(unary, CPU, unary_cpu);
LUMEN_REGISTER_KERNEL(unary_backward, CPU, unary_backward_cpu);
LUMEN_REGISTER_KERNEL(binary, CPU, binary_cpu);
LUMEN_REGISTER_KERNEL(add_act, CPU, add_act_cpu);
LUMEN_REGISTER_KERNEL(compare, CPU, compare_cpu);
LUMEN_REGISTER_KERNEL(where, CPU, where_cpu);
LUMEN_REGISTER_KERNEL(copy, CPU, copy_cpu);
LUMEN_REGISTER_KERNEL(fill, CPU, fill_cpu);
LUMEN_REGISTER_KERNEL(random_fill, CPU, random_fill_cpu);
LUMEN_REGISTER_KERNEL(dropout, CPU, dropout_cpu);

}  // namespace lumen::kernels
