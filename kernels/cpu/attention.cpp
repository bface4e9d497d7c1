// Fused attention on the CPU, a block of kBlock query rows at a time: the block's scores
// (kBlock x S) are one GEMM (gemm.cpp), masked and exponentiated in place, and multiplied into v by
// a second; the backward recomputes them from the saved log-sum-exp. With the causal mask a
// block computes only the keys its last row can see.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/philox_words.h"
#include "kernels/simd_math.h"

namespace lumen::kernels {
namespace {

// The matrices of one operand [..., rows, cols] (kernels/attention.h): matrix bh starts at
// offsets[bh], its rows row_stride apart. T is const for an input.
template <class T>
struct Operand {
  T* data;
  std::vector<int64_t> offsets;
  int64_t row_stride, cols;
  explicit Operand(const Tensor& t)
      : data(t.data<std::remove_const_t<T>>()),
        offsets(matrix_offsets(t)),
        row_stride(t.size(-2) > 1 ? t.stride(-2) : t.size(-1)),
        cols(t.size(-1)) {}
  // Row i of matrix bh.
  T* row(int64_t bh, int64_t i) const {
    return data + offsets[static_cast<size_t>(bh)] + i * row_stride;
  }
  // Matrix bh from row i on, as the GEMM reads it.
  MatrixRef<std::remove_const_t<T>> from(int64_t bh, int64_t i) const {
    return {row(bh, i), row_stride, 1};
  }
  // Rows [i0, i0 + n) of matrix bh set to zero.
  void zero_rows(int64_t bh, int64_t i0, int64_t n) const {
    for (int64_t i = i0; i < i0 + n; ++i) std::fill_n(row(bh, i), cols, 0);
  }
};

constexpr int64_t kBlock = 64;

struct Dims {
  int64_t BH, L, S;
  Dims(const Tensor& q, const Tensor& k) : BH(1), L(q.size(-2)), S(k.size(-2)) {
    for (int64_t d = 0; d + 2 < q.dim(); ++d) BH *= q.size(d);
  }
  // Keys rows [i0, i1) may see: all, or with the causal mask those up to row i1 - 1.
  int64_t keys(const AttentionParams& p, int64_t i1) const {
    return p.causal ? std::min(S, i1) : S;
  }
};

// Row i's n raw scores q_i . k_j in place -> scale q_i . k_j + bias_ij, -inf where excluded.
template <class T>
void mask_scores(T* s, int64_t n, int64_t bh, int64_t i, const AttentionParams& p) {
  const T scale = static_cast<T>(p.scale), ninf = -std::numeric_limits<T>::infinity();
  const int64_t sj = p.mask_stride_j;
  if (!p.mask.defined()) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] *= scale;
    if (p.causal)
      for (int64_t j = i + 1; j < n; ++j) s[j] = ninf;
  } else if (p.mask.dtype() == DType::boolean) {
    const bool* m = p.mask.data<bool>() + p.mask_offsets[bh] + i * p.mask_stride_i;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] = m[j * sj] ? s[j] * scale : ninf;
  } else {
    const T* m = p.mask.data<T>() + p.mask_offsets[bh] + i * p.mask_stride_i;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] = s[j] * scale + m[j * sj];
  }
}

// s_j -> exp(s_j - shift) in place; returns their sum.
template <class T>
T exp_shifted(T* s, int64_t n, T shift) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    s[j] = math::exp(s[j] - shift);
    sum += s[j];
  }
  return sum;
}

// The dropout words of a block's `rows` rows, n keys each, into words[r * n + j]: row r's keys
// are stream positions first + r S + j. When every row takes all S keys the positions run on
// from row to row, and one bulk call draws them all (a call per row of a few dozen keys spent
// more on its start than on its words).
void block_dropout_words(const DropoutMask& dm, uint64_t first, int64_t rows, int64_t n, int64_t S,
                         uint32_t* words) {
  if (n == S) return cpu::philox_position_words(dm.seed, dm.offset, first, rows * S, words);
  for (int64_t r = 0; r < rows; ++r)
    cpu::philox_position_words(dm.seed, dm.offset, first + static_cast<uint64_t>(r * S), n,
                               words + r * n);
}

template <class T>
void forward_typed(const Tensor& out, const Tensor& lse_t, const Tensor& q_t, const Tensor& k_t,
                   const Tensor& v_t, const AttentionParams& p) {
  const Dims d(q_t, k_t);
  const Operand<const T> q(q_t), k(k_t), v(v_t);
  const Operand<T> o(out);
  T* lse = lse_t.data<T>();
  const int64_t blocks = (d.L + kBlock - 1) / kBlock;
  cpu::parallel_for(d.BH * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(kBlock * d.S), inv(kBlock);
    std::vector<uint32_t> words(p.dropout ? kBlock * d.S : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / blocks, i0 = task % blocks * kBlock;
      const int64_t rows = std::min(kBlock, d.L - i0), n = d.keys(p, i0 + rows);
      if (n == 0) {
        o.zero_rows(bh, i0, rows);
        std::fill_n(lse + bh * d.L + i0, rows, -std::numeric_limits<T>::infinity());
        continue;
      }
      gemm<T>(rows, n, q.cols, q.from(bh, i0), k.from(bh, 0).transposed(), scratch.data(), n);
      if (p.dropout)
        block_dropout_words(p.dropout_mask, static_cast<uint64_t>((bh * d.L + i0) * d.S), rows, n,
                            d.S, words.data());
      for (int64_t r = 0; r < rows; ++r) {
        T* row = scratch.data() + r * n;
        mask_scores(row, n, bh, i0 + r, p);
        const T m = *std::max_element(row, row + n);
        if (m == -std::numeric_limits<T>::infinity()) {  // no key: out 0
          std::fill_n(row, n, T(0));
          lse[bh * d.L + i0 + r] = m;
          inv[r] = 0;
          continue;
        }
        const T sum = exp_shifted(row, n, m);
        lse[bh * d.L + i0 + r] = m + std::log(sum);
        inv[r] = T(1) / sum;
        if (p.dropout) {
          const uint32_t* w = words.data() + r * n;
          for (int64_t j = 0; j < n; ++j) row[j] = p.dropout_mask.given(w[j], row[j]);
        }
      }
      gemm<T>(rows, v.cols, n, {scratch.data(), n, 1}, v.from(bh, 0), o.row(bh, i0), o.row_stride);
      for (int64_t r = 0; r < rows; ++r) {
        T* o_r = o.row(bh, i0 + r);
#pragma omp simd
        for (int64_t c = 0; c < o.cols; ++c) o_r[c] *= inv[r];
      }
    }
  });
}

