// Max pooling throughput on the CPU for the Fashion-MNIST CNN's two pooling layers (2x2,
// stride 2) and an overlapping 3x3 stride-2 ResNet stem pool, forward and forward + backward.
// GB/s counts the input read once and the output and indices written once.
#include <benchmark/benchmark.h>

#include <sstream>

#include "lumen/lumen.h"

using namespace lumen;
namespace F = lumen::nn::functional;

namespace {

struct Pool {
  int64_t n, c, h, w, k, stride, pad;
  int64_t oh() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t ow() const { return (w + 2 * pad - k) / stride + 1; }
  double bytes() const { return 4.0 * n * c * h * w + 12.0 * n * c * oh() * ow(); }
};

const Pool kPools[] = {
    {128, 32, 28, 28, 2, 2, 0}, {128, 64, 14, 14, 2, 2, 0}, {8, 64, 112, 112, 3, 2, 1}};

void label(benchmark::State& state, const Pool& p) {
  std::ostringstream os;
  os << "N" << p.n << " C" << p.c << " " << p.h << "x" << p.w << " k" << p.k << " s" << p.stride;
  state.SetLabel(os.str());
  state.counters["GB/s"] = benchmark::Counter(
      p.bytes() * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_MaxPool2dForward(benchmark::State& state) {
  const Pool& p = kPools[state.range(0)];
  Tensor x = randn({p.n, p.c, p.h, p.w});
  for (auto _ : state) {
    Tensor y = F::max_pool2d(x, {p.k, p.k}, {{p.stride, p.stride}}, {p.pad, p.pad});
    benchmark::DoNotOptimize(y.data_ptr());
  }
  label(state, p);
}
BENCHMARK(BM_MaxPool2dForward)->DenseRange(0, 2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_MaxPool2dTrainStep(benchmark::State& state) {
  const Pool& p = kPools[state.range(0)];
  Tensor x = randn({p.n, p.c, p.h, p.w}).requires_grad_();
  for (auto _ : state) {
    Tensor y = F::max_pool2d(x, {p.k, p.k}, {{p.stride, p.stride}}, {p.pad, p.pad});
    y.backward(ones_like(y));
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.set_grad({});
  }
  label(state, p);
}
BENCHMARK(BM_MaxPool2dTrainStep)->DenseRange(0, 2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
