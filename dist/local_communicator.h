#pragma once
// The communicator of a job with one process and no launcher: world size 1, no MPI. Every
// collective is the identity (avg of one value is that value), after the same argument checks
// as the other backends, so code written for data parallelism runs unchanged.
#include "dist/communicator.h"

namespace lumen::dist {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(CommunicatorOptions options = {}, Device device = Device::cpu())
      : options_(options), device_(device) {}
  std::string backend() const override { return "local"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  const CommunicatorOptions& options() const override { return options_; }
  std::shared_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) override;
  void broadcast(const Tensor& tensor, int root) override;
  Tensor all_gather(const Tensor& tensor) override;
  Tensor reduce_scatter(const Tensor& tensor, ReduceOp op) override;
  void barrier() override {}

 private:
  CommunicatorOptions options_;
  Device device_;
};

}  // namespace lumen::dist
