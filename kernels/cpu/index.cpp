// CPU indexing kernels. Every operand is addressed through offset tables built from its strides
// (see Offsets), so any strides work and the inner loops stay plain. Reads (index_select,
// gather, embedding) parallelise over output rows; accumulations (index_add, scatter_add,
// embedding_backward) parallelise over destinations that can never collide and add the
// colliding contributions sequentially, so they need no atomics and give the same bits for any
// thread count.
#include <algorithm>
#include <atomic>

#include "kernels/cpu/parallel.h"
#include "kernels/index.h"
#include "kernels/index_check.h"

namespace lumen::kernels {
namespace {

// Offsets (in elements) of the positions of dims [begin, end) of an operand with `strides`, at
// the coordinates of `coords`, in row-major order. When those dims collapse into one strided
// run (the common case) position i is at i * stride and nothing is stored; otherwise a table
// holds every offset.
struct DimOffsets {
  int64_t count = 1, stride = 0;
  bool affine = true;
  std::vector<int64_t> table;
  int64_t operator[](int64_t i) const { return affine ? i * stride : table[i]; }
  bool unit() const { return affine && (stride == 1 || count <= 1); }
};

DimOffsets dim_offsets(const Shape& coords, const Shape& strides, size_t begin, size_t end) {
  DimOffsets r;
  int64_t expected = -1;  // the stride that continues the run, once one has started
  for (size_t d = end; d-- > begin;) {
    r.count *= coords[d];
    if (coords[d] == 1) continue;
    if (expected < 0) {
      r.stride = strides[d];
    } else if (strides[d] != expected) {
      r.affine = false;
    }
    expected = strides[d] * coords[d];
  }
  if (r.affine) return r;
  r.table.assign(1, 0);
  for (size_t d = begin; d < end; ++d) {
    std::vector<int64_t> next;
    next.reserve(r.table.size() * static_cast<size_t>(coords[d]));
    for (int64_t base : r.table)
      for (int64_t c = 0; c < coords[d]; ++c) next.push_back(base + c * strides[d]);
    r.table.swap(next);
  }
  return r;
}

// An operand seen as [outer, size, inner] around `dim`, at the coordinates of `coords` (which
// may be another tensor's shape: gather reads x at index's coordinates).
struct Offsets {
  DimOffsets outer, inner;
  int64_t step = 0;  // stride of `dim`
};

Offsets offsets(const Shape& coords, const Tensor& t, int64_t dim) {
  size_t d = static_cast<size_t>(dim);
  return {dim_offsets(coords, t.strides(), 0, d),
          dim_offsets(coords, t.strides(), d + 1, coords.size()), t.stride(dim)};
}

// The first position p in [0, n) whose index at(p) lies outside [0, size), or -1. Checked before
// any write, and outside the parallel region, since an exception must not cross OpenMP threads.
template <class At>
int64_t first_bad(int64_t n, int64_t size, const At& at) {
  std::atomic<int64_t> first{n};
  cpu::parallel_for(n, 65536, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      int64_t v = static_cast<int64_t>(at(p));
      if (v < 0 || v >= size) {
        int64_t cur = first.load();
        while (p < cur && !first.compare_exchange_weak(cur, p)) {
        }
        return;
      }
    }
  });
  return first.load() == n ? -1 : first.load();
}

// Rows per thread chunk so that a chunk moves about 32K elements.
int64_t grain_for(int64_t per_item) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(per_item, 1));
}

// dst[inner[i]] = src[inner[i]] over one inner run.
template <class T>
void copy_run(T* dst, const Offsets& od, const T* src, const Offsets& os, int64_t lo, int64_t hi) {
  if (od.inner.unit() && os.inner.unit()) {
    for (int64_t i = lo; i < hi; ++i) dst[i] = src[i];
  } else if (od.inner.affine && os.inner.affine) {
    int64_t sd = od.inner.stride, ss = os.inner.stride;
    for (int64_t i = lo; i < hi; ++i) dst[i * sd] = src[i * ss];
  } else {
    for (int64_t i = lo; i < hi; ++i) dst[od.inner[i]] = src[os.inner[i]];
  }
}

// dst[inner[i]] += src[inner[i]] over one inner run, in the accumulation type.
template <class T>
void add_run(T* dst, const Offsets& od, const T* src, const Offsets& os, int64_t lo, int64_t hi) {
  using A = acc_t<T>;
  if (od.inner.unit() && os.inner.unit()) {
    for (int64_t i = lo; i < hi; ++i) dst[i] = T(A(dst[i]) + A(src[i]));
  } else if (od.inner.affine && os.inner.affine) {
    int64_t sd = od.inner.stride, ss = os.inner.stride;
    for (int64_t i = lo; i < hi; ++i) dst[i * sd] = T(A(dst[i * sd]) + A(src[i * ss]));
  } else {
    for (int64_t i = lo; i < hi; ++i) {
      T& d = dst[od.inner[i]];
      d = T(A(d) + A(src[os.inner[i]]));
    }
  }
}

