// Indexing front-ends: check arguments, allocate the output, run the kernel of the inputs'
// device, record the backward. Each read's backward is the matching accumulation into zeros
// (index_select -> index_add, gather -> scatter_add, embedding -> embedding_backward), and the
// accumulations' backward is the matching read.
#include "nn/functional/index.h"

#include <algorithm>

#include "autograd/node.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"

namespace lumen {
namespace {

void check_defined(const char* op, const Tensor& t, const char* what) {
  LUMEN_CHECK(t.defined(), op, ": the ", what, " is an undefined tensor");
}

void check_index(const char* op, const Tensor& index, const Tensor& x) {
  check_defined(op, index, "index");
  LUMEN_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
              ": index must be i32 or i64, got ", index.dtype(), " (index shape ",
              ShapeStr{index.shape()}, ")");
  LUMEN_CHECK(index.device() == x.device(), op, ": index is on ", index.device(),
              " but the input is on ", x.device(), "; move them to one device with to()");
}

void check_source(const char* op, const Tensor& src, const Tensor& x) {
  check_defined(op, src, "source");
  LUMEN_CHECK(src.device() == x.device(), op, ": source is on ", src.device(),
              " but the input is on ", x.device(), "; move them to one device with to()");
  LUMEN_CHECK(src.dtype() == x.dtype(), op, ": source has dtype ", src.dtype(),
              " but the input has dtype ", x.dtype(), "; expected the same dtype");
}

// The input's dim, for ops that index along one.
int64_t indexed_dim(const char* op, const Tensor& x, int64_t dim) {
  LUMEN_CHECK(x.dim() > 0, op, ": the input must have at least one dim, got a 0-d tensor");
  return normalize_dim(dim, x.dim(), op);
}

// index as a 1-D tensor (a 0-d index selects one element).
Tensor index_1d(const char* op, const Tensor& index) {
  LUMEN_CHECK(index.dim() <= 1, op, ": index must be 1-D, got shape ", ShapeStr{index.shape()});
  Tensor i = index.detach();
  return i.dim() == 0 ? make_view(i, {1}, {1}, i.offset()) : i;
}

// A tensor of `shape` holding `base` (copied), or zeros of `opts` when base is undefined.
Tensor base_copy(const Tensor& base, const Shape& shape, TensorOptions opts) {
  if (!base.defined()) return zeros(shape, opts);
  Tensor out = empty(shape, opts);
  kernels::copy(opts.device, out, base);
  return out;
}

// The rows of `src` (index's shape) placed at the start of zeros of `shape`, for sources larger
// than their index (scatter_add's source may be).
Tensor pad_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  Tensor z = zeros(shape, {t.dtype(), t.device()});
  kernels::copy(t.device(), make_view(z, t.shape(), z.strides(), z.offset()), t);
  return z;
}

Tensor index_select_impl(const Tensor& x, int64_t d, const Tensor& idx);
Tensor gather_impl(const Tensor& x, int64_t d, const Tensor& idx);

// base (zeros when undefined) plus src accumulated at idx along d: the public index_add, and
// the backward of index_select.
Tensor index_add_impl(const Tensor& base, const Shape& shape, int64_t d, const Tensor& idx,
                      const Tensor& src) {
  Tensor out = base_copy(base, shape, {src.dtype(), src.device()});
  kernels::index_add(out.device(), out, d, idx, src);
  if (!base.defined()) return out;  // a backward: grad mode is off, nothing to record
  return autograd::record(
      "index_add", out, {base, src}, [d, idx](const Tensor& g, const autograd::NeedsGrad& n) {
        return std::vector<Tensor>{n[0] ? g : Tensor(),
                                   n[1] ? index_select_impl(g, d, idx) : Tensor()};
      });
}

Tensor index_select_impl(const Tensor& x, int64_t d, const Tensor& idx) {
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = empty(shape, {x.dtype(), x.device()});
  kernels::index_select(x.device(), out, x, d, idx);
  return autograd::record("index_select", out, {x},
                          [shape = x.shape(), d, idx](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{index_add_impl({}, shape, d, idx, g)};
                          });
}

