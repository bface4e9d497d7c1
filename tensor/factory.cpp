#include <cmath>
#include <cstring>

#include "kernels/elementwise.h"
#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace lumen {

Generator& default_generator() {
  static Generator gen;
  return gen;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  Tensor t = empty(shape, {opts.dtype, opts.device});
  kernels::fill(opts.device, t, value);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

Tensor arange(double end, TensorOptions opts) { return arange(0, end, 1, opts); }
Tensor arange(double start, double end, double step, TensorOptions opts) {
  LUMEN_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
              "arange: needs finite start, end and a nonzero step, got (", start, ", ", end, ", ",
              step, ")");
  LUMEN_CHECK((end - start) * step >= 0, "arange: step ", step, " never gets from ", start, " to ",
              end);
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v, {n}, opts);
}

template <class T>
Tensor from_vector(const std::vector<T>& values, Shape shape, std::optional<TensorOptions> opts) {
  if (shape.empty() && values.size() != 1) shape = {static_cast<int64_t>(values.size())};
  LUMEN_CHECK(numel_of(shape) == static_cast<int64_t>(values.size()),
              "from_vector: ", values.size(), " values do not fill shape ", ShapeStr{shape}, " (",
              numel_of(shape), " elements)");
  Tensor t = empty(shape, {dtype_v<T>, Device::cpu()});
  if constexpr (std::is_same_v<T, bool>) {
    for (size_t i = 0; i < values.size(); ++i) t.data<bool>()[i] = values[i];
  } else {
    std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  }
  if (!opts) return t;
  Tensor r = t.to(opts->dtype).to(opts->device);
  // Already a leaf with no graph: the conversions above ran on a tensor without grad.
  if (opts->requires_grad) r.requires_grad_(true);
  return r;
}

template Tensor from_vector(const std::vector<float>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<double>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<int32_t>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<int64_t>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<uint8_t>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<bool>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<Half>&, Shape, std::optional<TensorOptions>);
template Tensor from_vector(const std::vector<BFloat16>&, Shape, std::optional<TensorOptions>);

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).to(dtype_v<T>).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector() const;
template std::vector<double> Tensor::to_vector() const;
template std::vector<int32_t> Tensor::to_vector() const;
template std::vector<int64_t> Tensor::to_vector() const;
template std::vector<uint8_t> Tensor::to_vector() const;
template std::vector<Half> Tensor::to_vector() const;
template std::vector<BFloat16> Tensor::to_vector() const;
template <>
std::vector<bool> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).to(DType::boolean).contiguous();
  return std::vector<bool>(c.data<bool>(), c.data<bool>() + c.numel());
}

namespace {
Tensor random(const Shape& shape, TensorOptions opts, Generator* gen, kernels::RandomKind kind) {
  LUMEN_CHECK(is_floating(opts.dtype), kernels::RandomKind::Normal == kind ? "randn" : "rand",
              ": expects a floating dtype, got ", opts.dtype);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, {opts.dtype, opts.device});
  uint64_t offset = g.reserve(kernels::random_fill_blocks(kind, opts.dtype, t.numel()));
  kernels::random_fill(opts.device, t, kind, 0.0, g.seed(), offset);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random(shape, opts, gen, kernels::RandomKind::Uniform);
}
Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random(shape, opts, gen, kernels::RandomKind::Normal);
}

}  // namespace lumen
