// CUDA linear layer forward through cuBLASLt (kernels/linalg.h): the GEMM writes
// act(a @ b + bias) itself, through an epilogue, instead of leaving the bias add and the
// activation to passes of their own. Epilogues used:
//   BIAS            out = z
//   RELU_BIAS       out = max(z, 0)
//   GELU_BIAS       out = gelu_tanh(z)          (cuBLASLt's GELU is the tanh approximation)
//   GELU_AUX_BIAS   the same, and z written to `pre` for the backward
// with z = a @ b + bias. Everything else (erf GELU, f64, unaligned pointers, an auxiliary
// leading dimension cuBLASLt does not take, no algorithm offered) runs linear_by_parts: the
// cuBLAS GEMM and one fused add_act pass. The row-major trick is matmul.cpp's: cuBLASLt computes
// the column-major D^T [N, M] = B^T A^T, whose rows are the output features, which is the
// axis cuBLASLt broadcasts its bias vector along.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "kernels/cuda/algo_cache.h"
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/library_handle.h"
#include "kernels/linalg.h"

namespace lumen::kernels {
namespace {

cublasLtHandle_t cublaslt_handle(int device) {
  return cuda::per_device_handle<cublasLtHandle_t>(device, "cuBLASLt", [] {
    cublasLtHandle_t h;
    LUMEN_CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  });
}

// Workspace offered to cuBLASLt per call (PyTorch offers 1 MiB; split-K kernels like more).
constexpr size_t kWorkspaceBytes = size_t{4} << 20;

// The epilogue for this call, or nullopt where cuBLASLt has none that matches. The GELU ones
// serve 16-bit outputs only: cuBLASLt may evaluate their tanh with the hardware approximation
// (CUTLASS's epilogues use tanh.approx.f32, about 2^-11 relative), below f16/bf16 rounding but
// not f32's, where the separate pass computes the GELU as the CPU and PyTorch do.
std::optional<cublasLtEpilogue_t> epilogue_for(bool bias, std::optional<UnaryArgs> act, bool pre,
                                               DType dt) {
  if (!act) return bias && !pre ? std::optional(CUBLASLT_EPILOGUE_BIAS) : std::nullopt;
  if (act->op == UnaryOp::Relu && !pre)
    return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  if (act->op == UnaryOp::GeluTanh && is_16bit_float(dt)) {
    if (pre) return bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  }
  return std::nullopt;
}

// Descriptors of one call, destroyed with the object.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  LtDescriptors() = default;
  LtDescriptors(const LtDescriptors&) = delete;
  LtDescriptors& operator=(const LtDescriptors&) = delete;
  ~LtDescriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

template <class V>
void set_attr(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const V& v) {
  LUMEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, &v, sizeof(v)));
}

// The cache key: device, dtype, epilogue, M, N, K, both transposes and leading dims, and the
// alignment class of each pointer. Every pointer on this path is 16-byte aligned; cuBLASLt's
// heuristic assumes 256 for the matrices unless told otherwise and reads the bias and aux
// pointers' alignment from their values, so an algorithm chosen for 256-aligned buffers is not
// reused for a row slice that is only 16-aligned.
using AlgoKey = std::tuple<int, int, int, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t,
                           std::array<uint32_t, 5>>;

uint32_t alignment_class(const Tensor& t) {
  return !t.defined() || reinterpret_cast<uintptr_t>(t.data_ptr()) % 256 == 0 ? 256 : 16;
}

void linear_cuda(const Tensor& out, const Tensor& pre, const Tensor& a, const Tensor& b,
                 const Tensor& bias, std::optional<UnaryArgs> act) {
  const Device dev = out.device();
  const DType dt = out.dtype();
  const auto epilogue = epilogue_for(bias.defined(), act, pre.defined(), dt);
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  auto aligned = [](const Tensor& t) {
    return !t.defined() || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  };
  const bool lt_dtype = dt == DType::f32 || dt == DType::f16 || dt == DType::bf16;
  const bool usable = epilogue && lt_dtype && m > 0 && n > 0 && k > 0 && aligned(out) &&
                      aligned(pre) && aligned(a) && aligned(b) && aligned(bias) &&
                      (!pre.defined() || n % 8 == 0) && std::max({m, n, k}) <= INT32_MAX;
  if (!usable) return linear_by_parts(dev, out, pre, a, b, bias, act);

  LUMEN_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaDataType_t type = dt == DType::f32   ? CUDA_R_32F
                              : dt == DType::f16 ? CUDA_R_16F
                                                 : CUDA_R_16BF;
  const GemmLayout la = gemm_layout(a), lb = gemm_layout(b);
  // Column-major: "A" is b ([N, K] as stored, or [K, N] read transposed), "B" is a.
  const cublasOperation_t op_a = lb.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t op_b = la.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  LtDescriptors d;
  LUMEN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_attr(d.op, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
  set_attr(d.op, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  set_attr(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, *epilogue);
  if (bias.defined()) set_attr(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias.data_ptr());
  if (pre.defined()) {
    set_attr(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, pre.data_ptr());
    set_attr(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, n);
  }
  LUMEN_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d.a, type, lb.row_major ? n : k, lb.row_major ? k : n, lb.ld));
  LUMEN_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d.b, type, la.row_major ? k : m, la.row_major ? m : k, la.ld));
  LUMEN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.d, type, n, m, n));

  cublasLtHandle_t h = cublaslt_handle(dev.index);
  // A is b, B is a, C and D are out (column-major view above).
  const std::array<uint32_t, 5> align{alignment_class(b), alignment_class(a), alignment_class(out),
                                      alignment_class(bias), alignment_class(pre)};
  const AlgoKey key{dev.index,
                    static_cast<int>(dt),
                    static_cast<int>(*epilogue),
                    m,
                    n,
                    k,
                    la.row_major,
                    lb.row_major,
                    la.ld,
                    lb.ld,
                    align};
  const std::optional<cublasLtMatmulAlgo_t> algo =
      cuda::cached_choice(key, [&]() -> std::optional<cublasLtMatmulAlgo_t> {
        LUMEN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
        const size_t ws = kWorkspaceBytes;
        LUMEN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        const cublasLtMatmulPreferenceAttributes_t min_alignment[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; ++i)
          LUMEN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
              d.pref, min_alignment[i], &align[std::min(i, 2)], sizeof(uint32_t)));
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        const cublasStatus_t st =
            cublasLtMatmulAlgoGetHeuristic(h, d.op, d.a, d.b, d.d, d.d, d.pref, 1, &result, &found);
        if (st == CUBLAS_STATUS_SUCCESS && found > 0) return result.algo;
        return std::nullopt;
      });
  if (!algo) return linear_by_parts(dev, out, pre, a, b, bias, act);

  Tensor workspace = empty({static_cast<int64_t>(kWorkspaceBytes)}, {DType::u8, dev});
  const float alpha = 1.0f, beta = 0.0f;
  LUMEN_CUBLAS_CHECK(cublasLtMatmul(h, d.op, &alpha, b.data_ptr(), d.a, a.data_ptr(), d.b, &beta,
                                    out.data_ptr(), d.d, out.data_ptr(), d.d, &*algo,
                                    workspace.data_ptr(), kWorkspaceBytes, 0));
}

}  // namespace

LUMEN_REGISTER_KERNEL(linear, CUDA, linear_cuda);

}  // namespace lumen::kernels
