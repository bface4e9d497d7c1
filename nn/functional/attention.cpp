#include "nn/functional/attention.h"

#include <cmath>
#include <limits>

#include "autograd/autocast_mode.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "nn/functional/dropout.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/linalg.h"
#include "nn/functional/reduction.h"
#include "nn/functional/softmax.h"

namespace lumen::nn::functional {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Shape batch_dims(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

struct Checked {
  Shape scores;  // [..., L, S]: the batch dims of q, k and v broadcast
  double scale;
};

// Every check of the arguments, for both paths.
Checked check(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  const char* op = "scaled_dot_product_attention";
  LUMEN_CHECK(q.defined() && k.defined() && v.defined(), op, ": got an undefined q, k or v");
  LUMEN_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, op,
              ": q, k and v must have at least 2 dims ([..., L, E], [..., S, E], [..., S, Ev]), "
              "got shapes ",
              ShapeStr{q.shape()}, ", ", ShapeStr{k.shape()}, ", ", ShapeStr{v.shape()});
  LUMEN_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(), op,
              ": q, k and v must share one floating dtype, got ", q.dtype(), ", ", k.dtype(), ", ",
              v.dtype());
  LUMEN_CHECK(k.device() == q.device() && v.device() == q.device(), op,
              ": q, k and v must be on one device, got ", q.device(), ", ", k.device(), ", ",
              v.device());
  LUMEN_CHECK(q.size(-1) > 0, op, ": q's embedding size E (its last dim) must be > 0, got q ",
              ShapeStr{q.shape()});
  LUMEN_CHECK(k.size(-1) == q.size(-1), op, ": k's last dim (", k.size(-1),
              ") must equal q's embedding size E = ", q.size(-1), " (q ", ShapeStr{q.shape()},
              ", k ", ShapeStr{k.shape()}, ")");
  LUMEN_CHECK(v.size(-2) == k.size(-2), op, ": v must have as many rows as k (S = ", k.size(-2),
              "), got v ", ShapeStr{v.shape()});
  Shape shape =
      broadcast_shapes(broadcast_shapes(batch_dims(q), batch_dims(k), op), batch_dims(v), op);
  shape.push_back(q.size(-2));
  shape.push_back(k.size(-2));
  const Tensor& mask = o.attn_mask;
  LUMEN_CHECK(!(o.is_causal && mask.defined()), op,
              ": give either is_causal or attn_mask, not both");
  if (mask.defined()) {
    // f32 besides q's dtype, as PyTorch: under autocast q becomes 16-bit, its mask stays f32.
    LUMEN_CHECK(
        mask.dtype() == DType::boolean || mask.dtype() == q.dtype() || mask.dtype() == DType::f32,
        op, ": attn_mask must be bool, f32 or of q's dtype ", q.dtype(), ", got ", mask.dtype());
    LUMEN_CHECK(mask.device() == q.device(), op, ": attn_mask is on ", mask.device(), ", q on ",
                q.device());
    bool fits = mask.dim() <= static_cast<int64_t>(shape.size());
    for (int64_t d = 1; fits && d <= mask.dim(); ++d)
      fits = mask.size(-d) == 1 || mask.size(-d) == shape[shape.size() - d];
    LUMEN_CHECK(fits, op, ": attn_mask of shape ", ShapeStr{mask.shape()},
                " must broadcast to the scores' shape [..., L, S] = ", ShapeStr{shape});
  }
  LUMEN_CHECK(o.dropout_p >= 0 && o.dropout_p < 1, op, ": dropout_p must lie in [0, 1), got ",
              o.dropout_p);
  const double scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  LUMEN_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  return {shape, scale};
}

// The composite of autograd ops (PyTorch's math path).
Tensor attention_math(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                      bool is_causal, double scale, double dropout_p, Generator* gen) {
  // sqrt(|scale|) on each side, as PyTorch's math path: 16-bit scores stay in range.
  const double root = std::sqrt(std::abs(scale));
  Tensor s = matmul(q * (scale < 0 ? -root : root), k.transpose(-2, -1) * root);
  Tensor excluded;  // bool, true where the query does not attend to the key
  if (is_causal) {
    excluded = causal_exclusions(q.size(-2), k.size(-2), q.device());
  } else if (mask.defined() && mask.dtype() == DType::boolean) {
    excluded = eq(mask, scalar_tensor(0, {DType::boolean, mask.device()}));
  } else if (mask.defined()) {
    s = s + mask;
  }
  if (excluded.defined()) s = masked_fill(s, excluded, -kInf);
  Tensor dead;  // rows with every key excluded: zeros out, no gradient
  if (mask.defined() || is_causal) {
    NoGradGuard no_grad;
    dead = eq(amax(s, {-1}, true), scalar_tensor(-kInf, {s.dtype(), s.device()}));
  }
  // A dead row's scores become 0 so softmax stays finite (its backward would spread NaN).
  if (dead.defined()) s = masked_fill(s, dead, 0.0);
  Tensor p = softmax(s, -1);
  if (dead.defined()) p = masked_fill(p, dead, 0.0);
  if (dropout_p > 0) p = dropout(p, dropout_p, true, gen);
  return matmul(p, v);
}

