#include "dist/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include "dist/world.h"
#include "tensor/cuda_check.h"

namespace lumen::dist {

namespace {

using Clock = std::chrono::steady_clock;

#define LUMEN_NCCL_CHECK(call)                                                  \
  do {                                                                          \
    ncclResult_t lumen_nccl_ = (call);                                          \
    if (lumen_nccl_ != ncclSuccess)                                             \
      ::lumen::detail::throw_error("dist: ", #call, " failed with NCCL error ", \
                                   static_cast<int>(lumen_nccl_), ": ",         \
                                   ncclGetErrorString(lumen_nccl_));            \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::f16:
      return ncclFloat16;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
    case DType::boolean:
      return ncclUint8;  // one byte 0/1: max = any, min = all
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::avg:
      return ncclAvg;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  return ncclSum;
}

// NCCL reduces f16 and bf16 too.
void check_tensor(const char* op, const Tensor& t, Device device, int rank) {
  detail::check_collective_tensor(op, t, device, rank, /*half_ok=*/true);
}

}  // namespace

struct NcclCommunicator::Impl {
  CommunicatorOptions options;
  std::shared_ptr<Communicator> bootstrap;
  Device device = Device::cuda(0);
  int rank = 0, world_size = 1, local_rank = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::string failure;

  // Orders the communicator's stream after the work queued so far on the default stream.
  void after_compute() {
    cudaEvent_t ready;
    LUMEN_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    LUMEN_CUDA_CHECK(cudaEventRecord(ready, 0));
    LUMEN_CUDA_CHECK(cudaStreamWaitEvent(stream, ready, 0));
    LUMEN_CUDA_CHECK(cudaEventDestroy(ready));
  }

  void check_usable(const char* op) const {
    LUMEN_CHECK(failure.empty(), "dist: ", op, " on rank ", rank,
                ": the NCCL communicator failed earlier and cannot be used any more: ", failure);
  }

  // Polls `done` until the deadline; NCCL's asynchronous errors (a peer that died) and the
  // timeout abort the communicator.
  void wait(cudaEvent_t done, Clock::time_point deadline, const std::string& description) {
    for (;;) {
      if (cuda_event_done(done)) return;
      check_usable(description.c_str());  // aborted by another work's failure: say that one
      ncclResult_t async = ncclSuccess;
      LUMEN_NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
      std::string why;
      if (async != ncclSuccess)
        why = std::string("NCCL reported ") + ncclGetErrorString(async);
      else if (Clock::now() > deadline)
        why = lumen::detail::concat("it did not complete within ", options.timeout.count(),
                                    " ms: another rank died, hangs, or called a different "
                                    "collective (CommunicatorOptions::timeout)");
      if (!why.empty()) {
        failure = description + ": " + why;
        ncclCommAbort(comm);
        comm = nullptr;
        throw TimeoutError(lumen::detail::concat("dist: ", description, " on rank ", rank, " of ",
                                                 world_size, ": ", why));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
};

namespace {
struct NcclWork final : Work {
  std::shared_ptr<NcclCommunicator::Impl> impl;
  cudaEvent_t done = nullptr;
  Clock::time_point deadline;
  std::string description;
  bool finished = false;
  Tensor keep_alive;  // the tensor must outlive the collective
  // Dropped unwaited, the work still frees its tensor (stream-ordered on the default stream)
  // only after the collective: the default stream waits for it first, or the pool could hand
  // the block to new work while NCCL still writes it. Errors are left to the next wait.
  ~NcclWork() override {
    if (!done) return;
    if (!finished && cudaSetDevice(impl->device.index) == cudaSuccess)
      cudaStreamWaitEvent(0, done, 0);
    cudaEventDestroy(done);
    cudaGetLastError();
  }
  void wait() override {
    if (finished) return;
    impl->wait(done, deadline, description);
    finished = true;
  }
  bool completed() const override { return finished || cuda_event_done(done); }
};
}  // namespace

NcclCommunicator::NcclCommunicator(std::shared_ptr<Communicator> bootstrap, int device,
                                   CommunicatorOptions options)
    : impl_(std::make_shared<Impl>()) {
  Impl& I = *impl_;
  LUMEN_CHECK(bootstrap != nullptr, "dist: NcclCommunicator needs a bootstrap communicator");
  I.options = options;
  I.bootstrap = std::move(bootstrap);
  I.rank = I.bootstrap->rank();
  I.world_size = I.bootstrap->world_size();
  I.local_rank = I.bootstrap->local_rank();
  I.device = Device::cuda(device);
  LUMEN_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id;
  static_assert(sizeof(id) == NCCL_UNIQUE_ID_BYTES);
  if (I.rank == 0) LUMEN_NCCL_CHECK(ncclGetUniqueId(&id));
  Tensor bytes = empty({NCCL_UNIQUE_ID_BYTES}, {DType::u8});
  if (I.rank == 0) std::memcpy(bytes.data_ptr(), &id, sizeof(id));
  I.bootstrap->broadcast(bytes, 0);
  std::memcpy(&id, bytes.data_ptr(), sizeof(id));
  LUMEN_NCCL_CHECK(ncclCommInitRank(&I.comm, I.world_size, id, I.rank));
  LUMEN_CUDA_CHECK(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking));
}

NcclCommunicator::~NcclCommunicator() {
  Impl& I = *impl_;
  if (I.stream) {
    cudaStreamSynchronize(I.stream);
    cudaStreamDestroy(I.stream);
  }
  if (I.comm) ncclCommDestroy(I.comm);
}

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::world_size() const { return impl_->world_size; }
int NcclCommunicator::local_rank() const { return impl_->local_rank; }
const CommunicatorOptions& NcclCommunicator::options() const { return impl_->options; }

std::shared_ptr<Work> NcclCommunicator::all_reduce_async(const Tensor& tensor, ReduceOp op) {
  Impl& I = *impl_;
  check_tensor("all_reduce", tensor, I.device, I.rank);
  detail::check_reduce_op("all_reduce", tensor, op);
  I.check_usable("all_reduce");
  auto work = std::make_shared<NcclWork>();
  work->impl = impl_;
  work->description = lumen::detail::concat("all_reduce(", reduce_op_name(op), ") of ",
                                            tensor.numel(), " ", tensor.dtype(), " elements");
  work->keep_alive = tensor;
  work->deadline = Clock::now() + I.options.timeout;
  LUMEN_CUDA_CHECK(cudaSetDevice(I.device.index));
  I.after_compute();
  LUMEN_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(),
                                 static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                 nccl_op(op), I.comm, I.stream));
  LUMEN_CUDA_CHECK(cudaEventCreateWithFlags(&work->done, cudaEventDisableTiming));
  LUMEN_CUDA_CHECK(cudaEventRecord(work->done, I.stream));
  return work;
}

namespace {
// Runs one collective on the communicator's stream and waits for it.
template <class F>
void run_and_wait(NcclCommunicator::Impl& I, const std::string& description, F&& enqueue) {
  I.check_usable(description.c_str());
  LUMEN_CUDA_CHECK(cudaSetDevice(I.device.index));
  I.after_compute();
  enqueue();
  cudaEvent_t done;
  LUMEN_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  LUMEN_CUDA_CHECK(cudaEventRecord(done, I.stream));
  try {
    I.wait(done, Clock::now() + I.options.timeout, description);
  } catch (...) {
    cudaEventDestroy(done);
    throw;
  }
  cudaEventDestroy(done);
}
}  // namespace

void NcclCommunicator::broadcast(const Tensor& tensor, int root) {
  Impl& I = *impl_;
  check_tensor("broadcast", tensor, I.device, I.rank);
  LUMEN_CHECK(root >= 0 && root < I.world_size, "dist::broadcast: root ", root,
              " is not a rank of a world of size ", I.world_size);
  run_and_wait(I, lumen::detail::concat("broadcast from rank ", root), [&] {
    LUMEN_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(),
                                   static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                   root, I.comm, I.stream));
  });
}

