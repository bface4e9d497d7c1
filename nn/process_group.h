#pragma once
// The collectives a layer that spans processes needs (torch.nn.SyncBatchNorm's process_group),
// seen from nn/: the processes themselves belong to dist/, which nn/ cannot include, so whoever
// runs them (the Trainer's DDP strategy: trainer/sync_batch_norm.h) hands an implementation in.
// Every process of the group calls the same collectives in the same order.
#include "tensor/tensor.h"

namespace lumen::nn {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // [world_size, *t.shape]: row r is rank r's t (contiguous, on the group's device).
  virtual Tensor all_gather(const Tensor& t) = 0;
  // In place: t becomes the elementwise sum over the ranks.
  virtual void all_reduce_sum(const Tensor& t) = 0;
};

}  // namespace lumen::nn
