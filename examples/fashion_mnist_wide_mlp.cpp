// Fashion-MNIST with a matmul-heavy perceptron, four hidden layers of 4096: the model the
// mixed-precision benchmark times (bench/gpu_compare.sh), where GEMMs dominate the step.
// Meant for a GPU; an epoch on a CPU takes minutes.
#include "examples/fashion_mnist_classifier.h"

int main(int argc, char** argv) {
  using namespace lumen::nn;
  fashion_mnist::Layers layers{
      std::make_shared<Flatten>(), std::make_shared<Linear>(784, 4096),
      std::make_shared<ReLU>(),    std::make_shared<Linear>(4096, 4096),
      std::make_shared<ReLU>(),    std::make_shared<Linear>(4096, 4096),
      std::make_shared<ReLU>(),    std::make_shared<Linear>(4096, 4096),
      std::make_shared<ReLU>(),    std::make_shared<Linear>(4096, 10),
  };
  return fashion_mnist::run("fashion_mnist_wide_mlp", layers, 1, argc, argv);
}