// The dtype the fused kernel computes in: f64 stays f64, everything else runs in f32.
DType kernel_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// t in `compute` as the fused kernel reads it: any batch and row strides, adjacent elements
// within a row.
Tensor kernel_operand(const Tensor& t, DType compute) {
  Tensor c = t.to(compute);
  const bool unit = c.size(-1) <= 1 || c.stride(-1) == 1;
  const bool rows_apart = c.size(-2) <= 1 || c.stride(-2) >= c.size(-1);
  return unit && rows_apart ? c : c.contiguous();
}

// A new [..., rows, cols] tensor of like's dtype and device, laid out as like: when like's rows
// interleave with the dim before them (a [B, L, H, D] buffer seen as [B, H, L, D], as
// MultiheadAttention's heads are), so do the new one's, and transposing it back is free.
Tensor empty_laid_out_as(const Tensor& like, int64_t cols) {
  Shape shape = like.shape();
  shape.back() = cols;
  const size_t n = shape.size();
  const TensorOptions options{like.dtype(), like.device()};
  if (n >= 3 && like.size(-3) > 1 && like.size(-2) > 1 && like.stride(-3) < like.stride(-2)) {
    std::swap(shape[n - 3], shape[n - 2]);
    return empty(shape, options).transpose(-3, -2);
  }
  return empty(shape, options);
}

// The fused kernel's parameters: the mask as a view over the scores' shape [..., L, S] and where
// each (batch, head) starts in it; dropout's draw, the blocks dropout() would reserve for the
// [..., L, S] weights.
kernels::AttentionParams fused_params(const Tensor& mask, bool is_causal, double scale,
                                      const Shape& shape, double dropout_p, Generator* gen,
                                      DType compute) {
  kernels::AttentionParams params;
  params.scale = scale;
  params.causal = is_causal;
  if (mask.defined()) {
    Shape full(shape.size() - static_cast<size_t>(mask.dim()), 1);
    full.insert(full.end(), mask.shape().begin(), mask.shape().end());
    Tensor m = (mask.dtype() == DType::boolean ? mask : mask.to(compute)).reshape(full);
    m = m.expand(shape);
    params.mask_offsets = kernels::matrix_offsets(m);
    params.mask_stride_i = m.stride(-2);
    params.mask_stride_j = m.stride(-1);
    params.mask = m;
  }
  if (dropout_p > 0) {
    Generator& g = gen ? *gen : default_generator();
    const auto n = static_cast<uint64_t>(numel_of(shape));
    const uint64_t offset =
        g.reserve(kernels::random_fill_blocks(kernels::RandomKind::Bernoulli, compute, n));
    params.dropout = true;
    params.dropout_mask = kernels::DropoutMask(dropout_p, g.seed(), offset);
  }
  return params;
}

// Where the fused backward writes dq, dk and dv, and the gradients it returns for the inputs
// its node was recorded on.
struct FusedGrads {
  Tensor dq, dk, dv;
  std::vector<Tensor> inputs;
};

// The fused kernel (kernels/attention.h) on kernel operands q, k and v, recorded on `inputs`
// with a backward that fills the tensors make_grads(q, k, v) gives.
template <class MakeGrads>
Tensor fused_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                     const kernels::AttentionParams& params, const std::vector<Tensor>& inputs,
                     MakeGrads make_grads) {
  Tensor out = empty_laid_out_as(q, v.size(-1));
  Tensor lse = empty({numel_of(batch_dims(q)), q.size(-2)}, {q.dtype(), q.device()});
  kernels::attention_forward(q.device(), out, lse, q, k, v, params);
  return autograd::record("scaled_dot_product_attention", out, inputs,
                          [q = q.detach(), k = k.detach(), v = v.detach(), o = out.detach(), lse,
                           params, make_grads](const Tensor& g, const autograd::NeedsGrad&) {
                            FusedGrads d = make_grads(q, k, v);
                            kernels::attention_backward(q.device(), d.dq, d.dk, d.dv,
                                                        kernel_operand(g, o.dtype()), q, k, v, o,
                                                        lse, params);
                            return d.inputs;
                          });
}

