// A generative adversarial network on Fashion-MNIST, trained by manual optimization with two
// optimizers: Lightning's GAN example (domain_templates/generative_adversarial_net.py) with
// multilayer perceptrons, LeakyReLU(0.2), BCE on logits, and Adam (lr 2e-4, betas 0.5, 0.999)
// for each network. After each epoch it writes an 8 x 8 grid of images generated from the
// same noise to samples.png in its log directory, and to TensorBoard's IMAGES dashboard (its
// logger is a TensorBoardLogger, Lightning's default).
#include <lumen/lumen.h>

#include <cstdio>
#include <string>

#include "examples/command_line.h"

using namespace lumen;
namespace F = lumen::nn::functional;

struct Gan : LightningModule {
  int64_t latent_dim;
  nn::Sequential generator, discriminator;
  Tensor fixed_noise;  // the sample grid's noise, the same every epoch

  explicit Gan(int64_t latent = 100)
      : latent_dim(latent),
        generator{std::make_shared<nn::Linear>(latent, 256), std::make_shared<nn::LeakyReLU>(0.2),
                  std::make_shared<nn::Linear>(256, 512),    std::make_shared<nn::LeakyReLU>(0.2),
                  std::make_shared<nn::Linear>(512, 784),    std::make_shared<nn::Tanh>()},
        discriminator{std::make_shared<nn::Linear>(784, 512), std::make_shared<nn::LeakyReLU>(0.2),
                      std::make_shared<nn::Linear>(512, 256), std::make_shared<nn::LeakyReLU>(0.2),
                      std::make_shared<nn::Linear>(256, 1)} {
    register_module("generator", generator);
    register_module("discriminator", discriminator);
    automatic_optimization = false;
    save_hyperparameters({{"latent_dim", latent_dim}, {"lr", 2e-4}});
    Generator noise(7);
    fixed_noise = randn({64, latent_dim}, {}, &noise);
  }

  Tensor training_step(const Batch& b, int64_t) override {
    auto [opt_g, opt_d] = optimizers<2>();
    Tensor real = b[0].reshape({-1, 784}) * 2.0 - 1.0;  // pixels in [-1, 1], as tanh's range
    const int64_t n = real.size(0);
    Tensor z = randn({n, latent_dim}, {.device = device()});
    Tensor is_real = ones({n, 1}, {.device = device()}),
           is_fake = zeros({n, 1}, {.device = device()});

    // The generator learns to make the discriminator call its images real.
    toggle_optimizer(opt_g);
    Tensor g_loss = F::binary_cross_entropy_with_logits(discriminator(generator(z)), is_real);
    opt_g.zero_grad();
    manual_backward(g_loss);
    opt_g.step();
    untoggle_optimizer(opt_g);

    // The discriminator learns to tell real images from the updated generator's.
    toggle_optimizer(opt_d);
    Tensor fake;
    {
      NoGradGuard no_grad;
      fake = generator(z);
    }
    Tensor d_loss = (F::binary_cross_entropy_with_logits(discriminator(real), is_real) +
                     F::binary_cross_entropy_with_logits(discriminator(fake), is_fake)) *
                    0.5;
    opt_d.zero_grad();
    manual_backward(d_loss);
    opt_d.step();
    untoggle_optimizer(opt_d);

    log("g_loss", g_loss, {.prog_bar = true});
    log("d_loss", d_loss, {.prog_bar = true});
    return {};
  }

  OptimizerConfig configure_optimizers() override {
    optim::AdamOptions o{.lr = 2e-4, .betas = {0.5, 0.999}};
    return OptimizerConfig({std::make_shared<optim::Adam>(generator.parameters(), o),
                            std::make_shared<optim::Adam>(discriminator.parameters(), o)});
  }

  // 8 x 8 images of 28 x 28 with 2-pixel gaps, in [0, 1].
  Tensor sample_grid() {
    NoGradGuard no_grad;
    bool was_training = is_training();
    eval();
    std::vector<float> images =
        generator(fixed_noise.to(device())).to(DType::f32).to_vector<float>();
    train(was_training);
    const int64_t cell = 30, side = 8 * cell + 2;
    std::vector<float> grid(side * side, 0.0f);
    for (int64_t k = 0; k < 64; ++k)
      for (int64_t r = 0; r < 28; ++r)
        for (int64_t c = 0; c < 28; ++c)
          grid[(2 + (k / 8) * cell + r) * side + 2 + (k % 8) * cell + c] =
              (images[k * 784 + r * 28 + c] + 1.0f) * 0.5f;
    return from_vector<float>(grid, {side, side});
  }

  void on_train_epoch_end() override {
    if (!trainer()->is_global_zero() || trainer()->logger() == nullptr) return;
    Tensor grid = sample_grid();
    io::write_png(trainer()->log_dir() + "/samples.png", grid);
    for (const auto& logger : trainer()->loggers())
      if (auto* tensorboard = dynamic_cast<TensorBoardLogger*>(logger.get()))
        tensorboard->add_image("samples", grid, trainer()->global_step());
  }
};

// Usage: fashion_mnist_gan [--epochs N] [--threads N] [--precision P] [--accelerator A]
//                          [--data DIR] [--bench]
int main(int argc, char** argv) {
  examples::CommandLine cl{.epochs = 10};
  if (!examples::parse_command_line(argc, argv, cl, "DIR")) return 2;
  io::FashionMNISTOptions data_options{.batch_size = 128, .normalize = false};
  if (!cl.data.empty()) data_options.data_dir = cl.data;
  try {
    seed_everything(42);
    io::FashionMNIST data(data_options);
    Gan model;
    TrainerOptions options = examples::trainer_options(cl, "runs/fashion_mnist_gan",
                                                       ModelCheckpoint({.save_last = true}));
    options.limit_val_batches = 0;  // a GAN has no validation loss to compute
    if (!cl.bench)
      options.logger = std::make_shared<TensorBoardLogger>(
          TensorBoardLoggerOptions{.save_dir = "runs/fashion_mnist_gan"});
    options.num_sanity_val_steps = 0;
    Trainer trainer(options);
    trainer.fit(model, data);
    if (!trainer.is_global_zero()) return 0;  // under mpirun, rank 0 reports
    if (cl.bench)
      std::printf(
          "peak_mem_bytes=%lld\n",
          static_cast<long long>(memory_stats(model.parameters().at(0).device()).peak_allocated));
    else
      std::printf("samples, checkpoints and logs: %s\n", trainer.log_dir().c_str());
    return 0;
  } catch (const lumen::Error& e) {
    std::fprintf(stderr, "fashion_mnist_gan: %s\n", e.what());
    return 1;
  }
}