Tensor scatter_add_impl(const Tensor& base, const Shape& shape, int64_t d, const Tensor& idx,
                        const Tensor& src) {
  Tensor out = base_copy(base, shape, {src.dtype(), src.device()});
  kernels::scatter_add(out.device(), out, d, idx, src);
  if (!base.defined()) return out;
  return autograd::record(
      "scatter_add", out, {base, src},
      [d, idx, src_shape = src.shape()](const Tensor& g, const autograd::NeedsGrad& n) {
        return std::vector<Tensor>{n[0] ? g : Tensor(),
                                   n[1] ? pad_to(gather_impl(g, d, idx), src_shape) : Tensor()};
      });
}

Tensor gather_impl(const Tensor& x, int64_t d, const Tensor& idx) {
  Tensor out = empty(idx.shape(), {x.dtype(), x.device()});
  kernels::gather(x.device(), out, x, d, idx);
  return autograd::record("gather", out, {x},
                          [shape = x.shape(), d, idx](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{scatter_add_impl({}, shape, d, idx, g)};
                          });
}

// Checks gather/scatter_add's index against x: same rank, no larger than x off `d`.
void check_gather_index(const char* op, const Tensor& x, int64_t d, const Tensor& index) {
  LUMEN_CHECK(index.dim() == x.dim(), op, ": index of shape ", ShapeStr{index.shape()},
              " must have the input's rank ", x.dim(), " (input shape ", ShapeStr{x.shape()},
              "), got rank ", index.dim());
  for (int64_t i = 0; i < x.dim(); ++i)
    LUMEN_CHECK(i == d || index.size(i) <= x.size(i), op, ": index of shape ",
                ShapeStr{index.shape()}, " is larger than the input of shape ", ShapeStr{x.shape()},
                " in dim ", i, " (", index.size(i), " > ", x.size(i),
                "); expected index.size(i) <= input.size(i) for every dim i other than ", d);
}

// Where each input of cat/stack lands in the output.
struct Part {
  int64_t start = 0, size = 0;
  DType dtype = DType::f32;
  bool skipped = false;
};

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  LUMEN_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  size_t n = tensors.size();
  for (size_t k = 0; k < n; ++k)
    LUMEN_CHECK(tensors[k].defined(), "cat: tensor ", k, " is an undefined tensor");
  // PyTorch's legacy rule: 1-D empty tensors are skipped, unless every tensor is one.
  auto legacy_empty = [](const Tensor& t) { return t.dim() == 1 && t.numel() == 0; };
  size_t ref = 0;
  while (ref < n && legacy_empty(tensors[ref])) ++ref;
  bool skip_empty = ref < n;
  if (!skip_empty) ref = 0;
  const Tensor& r = tensors[ref];
  LUMEN_CHECK(r.dim() > 0, "cat: tensor ", ref,
              " is 0-d and cannot be concatenated; unsqueeze it, or use stack");
  int64_t d = normalize_dim(dim, r.dim(), "cat");

  std::vector<Part> parts(n);
  DType dtype = r.dtype();
  int64_t total = 0;
  for (size_t k = 0; k < n; ++k) {
    const Tensor& t = tensors[k];
    parts[k].dtype = t.dtype();
    if (skip_empty && legacy_empty(t)) {
      parts[k].skipped = true;
      continue;
    }
    LUMEN_CHECK(t.device() == r.device(), "cat: tensor ", k, " is on ", t.device(), " but tensor ",
                ref, " is on ", r.device(), "; move them to one device with to()");
    LUMEN_CHECK(t.dim() == r.dim(), "cat: tensor ", k, " has shape ", ShapeStr{t.shape()},
                " but tensor ", ref, " has shape ", ShapeStr{r.shape()},
                "; expected tensors of the same rank");
    for (int64_t i = 0; i < r.dim(); ++i)
      LUMEN_CHECK(i == d || t.size(i) == r.size(i), "cat: tensor ", k, " has shape ",
                  ShapeStr{t.shape()}, " but tensor ", ref, " has shape ", ShapeStr{r.shape()},
                  "; sizes must match except in dim ", d, " (they differ in dim ", i, ")");
    dtype = promote_types(dtype, t.dtype());
    parts[k].start = total;
    parts[k].size = t.size(d);
    total += t.size(d);
  }

  Shape shape = r.shape();
  shape[d] = total;
  Tensor out = empty(shape, {dtype, r.device()});
  for (size_t k = 0; k < n; ++k) {
    if (parts[k].skipped || parts[k].size == 0) continue;
    Shape s = shape;
    s[d] = parts[k].size;
    Tensor dst = make_view(out, s, out.strides(), out.offset() + parts[k].start * out.stride(d));
    kernels::copy(out.device(), dst, tensors[k]);
  }
  // Backward: input k gets the gradient's slice [start, start + size) along d, in its dtype.
  return autograd::record(
      "cat", out, tensors,
      [parts, d, device = r.device()](const Tensor& g, const autograd::NeedsGrad& needs) {
        std::vector<Tensor> grads(parts.size());
        for (size_t k = 0; k < parts.size(); ++k) {
          if (!needs[k]) continue;
          const Part& p = parts[k];
          grads[k] =
              p.skipped ? empty({0}, {p.dtype, device}) : g.narrow(d, p.start, p.size).to(p.dtype);
        }
        return grads;
      });
}

