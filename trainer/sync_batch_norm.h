#pragma once
// Lightning's sync_batchnorm=True: under DDP every BatchNorm of the module normalises with the
// statistics of all ranks' batches (torch.nn.SyncBatchNorm.convert_sync_batchnorm), so a model
// trained on R ranks with batch B sees the statistics of one process with batch R B.
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "nn/batch_norm.h"
#include "nn/process_group.h"

namespace lumen {

// An nn::ProcessGroup over a communicator's ranks (NCCL's for CUDA tensors, MPI's for CPU ones).
class CommunicatorProcessGroup final : public nn::ProcessGroup {
 public:
  explicit CommunicatorProcessGroup(std::shared_ptr<dist::Communicator> comm);
  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  Tensor all_gather(const Tensor& t) override { return comm_->all_gather(t); }
  void all_reduce_sum(const Tensor& t) override { comm_->all_reduce(t, dist::ReduceOp::sum); }

 private:
  std::shared_ptr<dist::Communicator> comm_;
};

// Gives every nn::BatchNorm in `module` (itself included) that has no process group one group
// over comm's ranks, and returns that group (null when no BatchNorm took it).
// revert_sync_batchnorm takes it away again from the module's BatchNorms that hold it (found by
// walking the module, so a BatchNorm removed meanwhile is no concern).
std::shared_ptr<nn::ProcessGroup> convert_sync_batchnorm(nn::Module& module,
                                                         std::shared_ptr<dist::Communicator> comm);
void revert_sync_batchnorm(nn::Module& module, const std::shared_ptr<nn::ProcessGroup>& group);
// Whether a BatchNorm of `module` has a process group of several ranks: its training backward
// runs a collective, so DDP's gradient buckets must not start during the backward (a rank that
// starts a bucket there and one that starts it later would order their collectives apart).
bool has_synced_batch_norm(nn::Module& module);

}  // namespace lumen
