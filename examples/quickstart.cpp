// The README's first program, verbatim: a Fashion-MNIST MLP as a LightningModule. Built with
// the other examples so the README's code keeps compiling.
#include <lumen/lumen.h>
using namespace lumen;

struct Classifier : LightningModule {
  nn::Linear fc1{784, 256}, fc2{256, 10};
  Classifier() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Tensor forward(const Tensor& x) { return fc2(relu(fc1(x.flatten(1)))); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = nn::functional::cross_entropy(forward(b[0]), b[1]);
    log("train_loss", loss, {.prog_bar = true});
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override {
    log("val_acc", metrics::accuracy(forward(b[0]), b[1]), {.prog_bar = true});
  }
  void test_step(const Batch& b, int64_t) override {
    log("test_acc", metrics::accuracy(forward(b[0]), b[1]));
  }
  OptimizerConfig configure_optimizers() override {
    return optim::AdamW(parameters(), {.lr = 1e-3});
  }
};

int main() {
  seed_everything(42);
  io::FashionMNIST data({.batch_size = 128});
  Classifier model;
  Trainer trainer(
      {.max_epochs = 5, .callbacks = {ModelCheckpoint({.monitor = "val_acc", .mode = "max"})}});
  trainer.fit(model, data);
  trainer.test(model, data);
}