// Calls f(o, lo, hi) for the columns (o, i), i in [lo, hi), of [outer, inner] that fall in the
// flat range [b, e): the unit of work of the accumulating kernels, whose destinations differ
// between columns.
template <class F>
void for_columns(int64_t b, int64_t e, int64_t inner, const F& f) {
  for (int64_t c = b; c < e;) {
    int64_t o = c / inner, lo = c % inner, hi = std::min(inner, lo + (e - c));
    f(o, lo, hi);
    c += hi - lo;
  }
}

// Calls f(o, lo, hi) for the rows (o, j), j in [lo, hi), of [outer, jn] that fall in the flat
// range [b, e): the unit of work of the reading kernels.
template <class F>
void for_rows(int64_t b, int64_t e, int64_t jn, const F& f) {
  for_columns(b, e, jn, f);
}

// first_bad for an index tensor split as [outer, jn, inner] by `io`: the first row-major
// position whose index lies outside [0, size), or -1.
template <class I>
int64_t first_bad_index(const I* idx, const Offsets& io, int64_t jn, int64_t size) {
  int64_t inner = io.inner.count, n = io.outer.count * jn * inner;
  std::atomic<int64_t> first{n};
  cpu::parallel_for(io.outer.count * jn, grain_for(inner), [&](int64_t b, int64_t e) {
    bool found = false;
    for_rows(b, e, jn, [&](int64_t o, int64_t lo, int64_t hi) {
      const I* ib = idx + io.outer[o];
      for (int64_t j = lo; j < hi && !found; ++j) {
        const I* k = ib + j * io.step;
        for (int64_t i = 0; i < inner; ++i) {
          int64_t v = static_cast<int64_t>(k[io.inner[i]]);
          if (v < 0 || v >= size) {
            int64_t p = (o * jn + j) * inner + i, cur = first.load();
            while (p < cur && !first.compare_exchange_weak(cur, p)) {
            }
            found = true;
            break;
          }
        }
      }
    });
  });
  return first.load() == n ? -1 : first.load();
}

// out[o, j, i] = x[o, index[j], i]
void index_select_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t size = x.size(dim), jn = index.numel();
  dispatch_index("index_select", index, [&]<class I>() {
    const I* idx = index.data<I>();
    int64_t is = index.dim() == 0 ? 0 : index.stride(0);
    int64_t bad = first_bad(jn, size, [&](int64_t j) { return idx[j * is]; });
    if (bad >= 0)
      throw_index_out_of_range("index_select", static_cast<int64_t>(idx[bad * is]),
                               unravel(bad, index.shape()), index.shape(), dim, x.shape(), "input");
    if (out.numel() == 0) return;
    Offsets oo = offsets(out.shape(), out, dim), xo = offsets(out.shape(), x, dim);
    int64_t inner = oo.inner.count;
    int64_t rows = oo.outer.count * jn;
    dispatch_dtype<DTypes::All>(out.dtype(), "index_select", [&]<class T>() {
      T* po = out.data<T>();
      const T* px = x.data<T>();
      cpu::parallel_for(rows, grain_for(inner), [&](int64_t b, int64_t e) {
        for_rows(b, e, jn, [&](int64_t o, int64_t lo, int64_t hi) {
          T* dst = po + oo.outer[o];
          const T* src = px + xo.outer[o];
          if (inner == 1) {  // selecting along the last dim: one element per row
            for (int64_t j = lo; j < hi; ++j)
              dst[j * oo.step] = src[static_cast<int64_t>(idx[j * is]) * xo.step];
          } else {
            for (int64_t j = lo; j < hi; ++j)
              copy_run(dst + j * oo.step, oo, src + static_cast<int64_t>(idx[j * is]) * xo.step, xo,
                       0, inner);
          }
        });
      });
    });
  });
}

