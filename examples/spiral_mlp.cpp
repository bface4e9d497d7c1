// The first program to run: fits a small MLP to three interleaved spirals with autograd and
// plain SGD with momentum, printing the loss as it falls and the final accuracy. Until the
// Trainer lands this is the whole training loop, written out.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "lumen/lumen.h"

using namespace lumen;
namespace F = lumen::nn::functional;

int main(int argc, char** argv) {
  int steps = argc > 1 ? std::atoi(argv[1]) : 400;
  const int64_t per_class = 200, classes = 3, hidden = 64;
  manual_seed(0);

  // Spiral k: radius r in [0, 1), angle 4k + 4r plus noise; label k.
  std::vector<float> xy;
  std::vector<int64_t> labels;
  Tensor noise = randn({classes * per_class}) * 0.2;
  std::vector<float> nz = noise.to_vector<float>();
  for (int64_t k = 0; k < classes; ++k)
    for (int64_t i = 0; i < per_class; ++i) {
      float r = static_cast<float>(i) / per_class;
      float t = 4.0f * k + 4.0f * r + nz[k * per_class + i];
      xy.push_back(r * std::sin(t));
      xy.push_back(r * std::cos(t));
      labels.push_back(k);
    }
  Tensor x = from_vector(xy, {classes * per_class, 2});
  Tensor y = from_vector(labels);

  // Kaiming-normal weights (std sqrt(2 / fan_in)), zero biases.
  auto weight = [](int64_t out, int64_t in) {
    return (randn({out, in}) * std::sqrt(2.0 / in)).requires_grad_();
  };
  std::vector<Tensor> params = {weight(hidden, 2),       zeros({hidden}, {.requires_grad = true}),
                                weight(hidden, hidden),  zeros({hidden}, {.requires_grad = true}),
                                weight(classes, hidden), zeros({classes}, {.requires_grad = true})};
  std::vector<Tensor> velocity;
  for (const Tensor& p : params) velocity.push_back(zeros_like(p));
  auto forward = [&](const Tensor& in) {
    Tensor h = relu(F::linear(in, params[0], params[1]));
    h = relu(F::linear(h, params[2], params[3]));
    return F::linear(h, params[4], params[5]);
  };

  const double lr = 0.2, momentum = 0.9;
  std::printf("fitting a %lld-%lld-%lld-%lld MLP to %lld spiral points, %d steps of SGD\n", 2LL,
              static_cast<long long>(hidden), static_cast<long long>(hidden),
              static_cast<long long>(classes), static_cast<long long>(x.size(0)), steps);
  for (int step = 0; step <= steps; ++step) {
    Tensor loss = F::cross_entropy(forward(x), y);
    for (Tensor& p : params) p.set_grad({});
    loss.backward();
    {
      NoGradGuard no_grad;  // v = m v + g;  p -= lr v
      for (size_t i = 0; i < params.size(); ++i) {
        velocity[i].mul_(momentum).add_(params[i].grad());
        params[i].add_(velocity[i], -lr);
      }
    }
    if (step % 50 == 0) std::printf("step %4d  loss %.4f\n", step, loss.item());
  }
  NoGradGuard no_grad;
  double accuracy = eq(forward(x).argmax(1), y).to(DType::f32).mean().item();
  std::printf("training accuracy %.1f%%\n", 100 * accuracy);
  return accuracy > 0.9 ? 0 : 1;
}
