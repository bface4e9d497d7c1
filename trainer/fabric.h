#pragma once
// Fabric, as Lightning Fabric: the Trainer's devices, mixed precision and data parallelism for a
// training loop written by hand.
//
//   Fabric fabric({.accelerator = "auto", .precision = "bf16-mixed"});
//   Net net;
//   optim::AdamW opt(net.parameters(), {.lr = 1e-3});
//   auto [model, optimizer] = fabric.setup(net, opt);   // to the device; DDP: rank 0's weights
//   FabricDataLoader loader = fabric.setup_dataloaders(train_loader);  // DDP: this rank's shard
//   for (int64_t epoch = 0; epoch < 3; ++epoch)
//     for (Batch& b : loader) {                          // on the device, epoch by epoch
//       optimizer.zero_grad();
//       Tensor loss = nn::functional::cross_entropy(model(b[0]), b[1]);  // under autocast
//       fabric.backward(loss);                           // scaled; DDP: averaged over ranks
//       optimizer.step();                                // 16-mixed: unscaled, inf skipped
//     }
//   fabric.save("last.ckpt", {{"model", net}, {"optimizer", opt}, {"epoch", epoch}});
//
// Processes come from the launcher (mpirun, srun) as for the Trainer, and the constructor joins
// them, so Lightning's fabric.launch() has no counterpart. What Fabric does per option:
//   accelerator  "cpu", "cuda" (or "gpu"), "auto": the device modules and batches move to;
//                under DDP on GPUs, the GPU of the local rank.
//   precision    "32-true", "16-mixed", "bf16-mixed" (trainer/precision.h): a FabricModule's
//                forward runs under autocast and returns 16-bit floating outputs as f32 (as
//                Lightning's convert_output); "16-mixed" scales the loss in backward() and
//                unscales in FabricOptimizer::step(), skipping steps with inf/NaN gradients.
//   strategy     as the Trainer's (trainer/ddp_strategy.h): under DDP, setup broadcasts rank 0's
//                parameters and buffers, a training forward broadcasts the buffers, backward()
//                averages gradients in buckets that start during backward (after it when
//                several modules sync), and loaders get a distributed sampler.
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/optim/grad_scaler.h"
#include "nn/optim/optimizer.h"
#include "trainer/ddp_strategy.h"
#include "trainer/fabric_data_loader.h"
#include "trainer/gradient_buckets.h"
#include "trainer/logger.h"
#include "trainer/precision.h"
#include "trainer/stateful.h"

namespace lumen {

struct FabricOptions {
  std::string accelerator = "auto";
  StrategyOption strategy = "auto";
  std::string precision = "32";
  optim::GradScalerOptions grad_scaler = {};  // of "16-mixed"
  // Where log() goes (rank 0 only); none by default, as Lightning's Fabric.
  std::vector<std::shared_ptr<Logger>> loggers = {};
};

// Exactly one of clip_val (clamp every element) and max_norm (scale by the total norm), as
// Fabric.clip_gradients.
struct ClipGradientsOptions {
  std::optional<double> clip_val = std::nullopt;
  std::optional<double> max_norm = std::nullopt;
  double norm_type = 2.0;
  // With the loss scaler of "16-mixed" on, a non-finite norm is what it expects now and then
  // (the step is skipped and the scale lowered), so it never throws there.
  bool error_if_nonfinite = true;
};

class Fabric;

// A module set up with Fabric: calling it runs the module's forward as a training step needs
// it (autocast, DDP's bookkeeping). The module itself stays reachable (->, module()); calling it
// directly skips both. A light handle: the module and the Fabric must outlive it.
template <class M>
class FabricModule {
 public:
  M& module() const { return *module_; }
  M* operator->() const { return module_; }

