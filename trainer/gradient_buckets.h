#pragma once
// Gradient buckets, as PyTorch DDP's Reducer: the parameters, in reverse order of registration
// (roughly the order backward produces their gradients), are packed into buckets of about
// bucket_cap_bytes. A post-accumulate hook on each parameter counts the bucket's gradients in;
// when a bucket is complete its flat copy starts an asynchronous all-reduce (average), so the
// communication of late layers overlaps the backward of early ones. Buckets start in index
// order on every rank, which keeps the ranks' collectives in the same order.
//
// Each bucket carries one extra element per parameter: 1 where this rank has a gradient for
// it, else 0 (its gradient then counts as zeros). After the average, a parameter that no rank
// used keeps an undefined grad, as with find_unused_parameters in PyTorch.
//
// A parameter whose gradient arrives twice in one backward (used in two checkpointed calls, or
// inside and outside one: each recomputation accumulates on its own) counts once; its bucket
// packs the sum if it has not started yet, and otherwise the backward fails with an error that
// says so (PyTorch's DDP: "Expected to mark a variable ready only once"). That error is the
// rank's own: a rank whose bucket had not started (it lacked another of the bucket's
// parameters) goes on and waits in finish() until the DDP timeout.
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace lumen {

class GradientBuckets {
 public:
  GradientBuckets(std::vector<Tensor> params, std::shared_ptr<dist::Communicator> comm,
                  int64_t bucket_cap_bytes);
  ~GradientBuckets();  // removes the hooks
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Before a backward: sync = false for the micro-steps of gradient accumulation that do not
  // step the optimizer (PyTorch's no_sync), whose gradients only accumulate locally. overlap =
  // false starts no all-reduce during the backward, only in finish(): when several bucket sets
  // share a communicator in one backward, the order in which their buckets complete may differ
  // between ranks, and collectives must be issued in the same order everywhere.
  void prepare(bool sync, bool overlap = true);
  // After a backward with sync: starts the buckets still waiting (parameters without
  // gradients on this rank), waits for all, and makes each grad() the averaged gradient (a
  // view into its bucket). Returns whether any rank had a gradient for any parameter (the same
  // answer on every rank).
  bool finish();

  // The constructor's params.
  const std::vector<Tensor>& params() const { return params_; }
  // Indices into the constructor's params, per bucket.
  const std::vector<std::vector<size_t>>& bucket_params() const { return bucket_params_; }

  // What the bench reports: how long finish() waited for the all-reduces after backward,
  // and the time spent packing gradients into the buckets.
  struct Stats {
    int64_t buckets = 0;
    int64_t steps = 0;
    double exposed_seconds = 0;
    double copy_seconds = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Bucket;
  void on_gradient(size_t param);
  void launch_ready();
  void launch(Bucket& bucket);
  void drain() noexcept;  // waits for every all-reduce still running

  std::vector<Tensor> params_;
  std::vector<size_t> hook_handles_;
  std::shared_ptr<dist::Communicator> comm_;
  std::vector<std::vector<size_t>> bucket_params_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<bool> arrived_;      // per parameter: its gradient arrived in this backward
  size_t next_launch_ = 0;
  bool syncing_ = false;
  bool overlap_ = true;
  Stats stats_;
};

}  // namespace lumen
