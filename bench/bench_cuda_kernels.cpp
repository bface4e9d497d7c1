// CUDA kernel micro-benchmarks: elementwise GB/s (every byte read and written counted once)
// beside the device-to-device copy, the bandwidth bound they are measured against; softmax and
// cross entropy rows; GEMM TFLOP/s through cuBLAS in f32, f16 and bf16; batch norm, embedding
// backward, full sums and gradient clipping (bench/gpu_compare.sh prints PyTorch's figures for
// the same work). Each iteration waits for
// the device. Skips without a GPU; has no benchmark in a build without CUDA.
#include <benchmark/benchmark.h>

#include "kernels/index.h"
#include "lumen/lumen.h"
#if LUMEN_CUDA
#include <cuda_runtime.h>
#endif

using namespace lumen;

namespace {

#if LUMEN_CUDA
bool have_gpu(benchmark::State& state) {
  if (cuda_is_available()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

void set_gbps(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(
      bytes_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

Tensor on_gpu(const Shape& shape, DType dtype = DType::f32) {
  return randn(shape).to(dtype).to(Device::cuda());
}

// The reference: cudaMemcpy device to device, n floats read and written.
void BM_CudaCopyD2D(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  Tensor a = on_gpu({n}), b = on_gpu({n});
  for (auto _ : state) {
    cudaMemcpyAsync(b.data_ptr(), a.data_ptr(), n * sizeof(float), cudaMemcpyDeviceToDevice, 0);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 2.0 * n * sizeof(float));
}
BENCHMARK(BM_CudaCopyD2D)->Arg(1 << 24)->Arg(1 << 26)->UseRealTime();

// a + b, contiguous: the packed kernel (16-byte loads).
void BM_CudaAdd(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  Tensor a = on_gpu({n}), b = on_gpu({n});
  for (auto _ : state) {
    Tensor c = a + b;
    cudaDeviceSynchronize();
  }
  set_gbps(state, 3.0 * n * sizeof(float));
}
BENCHMARK(BM_CudaAdd)->Arg(1 << 24)->Arg(1 << 26)->UseRealTime();

// [rows, cols] + [cols]: the strided (broadcast) kernel.
void BM_CudaAddBias(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor a = on_gpu({rows, cols}), b = on_gpu({cols});
  for (auto _ : state) {
    Tensor c = a + b;
    cudaDeviceSynchronize();
  }
  set_gbps(state, (2.0 * rows * cols + cols) * sizeof(float));
}
BENCHMARK(BM_CudaAddBias)->Args({8192, 4096})->UseRealTime();

void BM_CudaRelu(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  Tensor a = on_gpu({n});
  for (auto _ : state) {
    Tensor c = relu(a);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 2.0 * n * sizeof(float));
}
BENCHMARK(BM_CudaRelu)->Arg(1 << 26)->UseRealTime();

// Rows of `cols` logits: softmax reads and writes each once.
void BM_CudaSoftmax(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor x = on_gpu({rows, cols});
  for (auto _ : state) {
    Tensor y = softmax(x, 1);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 2.0 * rows * cols * sizeof(float));
}
BENCHMARK(BM_CudaSoftmax)->Args({65536, 10})->Args({4096, 32768})->UseRealTime();

// A column sum (the bias gradient of a linear layer): [rows, cols] -> [cols].
void BM_CudaSumRows(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor x = on_gpu({rows, cols});
  for (auto _ : state) {
    Tensor y = sum(x, {0});
    cudaDeviceSynchronize();
  }
  set_gbps(state, 1.0 * rows * cols * sizeof(float));
}
BENCHMARK(BM_CudaSumRows)->Args({256, 4096})->Args({8192, 4096})->UseRealTime();

// n x n x n GEMM, 2 n^3 flops; dtype 0 f32, 1 f16, 2 bf16.
void BM_CudaMatmul(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  const DType dt = state.range(1) == 0   ? DType::f32
                   : state.range(1) == 1 ? DType::f16
                                         : DType::bf16;
  Tensor a = on_gpu({n, n}, dt), b = on_gpu({n, n}, dt);
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    cudaDeviceSynchronize();
  }
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n * 1e-12 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.SetLabel(dtype_name(dt));
}
BENCHMARK(BM_CudaMatmul)
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->Args({8192, 1})
    ->Args({8192, 2})
    ->UseRealTime();

// A linear layer's forward, [rows, in] x [out, in]^T + bias then ReLU, in f16: fused (the
// cuBLASLt epilogue, arg 1) against the GEMM and two elementwise passes (arg 0).
void BM_CudaLinearRelu(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t rows = 256, n = 4096;
  const bool fused = state.range(0) == 1;
  Tensor x = on_gpu({rows, n}, DType::f16), w = on_gpu({n, n}, DType::f16),
         b = on_gpu({n}, DType::f16);
  namespace F = nn::functional;
  for (auto _ : state) {
    Tensor y = fused ? F::linear(x, w, b, F::Activation::ReLU) : relu(F::linear(x, w) + b);
    cudaDeviceSynchronize();
  }
  state.counters["TFLOP/s"] =
      benchmark::Counter(2.0 * rows * n * n * 1e-12 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.SetLabel(fused ? "fused epilogue" : "gemm + add + relu");
}
BENCHMARK(BM_CudaLinearRelu)->Arg(0)->Arg(1)->UseRealTime();

// f32 -> f16 cast, the packed cast kernel: 4 bytes read and 2 written per element.
void BM_CudaCastToHalf(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  Tensor a = on_gpu({n});
  for (auto _ : state) {
    Tensor c = a.to(DType::f16);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 6.0 * n);
}
BENCHMARK(BM_CudaCastToHalf)->Arg(1 << 26)->UseRealTime();

// Dropout (mask from Philox, not stored) plus a residual: x and r read, out written.
void BM_CudaDropoutAdd(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const int64_t n = state.range(0);
  Tensor x = on_gpu({n}), r = on_gpu({n});
  for (auto _ : state) {
    Tensor c = nn::functional::dropout_add(x, r, 0.1);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 3.0 * n * sizeof(float));
}
BENCHMARK(BM_CudaDropoutAdd)->Arg(1 << 26)->UseRealTime();

// Training-mode batch norm forward and backward (cuDNN for f32) on [256, 64, 32, 32] with
// weight, bias and running statistics, as a BatchNorm2d layer of a CNN runs it.
void BM_CudaBatchNormTrain(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor x = on_gpu({256, 64, 32, 32}).requires_grad_(true), dy = on_gpu({256, 64, 32, 32});
  Tensor w = on_gpu({64}).requires_grad_(true), b = on_gpu({64}).requires_grad_(true);
  Tensor rm = zeros({64}, {DType::f32, Device::cuda()}),
         rv = ones({64}, {DType::f32, Device::cuda()});
  for (auto _ : state) {
    Tensor y = nn::functional::batch_norm(x, rm, rv, w, b, true);
    (y * dy).sum().backward();
    cudaDeviceSynchronize();
  }
  state.SetLabel("forward + backward, f32");
}
BENCHMARK(BM_CudaBatchNormTrain)->UseRealTime()->Unit(benchmark::kMillisecond);

// The embedding backward of 16384 tokens over a 32000 x 768 table (a language model's input
// layer): rows sorted by index, each run summed in order.
void BM_CudaEmbeddingBackward(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor ids = (rand({16384}) * 32000.0).to(DType::i64).to(Device::cuda());
  Tensor grad = on_gpu({16384, 768}), gw = zeros({32000, 768}, {DType::f32, Device::cuda()});
  for (auto _ : state) {
    kernels::embedding_backward(Device::cuda(), gw, grad, ids, -1);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 2.0 * 16384 * 768 * sizeof(float));
}
BENCHMARK(BM_CudaEmbeddingBackward)->UseRealTime();

// Softmax over the class dim of [32, 21, 128, 128] (segmentation logits): rows 16384 apart,
// a thread per row.
void BM_CudaSoftmaxChannels(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor x = on_gpu({32, 21, 128, 128});
  for (auto _ : state) {
    Tensor y = softmax(x, 1);
    cudaDeviceSynchronize();
  }
  set_gbps(state, 2.0 * x.numel() * sizeof(float));
}
BENCHMARK(BM_CudaSoftmaxChannels)->UseRealTime();

// A full sum (one output, split across blocks).
void BM_CudaSumAll(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor x = on_gpu({state.range(0)});
  for (auto _ : state) {
    Tensor y = x.sum();
    cudaDeviceSynchronize();
  }
  set_gbps(state, 1.0 * x.numel() * sizeof(float));
}
BENCHMARK(BM_CudaSumAll)->Arg(1 << 26)->UseRealTime();

// clip_grad_norm_ over 64 gradients of 1 M elements: one fused norm kernel, then one scaling
// pass per gradient.
void BM_CudaClipGradNorm(benchmark::State& state) {
  if (!have_gpu(state)) return;
  std::vector<Tensor> params;
  for (int i = 0; i < 64; ++i) {
    params.push_back(zeros({1 << 20}, {DType::f32, Device::cuda()}).requires_grad_(true));
    params.back().set_grad(on_gpu({1 << 20}));
  }
  for (auto _ : state) {
    optim::clip_grad_norm_(params, 1e9);  // a coefficient of 1: the gradients stay as they are
    cudaDeviceSynchronize();
  }
  set_gbps(state, 3.0 * 64 * (1 << 20) * sizeof(float));  // read for the norm, read + write
}
BENCHMARK(BM_CudaClipGradNorm)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
