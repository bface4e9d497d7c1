#pragma once
// The flags every training example takes, --epochs N, --threads N, --precision P,
// --accelerator A, --data PATH, --profiler simple and --bench, plus an example's own (ExtraFlag),
// and the trainer they ask for.
#include <lumen/lumen.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "examples/epoch_timer.h"

namespace examples {

struct CommandLine {
  int64_t epochs = 10;
  std::string precision = "32", accelerator = "auto";
  std::string profiler = {};  // "simple": Lightning's SimpleProfiler report after each stage
  std::string data = {};      // empty: the example's default
  bool bench = false;
};

struct ExtraFlag {
  const char* name;   // "--prompt"
  const char* value;  // "TEXT", shown in the usage line
  std::function<void(const char*)> set;
};

// Fills `cl` from argv (--threads goes to omp_set_num_threads); on an unknown flag, or one
// without its value, prints the usage line and returns false.
inline bool parse_command_line(int argc, char** argv, CommandLine& cl, const char* data_value,
                               const std::vector<ExtraFlag>& extra = {}) {
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    auto is = [&](const char* flag) { return !std::strcmp(argv[i], flag) && has_value; };
    bool taken = true;
    if (is("--epochs"))
      cl.epochs = std::atoll(argv[++i]);
    else if (is("--threads"))
      omp_set_num_threads(std::atoi(argv[++i]));
    else if (is("--precision"))
      cl.precision = argv[++i];
    else if (is("--accelerator"))
      cl.accelerator = argv[++i];
    else if (is("--data"))
      cl.data = argv[++i];
    else if (is("--profiler"))
      cl.profiler = argv[++i];
    else if (!std::strcmp(argv[i], "--bench"))
      cl.bench = true;
    else {
      taken = false;
      for (const ExtraFlag& f : extra)
        if (is(f.name)) {
          f.set(argv[++i]);
          taken = true;
          break;
        }
    }
    if (!taken) {
      std::string usage = std::string("usage: ") + argv[0] +
                          " [--epochs N] [--threads N] [--precision 32|16-mixed|bf16-mixed]\n"
                          "          [--accelerator auto|cpu|cuda] [--data " +
                          data_value + "] [--profiler simple]";
      for (const ExtraFlag& f : extra) usage += std::string(" [") + f.name + " " + f.value + "]";
      std::fprintf(stderr, "%s [--bench]\n", usage.c_str());
      return false;
    }
  }
  return true;
}

// The trainer of the flags, its logs under `root_dir`: deterministic, with `checkpoint`; with
// --bench the EpochTimer alone, and no sanity check, progress bar, checkpoints, model summary
// or logger (what the PyTorch twins turn off too).
inline lumen::TrainerOptions trainer_options(const CommandLine& cl, std::string root_dir,
                                             lumen::CallbackPtr checkpoint) {
  lumen::TrainerOptions o{.max_epochs = cl.epochs,
                          .default_root_dir = std::move(root_dir),
                          .deterministic = true,
                          .callbacks = {std::move(checkpoint)},
                          .profiler = cl.profiler,
                          .accelerator = cl.accelerator,
                          .precision = cl.precision};
  if (cl.bench) {
    o.num_sanity_val_steps = 0;
    o.enable_progress_bar = false;
    o.enable_checkpointing = false;
    o.enable_model_summary = false;
    o.logger = false;
    o.callbacks = {std::make_shared<EpochTimer>()};
  }
  return o;
}

}  // namespace examples
