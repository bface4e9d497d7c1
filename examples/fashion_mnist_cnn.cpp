// Fashion-MNIST with a small CNN: two 3x3 conv + ReLU + 2x2 max-pool stages (32 and 64
// channels), then 3136 -> 128 -> 10, AdamW, batch 128.
#include "examples/fashion_mnist_classifier.h"

int main(int argc, char** argv) {
  using namespace lumen::nn;
  fashion_mnist::Layers layers{
      std::make_shared<Conv2d>(1, 32, 3, Conv2dOptions{.padding = 1}),
      std::make_shared<ReLU>(),
      std::make_shared<MaxPool2d>(2),
      std::make_shared<Conv2d>(32, 64, 3, Conv2dOptions{.padding = 1}),
      std::make_shared<ReLU>(),
      std::make_shared<MaxPool2d>(2),
      std::make_shared<Flatten>(),
      std::make_shared<Linear>(64 * 7 * 7, 128),
      std::make_shared<ReLU>(),
      std::make_shared<Linear>(128, 10),
  };
  return fashion_mnist::run("fashion_mnist_cnn", layers, 10, argc, argv);
}