// out[o, index[j], i] += src[o, j, i]: threads own columns (o, i); j runs in order within each.
void index_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  int64_t size = out.size(dim), jn = index.numel();
  dispatch_index("index_add", index, [&]<class I>() {
    const I* idx = index.data<I>();
    int64_t is = index.dim() == 0 ? 0 : index.stride(0);
    int64_t bad = first_bad(jn, size, [&](int64_t j) { return idx[j * is]; });
    if (bad >= 0)
      throw_index_out_of_range("index_add", static_cast<int64_t>(idx[bad * is]),
                               unravel(bad, index.shape()), index.shape(), dim, out.shape(),
                               "destination");
    if (src.numel() == 0) return;
    Offsets oo = offsets(src.shape(), out, dim), so = offsets(src.shape(), src, dim);
    int64_t inner = so.inner.count;
    int64_t cols = so.outer.count * inner;
    dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "index_add", [&]<class T>() {
      T* po = out.data<T>();
      const T* ps = src.data<T>();
      cpu::parallel_for(cols, grain_for(jn), [&](int64_t b, int64_t e) {
        for_columns(b, e, inner, [&](int64_t o, int64_t lo, int64_t hi) {
          for (int64_t j = 0; j < jn; ++j)
            add_run(po + oo.outer[o] + static_cast<int64_t>(idx[j * is]) * oo.step, oo,
                    ps + so.outer[o] + j * so.step, so, lo, hi);
        });
      });
    });
  });
}

// out[o, j, i] = x[o, index[o, j, i], i]
void gather_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t jn = index.size(dim);
  dispatch_index("gather", index, [&]<class I>() {
    const I* idx = index.data<I>();
    Offsets io = offsets(index.shape(), index, dim);
    if (index.numel() == 0) return;
    int64_t bad = first_bad_index(idx, io, jn, x.size(dim));
    if (bad >= 0) {
      Shape pos = unravel(bad, index.shape());
      throw_index_out_of_range("gather", index_value(index, pos), pos, index.shape(), dim,
                               x.shape(), "input");
    }
    Offsets oo = offsets(index.shape(), out, dim), xo = offsets(index.shape(), x, dim);
    int64_t inner = io.inner.count;
    int64_t rows = io.outer.count * jn;
    dispatch_dtype<DTypes::All>(out.dtype(), "gather", [&]<class T>() {
      T* po = out.data<T>();
      const T* px = x.data<T>();
      bool unit = oo.inner.unit() && xo.inner.unit() && io.inner.unit();
      cpu::parallel_for(rows, grain_for(inner), [&](int64_t b, int64_t e) {
        for_rows(b, e, jn, [&](int64_t o, int64_t lo, int64_t hi) {
          T* dst = po + oo.outer[o];
          const T* src = px + xo.outer[o];
          const I* ix = idx + io.outer[o];
          for (int64_t j = lo; j < hi; ++j) {
            T* d = dst + j * oo.step;
            const I* k = ix + j * io.step;
            if (inner == 1) {
              d[0] = src[static_cast<int64_t>(k[0]) * xo.step];
            } else if (unit) {
              for (int64_t i = 0; i < inner; ++i)
                d[i] = src[static_cast<int64_t>(k[i]) * xo.step + i];
            } else {
              for (int64_t i = 0; i < inner; ++i)
                d[oo.inner[i]] = src[static_cast<int64_t>(k[io.inner[i]]) * xo.step + xo.inner[i]];
            }
          }
        });
      });
    });
  });
}

// out[o, index[o, j, i], i] += src[o, j, i]: threads own columns (o, i), whose destinations
// differ because index is no larger than out off `dim`; j runs in order within each.
void scatter_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  int64_t jn = index.size(dim);
  dispatch_index("scatter_add", index, [&]<class I>() {
    const I* idx = index.data<I>();
    Offsets io = offsets(index.shape(), index, dim);
    if (index.numel() == 0) return;
    int64_t bad = first_bad_index(idx, io, jn, out.size(dim));
    if (bad >= 0) {
      Shape pos = unravel(bad, index.shape());
      throw_index_out_of_range("scatter_add", index_value(index, pos), pos, index.shape(), dim,
                               out.shape(), "destination");
    }
    Offsets oo = offsets(index.shape(), out, dim), so = offsets(index.shape(), src, dim);
    int64_t inner = io.inner.count;
    int64_t cols = io.outer.count * inner;
    dispatch_dtype<DTypes::Arithmetic>(out.dtype(), "scatter_add", [&]<class T>() {
      using A = acc_t<T>;
      T* po = out.data<T>();
      const T* ps = src.data<T>();
      bool unit = oo.inner.unit() && so.inner.unit() && io.inner.unit();
      cpu::parallel_for(cols, grain_for(jn), [&](int64_t b, int64_t e) {
        for_columns(b, e, inner, [&](int64_t o, int64_t lo, int64_t hi) {
          T* dst = po + oo.outer[o];
          const T* sb = ps + so.outer[o];
          const I* ib = idx + io.outer[o];
          for (int64_t j = 0; j < jn; ++j) {
            const T* s = sb + j * so.step;
            const I* k = ib + j * io.step;
            if (inner == 1) {
              T& d = dst[static_cast<int64_t>(k[0]) * oo.step];
              d = T(A(d) + A(s[0]));
            } else if (unit) {
              for (int64_t i = lo; i < hi; ++i) {
                T& d = dst[static_cast<int64_t>(k[i]) * oo.step + i];
                d = T(A(d) + A(s[i]));
              }
            } else {
              for (int64_t i = lo; i < hi; ++i) {
                T& d = dst[static_cast<int64_t>(k[io.inner[i]]) * oo.step + oo.inner[i]];
                d = T(A(d) + A(s[so.inner[i]]));
              }
            }
          }
        });
      });
    });
  });
}

