// Matrix-product throughput on the CPU (kernels/cpu/gemm.cpp): square sizes, and the shapes a
// small MLP trains with (linear layer forward x W^T, and its two backward products).
#include <benchmark/benchmark.h>

#include "lumen/lumen.h"

using namespace lumen;

namespace {

void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_MatmulSquare(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = randn({n, n}), b = randn({n, n});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_MatmulSquare)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();

// Batch x in -> out: forward x W^T (a transposed operand, no copy), and the backward products
// dX = dY W and dW = dY^T X.
void BM_LinearForward(benchmark::State& state) {
  const int64_t batch = state.range(0), in = state.range(1), out = state.range(2);
  Tensor x = randn({batch, in}), w = randn({out, in});
  for (auto _ : state) {
    Tensor y = matmul(x, w.t());
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_gflops(state, 2.0 * batch * in * out);
}

void BM_LinearBackward(benchmark::State& state) {
  const int64_t batch = state.range(0), in = state.range(1), out = state.range(2);
  Tensor x = randn({batch, in}), w = randn({out, in}), gy = randn({batch, out});
  for (auto _ : state) {
    Tensor gx = matmul(gy, w);
    Tensor gw = matmul(gy.t(), x);
    benchmark::DoNotOptimize(gx.data_ptr());
    benchmark::DoNotOptimize(gw.data_ptr());
  }
  set_gflops(state, 4.0 * batch * in * out);
}

void mlp_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "in", "out"});
  b->Args({128, 784, 256})->Args({128, 256, 10})->Args({512, 1024, 1024})->Args({64, 4096, 4096});
  b->UseRealTime();
}
BENCHMARK(BM_LinearForward)->Apply(mlp_shapes);
BENCHMARK(BM_LinearBackward)->Apply(mlp_shapes);

// Many small products (attention-sized heads): one batch per thread.
void BM_MatmulBatched(benchmark::State& state) {
  const int64_t batch = state.range(0), n = state.range(1);
  Tensor a = randn({batch, n, n}), b = randn({batch, n, n});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gflops(state, 2.0 * batch * n * n * n);
}
BENCHMARK(BM_MatmulBatched)
    ->ArgNames({"batch", "n"})
    ->Args({256, 16})
    ->Args({64, 64})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