  // The module's operator(), or its forward when it has no operator() for these arguments.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return run([&]() -> decltype(auto) {
      if constexpr (std::is_invocable_v<M&, Args...>)
        return (*module_)(std::forward<Args>(args)...);
      else
        return module_->forward(std::forward<Args>(args)...);
    });
  }
  // Another member function as a forward pass, e.g. model.call(&Net::training_step, batch, i)
  // (Lightning's mark_forward_method).
  template <class Method, class... Args>
  decltype(auto) call(Method method, Args&&... args) const {
    return run([&]() -> decltype(auto) {
      return std::invoke(method, *module_, std::forward<Args>(args)...);
    });
  }

 private:
  friend class Fabric;
  FabricModule(Fabric* fabric, M* module, size_t id) : fabric_(fabric), module_(module), id_(id) {}
  template <class Body>
  decltype(auto) run(Body&& body) const;

  Fabric* fabric_;
  M* module_;
  size_t id_;
};

// An optimizer set up with Fabric: step() applies the precision (16-mixed: unscale, skip on
// inf/NaN; the scale is adjusted at the next backward or load, once for all the steps taken
// on one backward's gradients; save and grad_scaler() show the adjusted scale). The
// optimizer itself is optimizer(); stepping it directly skips the precision.
class FabricOptimizer {
 public:
  optim::Optimizer& optimizer() const { return *optimizer_; }
  void zero_grad() const { optimizer_->zero_grad(); }
  // Returns whether the parameters were updated (false: skipped by the loss scaler). Under
  // 16-mixed or DDP, a forward with gradients since the last Fabric::backward is an error here:
  // it means loss.backward() was called instead (an unscaled loss, gradients not averaged).
  // Several optimizers may step on one backward; each steps once per backward.
  bool step() const;

 private:
  friend class Fabric;
  FabricOptimizer(Fabric* fabric, optim::Optimizer* optimizer)
      : fabric_(fabric), optimizer_(optimizer) {}
  Fabric* fabric_;
  optim::Optimizer* optimizer_;
};

// While alive, backward() accumulates the module's gradients locally without averaging them
// over the ranks (PyTorch DDP's no_sync): for the micro-batches of gradient accumulation but the
// last. Does nothing on one device.
class NoBackwardSync {
 public:
  ~NoBackwardSync() {
    if (depth_) --*depth_;
  }
  NoBackwardSync(const NoBackwardSync&) = delete;
  NoBackwardSync& operator=(const NoBackwardSync&) = delete;

 private:
  friend class Fabric;
  explicit NoBackwardSync(int* depth) : depth_(depth) {
    if (depth_) ++*depth_;
  }
  int* depth_;
};

class Fabric {
 public:
  explicit Fabric(FabricOptions options = {});
  // Finalizes the loggers: "success", or "failed" when an exception is unwinding.
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  Device device() const { return device_; }
  int global_rank() const { return comm_ ? comm_->rank() : 0; }
  int local_rank() const { return comm_ ? comm_->local_rank() : 0; }
  int world_size() const { return comm_ ? comm_->world_size() : 1; }
  bool is_global_zero() const { return global_rank() == 0; }
  std::string strategy() const { return comm_ ? "ddp" : "single_device"; }
  std::string precision() const { return precision_.name; }
  // The communicator of the DDP strategy (host collectives), or null.
  const std::shared_ptr<dist::Communicator>& communicator() const { return comm_; }
  // The loss scaler of "16-mixed" as it stands after the steps taken (a copy of its own: the
  // live scaler is adjusted at the next backward), or null (also when
  // GradScalerOptions::enabled is false).
  std::shared_ptr<const optim::GradScaler> grad_scaler() const;

