#pragma once
// The MPI backend: collectives over CPU tensors between the processes mpirun or srun started.
// One thread per communicator makes its MPI calls, in the order the collectives were issued,
// so an asynchronous all-reduce runs while the caller goes on with backward, and waiting can
// time out instead of blocking forever inside MPI. Communicators run side by side
// (MPI_THREAD_MULTIPLE), each over its own MPI_Comm_dup of MPI_COMM_WORLD.
#include <memory>

#include "dist/communicator.h"

namespace lumen::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Collective: every process of the job calls it (MPI_Comm_dup of MPI_COMM_WORLD; MPI is
  // initialised on first use and finalised at exit).
  explicit MpiCommunicator(CommunicatorOptions options = {});
  // Waits for what is in flight; a collective stuck past its timeout aborts the job
  // (MPI_Abort) instead of hanging in MPI_Finalize.
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string backend() const override { return "mpi"; }
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

}  // namespace lumen::dist
