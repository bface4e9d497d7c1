// Views share their input's storage and differ only in shape, strides and offset; their
// backward maps the gradient back to the input's shape. Copies (contiguous, clone, to) live
// here too: they are the escape hatch when no view exists.
#include <numeric>
#include <optional>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/elementwise.h"
#include "nn/functional/elementwise.h"

namespace lumen {
namespace {

// Replaces one -1 in `shape` by what makes numel match; checks the total.
Shape infer_shape(const char* op, Shape shape, const Tensor& x) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LUMEN_CHECK(infer < 0, op, ": only one dim can be -1, got ", ShapeStr{shape});
      infer = static_cast<int64_t>(i);
    } else {
      LUMEN_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in ", ShapeStr{shape});
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    LUMEN_CHECK(known != 0 && x.numel() % known == 0, op, ": shape ", ShapeStr{shape},
                " is invalid for an input of shape ", ShapeStr{x.shape()}, " (", x.numel(),
                " elements)");
    shape[infer] = x.numel() / known;
  }
  LUMEN_CHECK(numel_of(shape) == x.numel(), op, ": shape ", ShapeStr{shape}, " (", numel_of(shape),
              " elements) is invalid for an input of shape ", ShapeStr{x.shape()}, " (", x.numel(),
              " elements)");
  return shape;
}

// Strides that let `new_shape` view memory laid out as (old_shape, old_strides), if any: each
// run of old dims that is contiguous in memory may be split or merged freely (PyTorch's rule).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides,
                                  const Shape& new_shape) {
  Shape out(new_shape.size());
  if (old_shape.empty()) return contiguous_strides(new_shape);
  if (numel_of(old_shape) == 0) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_stride = old_strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// A view whose backward reshapes the gradient to the input's shape.
Tensor reshaping_view(const char* name, const Tensor& x, const Shape& shape, const Shape& strides) {
  Tensor out = make_view(x, shape, strides, x.offset());
  return autograd::record(name, out, {x},
                          [in = x.shape()](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{g.reshape(in)};
                          });
}

// The backward of a view that picks some elements: the gradient scattered into zeros.
autograd::BackwardFn scatter_back(const Tensor& x, std::function<Tensor(const Tensor&)> pick) {
  return [shape = x.shape(), dtype = x.dtype(), device = x.device(), pick](
             const Tensor& g, const autograd::NeedsGrad&) {
    Tensor gx = zeros(shape, {dtype, device});
    pick(gx).copy_(g);
    return std::vector<Tensor>{gx};
  };
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape s = infer_shape("view", shape, *this);
  auto st = view_strides(this->shape(), strides(), s);
  LUMEN_CHECK(st, "view: shape ", ShapeStr{s}, " is not compatible with the input's shape ",
              ShapeStr{this->shape()}, " and strides ", ShapeStr{strides()},
              " (at least one dim spans non-contiguous memory); use reshape()");
  return reshaping_view("view", *this, s, *st);
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = infer_shape("reshape", shape, *this);
  if (auto st = view_strides(this->shape(), strides(), s))
    return reshaping_view("reshape", *this, s, *st);
  return contiguous().view(s);
}

Tensor Tensor::permute(const Shape& dims) const {
  LUMEN_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims ",
              ShapeStr{dims}, " for a tensor of shape ", ShapeStr{shape()});
  Shape s(dims.size()), st(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_dim(dims[i], dim(), "permute");
    LUMEN_CHECK(!seen[d], "permute: dim ", d, " repeats in ", ShapeStr{dims});
    seen[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, s, st, offset());
  return autograd::record("permute", out, {*this},
                          [inverse](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{g.permute(inverse)};
                          });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Shape dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_dim(d0, dim(), "transpose")],
            dims[normalize_dim(d1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::t() const {
  LUMEN_CHECK(dim() <= 2, "t: expects a tensor with at most 2 dims, got shape ", ShapeStr{shape()});
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = normalize_dim(d, dim(), "slice");
  LUMEN_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  return autograd::record("slice", out, {*this},
                          scatter_back(*this, [d, start, end, step](const Tensor& t) {
                            return t.slice(d, start, end, step);
                          }));
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = normalize_dim(d, dim(), "narrow");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  LUMEN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: start ", start,
              " and length ", length, " are out of range for dim ", d, " of size ", n, " (shape ",
              ShapeStr{shape()}, ")");
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = normalize_dim(d, dim(), "select");
  int64_t n = shape()[d];
  LUMEN_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d,
              " of size ", n, " (shape ", ShapeStr{shape()}, ")");
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  LUMEN_CHECK(shape.size() >= this->shape().size(), "expand: target ", ShapeStr{shape},
              " has fewer dims than the input ", ShapeStr{this->shape()});
  size_t lead = shape.size() - this->shape().size();
  Shape s(shape.size()), st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      LUMEN_CHECK(shape[i] >= 0, "expand: size -1 is not allowed for a new leading dim in ",
                  ShapeStr{shape});
      s[i] = shape[i];
      continue;
    }
    int64_t have = this->shape()[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    LUMEN_CHECK(want == have || have == 1, "expand: cannot expand shape ", ShapeStr{this->shape()},
                " to ", ShapeStr{shape}, " (dim ", i, ": ", have, " vs ", want,
                "; only size-1 dims expand)");
    s[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, s, st, offset());
  return autograd::record("expand", out, {*this},
                          [in = this->shape()](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{sum_to(g, in)};
                          });
}

Tensor Tensor::squeeze() const {
  Shape s, st;
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] != 1) {
      s.push_back(shape()[i]);
      st.push_back(strides()[i]);
    }
  return reshaping_view("squeeze", *this, s, st);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return reshaping_view("squeeze", *this, s, st);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return reshaping_view("unsqueeze", *this, s, st);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = normalize_dim(start_dim, dim(), "flatten");
  end_dim = normalize_dim(end_dim, dim(), "flatten");
  LUMEN_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " is after end_dim ",
              end_dim);
  Shape s(shape().begin(), shape().begin() + start_dim);
  int64_t n = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) n *= shape()[i];
  s.push_back(n);
  s.insert(s.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), {dtype(), device()});
  kernels::copy(device(), out, *this);
  return autograd::record("clone", out, {*this}, [](const Tensor& g, const autograd::NeedsGrad&) {
    return std::vector<Tensor>{g};
  });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), {dt, device()});
  kernels::copy(device(), out, *this);
  if (!is_floating(dt)) return out;  // integers carry no gradient
  return autograd::record("to", out, {*this},
                          [from = dtype()](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{g.to(from)};
                          });
}

