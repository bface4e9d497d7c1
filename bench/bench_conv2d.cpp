// 2-D convolution throughput on the CPU (im2col + GEMM; Winograd F(2x2, 3x3) for 3x3
// layers with 16+ input channels) for a few CNN layer shapes, forward and forward + backward.
#include <benchmark/benchmark.h>

#include <sstream>

#include "lumen/lumen.h"

using namespace lumen;
namespace F = lumen::nn::functional;

namespace {

struct Layer {
  int64_t n, c, h, w, o, k, stride, pad;
  int64_t oh() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t ow() const { return (w + 2 * pad - k) / stride + 1; }
  double flops() const { return 2.0 * n * o * oh() * ow() * c * k * k; }
};

// Fashion-MNIST CNN layers, a ResNet stem, and a ResNet stage-1 3x3 and 1x1.
const Layer kLayers[] = {
    {64, 1, 28, 28, 32, 3, 1, 1}, {64, 32, 14, 14, 64, 3, 1, 1}, {8, 3, 224, 224, 64, 7, 2, 3},
    {8, 64, 56, 56, 64, 3, 1, 1}, {8, 64, 56, 56, 256, 1, 1, 0},
};

void label(benchmark::State& state, const Layer& l) {
  std::ostringstream os;  // (string + string chains trip a GCC 12 -Wrestrict false positive)
  os << "N" << l.n << " C" << l.c << " " << l.h << "x" << l.w << " -> " << l.o << " k" << l.k
     << " s" << l.stride;
  state.SetLabel(os.str());
}

void BM_Conv2dForward(benchmark::State& state) {
  const Layer& l = kLayers[state.range(0)];
  Tensor x = randn({l.n, l.c, l.h, l.w}), w = randn({l.o, l.c, l.k, l.k}), b = randn({l.o});
  for (auto _ : state) {
    Tensor y = F::conv2d(x, w, b, {l.stride, l.stride}, {l.pad, l.pad});
    benchmark::DoNotOptimize(y.data_ptr());
  }
  label(state, l);
  state.counters["GFLOP/s"] = benchmark::Counter(
      l.flops() * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Conv2dForward)->DenseRange(0, 4)->UseRealTime()->Unit(benchmark::kMillisecond);

// Forward, then the gradients of input, weight and bias: three GEMM passes in all.
void BM_Conv2dTrainStep(benchmark::State& state) {
  const Layer& l = kLayers[state.range(0)];
  Tensor x = randn({l.n, l.c, l.h, l.w}).requires_grad_();
  Tensor w = randn({l.o, l.c, l.k, l.k}).requires_grad_(), b = randn({l.o}).requires_grad_();
  for (auto _ : state) {
    Tensor y = F::conv2d(x, w, b, {l.stride, l.stride}, {l.pad, l.pad});
    y.backward(ones_like(y));
    benchmark::DoNotOptimize(w.grad().data_ptr());
    x.set_grad({});
    w.set_grad({});
    b.set_grad({});
  }
  label(state, l);
  state.counters["GFLOP/s"] = benchmark::Counter(
      3 * l.flops() * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Conv2dTrainStep)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
