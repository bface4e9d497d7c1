// Fashion-MNIST with a two-layer perceptron: 784 -> 256 -> 10, AdamW, batch 128.
#include "examples/fashion_mnist_classifier.h"

int main(int argc, char** argv) {
  using namespace lumen::nn;
  fashion_mnist::Layers layers{
      std::make_shared<Flatten>(),
      std::make_shared<Linear>(784, 256),
      std::make_shared<ReLU>(),
      std::make_shared<Linear>(256, 10),
  };
  return fashion_mnist::run("fashion_mnist_mlp", layers, 10, argc, argv);
}
