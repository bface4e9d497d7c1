#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace lumen::dist {

namespace {

using Clock = std::chrono::steady_clock;

// A failed MPI call becomes a lumen::Error naming the call, the code and MPI's message.
void check_mpi(int code, const char* call, int rank) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  lumen::detail::throw_error("dist: ", call, " failed on rank ", rank, " with MPI error ", code,
                             ": ", std::string(text, static_cast<size_t>(length)));
}

// MPI for the whole process: initialised by the first communicator, finalised at exit, unless
// a communicator was left inside a collective that never completed (then MPI_Finalize would
// hang, and the job is aborted instead).
struct MpiRuntime {
  bool stuck = false;
  MpiRuntime() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
      LUMEN_CHECK(provided >= MPI_THREAD_MULTIPLE, "dist: the MPI library provides thread level ",
                  provided, " but Lumen's MPI backend needs MPI_THREAD_MULTIPLE (",
                  MPI_THREAD_MULTIPLE, "): each communicator calls MPI from its own thread");
      owned = true;
    }
  }
  ~MpiRuntime() {
    if (stuck) {
      std::fprintf(stderr, "lumen: a collective is still blocked at exit; aborting the MPI job\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized) MPI_Finalize();
  }
  bool owned = false;
};

MpiRuntime& mpi_runtime() {
  static MpiRuntime runtime;
  return runtime;
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u8:
    case DType::boolean:
      return MPI_UINT8_T;  // bool is one byte 0/1: max = any, min = all
    default:
      break;
  }
  lumen::detail::throw_error("dist: MPI has no type for ", t);
}

// avg is a sum followed by this division, in the communicator's thread.
MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:
      return MPI_SUM;
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  return MPI_SUM;
}

void divide(void* data, DType t, int64_t n, int divisor) {
  if (t == DType::f32) {
    float* p = static_cast<float*>(data);
    for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(divisor);
  } else {
    double* p = static_cast<double*>(data);
    for (int64_t i = 0; i < n; ++i) p[i] /= divisor;
  }
}

int checked_count(int64_t n, const char* op) {
  LUMEN_CHECK(n <= INT32_MAX, "dist::", op, ": ", n,
              " elements exceed MPI's int count; split the tensor");
  return static_cast<int>(n);
}

}  // namespace

// What one collective in flight shares between its caller and the communicator's thread.
struct Operation {
  std::string description;  // "all_reduce(avg) of 1024 f32 elements"
  Clock::time_point deadline;
  std::function<void()> run;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
};

struct MpiCommunicator::Impl {
  CommunicatorOptions options;
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, world_size = 1, local_rank = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Operation>> queue;
  bool stop = false;
  bool busy = false;
  std::string failure;  // set when a wait timed out: the communicator is unusable
  std::thread thread;

  void run() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      std::shared_ptr<Operation> op = std::move(queue.front());
      queue.pop_front();
      busy = true;
      lock.unlock();
      try {
        op->run();
      } catch (...) {
        op->error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> op_lock(op->mu);
        op->done = true;
      }
      op->cv.notify_all();
      lock.lock();
      busy = false;
      cv.notify_all();
    }
  }

  std::shared_ptr<Operation> submit(std::string description, std::function<void()> fn) {
    auto op = std::make_shared<Operation>();
    op->description = std::move(description);
    op->deadline = Clock::now() + options.timeout;
    op->run = std::move(fn);
    {
      std::lock_guard<std::mutex> lock(mu);
      LUMEN_CHECK(failure.empty(), "dist: ", op->description, " on rank ", rank,
                  ": the communicator failed earlier and cannot be used any more: ", failure);
      queue.push_back(op);
    }
    cv.notify_one();
    return op;
  }

  void wait(Operation& op) {
    std::unique_lock<std::mutex> lock(op.mu);
    if (!op.cv.wait_until(lock, op.deadline, [&] { return op.done; })) {
      lock.unlock();
      std::string message = lumen::detail::concat(
          op.description, " on rank ", rank, " of ", world_size, " did not complete within ",
          options.timeout.count(),
          " ms: another rank died, hangs, or called a different collective (the timeout is "
          "CommunicatorOptions::timeout, DDPStrategy::timeout in the Trainer)");
      {
        std::lock_guard<std::mutex> guard(mu);
        if (failure.empty()) failure = message;
      }
      throw TimeoutError("dist: " + message);
    }
    if (op.error) std::rethrow_exception(op.error);
  }
};

namespace {
struct MpiWork final : Work {
  std::shared_ptr<MpiCommunicator::Impl> impl;
  std::shared_ptr<Operation> op;
  void wait() override { impl->wait(*op); }
  bool completed() const override {
    std::lock_guard<std::mutex> lock(op->mu);
    return op->done;
  }
};
}  // namespace

