// Elementwise throughput on the CPU in GB/s, counting every byte read and written once.
#include <benchmark/benchmark.h>

#include "lumen/lumen.h"

using namespace lumen;

namespace {

void set_gbps(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(
      bytes_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Read a and b, write c: 3 n floats.
void BM_Add(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = randn({n}), b = randn({n});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, 3.0 * n * sizeof(float));
}
BENCHMARK(BM_Add)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();

// [rows, cols] + [cols] (a bias row): read the matrix and the row once, write the matrix.
void BM_AddBroadcastRow(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor a = randn({rows, cols}), b = randn({cols});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, (2.0 * rows * cols + cols) * sizeof(float));
}
BENCHMARK(BM_AddBroadcastRow)->Args({4096, 1024})->Args({1024, 16})->UseRealTime();

// [rows, cols] + [rows, 1] (a per-row scalar): the inner operand has stride 0.
void BM_AddBroadcastColumn(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor a = randn({rows, cols}), b = randn({rows, 1});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, (2.0 * rows * cols + rows) * sizeof(float));
}
BENCHMARK(BM_AddBroadcastColumn)->Args({4096, 1024})->UseRealTime();

// One unary op over n floats (positive ones for `positive`): read n, write n.
void BM_Unary(benchmark::State& state, Tensor (*op)(const Tensor&), bool positive = false) {
  const int64_t n = state.range(0);
  Tensor a = positive ? abs(randn({n})) : randn({n});
  for (auto _ : state) {
    Tensor c = op(a);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, 2.0 * n * sizeof(float));
}
BENCHMARK_CAPTURE(BM_Unary, relu, lumen::relu)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();
// The transcendental ones (kernels/simd_math.h); bench/pytorch_elementwise.py times the same.
BENCHMARK_CAPTURE(BM_Unary, exp, lumen::exp)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, log, lumen::log, true)->Arg(1 << 20)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, sigmoid, lumen::sigmoid)->Arg(1 << 20)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, tanh, lumen::tanh)->Arg(1 << 20)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, gelu, [](const Tensor& x) { return gelu(x); })
    ->Arg(1 << 20)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, gelu_tanh, [](const Tensor& x) { return gelu(x, "tanh"); })
    ->Arg(1 << 20)
    ->UseRealTime();

// Softmax over rows of `cols`: read and write rows * cols floats.
void BM_Rows(benchmark::State& state, Tensor (*op)(const Tensor&, int64_t)) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor a = randn({rows, cols});
  for (auto _ : state) {
    Tensor c = op(a, 1);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, 2.0 * rows * cols * sizeof(float));
}
BENCHMARK_CAPTURE(BM_Rows, softmax, lumen::softmax)->Args({4096, 256})->UseRealTime();
BENCHMARK_CAPTURE(BM_Rows, log_softmax, lumen::log_softmax)->Args({4096, 256})->UseRealTime();
BENCHMARK_CAPTURE(BM_Rows, layer_norm,
                  [](const Tensor& x, int64_t) {
                    return nn::functional::layer_norm(x, {x.size(1)});
                  })
    ->Args({4096, 256})
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Unary, dropout,
                  [](const Tensor& x) { return nn::functional::dropout(x, 0.1); })
    ->Arg(1 << 20)
    ->UseRealTime();

// GELU forward and backward (a training step's share): reads x and the gradient, writes y and
// the input gradient.
void BM_GeluTrain(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor x = randn({n}).requires_grad_(true), g = randn({n});
  for (auto _ : state) {
    x.set_grad(Tensor());
    gelu(x).backward(g);
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  set_gbps(state, 4.0 * n * sizeof(float));
}
BENCHMARK(BM_GeluTrain)->Arg(1 << 20)->UseRealTime();

// Layer norm over rows of 256 with weight and bias, forward and backward.
void BM_LayerNormTrain(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor x = randn({rows, cols}).requires_grad_(true), g = randn({rows, cols});
  Tensor w = randn({cols}).requires_grad_(true), b = randn({cols}).requires_grad_(true);
  for (auto _ : state) {
    for (Tensor* t : {&x, &w, &b}) t->set_grad(Tensor());
    nn::functional::layer_norm(x, {cols}, w, b).backward(g);
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  set_gbps(state, 4.0 * rows * cols * sizeof(float));
}
BENCHMARK(BM_LayerNormTrain)->Args({4096, 256})->UseRealTime();

// A transpose made contiguous: reads with a large stride, writes in order.
void BM_TransposeCopy(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = randn({n, n});
  for (auto _ : state) {
    Tensor c = a.t().contiguous();
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_gbps(state, 2.0 * n * n * sizeof(float));
}
BENCHMARK(BM_TransposeCopy)->Arg(512)->Arg(2048)->UseRealTime();

// Casts between f32 and the 16-bit types (mixed precision's conversions): 4 + 2 bytes per element.
void BM_Cast(benchmark::State& state) {
  const int64_t n = state.range(0);
  const DType from = static_cast<DType>(state.range(1)), to = static_cast<DType>(state.range(2));
  Tensor a = randn({n}).to(from);
  for (auto _ : state) {
    Tensor c = a.to(to);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.SetLabel(std::string(dtype_name(from)) + " -> " + dtype_name(to));
  set_gbps(state, double(n) * double(dtype_size(from) + dtype_size(to)));
}
BENCHMARK(BM_Cast)
    ->ArgsProduct({{1 << 20}, {int64_t(DType::f32)}, {int64_t(DType::f16), int64_t(DType::bf16)}})
    ->ArgsProduct({{1 << 20}, {int64_t(DType::f16), int64_t(DType::bf16)}, {int64_t(DType::f32)}})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
