#pragma once
// Fused scaled dot-product attention: the scores never exist as a whole [BH, L, S] tensor.
// q [..., L, E], k [..., S, E], v [..., S, Ev], out [..., L, Ev] with the same batch dims (BH
// matrices in all), f32 or f64; each with a unit last stride and rows at least a row apart,
// any batch and row strides otherwise (MultiheadAttention's heads are transposed views).
//   s_ij = scale q_i . k_j + bias_ij   (-inf where the mask excludes j)
//   out_i = sum_j f_ij p_ij v_j,  p_ij = exp(s_ij - lse_i),  lse_i = log sum_j exp(s_ij)
// f_ij is dropout's factor (below; 1 without). lse [BH, L] (contiguous) is saved for the
// backward; a row that excludes every key has lse = -inf and out = 0 (and no gradient).
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/elementwise_ops.h"

namespace lumen::kernels {

// Where each matrix of t [B1, ..., Bk, rows, cols] starts, in elements from t's data: matrix b
// (row-major over B1..Bk) at sum_d b_d t.stride(d).
inline std::vector<int64_t> matrix_offsets(const Tensor& t) {
  const int64_t nb = t.dim() - 2;
  int64_t count = 1;
  for (int64_t d = 0; d < nb; ++d) count *= t.size(d);
  std::vector<int64_t> offsets(static_cast<size_t>(count));
  for (int64_t b = 0; b < count; ++b) {
    int64_t rest = b, off = 0;
    for (int64_t d = nb - 1; d >= 0; --d) {
      off += rest % t.size(d) * t.stride(d);
      rest /= t.size(d);
    }
    offsets[static_cast<size_t>(b)] = off;
  }
  return offsets;
}

struct AttentionParams {
  double scale = 1;
  bool causal = false;  // excludes j > i
  // bool (true attends) or of q's dtype (added), or undefined. Element (bh, i, j) is at
  // mask_offsets[bh] + i * mask_stride_i + j * mask_stride_j (broadcast dims have stride 0).
  Tensor mask;
  std::vector<int64_t> mask_offsets;
  int64_t mask_stride_i = 0, mask_stride_j = 0;
  // Dropout on the weights: p_ij becomes dropout(i, p_ij) with i = (bh L + i) S + j, the mask
  // nn::functional::dropout draws for the [BH, L, S] weights from the same (seed, offset).
  bool dropout = false;
  DropoutMask dropout_mask{0, 0, 0};
};

inline constinit OpKernel<void(const Tensor& out, const Tensor& lse, const Tensor& q,
                               const Tensor& k, const Tensor& v, const AttentionParams& p)>
    attention_forward{"attention_forward"};

// With dropout's factors f_ij (0 or 1 / (1 - p); 1 without dropout) and
// D_i = dout_i . out_i (= sum_j p_ij f_ij dout_i . v_j):
//   dv_j = sum_i p_ij f_ij dout_i     dp_ij = f_ij dout_i . v_j
//   ds_ij = p_ij (dp_ij - D_i)        (softmax's backward)
//   dq_i = scale sum_j ds_ij k_j      dk_j = scale sum_i ds_ij q_i
// Every output is written whole (no accumulation into what it held).
inline constinit OpKernel<void(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                               const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& out, const Tensor& lse,
                               const AttentionParams& p)>
    attention_backward{"attention_backward"};

}  // namespace lumen::kernels