// The fused kernel on q, k and v in f32 (f64 stays f64), read in place where their layout
// allows; 16-bit inputs are widened and the result narrowed back. Under autocast the inputs are
// first rounded to the autocast dtype, as the composite's matmuls round them.
Tensor attention_fused(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                       const Tensor& mask, bool is_causal, double scale, const Shape& shape,
                       double dropout_p, Generator* gen) {
  const Tensor q = autocast::to_lower_precision(q_in), k = autocast::to_lower_precision(k_in),
               v = autocast::to_lower_precision(v_in);
  const DType dtype = q.dtype(), compute = kernel_dtype(dtype);
  const Tensor qf = kernel_operand(q, compute), kf = kernel_operand(k, compute),
               vf = kernel_operand(v, compute);
  auto grads = [](const Tensor& q, const Tensor& k, const Tensor& v) {
    Tensor dq = empty_laid_out_as(q, q.size(-1)), dk = empty_laid_out_as(k, k.size(-1)),
           dv = empty_laid_out_as(v, v.size(-1));
    return FusedGrads{dq, dk, dv, {dq, dk, dv}};
  };
  return fused_forward(qf, kf, vf,
                       fused_params(mask, is_causal, scale, shape, dropout_p, gen, compute),
                       {qf, kf, vf}, grads)
      .to(dtype);
}

// Head i of packed projections: [N, L, 3 E] -> the i-th [N, L, E] -> [N, H, L, E / H].
Tensor packed_heads(const Tensor& qkv, int64_t i, int64_t num_heads) {
  const int64_t N = qkv.size(0), L = qkv.size(1), E = qkv.size(2) / 3;
  return qkv.narrow(2, i * E, E).view({N, L, num_heads, E / num_heads}).transpose(1, 2);
}

// Whether the fused kernel serves these arguments: the device has it, and a mask needs no
// gradient (a learned bias passed as the mask takes the composite).
bool fused_serves(Device device, const Tensor& mask) {
  return kernels::attention_forward.has(device.type) &&
         !(mask.defined() && mask.requires_grad() && GradMode::is_enabled());
}

}  // namespace

Tensor causal_exclusions(int64_t L, int64_t S, Device device) {
  Tensor i = arange(static_cast<double>(L), {DType::i64, device}).view({L, 1});
  Tensor j = arange(static_cast<double>(S), {DType::i64, device}).view({1, S});
  return gt(j, i);
}

namespace detail {
Tensor scaled_dot_product_attention_math(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const AttentionOptions& o) {
  const Checked c = check(q, k, v, o);
  return attention_math(q, k, v, o.attn_mask, o.is_causal, c.scale, o.dropout_p, o.generator);
}
}  // namespace detail

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& o) {
  const Checked c = check(q, k, v, o);
  const Tensor& mask = o.attn_mask;
  // The fused kernel for unbroadcast batch dims, where it serves.
  if (fused_serves(q.device(), mask) && batch_dims(q) == batch_dims(k) &&
      batch_dims(k) == batch_dims(v))
    return attention_fused(q, k, v, mask, o.is_causal, c.scale, c.scores, o.dropout_p, o.generator);
  return attention_math(q, k, v, mask, o.is_causal, c.scale, o.dropout_p, o.generator);
}

Tensor scaled_dot_product_attention_packed(const Tensor& qkv, int64_t num_heads,
                                           const AttentionOptions& o) {
  LUMEN_CHECK(qkv.defined() && qkv.dim() == 3 && num_heads > 0 && qkv.size(2) > 0 &&
                  qkv.size(2) % (3 * num_heads) == 0,
              "scaled_dot_product_attention_packed: qkv must be [N, L, 3 * num_heads * D] with "
              "D > 0, got ",
              qkv.defined() ? ShapeStr{qkv.shape()} : ShapeStr{Shape{}},
              " and num_heads = ", num_heads);
  if (!fused_serves(qkv.device(), o.attn_mask))
    return scaled_dot_product_attention(packed_heads(qkv, 0, num_heads),
                                        packed_heads(qkv, 1, num_heads),
                                        packed_heads(qkv, 2, num_heads), o);
  const Tensor base = qkv.detach();
  const Checked c = check(packed_heads(base, 0, num_heads), packed_heads(base, 1, num_heads),
                          packed_heads(base, 2, num_heads), o);
  const Tensor p = autocast::to_lower_precision(qkv);
  const DType dtype = p.dtype(), compute = kernel_dtype(dtype);
  const Tensor pc = kernel_operand(p, compute), b = pc.detach();
  const int64_t N = qkv.size(0), L = qkv.size(1), E3 = qkv.size(2);
  // One gradient for qkv, the three heads' views into it.
  auto grads = [N, L, E3, num_heads](const Tensor& q, const Tensor&, const Tensor&) {
    Tensor d = empty({N, L, E3}, {q.dtype(), q.device()});
    return FusedGrads{packed_heads(d, 0, num_heads),
                      packed_heads(d, 1, num_heads),
                      packed_heads(d, 2, num_heads),
                      {d}};
  };
  return fused_forward(packed_heads(b, 0, num_heads), packed_heads(b, 1, num_heads),
                       packed_heads(b, 2, num_heads),
                       fused_params(o.attn_mask, o.is_causal, c.scale, c.scores, o.dropout_p,
                                    o.generator, compute),
                       {pc}, grads)
      .to(dtype);
}

}  // namespace lumen::nn::functional
