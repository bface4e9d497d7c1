#pragma once
// Tensor: a strided view (shape, strides in elements, offset) into a refcounted Storage, plus
// the autograd state of a define-by-run graph. Copying a Tensor copies a handle: both refer to
// the same TensorImpl.
//
// This header declares the whole method API. Methods that only read or re-describe memory are
// defined in tensor/; methods that compute (math, copies, differentiable views) are defined
// beside their kernels and autograd nodes in nn/functional/, so each op lives in one place.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace lumen {

namespace autograd {
struct Node;
}
class Tensor;
class Generator;

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;
  // CPU tensors only: page-locked memory, so copies to a GPU run asynchronously (needs a GPU).
  bool pin_memory = false;
};

// A hook on a leaf's gradient: called with the gradient about to be accumulated; returning a
// defined tensor replaces it.
using GradHook = std::function<Tensor(const Tensor&)>;
// A hook run after a backward accumulated into a leaf's grad(), with the leaf (PyTorch's
// register_post_accumulate_grad_hook): data parallelism starts a bucket's all-reduce from it.
using PostAccumulateGradHook = std::function<void(const Tensor&)>;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<struct TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Metadata.
  const Shape& shape() const;
  int64_t size(int64_t dim) const;
  int64_t dim() const;
  int64_t numel() const;
  const Shape& strides() const;
  int64_t stride(int64_t dim) const;
  int64_t offset() const;
  DType dtype() const;
  Device device() const;
  const Storage& storage() const;
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  // Address of element [0, ..., 0].
  void* data_ptr() const;
  template <class T>
  T* data() const {
    LUMEN_CHECK(dtype_v<T> == dtype(), "data<", dtype_name(dtype_v<T>), ">(): tensor has dtype ",
                dtype());
    return static_cast<T*>(data_ptr());
  }
  // data<T>() of an optional tensor: nullptr when undefined.
  template <class T>
  T* data_or_null() const {
    return defined() ? data<T>() : nullptr;
  }

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);  // leaves only, floating dtypes only
  Tensor grad() const;                        // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g) const;
  bool is_leaf() const;
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  // Accumulates d(this)/d(leaf) into every leaf's grad(). `gradient` defaults to 1 for a
  // one-element tensor. The graph is freed afterwards unless retain_graph.
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no graph
  void register_hook(GradHook hook) const;
  // Returns a handle for remove_post_accumulate_grad_hook.
  size_t register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const;
  void remove_post_accumulate_grad_hook(size_t handle) const;

  // Views: share storage with this tensor; differentiable.
  Tensor view(const Shape& shape) const;     // needs compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-D transpose
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;          // -1 keeps a size
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // Copies; differentiable.
  Tensor contiguous() const;  // this tensor itself when already contiguous
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  // A copy in page-locked host memory (this tensor itself if it is already there), from which
  // copies to a GPU run asynchronously; CPU tensors only, and only where a GPU is present.
  Tensor pin_memory() const;
  bool is_pinned() const;
  // The storage's in-place write count (Storage::version); bump_version() after writing into
  // data_ptr() outside Lumen's in-place ops.
  uint64_t version() const { return storage().version(); }
  void bump_version() const { storage().bump_version(); }

  // Values.
  double item() const;  // one-element tensors only
  template <class T>
  T item() const {
    return static_cast<T>(item());
  }
  template <class T>
  std::vector<T> to_vector() const;  // all elements in row-major order, converted to T

  // In-place (no graph). Refused on tensors that require grad while grad mode is on: wrap
  // parameter updates in NoGradGuard, as optimizers do.
  // Const like the handle: they change the data, not which tensor this is.
  const Tensor& fill_(double value) const;
  const Tensor& zero_() const { return fill_(0.0); }
  const Tensor& copy_(const Tensor& src) const;  // src broadcast to this shape, cast to dtype
  const Tensor& add_(const Tensor& other, double alpha = 1.0) const;
  const Tensor& mul_(const Tensor& other) const;
  const Tensor& mul_(double value) const;

  // Math shorthands for the free functions of the same names.
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor neg() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor pow(double exponent) const;
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;

  std::string str() const;  // readable printing; also operator<<

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  Storage storage;
  Shape shape, strides;
  int64_t offset = 0;
  DType dtype = DType::f32;

  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;         // null for leaves
  std::weak_ptr<autograd::Node> grad_accumulator;  // a leaf's sink node, shared by its uses
  std::vector<GradHook> hooks;
  std::vector<PostAccumulateGradHook> post_accumulate_hooks;  // removed ones are empty

  // For an integer tensor copied from the host (Tensor::to, prefetch_to): the CPU tensor it was
  // copied from, valid while neither has been written since (their storage versions are still
  // the two recorded; host_values).
  Tensor host_copy;
  uint64_t host_copy_version = 0, host_copy_source_version = 0;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// A tensor over existing storage (no copy, no graph): the primitive every view is built on.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);
// A fresh, uninitialised, contiguous tensor.
Tensor empty(const Shape& shape, TensorOptions opts = {});
inline Tensor empty_like(const Tensor& t) { return empty(t.shape(), {t.dtype(), t.device()}); }

// Factories. All take TensorOptions, e.g. zeros({2, 3}, {.dtype = DType::f64}).
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar_tensor(double value, TensorOptions opts = {});  // 0-d
// [start, end) by step, like torch.arange; dtype defaults to i64 when all of them are integers.
Tensor arange(double end, TensorOptions opts = {.dtype = DType::i64});
Tensor arange(double start, double end, double step = 1,
              TensorOptions opts = {.dtype = DType::i64});
// Copies `values` (row-major) into a tensor of `shape` (default: 1-D); dtype defaults to T's.
template <class T>
Tensor from_vector(const std::vector<T>& values, Shape shape = {},
                   std::optional<TensorOptions> opts = std::nullopt);
// Uniform in [0, 1) and standard normal, from `gen` (default: the global generator).
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);

// Copies ahead of use, as a data loader's prefetch does: prefetch_to starts copying a CPU
// tensor to a GPU on that device's copy stream, so the copy overlaps the kernels queued on its
// compute stream (fully from pinned memory). The result may be read by kernels only after
// join_prefetches(device), and `src` must stay alive until then. No graph. For any other pair
// of devices it is src.to(device), and join_prefetches does nothing.
Tensor prefetch_to(const Tensor& src, Device device);
void join_prefetches(Device device);

// The values of `t` in a contiguous CPU tensor, for an op that must check them on the host
// (class indices against the number of classes). A GPU integer tensor copied from the host and
// not written since answers from that host copy, without waiting for the device; any other
// tensor is copied back (which waits).
Tensor host_values(const Tensor& t);
// The host copy host_values answers from without waiting (contiguous, t's shape and dtype), or
// an undefined tensor when there is none.
Tensor kept_host_copy(const Tensor& t);

}  // namespace lumen
