// Fused optimizer steps on the CPU in GB/s. An Adam(W) step reads p, g, m, v and writes p, m, v
// (7 floats per parameter), an SGD step with momentum reads p, g, buf and writes p, buf (5);
// unscaling reads and writes each gradient (2).
#include <benchmark/benchmark.h>

#include "kernels/optim.h"
#include "lumen/lumen.h"

using namespace lumen;

namespace {

// Parameters shaped like a Linear layer's weight, with random gradients already attached.
std::vector<Tensor> params_with_grads(int64_t n) {
  Tensor p = randn({n / 256, 256}).requires_grad_();
  p.set_grad(randn({n / 256, 256}));
  return {p};
}

template <class Optimizer, class Options>
void run_steps(benchmark::State& state, Options options, double floats_per_param) {
  const int64_t n = state.range(0);
  Optimizer opt(params_with_grads(n), options);
  opt.step();  // state tensors allocated outside the timed loop
  for (auto _ : state) opt.step();
  state.counters["GB/s"] =
      benchmark::Counter(floats_per_param * 4.0 * double(n) * double(state.iterations()) * 1e-9,
                         benchmark::Counter::kIsRate);
}

void BM_AdamWStep(benchmark::State& state) {
  run_steps<optim::AdamW>(state, optim::AdamWOptions{}, 7);
}
BENCHMARK(BM_AdamWStep)->Arg(1 << 18)->Arg(1 << 22)->UseRealTime();

void BM_SgdMomentumStep(benchmark::State& state) {
  optim::SGDOptions options;
  options.lr = 0.01;
  options.momentum = 0.9;
  run_steps<optim::SGD>(state, options, 5);
}
BENCHMARK(BM_SgdMomentumStep)->Arg(1 << 18)->Arg(1 << 22)->UseRealTime();

// GradScaler's unscale + inf/NaN check (kernels::unscale_grads): reads and writes each gradient.
// The scale is 1, so the gradients stay the same from one iteration to the next.
void BM_UnscaleGrads(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<Tensor> grads = {randn({n})};
  Tensor found_inf = zeros({1});
  for (auto _ : state) kernels::unscale_grads(Device::cpu(), grads, 1.0, found_inf);
  state.counters["GB/s"] = benchmark::Counter(8.0 * double(n) * double(state.iterations()) * 1e-9,
                                              benchmark::Counter::kIsRate);
}
BENCHMARK(BM_UnscaleGrads)->Arg(1 << 18)->Arg(1 << 22)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
