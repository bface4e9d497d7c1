#pragma once
// Batch normalisation (Ioffe & Szegedy, 2015) over the channel dim 1, as torch.nn.BatchNorm1d
// and BatchNorm2d: y = (x - mean) / sqrt(var + eps) * weight + bias per channel.
//
// Training normalises with the batch's statistics and, with track_running_stats, updates the
// buffers running_mean, running_var (unbiased batch variance) and num_batches_tracked; eval
// normalises with the running statistics (or, without them, with the batch's).
//
// With a process group of several ranks (torch.nn.SyncBatchNorm; the Trainer's sync_batchnorm
// sets it under DDP), training normalises with the statistics of all the ranks' batches
// (functional::sync_batch_norm), as one process with their concatenation would.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "nn/module.h"
#include "nn/process_group.h"

namespace lumen::nn {

struct BatchNormOptions {
  double eps = 1e-5;
  // running = (1 - momentum) running + momentum batch; nullopt gives the cumulative average
  // (momentum 1 / num_batches_tracked), as PyTorch's momentum=None.
  std::optional<double> momentum = 0.1;
  bool affine = true;  // learnable weight (ones) and bias (zeros) [C]
  bool track_running_stats = true;
};

// What BatchNorm1d and BatchNorm2d share; they differ only in the input ranks they accept.
class BatchNorm : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
  void reset_running_stats();  // mean 0, var 1, no batches seen
  void reset_parameters();     // the running stats and weight 1, bias 0

  // "64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  std::string extra_repr() const override;

  const int64_t num_features;
  const double eps;
  // Settable, as PyTorch's attributes: update_bn-style passes set momentum to nullopt, and
  // BaseFinetuning freezes a BatchNorm by turning off track_running_stats (training then
  // normalises with the batch's statistics and leaves the running ones as they are; eval still
  // uses them). Turning tracking on for a BatchNorm built without running statistics adds none.
  std::optional<double> momentum;
  const bool affine;
  bool track_running_stats;
  Tensor weight, bias;                                    // [C], when affine
  Tensor running_mean, running_var, num_batches_tracked;  // [C], [C], i64 [], when tracking
  // Null, or the group whose batches training normalises over (see above).
  std::shared_ptr<ProcessGroup> process_group;

 protected:
  BatchNorm(int64_t num_features, const BatchNormOptions& options);
  virtual void check_input_dim(const Tensor& x) const = 0;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm(num_features, options) {}
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input_dim(const Tensor& x) const override;  // [N, C] or [N, C, L]
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm(num_features, options) {}
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input_dim(const Tensor& x) const override;  // [N, C, H, W]
};

}  // namespace lumen::nn
