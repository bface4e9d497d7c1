#include "dist/local_communicator.h"

namespace lumen::dist {

namespace {
struct CompletedWork final : Work {
  void wait() override {}
  bool completed() const override { return true; }
};
}  // namespace

std::shared_ptr<Work> LocalCommunicator::all_reduce_async(const Tensor& tensor, ReduceOp op) {
  detail::check_collective_tensor("all_reduce", tensor, device_, 0);
  detail::check_reduce_op("all_reduce", tensor, op);
  return std::make_shared<CompletedWork>();
}

void LocalCommunicator::broadcast(const Tensor& tensor, int root) {
  detail::check_collective_tensor("broadcast", tensor, device_, 0);
  LUMEN_CHECK(root == 0, "dist::broadcast: root ", root, " is not a rank of a world of size 1");
}

Tensor LocalCommunicator::all_gather(const Tensor& tensor) {
  detail::check_collective_tensor("all_gather", tensor, device_, 0);
  return tensor.clone().unsqueeze(0);
}

Tensor LocalCommunicator::reduce_scatter(const Tensor& tensor, ReduceOp op) {
  detail::check_collective_tensor("reduce_scatter", tensor, device_, 0);
  detail::check_reduce_op("reduce_scatter", tensor, op);
  detail::check_reduce_scatter_shape(tensor, 1, 0);
  return tensor.clone();
}

}  // namespace lumen::dist
