// CUDA matrix products through cuBLAS (kernels/linalg.h). cuBLAS is column-major; a row-major
// C = A B is the column-major C^T = B^T A^T, so each call passes B before A and a row-major
// operand as "not transposed" (its column-major reading is already its transpose). A
// column-major operand (a transposed view) is passed with CUBLAS_OP_T. The 16-bit types run on
// tensor cores with f32 accumulation (CUBLAS_COMPUTE_32F); f32 uses plain f32 arithmetic (no
// TF32, PyTorch's default for matmul).
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/library_handle.h"
#include "kernels/linalg.h"

namespace lumen::cuda {

cublasHandle_t cublas_handle(int device) {
  return per_device_handle<cublasHandle_t>(device, "cuBLAS", [] {
    cublasHandle_t h;
    LUMEN_CUBLAS_CHECK(cublasCreate(&h));
    LUMEN_CUBLAS_CHECK(cublasSetStream(h, 0));
    return h;
  });
}

}  // namespace lumen::cuda

namespace lumen::kernels {
namespace {

struct GemmTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
};

GemmTypes gemm_types(DType dt) {
  switch (dt) {
    case DType::f32:
      return {CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case DType::f64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F};
    case DType::f16:
      return {CUDA_R_16F, CUBLAS_COMPUTE_32F};
    case DType::bf16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F};
    default:
      detail::throw_error("matmul (CUDA): dtype ", dtype_name(dt),
                          " is not supported; expected f32, f64, f16 or bf16");
  }
}

int as_int(int64_t v, const char* what) {
  LUMEN_CHECK(v <= INT32_MAX, "matmul (CUDA): ", what, " ", v, " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

void matmul_cuda(const Tensor& out, const Tensor& a, const Tensor& b) {
  LUMEN_CHECK(out.is_contiguous() && gemm_layout_ok(a) && gemm_layout_ok(b),
              "matmul (CUDA kernel): operands must be BLAS-shaped and out contiguous; got strides ",
              ShapeStr{a.strides()}, " and ", ShapeStr{b.strides()}, " for shapes ",
              ShapeStr{a.shape()}, " and ", ShapeStr{b.shape()});
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  if (out.numel() == 0) return;
  const int dev = out.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  if (k == 0) {  // no products: zeros (cuBLAS would read C with beta = 0 undefined for k = 0)
    LUMEN_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.numel() * out.element_size(), 0));
    return;
  }
  const GemmTypes ty = gemm_types(out.dtype());
  const GemmLayout la = gemm_layout(a), lb = gemm_layout(b);
  const cublasOperation_t op_a = la.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t op_b = lb.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const bool f64 = out.dtype() == DType::f64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : &beta_f;
  const int64_t esize = static_cast<int64_t>(dtype_size(out.dtype()));

  // The last batch dim is one strided-batched call; the dims before it are a host loop.
  const int64_t nd = out.dim();
  const int64_t inner = nd > 2 ? out.size(nd - 3) : 1;
  const int64_t s_out = nd > 2 ? out.stride(nd - 3) : 0, s_a = nd > 2 ? a.stride(nd - 3) : 0,
                s_b = nd > 2 ? b.stride(nd - 3) : 0;
  const int64_t outer = inner == 0 ? 0 : out.numel() / (m * n * inner);
  cublasHandle_t h = cuda::cublas_handle(dev);
  for (int64_t i = 0; i < outer; ++i) {
    int64_t off_out = 0, off_a = 0, off_b = 0;
    for (int64_t d = nd - 4, rest = i; d >= 0; --d) {
      const int64_t idx = rest % out.size(d);
      rest /= out.size(d);
      off_out += idx * out.stride(d);
      off_a += idx * a.stride(d);
      off_b += idx * b.stride(d);
    }
    const auto* pa = static_cast<const char*>(a.data_ptr()) + off_a * esize;
    const auto* pb = static_cast<const char*>(b.data_ptr()) + off_b * esize;
    auto* po = static_cast<char*>(out.data_ptr()) + off_out * esize;
    LUMEN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, op_b, op_a, as_int(n, "N"), as_int(m, "M"), as_int(k, "K"), alpha, pb, ty.data,
        as_int(lb.ld, "ldb"), s_b, pa, ty.data, as_int(la.ld, "lda"), s_a, beta, po, ty.data,
        as_int(n, "N"), s_out, as_int(inner, "batch"), ty.compute, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

LUMEN_REGISTER_KERNEL(matmul, CUDA, matmul_cuda);

}  // namespace lumen::kernels
