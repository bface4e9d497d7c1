// CPU matrix products through Lumen's GEMM (gemm.cpp). Operands are read in place (a
// transposed view is a column-major matrix, so it costs no copy); the GEMM packs them into
// cache-sized panels and splits large products over the OpenMP threads. Small batched products
// run one batch per thread instead, where splitting each product would cost more than it saves.
#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/linalg.h"

namespace lumen::kernels {
namespace {

using Layout = GemmLayout;  // kernels/linalg.h

template <class T>
MatrixRef<T> matrix_ref(const T* p, const Layout& l) {
  return l.row_major ? MatrixRef<T>{p, l.ld, 1} : MatrixRef<T>{p, 1, l.ld};
}

// Element offsets of batch `i` (row-major over the batch dims) in each operand.
struct BatchOffsets {
  Shape batch;
  std::array<Shape, 3> strides;  // out, a, b

  BatchOffsets(const Tensor& out, const Tensor& a, const Tensor& b)
      : batch(out.shape().begin(), out.shape().end() - 2) {
    const Tensor* ops[3] = {&out, &a, &b};
    for (int k = 0; k < 3; ++k)
      strides[k].assign(ops[k]->strides().begin(), ops[k]->strides().end() - 2);
  }
  int64_t count() const { return numel_of(batch); }
  std::array<int64_t, 3> at(int64_t i) const {
    std::array<int64_t, 3> off{0, 0, 0};
    for (size_t d = batch.size(); d-- > 0;) {
      int64_t idx = i % batch[d];
      i /= batch[d];
      for (int k = 0; k < 3; ++k) off[k] += idx * strides[k][d];
    }
    return off;
  }
};

// C = A B for one batch, A and B read in place, C row-major contiguous.
template <class T>
void gemm_one(T* c, const T* a, const Layout& la, const T* b, const Layout& lb) {
  gemm<T>(la.rows, lb.cols, la.cols, matrix_ref(a, la), matrix_ref(b, lb), c, lb.cols);
}

// 16-bit types: widen both operands to float (keeping each one's layout, so every row or
// column converts as one contiguous run), multiply in float, round once. The float buffers are
// tensors: the CPU allocator keeps their blocks, where fresh temporaries are mmap()s whose
// pages fault in on every product (8% of a 16-mixed MLP step when they were Eigen's).
template <class T>
void gemm_one_half(T* c, const T* a, const Layout& la, const T* b, const Layout& lb) {
  auto widen = [](const T* p, const Layout& l, Tensor& buffer) {
    buffer = empty({l.rows, l.cols}, {DType::f32});
    const int64_t lines = l.row_major ? l.rows : l.cols, len = l.row_major ? l.cols : l.rows;
    for (int64_t i = 0; i < lines; ++i) widen_n(p + i * l.ld, buffer.data<float>() + i * len, len);
    return Layout{l.row_major, l.rows, l.cols, std::max<int64_t>(len, 1)};
  };
  Tensor wa, wb, wc = empty({la.rows, lb.cols}, {DType::f32});
  const Layout pa = widen(a, la, wa), pb = widen(b, lb, wb);
  gemm_one(wc.data<float>(), wa.data<float>(), pa, wb.data<float>(), pb);
  narrow_n(wc.data<float>(), c, wc.numel());
}

void matmul_cpu(const Tensor& out, const Tensor& a, const Tensor& b) {
  LUMEN_CHECK(out.is_contiguous() && gemm_layout_ok(a) && gemm_layout_ok(b),
              "matmul (CPU kernel): operands must be BLAS-shaped and out contiguous; got strides ",
              ShapeStr{a.strides()}, " and ", ShapeStr{b.strides()}, " for shapes ",
              ShapeStr{a.shape()}, " and ", ShapeStr{b.shape()});
  dispatch_dtype<DTypes::FloatAndHalf>(out.dtype(), "matmul", [&]<class T>() {
    const Layout la = gemm_layout(a), lb = gemm_layout(b);
    T* po = out.data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    BatchOffsets batches(out, a, b);
    auto run = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto off = batches.at(i);
        if constexpr (std::is_same_v<T, acc_t<T>>)
          gemm_one(po + off[0], pa + off[1], la, pb + off[2], lb);
        else
          gemm_one_half(po + off[0], pa + off[1], la, pb + off[2], lb);
      }
    };
    int64_t n = batches.count();
    double madds = double(la.rows) * double(la.cols) * double(lb.cols);
    // Whole products per thread need no synchronisation inside a GEMM, so they win whenever
    // the batches spread evenly (many of them) or each GEMM is too short (below 128^3
    // multiply-adds) for splitting it to pay for waking the threads.
    if (n > 1 && (madds < 2097152.0 || n >= 4 * cpu::num_threads()))
      cpu::parallel_for(n, 1, run);
    else
      run(0, n);
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(matmul, CPU, matmul_cpu);
// The GEMM takes no epilogue; the bias and activation follow it in one pass.
LUMEN_REGISTER_KERNEL(linear, CPU,
                      [](const Tensor& out, const Tensor& pre, const Tensor& a, const Tensor& b,
                         const Tensor& bias, std::optional<UnaryArgs> act) {
                        linear_by_parts(Device::cpu(), out, pre, a, b, bias, act);
                      });

}  // namespace lumen::kernels