std::vector<double> scalar_values(const std::vector<Tensor>& scalars) {
  if (scalars.empty()) return {};
  std::vector<Tensor> flat;
  for (const Tensor& t : scalars) {
    LUMEN_CHECK(t.defined() && t.numel() == 1, "scalar_values: expected one-element tensors, got ",
                t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
    flat.push_back(t.detach().reshape({}).to(DType::f64));
  }
  const Device device = flat.front().device();
  if (std::all_of(flat.begin(), flat.end(), [&](const Tensor& t) { return t.device() == device; }))
    return stack(flat).to_vector<double>();
  std::vector<double> values;
  for (const Tensor& t : flat) values.push_back(t.item());
  return values;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  LUMEN_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  size_t n = tensors.size();
  for (size_t k = 0; k < n; ++k)
    LUMEN_CHECK(tensors[k].defined(), "stack: tensor ", k, " is an undefined tensor");
  const Tensor& r = tensors[0];
  int64_t d = normalize_dim(dim, r.dim() + 1, "stack");
  std::vector<DType> dtypes(n);
  DType dtype = r.dtype();
  for (size_t k = 0; k < n; ++k) {
    const Tensor& t = tensors[k];
    LUMEN_CHECK(t.shape() == r.shape(), "stack: expected every tensor to have tensor 0's shape ",
                ShapeStr{r.shape()}, ", but tensor ", k, " has shape ", ShapeStr{t.shape()});
    LUMEN_CHECK(t.device() == r.device(), "stack: tensor ", k, " is on ", t.device(),
                " but tensor 0 is on ", r.device(), "; move them to one device with to()");
    dtypes[k] = t.dtype();
    dtype = promote_types(dtype, t.dtype());
  }
  Shape shape = r.shape();
  shape.insert(shape.begin() + d, static_cast<int64_t>(n));
  Tensor out = empty(shape, {dtype, r.device()});
  // Input k is the slice k of the new dim: out's strides without that dim.
  Shape strides = out.strides();
  int64_t step = strides[d];
  strides.erase(strides.begin() + d);
  if (out.numel() > 0)
    for (size_t k = 0; k < n; ++k)
      kernels::copy(
          out.device(),
          make_view(out, r.shape(), strides, out.offset() + static_cast<int64_t>(k) * step),
          tensors[k]);
  return autograd::record("stack", out, tensors,
                          [dtypes, d](const Tensor& g, const autograd::NeedsGrad& needs) {
                            std::vector<Tensor> grads(dtypes.size());
                            for (size_t k = 0; k < dtypes.size(); ++k)
                              if (needs[k])
                                grads[k] = g.select(d, static_cast<int64_t>(k)).to(dtypes[k]);
                            return grads;
                          });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x, "input");
  check_index("index_select", index, x);
  int64_t d = indexed_dim("index_select", x, dim);
  return index_select_impl(x, d, index_1d("index_select", index));
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_defined("index_add", x, "input");
  check_index("index_add", index, x);
  check_source("index_add", src, x);
  int64_t d = indexed_dim("index_add", x, dim);
  Tensor idx = index_1d("index_add", index);
  Shape want = x.shape();
  want[d] = idx.numel();
  LUMEN_CHECK(src.shape() == want, "index_add: source of shape ", ShapeStr{src.shape()},
              " does not fit the input of shape ", ShapeStr{x.shape()}, " and an index of length ",
              idx.numel(), " along dim ", d, "; expected source shape ", ShapeStr{want});
  return index_add_impl(x, x.shape(), d, idx, src);
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("gather", x, "input");
  check_index("gather", index, x);
  int64_t d = indexed_dim("gather", x, dim);
  check_gather_index("gather", x, d, index);
  return gather_impl(x, d, index.detach());
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_defined("scatter_add", x, "input");
  check_index("scatter_add", index, x);
  check_source("scatter_add", src, x);
  int64_t d = indexed_dim("scatter_add", x, dim);
  check_gather_index("scatter_add", x, d, index);
  LUMEN_CHECK(src.dim() == x.dim(), "scatter_add: source of shape ", ShapeStr{src.shape()},
              " must have the input's rank ", x.dim(), " (input shape ", ShapeStr{x.shape()}, ")");
  for (int64_t i = 0; i < x.dim(); ++i)
    LUMEN_CHECK(index.size(i) <= src.size(i), "scatter_add: index of shape ",
                ShapeStr{index.shape()}, " is larger than the source of shape ",
                ShapeStr{src.shape()}, " in dim ", i, " (", index.size(i), " > ", src.size(i),
                "); expected index.size(i) <= source.size(i) for every dim i");
  return scatter_add_impl(x, x.shape(), d, index.detach(), src);
}

