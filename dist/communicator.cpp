#include "dist/communicator.h"

#include <cstring>

namespace lumen::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
  }
  return "?";
}

// Two broadcasts: the length, then the bytes (a u8 tensor of that length).
std::string Communicator::broadcast_string(const std::string& value, int root) {
  Tensor length = from_vector(std::vector<int64_t>{static_cast<int64_t>(value.size())}, {1});
  broadcast(length, root);
  int64_t n = length.item<int64_t>();
  if (n == 0) return {};
  Tensor bytes = empty({n}, {DType::u8});
  if (rank() == root) std::memcpy(bytes.data_ptr(), value.data(), value.size());
  broadcast(bytes, root);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(n));
}

namespace detail {

void check_collective_tensor(const char* op, const Tensor& t, Device device, int rank,
                             bool half_ok) {
  LUMEN_CHECK(t.defined(), "dist::", op, " on rank ", rank, ": the tensor is undefined");
  LUMEN_CHECK(t.device() == device, "dist::", op, " on rank ", rank, ": the tensor is on ",
              t.device(), " but this communicator works on ", device, " tensors");
  LUMEN_CHECK(t.is_contiguous(), "dist::", op, " on rank ", rank, ": the tensor (shape ",
              ShapeStr{t.shape()}, ", strides ", ShapeStr{t.strides()},
              ") must be contiguous; call .contiguous() first");
  LUMEN_CHECK(half_ok || (t.dtype() != DType::f16 && t.dtype() != DType::bf16), "dist::", op,
              " on rank ", rank, ": dtype ", t.dtype(),
              " is not supported by this backend; convert to f32 (.to(DType::f32)) first");
}

void check_reduce_op(const char* op, const Tensor& t, ReduceOp reduce) {
  bool floating = t.dtype() == DType::f32 || t.dtype() == DType::f64;
  LUMEN_CHECK(reduce != ReduceOp::avg || floating, "dist::", op, ": ReduceOp::avg needs a ",
              "floating tensor (f32, f64), got ", t.dtype(), "; use ReduceOp::sum");
  LUMEN_CHECK(t.dtype() != DType::boolean || reduce == ReduceOp::max || reduce == ReduceOp::min,
              "dist::", op, ": a bool tensor reduces with max (any) or min (all), not ",
              reduce_op_name(reduce));
}

void check_reduce_scatter_shape(const Tensor& t, int world_size, int rank) {
  LUMEN_CHECK(t.dim() >= 1 && t.size(0) % world_size == 0, "dist::reduce_scatter on rank ", rank,
              ": the tensor's leading dim must be divisible by the world size ", world_size,
              ", got shape ", ShapeStr{t.shape()});
}

}  // namespace detail
}  // namespace lumen::dist
