// A character-level GPT (examples/char_gpt.h) trained on a text file, by default the songs and
// poems of Debian's `fortunes` package; then it writes some text of its own from a prompt.
// Usage: char_gpt [--epochs N] [--threads N] [--precision P] [--accelerator A] [--data FILE]
//                 [--prompt TEXT] [--generate N] [--bench]
// --bench prints what bench/compare_fashion_mnist.sh reads (epoch times, the last val_loss).
#include "examples/char_gpt.h"
#include "examples/command_line.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace lumen;

int main(int argc, char** argv) {
  int64_t generate = 400;
  std::string prompt = "\n";
  examples::CommandLine cl;
  if (!examples::parse_command_line(
          argc, argv, cl, "FILE",
          {{"--prompt", "TEXT", [&](const char* v) { prompt = v; }},
           {"--generate", "N", [&](const char* v) { generate = std::atoll(v); }}}))
    return 2;
  io::CharacterTextOptions data_options{.block_size = 64, .stride = 32, .batch_size = 64};
  if (!cl.data.empty()) data_options.path = cl.data;
  try {
    seed_everything(42);
    io::CharacterText data(data_options);
    data.setup("fit");  // the vocabulary sizes the model
    char_gpt::CharGPT model(
        {.vocab_size = data.vocab_size(), .block_size = data_options.block_size});
    Trainer trainer(examples::trainer_options(
        cl, "runs/char_gpt",
        ModelCheckpoint({.monitor = "val_loss", .mode = "min", .save_last = true})));
    trainer.fit(model, data);
    if (!trainer.is_global_zero()) return 0;  // under mpirun, rank 0 writes
    if (cl.bench) {
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
