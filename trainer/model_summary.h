#pragma once
// ModelSummary, as Lightning's: prints the module's layers and parameter counts when fit
// starts, e.g.
//     | Name | Type   | Params | Mode
//   ----------------------------------------
//   0 | fc1  | Linear | 200 K  | train
//   1 | fc2  | Linear | 2.6 K  | train
//   ----------------------------------------
//   203 K     Trainable params
//   0         Non-trainable params
//   203 K     Total params
//   0.812     Total estimated model params size (MB)
//   2         Modules in train mode
//   0         Modules in eval mode
// Rows are the submodules down to max_depth (1: the children; -1: all; 0: no summary); the
// size assumes 4 bytes (f32) per parameter, MB = 1e6 bytes. Parameters registered directly on
// the root module get an "other params" row.
#include <cstdint>
#include <string>

#include "nn/module.h"
#include "trainer/callback.h"

namespace lumen {

// Lightning's get_human_readable_count: 123 -> "123  ", 1234 -> "1.2 K", 2e6 -> "2.0 M",
// 4e14 -> "400 T".
std::string human_readable_count(int64_t number);

std::string model_summary_table(nn::Module& module, int max_depth = 1);

struct ModelSummaryOptions {
  int max_depth = 1;
};

class ModelSummary : public Callback {
 public:
  explicit ModelSummary(ModelSummaryOptions options = {});
  std::string state_key() const override { return "ModelSummary"; }
  void on_fit_start(Trainer& trainer, LightningModule& module) override;
  int max_depth() const { return options_.max_depth; }

 private:
  ModelSummaryOptions options_;
};

}  // namespace lumen