// One (batch, head) at a time, so its dk and dv accumulate over the query blocks unshared.
template <class T>
void backward_typed(const Tensor& dq_t, const Tensor& dk_t, const Tensor& dv_t,
                    const Tensor& dout_t, const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                    const Tensor& out_t, const Tensor& lse_t, const AttentionParams& p) {
  const Dims d(q_t, k_t);
  const Operand<const T> q(q_t), k(k_t), v(v_t), dout(dout_t), out(out_t);
  const Operand<T> dq(dq_t), dk(dk_t), dv(dv_t);
  const T* lse = lse_t.data<T>();
  const T scale = static_cast<T>(p.scale);
  cpu::parallel_for(d.BH, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> prob(kBlock * d.S), dprob(kBlock * d.S);
    std::vector<uint32_t> words(p.dropout ? kBlock * d.S : 0);
    for (int64_t bh = begin; bh < end; ++bh) {
      dk.zero_rows(bh, 0, d.S);
      dv.zero_rows(bh, 0, d.S);
      for (int64_t i0 = 0; i0 < d.L; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, d.L - i0), n = d.keys(p, i0 + rows);
        const int64_t at = bh * d.L + i0;
        if (n == 0) {
          dq.zero_rows(bh, i0, rows);
          continue;
        }
        gemm<T>(rows, n, q.cols, q.from(bh, i0), k.from(bh, 0).transposed(), prob.data(), n);
        gemm<T>(rows, n, v.cols, dout.from(bh, i0), v.from(bh, 0).transposed(), dprob.data(), n);
        if (p.dropout)
          block_dropout_words(p.dropout_mask, static_cast<uint64_t>(at * d.S), rows, n, d.S,
                              words.data());
        for (int64_t r = 0; r < rows; ++r) {
          T *pr_r = prob.data() + r * n, *dp_r = dprob.data() + r * n;
          const T l = lse[at + r];
          if (l == -std::numeric_limits<T>::infinity()) {  // no key: no gradient
            std::fill_n(pr_r, n, T(0));
            std::fill_n(dp_r, n, T(0));
            continue;
          }
          mask_scores(pr_r, n, bh, i0 + r, p);
          exp_shifted(pr_r, n, l);
          const T* do_r = dout.row(bh, i0 + r);
          const T* o_r = out.row(bh, i0 + r);
          T D = 0;
#pragma omp simd reduction(+ : D)
          for (int64_t c = 0; c < out.cols; ++c) D += do_r[c] * o_r[c];
          if (p.dropout) {
            // dv takes the dropped weights f p; ds the kept ones p.
            const uint32_t* w = words.data() + r * n;
            for (int64_t j = 0; j < n; ++j) {
              const T f = p.dropout_mask.given(w[j], T(1));
              dp_r[j] = pr_r[j] * (f * dp_r[j] - D);
              pr_r[j] *= f;
            }
            continue;
          }
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) dp_r[j] = pr_r[j] * (dp_r[j] - D);
        }
        // dv += P^T dO, dq = scale dP k, dk += scale dP^T q (P^T and dP^T read in place).
        gemm<T>(n, dv.cols, rows, {prob.data(), 1, n}, dout.from(bh, i0), dv.row(bh, 0),
                dv.row_stride, T(1), /*accumulate=*/true);
        gemm<T>(rows, dq.cols, n, {dprob.data(), n, 1}, k.from(bh, 0), dq.row(bh, i0),
                dq.row_stride, scale);
        gemm<T>(n, dk.cols, rows, {dprob.data(), 1, n}, q.from(bh, i0), dk.row(bh, 0),
                dk.row_stride, scale, /*accumulate=*/true);
      }
    }
  });
}

void attention_forward_cpu(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, const AttentionParams& p) {
  if (q.dtype() == DType::f64)
    forward_typed<double>(out, lse, q, k, v, p);
  else
    forward_typed<float>(out, lse, q, k, v, p);
}

void attention_backward_cpu(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                            const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse, const AttentionParams& p) {
  if (q.dtype() == DType::f64)
    backward_typed<double>(dq, dk, dv, dout, q, k, v, out, lse, p);
  else
    backward_typed<float>(dq, dk, dv, dout, q, k, v, out, lse, p);
}

}  // namespace

LUMEN_REGISTER_KERNEL(attention_forward, CPU, attention_forward_cpu);
LUMEN_REGISTER_KERNEL(attention_backward, CPU, attention_backward_cpu);

}  // namespace lumen::kernels