  // Moves the module to the device (when not there yet) and, under DDP, gives every rank rank
  // 0's parameters and buffers and prepares the gradient buckets. A move to another device
  // replaces the parameters, so an optimizer is then built after setup_module, or passed to
  // setup(). Setting up a module at the address of one set up before replaces that one (a new
  // model of a sweep); the records, and their DDP buckets, live as long as the Fabric.
  template <class M>
  FabricModule<M> setup_module(M& module) {
    static_assert(std::is_base_of_v<nn::Module, M>, "Fabric::setup_module takes an nn::Module");
    return FabricModule<M>(this, &module, add_module(module, {}));
  }
  // Every parameter must be on the device (build it after setup_module, or use setup()).
  FabricOptimizer setup_optimizers(optim::Optimizer& optimizer);
  // setup_module, with the optimizers' parameters that belong to the module swapped for their
  // moved selves: auto [model, opt_a, opt_b] = fabric.setup(net, a, b). The optimizers must
  // not have stepped yet (their state would stay behind).
  template <class M, class... O>
  requires(sizeof...(O) > 0 && (std::is_base_of_v<optim::Optimizer, O> && ...))
      std::tuple<FabricModule<M>, std::conditional_t<true, FabricOptimizer, O>...> setup(
          M& module, O&... optimizers) {
    static_assert(std::is_base_of_v<nn::Module, M>, "Fabric::setup takes an nn::Module");
    size_t id = add_module(module, {static_cast<optim::Optimizer*>(&optimizers)...});
    return {FabricModule<M>(this, &module, id), FabricOptimizer(this, &optimizers)...};
  }
  template <class M>
  FabricModule<M> setup(M& module) {
    return setup_module(module);
  }
  // The loader as Fabric iterates it: under DDP (with use_distributed_sampler) this rank's
  // shard, and each batch moved to the device (move_to_device). The loader must outlive it.
  FabricDataLoader setup_dataloaders(DataLoader& loader, bool use_distributed_sampler = true,
                                     bool move_to_device = true);

  // Backward from `loss` (a scalar): scaled under "16-mixed"; under DDP, the gradients of every
  // module whose forward ran with gradients on since it last received gradients are averaged
  // over the ranks, in buckets that start during the backward (after it, when several modules
  // sync), unless a NoBackwardSync holds the module. Under DDP a backward that throws is fatal to
  // the run: the other ranks wait for this one's all-reduces until the strategy's timeout.
  void backward(const Tensor& loss);
  // Clips the gradients of the optimizer's parameters (unscaling them first under "16-mixed"),
  // as Lightning (the module matters to sharded strategies only). Returns the total norm before
  // clipping (max_norm), or an undefined tensor (clip_val).
  Tensor clip_gradients(const nn::Module& module, const FabricOptimizer& optimizer,
                        const ClipGradientsOptions& options);
  template <class M>
  Tensor clip_gradients(const FabricModule<M>& module, const FabricOptimizer& optimizer,
                        const ClipGradientsOptions& options) {
    return clip_gradients(module.module(), optimizer, options);
  }
  // See NoBackwardSync. `enabled` = false makes it a no-op guard.
  template <class M>
  NoBackwardSync no_backward_sync(const FabricModule<M>& module, bool enabled = true) {
    return NoBackwardSync(enabled && comm_ ? &modules_.at(module.id_)->no_sync_depth : nullptr);
  }
  // The precision's autocast for code outside a FabricModule's forward (e.g. a loss).
  ForwardContext autocast() const { return ForwardContext(precision_.autocast_dtype); }

  Tensor to_device(const Tensor& tensor) const { return tensor.to(device_); }
  Batch to_device(const Batch& batch) const;

  // Collectives over the ranks; on one device they return the input's values. A tensor on a GPU
  // goes over NCCL, one on the CPU over MPI. Every rank must call them in the same order.
  void barrier() const;
  Tensor all_reduce(const Tensor& tensor, dist::ReduceOp op = dist::ReduceOp::avg) const;
  // [world_size, *tensor.shape], on one device too (Lightning adds no dimension there).
  Tensor all_gather(const Tensor& tensor) const;
  Tensor broadcast(const Tensor& tensor, int src = 0) const;
  std::string broadcast(const std::string& value, int src = 0) const;
  // Rank 0 (of the node with local = true) runs `fn` first, the other ranks after it (e.g. a
  // download the others then read). If it throws on any rank, every rank throws.
  void rank_zero_first(const std::function<void()>& fn, bool local = false) const;
  // Prints on rank 0 only, the arguments one after the other and a newline, and flushes.
  template <class... Args>
  void print(const Args&... args) const {
    if (!is_global_zero()) return;
    (std::cout << ... << args) << std::endl;
  }