// Offsets of every element of `indices` (any rank) in row-major order, and the row offsets of
// a tensor of shape indices.shape + [D] over the same positions.
struct EmbeddingLayout {
  DimOffsets index_off, row_off;
};
EmbeddingLayout embedding_layout(const Tensor& indices, const Tensor& rows) {
  const Shape& s = indices.shape();
  return {dim_offsets(s, indices.strides(), 0, s.size()),
          dim_offsets(s, rows.strides(), 0, s.size())};
}

template <class I>
void check_embedding_indices(const char* op, const I* idx, const DimOffsets& off,
                             const Tensor& indices, const Tensor& weight) {
  int64_t n = off.count;
  int64_t bad = first_bad(n, weight.size(0), [&](int64_t p) { return idx[off[p]]; });
  if (bad >= 0)
    throw_embedding_index_out_of_range(op, static_cast<int64_t>(idx[off[bad]]),
                                       unravel(bad, indices.shape()), indices, weight);
}

// out[n, :] = weight[indices[n], :]
void embedding_cpu(const Tensor& out, const Tensor& weight, const Tensor& indices) {
  dispatch_index("embedding", indices, [&]<class I>() {
    const I* idx = indices.data<I>();
    EmbeddingLayout l = embedding_layout(indices, out);
    check_embedding_indices("embedding", idx, l.index_off, indices, weight);
    int64_t n = l.index_off.count, dcols = weight.size(1);
    int64_t os = out.stride(out.dim() - 1), ws0 = weight.stride(0), ws1 = weight.stride(1);
    dispatch_dtype<DTypes::All>(out.dtype(), "embedding", [&]<class T>() {
      T* po = out.data<T>();
      const T* pw = weight.data<T>();
      cpu::parallel_for(n, grain_for(dcols), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          T* dst = po + l.row_off[r];
          const T* src = pw + static_cast<int64_t>(idx[l.index_off[r]]) * ws0;
          if (os == 1 && ws1 == 1) {
            std::copy(src, src + dcols, dst);
          } else {
            for (int64_t c = 0; c < dcols; ++c) dst[c * os] = src[c * ws1];
          }
        }
      });
    });
  });
}

// grad_weight[indices[n], :] += grad[n, :], n != padding_idx. Each thread owns a range of rows
// of grad_weight and scans all of indices for them, so each row adds its terms in increasing n
// whatever the thread count.
void embedding_backward_cpu(const Tensor& gw, const Tensor& grad, const Tensor& indices,
                            int64_t padding_idx) {
  dispatch_index("embedding_backward", indices, [&]<class I>() {
    const I* idx = indices.data<I>();
    EmbeddingLayout l = embedding_layout(indices, grad);
    check_embedding_indices("embedding_backward", idx, l.index_off, indices, gw);
    int64_t n = l.index_off.count, dcols = gw.size(1);
    int64_t gs = grad.stride(grad.dim() - 1), ws0 = gw.stride(0), ws1 = gw.stride(1);
    if (n == 0 || dcols == 0) return;
    dispatch_dtype<DTypes::FloatAndHalf>(gw.dtype(), "embedding_backward", [&]<class T>() {
      using A = acc_t<T>;
      T* pw = gw.data<T>();
      const T* pg = grad.data<T>();
      cpu::parallel_for(gw.size(0), 1, [&](int64_t vb, int64_t ve) {
        for (int64_t r = 0; r < n; ++r) {
          int64_t v = static_cast<int64_t>(idx[l.index_off[r]]);
          if (v < vb || v >= ve || v == padding_idx) continue;
          T* dst = pw + v * ws0;
          const T* src = pg + l.row_off[r];
          for (int64_t c = 0; c < dcols; ++c) dst[c * ws1] = T(A(dst[c * ws1]) + A(src[c * gs]));
        }
      });
    });
  });
}

}  // namespace

LUMEN_REGISTER_KERNEL(index_select, CPU, index_select_cpu);
LUMEN_REGISTER_KERNEL(index_add, CPU, index_add_cpu);
LUMEN_REGISTER_KERNEL(gather, CPU, gather_cpu);
LUMEN_REGISTER_KERNEL(scatter_add, CPU, scatter_add_cpu);
LUMEN_REGISTER_KERNEL(embedding, CPU, embedding_cpu);
LUMEN_REGISTER_KERNEL(embedding_backward, CPU, embedding_backward_cpu);

}  // namespace lumen::kernels
