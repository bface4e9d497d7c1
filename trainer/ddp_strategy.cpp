#include "trainer/ddp_strategy.h"

#include <map>
#include <vector>

#include "autograd/grad_mode.h"
#include "dist/launcher_environment.h"
#include "dist/world.h"
#include "nn/functional/index.h"
#include "nn/module.h"
#include "tensor/error.h"
#include "tensor/storage.h"
#include "trainer/data_loader.h"

#if LUMEN_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace lumen {

std::shared_ptr<dist::Communicator> strategy_communicator(const StrategyOption& strategy,
                                                          const std::string& who) {
  const std::string& name = strategy.name;
  LUMEN_CHECK(name == "auto" || name == "single_device" || name == "ddp", who,
              ": strategy must be \"auto\", \"single_device\", \"ddp\" or a DDPStrategy, got \"",
              name, "\"");
  if (name == "single_device" || (name == "auto" && dist::launcher_environment().world_size <= 1))
    return nullptr;
  const DDPStrategy& ddp = strategy.ddp;
  LUMEN_CHECK(ddp.bucket_cap_mb > 0, who, ": DDPStrategy::bucket_cap_mb must be > 0, got ",
              ddp.bucket_cap_mb);
  LUMEN_CHECK(ddp.timeout.count() > 0, who, ": DDPStrategy::timeout must be > 0 ms, got ",
              ddp.timeout.count());
  return ddp.communicator ? ddp.communicator
                          : dist::new_world_communicator({.timeout = ddp.timeout});
}

Device gpu_of_process(const dist::Communicator& comm, const std::string& who) {
  const int gpus = device_count(Device::CUDA), local = comm.local_rank();
  LUMEN_CHECK(local < gpus, who, ": DDP on GPUs runs one process per GPU, but local rank ", local,
              " has no GPU of its own (", gpus,
              " on this node); start at most as many processes per node as it has GPUs");
  return Device::cuda(local);
}

std::shared_ptr<dist::Communicator> nccl_communicator(
    const std::shared_ptr<dist::Communicator>& comm, Device device, const std::string& who) {
#if LUMEN_NCCL
  (void)who;
  return std::make_shared<dist::NcclCommunicator>(comm, device.index, comm->options());
#else
  (void)comm;
  (void)device;
  detail::throw_error(who, ": DDP on GPUs needs NCCL, and this build of Lumen has none ",
                      "(configure with CUDA and NCCL found); use accelerator = \"cpu\" to train ",
                      "over MPI");
#endif
}

// One broadcast per dtype, the tensors packed end to end and unpacked in place (buffers go
// every step, three per batch norm: one call each would be one round trip each).
void broadcast_module_state(const nn::Module& module, dist::Communicator& comm, bool buffers_only) {
  NoGradGuard no_grad;
  std::map<DType, std::vector<Tensor>> by_dtype;
  if (!buffers_only)
    for (const auto& [name, p] : module.named_parameters())
      if (p.numel() > 0) by_dtype[p.dtype()].push_back(p);
  for (const auto& [name, b] : module.named_buffers())
    if (b.numel() > 0) by_dtype[b.dtype()].push_back(b);
  for (const auto& [dtype, tensors] : by_dtype) {
    if (tensors.size() == 1 && tensors[0].is_contiguous()) {
      comm.broadcast(tensors[0], 0);
      tensors[0].bump_version();  // written in place (autocast's weight copies are stale)
      continue;
    }
    std::vector<Tensor> flat_parts;
    for (const Tensor& t : tensors) flat_parts.push_back(t.reshape({-1}));
    Tensor flat = cat(flat_parts);
    comm.broadcast(flat, 0);
    int64_t offset = 0;
    for (const Tensor& t : tensors) {
      Tensor(t).copy_(flat.narrow(0, offset, t.numel()).view(t.shape()));  // bumps its version
      offset += t.numel();
    }
  }
}

void distribute_loader(DataLoader& loader, dist::Communicator& comm) {
  Tensor seed = from_vector(std::vector<int64_t>{static_cast<int64_t>(loader.seed())}, {1});
  comm.broadcast(seed, 0);
  loader.distribute(comm.rank(), comm.world_size(), static_cast<uint64_t>(seed.item<int64_t>()));
}

// An all-reduce of the failed rank where a barrier would do.
void run_and_agree(dist::Communicator* comm, const std::string& who, const std::string& what,
                   bool here, const std::function<void()>& step) {
  if (!comm) {
    if (here) step();
    return;
  }
  std::exception_ptr error;
  if (here) {
    try {
      step();
    } catch (...) {
      error = std::current_exception();
    }
  }
  // The highest failed rank + 1, or 0.
  Tensor failed = from_vector(std::vector<int64_t>{error ? comm->rank() + 1 : 0}, {1});
  comm->all_reduce(failed, dist::ReduceOp::max);
  if (error) std::rethrow_exception(error);
  const int64_t failed_rank = failed.item<int64_t>() - 1;
  LUMEN_CHECK(failed_rank < 0, who, ": ", what, " failed on rank ", failed_rank,
              " (its error is in that rank's output); rank ", comm->rank(), " stops too");
}

}  // namespace lumen