  // Logs to every logger, on rank 0 only. An unset step is the number of log calls before this
  // one (each log or log_dict call one step), as Lightning's CSV logger counts rows.
  void log(const std::string& name, double value, std::optional<int64_t> step = std::nullopt);
  void log(const std::string& name, const Tensor& value,
           std::optional<int64_t> step = std::nullopt);
  void log_dict(const std::map<std::string, double>& metrics,
                std::optional<int64_t> step = std::nullopt);
  const std::vector<std::shared_ptr<Logger>>& loggers() const { return loggers_; }
  Logger* logger() const { return loggers_.empty() ? nullptr : loggers_.front().get(); }

  // Writes the objects of `state` to an HDF5 checkpoint (rank 0 writes, atomically; every rank
  // waits for it; a missing directory is made), with the loss scaler's state under "16-mixed".
  // Layout:
  //   /              attrs: format, version, lumen_version, created, and the plain values
  //   /<name>/...    a module's state_dict, an optimizer's, scheduler's or loader's state, a State
  //   /fabric        attrs: precision; group grad_scaler ("16-mixed")
  void save(const std::string& path, const FabricState& state) const;
  // Restores the objects of `state` in place from a checkpoint save() wrote, and the loss
  // scaler's state if both have one. With strict, every name of `state` must be in the file
  // and modules load strictly. Names, types, module shapes and dtypes and loader positions are
  // checked before anything changes; an optimizer or scheduler that refuses its state gets
  // back the one it had, as do those loaded before it. Returns what the file holds that `state`
  // did not ask for (plain values as attrs, the rest as groups); with an empty `state`, the
  // whole checkpoint, and nothing is restored.
  State load(const std::string& path, const FabricState& state = {}, bool strict = true);

 private:
  template <class M>
  friend class FabricModule;
  friend class FabricOptimizer;

  struct ModuleRecord {
    nn::Module* module = nullptr;
    std::unique_ptr<GradientBuckets> buckets;  // DDP only
    bool forward_ran = false;                  // since the last backward
    int no_sync_depth = 0;
    bool collectives_in_backward = false;  // has_synced_batch_norm(*module) at setup
  };
  size_t add_module(nn::Module& module, std::vector<optim::Optimizer*> optimizers);
  void check_on_device(const optim::Optimizer& optimizer) const;
  void before_forward(size_t id);
  Tensor output_to_f32(const Tensor& out) const;
  bool step(optim::Optimizer& optimizer);
  void flush_scaler_update() const;
  const std::shared_ptr<dist::Communicator>& comm_for(const Tensor& tensor) const;

  FabricOptions options_;
  Precision precision_;
  std::unique_ptr<optim::GradScaler> scaler_;
  std::shared_ptr<dist::Communicator> comm_;         // host collectives; null on one device
  std::shared_ptr<dist::Communicator> device_comm_;  // the model's tensors: NCCL on GPUs
  Device device_ = Device::cpu();
  std::vector<std::unique_ptr<ModuleRecord>> modules_;
  bool forward_since_backward_ = false;
  std::vector<std::shared_ptr<Logger>> loggers_;
  int64_t log_calls_ = 0;
  int uncaught_at_construction_ = 0;
};

template <class M>
template <class Body>
decltype(auto) FabricModule<M>::run(Body&& body) const {
  fabric_->before_forward(id_);
  using Out = decltype(body());
  if constexpr (std::is_same_v<std::decay_t<Out>, Tensor>) {
    Tensor out;
    {
      ForwardContext autocast(fabric_->precision_.autocast_dtype);
      out = body();
    }
    return fabric_->output_to_f32(out);
  } else {
    ForwardContext autocast(fabric_->precision_.autocast_dtype);
    return body();
  }
}

inline bool FabricOptimizer::step() const { return fabric_->step(*optimizer_); }

}  // namespace lumen
