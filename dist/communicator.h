#pragma once
// Communicator, as DESIGN.md's dist/ layer: the collectives data parallelism needs (all-reduce,
// broadcast, all-gather, reduce-scatter, barrier) over the processes of a job, one process per
// rank. Backends: LocalCommunicator (one process, no MPI), MpiCommunicator (CPU tensors, under
// mpirun or srun). Every rank must call the same collectives in the same order with tensors of
// the same shape and dtype; a rank that never arrives makes the others fail with TimeoutError
// after CommunicatorOptions::timeout instead of hanging.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "tensor/error.h"
#include "tensor/tensor.h"

namespace lumen::dist {

enum class ReduceOp { sum, avg, max, min };
const char* reduce_op_name(ReduceOp op);

// A collective that did not complete within the communicator's timeout: another rank died,
// hangs, or called a different collective. The communicator is unusable afterwards.
struct TimeoutError : Error {
  using Error::Error;
};

struct CommunicatorOptions {
  // PyTorch's and Lightning's default process-group timeout.
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
};

// An asynchronous collective in flight. wait() returns when it completed (its tensor then holds
// the result), rethrows its error, or throws TimeoutError after the communicator's timeout.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool completed() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "local", "mpi"
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes of this node
  virtual const CommunicatorOptions& options() const = 0;

  // In place on `tensor` (contiguous; on this backend's device), every rank's values combined
  // elementwise by `op`. avg divides the sum by world_size (floating dtypes only).
  virtual std::shared_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) = 0;
  void all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum) {
    all_reduce_async(tensor, op)->wait();
  }
  // In place: every rank's `tensor` becomes root's.
  virtual void broadcast(const Tensor& tensor, int root) = 0;
  // [world_size, *tensor.shape]: row r is rank r's tensor.
  virtual Tensor all_gather(const Tensor& tensor) = 0;
  // `tensor` has a leading dim divisible by world_size; the result is chunk `rank` (of
  // world_size equal chunks along dim 0) of every rank's tensor combined by `op`.
  virtual Tensor reduce_scatter(const Tensor& tensor, ReduceOp op = ReduceOp::sum) = 0;
  virtual void barrier() = 0;

  // A rank-0 decision or value seen by all ranks: broadcasts the string from `root`.
  std::string broadcast_string(const std::string& value, int root = 0);
};

namespace detail {
// The checks every backend shares: defined, contiguous, on `device`, and (unless the backend
// reduces them, as NCCL does) not f16/bf16; errors name the collective, the rank and what
// was expected.
void check_collective_tensor(const char* op, const Tensor& t, Device device, int rank,
                             bool half_ok = false);
void check_reduce_op(const char* op, const Tensor& t, ReduceOp reduce);
void check_reduce_scatter_shape(const Tensor& t, int world_size, int rank);
}  // namespace detail

}  // namespace lumen::dist