Tensor Tensor::pin_memory() const {
  LUMEN_CHECK(defined() && device().is_cpu(), "pin_memory: expects a CPU tensor, got ",
              defined() ? device() : Device::cpu(), defined() ? "" : " (undefined tensor)");
  if (is_pinned() && is_contiguous()) return *this;
  Tensor out = empty(shape(), {.dtype = dtype(), .pin_memory = true});
  out.copy_(detach());
  // A copy that keeps the graph, as Tensor::to does.
  return autograd::record(
      "pin_memory", out, {*this},
      [](const Tensor& g, const autograd::NeedsGrad&) { return std::vector<Tensor>{g}; });
}

bool Tensor::is_pinned() const { return defined() && storage().is_pinned(); }

namespace {

// Remembers, on a device tensor copied from the CPU, the host tensor it came from (integer
// tensors only: indices are what ops check on the host; float data is not kept).
void keep_host_copy(const Tensor& out, const Tensor& host_src) {
  if (is_floating(out.dtype()) || !host_src.device().is_cpu()) return;
  out.impl()->host_copy = host_src.detach();
  out.impl()->host_copy_version = out.version();
  out.impl()->host_copy_source_version = host_src.version();
}

}  // namespace

Tensor kept_host_copy(const Tensor& t) {
  if (!t.defined() || t.device().is_cpu()) return Tensor();
  const TensorImpl& impl = *t.impl();
  const Tensor& h = impl.host_copy;
  if (h.defined() && impl.host_copy_version == t.version() &&
      impl.host_copy_source_version == h.version() && h.shape() == t.shape() &&
      h.dtype() == t.dtype() && h.is_contiguous())
    return h;
  return Tensor();
}

Tensor host_values(const Tensor& t) {
  LUMEN_CHECK(t.defined(), "host_values: got an undefined tensor");
  if (t.device().is_cpu()) return t.contiguous();
  Tensor h = kept_host_copy(t);
  return h.defined() ? h : t.detach().to(Device::cpu()).contiguous();
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), {dtype(), dev});
  if (numel() > 0)
    device_backend(dev.is_cuda() ? dev : device())
        .copy(out.data_ptr(), dev, src.data_ptr(), device(), numel() * element_size());
  keep_host_copy(out, src);
  return autograd::record("to", out, {*this},
                          [from = device()](const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{g.to(from)};
                          });
}

Tensor prefetch_to(const Tensor& src, Device dev) {
  LUMEN_CHECK(src.defined(), "prefetch_to: got an undefined tensor");
  if (!dev.is_cuda() || !src.device().is_cpu()) return src.detach().to(dev);
  Tensor s = src.detach().contiguous();
  Tensor out = empty(s.shape(), {s.dtype(), dev});
  if (s.numel() > 0)
    device_backend(dev).copy_ahead(out.data_ptr(), dev.index, s.data_ptr(),
                                   s.numel() * s.element_size());
  keep_host_copy(out, s);
  return out;
}

void join_prefetches(Device dev) {
  if (dev.is_cuda()) device_backend(dev).join_copies(dev.index);
}

double Tensor::item() const {
  LUMEN_CHECK(defined() && numel() == 1, "item: expects a one-element tensor, got shape ",
              defined() ? shape_str(shape()) : "undefined");
  NoGradGuard no_grad;
  Tensor c = to(Device::cpu()).to(DType::f64).contiguous();
  return *c.data<double>();
}

}  // namespace lumen
