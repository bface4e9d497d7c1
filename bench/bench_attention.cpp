// Scaled dot-product attention on the CPU, forward and forward + backward (gradients of q, k
// and v), for a few transformer shapes, with and without the causal mask.
#include <benchmark/benchmark.h>

#include <sstream>

#include "lumen/lumen.h"

using namespace lumen;
namespace F = lumen::nn::functional;

namespace {

struct Shape4 {
  int64_t b, h, l, e;
  // Two GEMMs of L x L x E per head (the causal mask computes about half).
  double flops() const { return 4.0 * b * h * l * l * e; }
};

// A GPT-2-small block's attention at sequence 256 and 1024, and a short-sequence one.
const Shape4 kShapes[] = {{8, 12, 256, 64}, {1, 12, 1024, 64}, {64, 8, 64, 32}};

void label(benchmark::State& state, const Shape4& s, bool causal) {
  std::ostringstream os;
  os << "B" << s.b << " H" << s.h << " L" << s.l << " E" << s.e << (causal ? " causal" : "");
  state.SetLabel(os.str());
}

void BM_AttentionForward(benchmark::State& state) {
  const Shape4& s = kShapes[state.range(0)];
  const bool causal = state.range(1) != 0;
  Tensor q = randn({s.b, s.h, s.l, s.e}), k = randn({s.b, s.h, s.l, s.e}),
         v = randn({s.b, s.h, s.l, s.e});
  for (auto _ : state) {
    Tensor y = F::scaled_dot_product_attention(q, k, v, {.is_causal = causal});
    benchmark::DoNotOptimize(y.data_ptr());
  }
  label(state, s, causal);
}
BENCHMARK(BM_AttentionForward)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_AttentionTrainStep(benchmark::State& state) {
  const Shape4& s = kShapes[state.range(0)];
  const bool causal = state.range(1) != 0;
  Tensor q = randn({s.b, s.h, s.l, s.e}).requires_grad_(),
         k = randn({s.b, s.h, s.l, s.e}).requires_grad_(),
         v = randn({s.b, s.h, s.l, s.e}).requires_grad_();
  for (auto _ : state) {
    Tensor y = F::scaled_dot_product_attention(q, k, v, {.is_causal = causal});
    y.backward(ones_like(y));
    benchmark::DoNotOptimize(q.grad().data_ptr());
    q.set_grad({});
    k.set_grad({});
    v.set_grad({});
  }
  label(state, s, causal);
}
BENCHMARK(BM_AttentionTrainStep)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
