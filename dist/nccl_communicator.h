#pragma once
// The NCCL backend: collectives over CUDA tensors, one process per GPU. Rank 0 creates the
// NCCL unique id and sends it to the others over a bootstrap communicator (MPI under a
// launcher, or the local one for a single process); each communicator has its own CUDA
// stream (non-blocking, so it overlaps the compute on the default stream), ordered after the
// compute that produced its tensors by an event. Waiting polls an event until the
// communicator's timeout, then aborts the NCCL communicator and throws TimeoutError.
// Built when CUDA, NCCL and the MPI backend are found (LUMEN_NCCL).
#include <memory>

#include "dist/communicator.h"

namespace lumen::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`'s processes; `device` is this process's GPU (usually its local
  // rank).
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, int device,
                   CommunicatorOptions options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  std::string backend() const override { return "nccl"; }
  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  const CommunicatorOptions& options() const override;
  std::shared_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) override;
  void broadcast(const Tensor& tensor, int root) override;
  Tensor all_gather(const Tensor& tensor) override;
  Tensor reduce_scatter(const Tensor& tensor, ReduceOp op) override;
  void barrier() override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The NCCL communicator over every process of the job (collective), on GPU `device`.
std::shared_ptr<Communicator> new_nccl_world_communicator(int device,
                                                          CommunicatorOptions options = {});

}  // namespace lumen::dist