MpiCommunicator::MpiCommunicator(CommunicatorOptions options) : impl_(std::make_shared<Impl>()) {
  mpi_runtime();
  Impl& I = *impl_;
  I.options = options;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &I.comm), "MPI_Comm_dup", -1);
  MPI_Comm_set_errhandler(I.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(I.comm, &I.rank);
  MPI_Comm_size(I.comm, &I.world_size);
  // The local rank: this process's rank among those sharing its node's memory.
  MPI_Comm node = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(I.comm, MPI_COMM_TYPE_SHARED, I.rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type", I.rank);
  MPI_Comm_rank(node, &I.local_rank);
  MPI_Comm_free(&node);
  I.thread = std::thread([impl = impl_.get()] { impl->run(); });
}

MpiCommunicator::~MpiCommunicator() {
  Impl& I = *impl_;
  bool stuck = false;
  {
    std::unique_lock<std::mutex> lock(I.mu);
    I.stop = true;
    if (!I.failure.empty()) {
      // A timed-out collective may still be blocked in MPI, or just completing: give it a
      // moment, then leave it (it can be neither joined nor freed).
      I.queue.clear();
      auto grace = std::min<std::chrono::milliseconds>(I.options.timeout, std::chrono::seconds(5));
      stuck = !I.cv.wait_for(lock, grace, [&] { return !I.busy; });
    }
  }
  I.cv.notify_all();
  if (stuck) {
    // The thread keeps its Impl alive through the lambda's raw pointer: leak the Impl.
    new std::shared_ptr<Impl>(impl_);
    I.thread.detach();
    mpi_runtime().stuck = true;
    return;
  }
  I.thread.join();
  MPI_Comm_free(&I.comm);
}

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::world_size() const { return impl_->world_size; }
int MpiCommunicator::local_rank() const { return impl_->local_rank; }
const CommunicatorOptions& MpiCommunicator::options() const { return impl_->options; }

std::shared_ptr<Work> MpiCommunicator::all_reduce_async(const Tensor& tensor, ReduceOp op) {
  Impl& I = *impl_;
  detail::check_collective_tensor("all_reduce", tensor, Device::cpu(), I.rank);
  detail::check_reduce_op("all_reduce", tensor, op);
  int count = checked_count(tensor.numel(), "all_reduce");
  auto work = std::make_shared<MpiWork>();
  work->impl = impl_;
  work->op = I.submit(lumen::detail::concat("all_reduce(", reduce_op_name(op), ") of ", count, " ",
                                            tensor.dtype(), " elements"),
                      [&I, tensor, op, count] {
                        check_mpi(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), count,
                                                mpi_type(tensor.dtype()), mpi_op(op), I.comm),
                                  "MPI_Allreduce", I.rank);
                        if (op == ReduceOp::avg)
                          divide(tensor.data_ptr(), tensor.dtype(), count, I.world_size);
                      });
  return work;
}

void MpiCommunicator::broadcast(const Tensor& tensor, int root) {
  Impl& I = *impl_;
  detail::check_collective_tensor("broadcast", tensor, Device::cpu(), I.rank);
  LUMEN_CHECK(root >= 0 && root < I.world_size, "dist::broadcast: root ", root,
              " is not a rank of a world of size ", I.world_size);
  int count = checked_count(tensor.numel(), "broadcast");
  auto op = I.submit(
      lumen::detail::concat("broadcast from rank ", root, " of ", count, " ", tensor.dtype(),
                            " elements"),
      [&I, tensor, root, count] {
        check_mpi(MPI_Bcast(tensor.data_ptr(), count, mpi_type(tensor.dtype()), root, I.comm),
                  "MPI_Bcast", I.rank);
      });
  I.wait(*op);
}

Tensor MpiCommunicator::all_gather(const Tensor& tensor) {
  Impl& I = *impl_;
  detail::check_collective_tensor("all_gather", tensor, Device::cpu(), I.rank);
  int count = checked_count(tensor.numel(), "all_gather");
  Shape shape = tensor.shape();
  shape.insert(shape.begin(), I.world_size);
  Tensor out = empty(shape, {tensor.dtype()});
  auto op = I.submit(
      lumen::detail::concat("all_gather of ", count, " ", tensor.dtype(), " elements"),
      [&I, tensor, out, count] {
        MPI_Datatype type = mpi_type(tensor.dtype());
        check_mpi(
            MPI_Allgather(tensor.data_ptr(), count, type, out.data_ptr(), count, type, I.comm),
            "MPI_Allgather", I.rank);
      });
  I.wait(*op);
  return out;
}

Tensor MpiCommunicator::reduce_scatter(const Tensor& tensor, ReduceOp op) {
  Impl& I = *impl_;
  detail::check_collective_tensor("reduce_scatter", tensor, Device::cpu(), I.rank);
  detail::check_reduce_op("reduce_scatter", tensor, op);
  detail::check_reduce_scatter_shape(tensor, I.world_size, I.rank);
  Shape shape = tensor.shape();
  shape[0] /= I.world_size;
  Tensor out = empty(shape, {tensor.dtype()});
  int count = checked_count(out.numel(), "reduce_scatter");
  auto pending =
      I.submit(lumen::detail::concat("reduce_scatter(", reduce_op_name(op), ") of ", tensor.numel(),
                                     " ", tensor.dtype(), " elements"),
               [&I, tensor, out, op, count] {
                 check_mpi(MPI_Reduce_scatter_block(tensor.data_ptr(), out.data_ptr(), count,
                                                    mpi_type(tensor.dtype()), mpi_op(op), I.comm),
                           "MPI_Reduce_scatter_block", I.rank);
                 if (op == ReduceOp::avg) divide(out.data_ptr(), out.dtype(), count, I.world_size);
               });
  I.wait(*pending);
  return out;
}

void MpiCommunicator::barrier() {
  Impl& I = *impl_;
  auto op = I.submit("barrier", [&I] { check_mpi(MPI_Barrier(I.comm), "MPI_Barrier", I.rank); });
  I.wait(*op);
}

}  // namespace lumen::dist