Tensor NcclCommunicator::all_gather(const Tensor& tensor) {
  Impl& I = *impl_;
  check_tensor("all_gather", tensor, I.device, I.rank);
  Shape shape = tensor.shape();
  shape.insert(shape.begin(), I.world_size);
  Tensor out = empty(shape, {tensor.dtype(), I.device});
  run_and_wait(I, "all_gather", [&] {
    LUMEN_NCCL_CHECK(ncclAllGather(tensor.data_ptr(), out.data_ptr(),
                                   static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                   I.comm, I.stream));
  });
  return out;
}

Tensor NcclCommunicator::reduce_scatter(const Tensor& tensor, ReduceOp op) {
  Impl& I = *impl_;
  check_tensor("reduce_scatter", tensor, I.device, I.rank);
  detail::check_reduce_op("reduce_scatter", tensor, op);
  detail::check_reduce_scatter_shape(tensor, I.world_size, I.rank);
  Shape shape = tensor.shape();
  shape[0] /= I.world_size;
  Tensor out = empty(shape, {tensor.dtype(), I.device});
  run_and_wait(I, lumen::detail::concat("reduce_scatter(", reduce_op_name(op), ")"), [&] {
    LUMEN_NCCL_CHECK(ncclReduceScatter(tensor.data_ptr(), out.data_ptr(),
                                       static_cast<size_t>(out.numel()), nccl_type(tensor.dtype()),
                                       nccl_op(op), I.comm, I.stream));
  });
  return out;
}

// NCCL has no barrier: an all-reduce of one element, waited for.
void NcclCommunicator::barrier() {
  Tensor one = zeros({1}, {DType::f32, impl_->device});
  all_reduce(one, ReduceOp::sum);
}

std::shared_ptr<Communicator> new_nccl_world_communicator(int device, CommunicatorOptions options) {
  return std::make_shared<NcclCommunicator>(new_world_communicator(options), device, options);
}

}  // namespace lumen::dist
