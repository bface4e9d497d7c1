// A character-level GPT (examples/char_gpt.h) trained on a text file, by default the songs and
// poems of Debian's `fortunes` package; then it writes some text of its own from a prompt.
// Usage: char_gpt [--epochs N] [--threads N] [--precision P] [--accelerator A] [--data FILE]
//                 [--prompt TEXT] [--generate N] [--bench]
// --bench prints what bench/compare_fashion_mnist.sh reads (epoch times, the last val_loss).
#include "examples/char_gpt.h"
#include "examples/epoch_timer.h"

#include <omp.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace lumen;

int main(int argc, char** argv) {
  int64_t epochs = 10, generate = 400;
  bool bench = false;
  std::string precision = "32", accelerator = "auto", prompt = "\n";
  io::CharacterTextOptions data_options{.block_size = 64, .stride = 32, .batch_size = 64};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc)
      epochs = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      omp_set_num_threads(std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--precision") && i + 1 < argc)
      precision = argv[++i];
    else if (!std::strcmp(argv[i], "--accelerator") && i + 1 < argc)
      accelerator = argv[++i];
    else if (!std::strcmp(argv[i], "--data") && i + 1 < argc)
      data_options.path = argv[++i];
    else if (!std::strcmp(argv[i], "--prompt") && i + 1 < argc)
      prompt = argv[++i];
    else if (!std::strcmp(argv[i], "--generate") && i + 1 < argc)
      generate = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--bench"))
      bench = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--epochs N] [--threads N] [--precision 32|16-mixed|bf16-mixed]\n"
                   "          [--accelerator auto|cpu|cuda] [--data FILE] [--prompt TEXT]\n"
                   "          [--generate N] [--bench]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    seed_everything(42);
    io::CharacterText data(data_options);
    data.setup("fit");  // the vocabulary sizes the model
    char_gpt::CharGPT model(
        {.vocab_size = data.vocab_size(), .block_size = data_options.block_size});
    TrainerOptions options{.max_epochs = epochs,
                           .default_root_dir = "runs/char_gpt",
                           .deterministic = true,
                           .accelerator = accelerator,
                           .precision = precision};
    if (bench) {
      examples::bench_mode(options);
    } else {
      options.callbacks = {std::make_shared<ModelCheckpoint>(
          ModelCheckpointOptions{.monitor = "val_loss", .mode = "min", .save_last = true})};
    }
    Trainer trainer(options);
    trainer.fit(model, data);
    if (!trainer.is_global_zero()) return 0;  // under mpirun, rank 0 writes
    if (bench) {
      std::printf("val_loss=%.4f\npeak_mem_bytes=%lld\n", trainer.callback_metrics().at("val_loss"),
                  static_cast<long long>(memory_stats(model.device()).peak_allocated));
      return 0;
    }
    Generator gen(42);
    std::printf(
        "checkpoints and logs: %s\n--- sampled from the model ---\n%s\n", trainer.log_dir().c_str(),
        data.decode(from_vector(model.generate(data.encode(prompt), generate, 0.8, gen))).c_str());
    return 0;
  } catch (const lumen::Error& e) {
    std::fprintf(stderr, "char_gpt: %s\n", e.what());
    return 1;
  }
}
