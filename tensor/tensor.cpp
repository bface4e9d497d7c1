#include "tensor/tensor.h"

namespace lumen {

const Shape& Tensor::shape() const { return impl_->shape; }
int64_t Tensor::dim() const { return static_cast<int64_t>(impl_->shape.size()); }
int64_t Tensor::size(int64_t d) const { return impl_->shape[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::numel() const { return numel_of(impl_->shape); }
const Shape& Tensor::strides() const { return impl_->strides; }
int64_t Tensor::stride(int64_t d) const {
  return impl_->strides[normalize_dim(d, dim(), "stride")];
}
int64_t Tensor::offset() const { return impl_->offset; }
DType Tensor::dtype() const { return impl_->dtype; }
Device Tensor::device() const { return impl_->storage.device(); }
const Storage& Tensor::storage() const { return impl_->storage; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to misplace, as in PyTorch
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl_->storage.data()) + impl_->offset * element_size();
}

bool Tensor::requires_grad() const { return impl_->requires_grad; }
Tensor Tensor::grad() const { return impl_->grad; }
void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    LUMEN_CHECK(g.shape() == shape(), "set_grad: gradient shape ", ShapeStr{g.shape()},
                " does not match tensor shape ", ShapeStr{shape()});
  impl_->grad = g;
}
bool Tensor::is_leaf() const { return impl_->grad_fn == nullptr; }
const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { return impl_->grad_fn; }

Tensor& Tensor::requires_grad_(bool value) {
  LUMEN_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad; ",
              "use detach() to get a leaf");
  LUMEN_CHECK(!value || is_floating(dtype()), "requires_grad_: only floating tensors can ",
              "require grad, got dtype ", dtype());
  impl_->requires_grad = value;
  return *this;
}

Tensor Tensor::detach() const {
  return make_view(*this, impl_->shape, impl_->strides, impl_->offset);
}

void Tensor::register_hook(GradHook hook) const {
  LUMEN_CHECK(requires_grad() && is_leaf(), "register_hook: hooks go on leaf tensors that ",
              "require grad (requires_grad=", requires_grad(), ", is_leaf=", is_leaf(), ")");
  impl_->hooks.push_back(std::move(hook));
}

size_t Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const {
  LUMEN_CHECK(requires_grad() && is_leaf(), "register_post_accumulate_grad_hook: hooks go on leaf ",
              "tensors that require grad (requires_grad=", requires_grad(), ", is_leaf=", is_leaf(),
              ")");
  impl_->post_accumulate_hooks.push_back(std::move(hook));
  return impl_->post_accumulate_hooks.size() - 1;
}

void Tensor::remove_post_accumulate_grad_hook(size_t handle) const {
  LUMEN_CHECK(defined() && handle < impl_->post_accumulate_hooks.size(),
              "remove_post_accumulate_grad_hook: no hook with handle ", handle);
  impl_->post_accumulate_hooks[handle] = nullptr;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  Tensor out(std::move(impl));
  // A contiguous view (reshape, flatten, a slice of rows) of a device tensor that keeps its host
  // copy keeps the matching view of that copy: the same elements, so host_values still needs
  // no wait. The base is contiguous from offset 0, so element i of its storage is element i
  // from the copy's offset.
  if (base.impl()->host_copy.defined() && base.is_contiguous() && base.offset() == 0 &&
      out.is_contiguous()) {
    const Tensor h = kept_host_copy(base);
    if (h.defined()) {
      TensorImpl& v = *out.impl();
      v.host_copy = make_view(h, out.shape(), out.strides(), h.offset() + out.offset());
      v.host_copy_version = base.impl()->host_copy_version;
      v.host_copy_source_version = base.impl()->host_copy_source_version;
    }
  }
  return out;
}

Tensor empty(const Shape& shape, TensorOptions opts) {
  for (int64_t d : shape) LUMEN_CHECK(d >= 0, "empty: negative size in shape ", ShapeStr{shape});
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = numel_of(shape) * dtype_size(opts.dtype);
  LUMEN_CHECK(!opts.pin_memory || opts.device.is_cpu(),
              "empty: pin_memory is for CPU tensors, got device ", opts.device);
  impl->storage = opts.pin_memory ? Storage::pinned(nbytes) : Storage(nbytes, opts.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  Tensor t(std::move(impl));
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

}  // namespace lumen