namespace nn::functional {

Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx) {
  check_defined("embedding", weight, "weight");
  check_defined("embedding", indices, "indices");
  LUMEN_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [num_embeddings, embedding_dim], ",
              "got shape ", ShapeStr{weight.shape()});
  LUMEN_CHECK(indices.dtype() == DType::i64 || indices.dtype() == DType::i32,
              "embedding: indices must be i32 or i64, got ", indices.dtype(), " (indices shape ",
              ShapeStr{indices.shape()}, ")");
  LUMEN_CHECK(indices.device() == weight.device(), "embedding: indices are on ", indices.device(),
              " but the weight is on ", weight.device(), "; move them to one device with to()");
  int64_t v = weight.size(0);
  int64_t pad = -1;
  if (padding_idx) {
    LUMEN_CHECK(*padding_idx >= -v && *padding_idx < v, "embedding: padding_idx ", *padding_idx,
                " is out of range for a weight of shape ", ShapeStr{weight.shape()}, "; expected ",
                -v, " <= padding_idx < ", v);
    pad = *padding_idx < 0 ? *padding_idx + v : *padding_idx;
  }
  Shape shape = indices.shape();
  shape.push_back(weight.size(1));
  Tensor out = empty(shape, {weight.dtype(), weight.device()});
  kernels::embedding(weight.device(), out, weight, indices);
  return autograd::record("embedding", out, {weight},
                          [idx = indices.detach(), wshape = weight.shape(), pad](
                              const Tensor& g, const autograd::NeedsGrad&) {
                            Tensor gw = zeros(wshape, {g.dtype(), g.device()});
                            kernels::embedding_backward(g.device(), gw, g, idx, pad);
                            return std::vector<Tensor>{gw};
                          });
}

}  // namespace nn::functional
}  // namespace lumen
