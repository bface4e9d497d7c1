#pragma once
// Lightning's precision flags (DESIGN.md, Precision), shared by Trainer and Fabric:
//   "32-true" (or "32"): f32 throughout;
//   "16-mixed": f16 autocast in the forward passes, and dynamic loss scaling (GradScaler);
//   "bf16-mixed": bf16 autocast, no scaling.
// "16" and "bf16" are accepted with Lightning's warning. Parameters and optimizer state stay f32
// in every case. On the CPU, 16-bit ops store 16 bits and compute in f32.
#include <optional>
#include <string>

#include "autograd/autocast_mode.h"

namespace lumen {

struct Precision {
  std::string name = "32-true";         // resolved: "32-true", "16-mixed" or "bf16-mixed"
  std::optional<DType> autocast_dtype;  // none for "32-true"
  bool scales_loss() const { return name == "16-mixed"; }
};

// Resolves a precision flag; `who` starts the error message ("Trainer", "Fabric").
Precision parse_precision(const std::string& flag, const std::string& who);

// Lightning's precision forward_context: forward passes run under autocast when the precision
// is mixed.
class ForwardContext {
 public:
  explicit ForwardContext(std::optional<DType> autocast_dtype) {
    if (autocast_dtype) guard_.emplace(*autocast_dtype);
  }

 private:
  std::optional<AutocastGuard> guard_;
};

}  // namespace lumen
