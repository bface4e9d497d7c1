#include "trainer/fabric.h"

#include <exception>
#include <filesystem>
#include <set>
#include <utility>

#include "autograd/grad_mode.h"
#include "io/checkpoint.h"
#include "nn/optim/clip_grad.h"
#include "tensor/error.h"
#include "trainer/accelerator.h"
#include "trainer/sync_batch_norm.h"

namespace lumen {

namespace {

// Root names of a Fabric checkpoint that are not the user's.
bool reserved_name(const std::string& name) {
  return name == "format" || name == "version" || name == "lumen_version" || name == "created" ||
         name == "fabric";
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += (out.empty() ? "" : "; ") + l;
  return out;
}

}  // namespace

Fabric::Fabric(FabricOptions options)
    : options_(std::move(options)),
      precision_(parse_precision(options_.precision, "Fabric")),
      uncaught_at_construction_(std::uncaught_exceptions()) {
  check_accelerator(options_.accelerator, "Fabric");
  for (const auto& lg : options_.loggers) LUMEN_CHECK(lg != nullptr, "Fabric: a logger is null");
  // A disabled scaler (GradScalerOptions::enabled = false) is no scaler.
  if (precision_.scales_loss() && options_.grad_scaler.enabled)
    scaler_ = std::make_unique<optim::GradScaler>(options_.grad_scaler);
  comm_ = strategy_communicator(options_.strategy, "Fabric");
  bool cuda = accelerator_uses_cuda(options_.accelerator, "Fabric");
  device_ = cuda ? Device::cuda(0) : Device::cpu();
  device_comm_ = comm_;
  if (comm_ && cuda) {
    device_ = gpu_of_process(*comm_, "Fabric");
    device_comm_ = nccl_communicator(comm_, device_, "Fabric");
  }
  if (is_global_zero()) loggers_ = options_.loggers;
}

Fabric::~Fabric() {
  const char* status =
      std::uncaught_exceptions() > uncaught_at_construction_ ? "failed" : "success";
  for (const auto& lg : loggers_) {
    try {
      lg->finalize(status);
    } catch (const std::exception& e) {
      std::cerr << "Fabric: finalizing logger " << lg->name() << " failed: " << e.what() << "\n";
    }
  }
}

// PyTorch DDP's constructor: rank 0's parameters and buffers everywhere, then the reducer.
size_t Fabric::add_module(nn::Module& module, std::vector<optim::Optimizer*> optimizers) {
  for (optim::Optimizer* o : optimizers)
    LUMEN_CHECK(o->step_count() == 0, "Fabric.setup: the ", o->type_name(), " has stepped ",
                o->step_count(),
                " times already; set it up before training (its state would stay on the old "
                "device)");
  // Only a move to another device replaces the parameters (on the CPU, optimizers built before
  // setup_module and other references stay valid); the optimizers get the moved ones.
  bool moves = false;
  for (const auto& [name, t] : module.named_parameters()) moves = moves || t.device() != device_;
  for (const auto& [name, t] : module.named_buffers()) moves = moves || t.device() != device_;
  if (moves) {
    std::vector<Tensor> before = module.parameters();
    module.to(device_);
    std::vector<Tensor> after = module.parameters();
    for (optim::Optimizer* o : optimizers)
      for (optim::ParamGroup& g : o->param_groups())
        for (Tensor& p : g.params)
          for (size_t i = 0; i < before.size(); ++i)
            if (p.impl() == before[i].impl()) p = after[i];
  }
  for (optim::Optimizer* o : optimizers) check_on_device(*o);
  auto record = std::make_unique<ModuleRecord>();
  record->module = &module;
  record->collectives_in_backward = comm_ && has_synced_batch_norm(module);
  if (comm_) {
    broadcast_module_state(module, *device_comm_, false);
    std::vector<Tensor> trainable;
    for (const Tensor& p : module.parameters())
      if (p.requires_grad()) trainable.push_back(p);
    auto cap = static_cast<int64_t>(options_.strategy.ddp.bucket_cap_mb * 1024 * 1024);
    record->buckets = std::make_unique<GradientBuckets>(trainable, device_comm_, cap);
  }
  // A module at the address of an earlier one takes its record (the old buckets remove their
  // hooks; a NoBackwardSync of the old handle still counts).
  for (size_t i = 0; i < modules_.size(); ++i)
    if (modules_[i]->module == &module) {
      modules_[i]->buckets = std::move(record->buckets);
      modules_[i]->forward_ran = false;
      return i;
    }
  modules_.push_back(std::move(record));
  return modules_.size() - 1;
}

void Fabric::check_on_device(const optim::Optimizer& optimizer) const {
  int64_t index = 0;
  for (const optim::ParamGroup& g : optimizer.param_groups())
    for (const Tensor& p : g.params) {
      LUMEN_CHECK(p.device() == device_, "Fabric.setup_optimizers: parameter ", index, " of the ",
                  optimizer.type_name(), " is on ", p.device().str(), " but Fabric runs on ",
                  device_.str(),
                  "; build the optimizer after setup_module(model), or pass it to "
                  "setup(model, optimizer) (a module's move to the device replaces its "
                  "parameters)");
      ++index;
    }
}

FabricOptimizer Fabric::setup_optimizers(optim::Optimizer& optimizer) {
  check_on_device(optimizer);
  return FabricOptimizer(this, &optimizer);
}

FabricDataLoader Fabric::setup_dataloaders(DataLoader& loader, bool use_distributed_sampler,
                                           bool move_to_device) {
  if (comm_ && use_distributed_sampler) distribute_loader(loader, *comm_);
  return FabricDataLoader(loader, move_to_device ? device_ : Device::cpu());
}

// DDP's forward: buffers from rank 0 (broadcast_buffers) while training, and the module's
// gradients joined to the next backward's all-reduce.
// A forward without gradients (evaluation, a frozen model) joins no all-reduce, as PyTorch's
// reducer prepares only when grad is enabled.
void Fabric::before_forward(size_t id) {
  ModuleRecord& r = *modules_.at(id);
  if (comm_ && options_.strategy.ddp.broadcast_buffers && r.module->is_training())
    broadcast_module_state(*r.module, *device_comm_, true);
  if (GradMode::is_enabled()) r.forward_ran = forward_since_backward_ = true;
}

// Lightning's MixedPrecision.convert_output: what leaves an autocast forward is f32.
Tensor Fabric::output_to_f32(const Tensor& out) const {
  if (precision_.autocast_dtype && out.defined() && out.dtype() == *precision_.autocast_dtype)
    return out.to(DType::f32);
  return out;
}

void Fabric::backward(const Tensor& loss) {
  LUMEN_CHECK(loss.defined(), "Fabric.backward: the loss is an undefined tensor");
  LUMEN_CHECK(loss.numel() == 1, "Fabric.backward: the loss must be a scalar, got shape ",
              ShapeStr{loss.shape()});
  LUMEN_CHECK(loss.requires_grad(),
              "Fabric.backward: the loss does not depend on any parameter that requires grad");
  std::vector<ModuleRecord*> syncing;
  bool any_ran = false;
  for (const auto& r : modules_) {
    any_ran = any_ran || r->forward_ran;
    if (r->buckets && r->forward_ran && r->no_sync_depth == 0) syncing.push_back(r.get());
  }
  LUMEN_CHECK(!comm_ || modules_.empty() || any_ran,
              "Fabric.backward: under DDP the gradients are averaged for the modules whose "
              "forward ran through what setup() returned, and none did since the last backward; "
              "call model(x) with the FabricModule, not the module itself");
  // A failed backward leaves no module waiting for the next one.
  struct ResetOnFailure {
    std::vector<std::unique_ptr<ModuleRecord>>& modules;
    bool& forward_since_backward;
    bool done = false;
    ~ResetOnFailure() {
      if (done) return;
      for (const auto& r : modules) r->forward_ran = false;
      forward_since_backward = false;
    }
  } reset{modules_, forward_since_backward_};
  // One module's buckets start in the same order on every rank; several modules' buckets could
  // complete in other orders on other ranks, so then they all start after the backward.
  // A synchronised batch norm's backward runs collectives of its own: then too (see
  // has_synced_batch_norm).
  bool overlap = syncing.size() <= 1;
  for (const ModuleRecord* r : syncing) overlap = overlap && !r->collectives_in_backward;
  for (const auto& r : modules_)
    if (r->buckets && r->forward_ran) r->buckets->prepare(r->no_sync_depth == 0, overlap);
  flush_scaler_update();
  Tensor to_backward = scaler_ ? scaler_->scale(loss) : loss;
  to_backward.backward();
  // A synced module that no rank got a gradient for in this backward (a generator whose output
  // the discriminator's loss detached) stays ready for the next one, as PyTorch's reducer does;
  // every other module waits for its next forward.
  std::vector<ModuleRecord*> waiting;
  for (ModuleRecord* r : syncing)
    if (!r->buckets->finish()) waiting.push_back(r);
  reset.done = true;
  for (const auto& r : modules_) r->forward_ran = false;
  for (ModuleRecord* r : waiting) r->forward_ran = true;
  forward_since_backward_ = false;
}

void Fabric::flush_scaler_update() const {
  if (scaler_ && scaler_->update_due()) scaler_->update();
}

// A copy: adjusting the live scaler here, between two optimizers' steps on one backward (or on
// one rank only), would unscale the later step's gradients by a scale they were not made with.
std::shared_ptr<const optim::GradScaler> Fabric::grad_scaler() const {
  if (!scaler_) return nullptr;
  auto view = std::make_shared<optim::GradScaler>(*scaler_);
  if (view->update_due()) view->update();
  return view;
}

// Lightning's MixedPrecision.optimizer_step.
bool Fabric::step(optim::Optimizer& optimizer) {
  LUMEN_CHECK(!(scaler_ || comm_) || !forward_since_backward_,
              "FabricOptimizer.step: a module set up with Fabric ran a forward with gradients "
              "since the last fabric.backward(loss); under ",
              scaler_ ? "16-mixed the loss must be scaled" : "DDP gradients must be averaged",
              ", so call fabric.backward(loss), not loss.backward() (or run forwards that need no "
              "gradients under NoGradGuard)");
  if (!scaler_) {
    optimizer.step();
    return true;
  }
  // The scale is adjusted once per backward, after every optimizer stepped on its gradients
  // (torch.amp: scaler.step(a); scaler.step(b); scaler.update()): at the next backward, save or
  // read of the scaler.
  return scaler_->step(optimizer);
}

Tensor Fabric::clip_gradients(const nn::Module& module, const FabricOptimizer& optimizer,
                              const ClipGradientsOptions& options) {
  LUMEN_CHECK(options.clip_val.has_value() != options.max_norm.has_value(),
              "Fabric.clip_gradients: set exactly one of clip_val and max_norm");
  (void)module;  // as in Lightning, the optimizer's parameters are clipped
  // A clip without a step still makes the scale's update due (at the next backward).
  if (scaler_ && !scaler_->unscaled(optimizer.optimizer()))
    scaler_->unscale_(optimizer.optimizer());
  const std::vector<Tensor> params = optimizer.optimizer().parameters();
  if (options.clip_val) {
    optim::clip_grad_value_(params, *options.clip_val);
    return {};
  }
  return optim::clip_grad_norm_(params, *options.max_norm, options.norm_type,
                                options.error_if_nonfinite && !scaler_);  // see the header
}

Batch Fabric::to_device(const Batch& batch) const {
  Batch out;
  for (const Tensor& t : batch) out.push_back(t.to(device_));
  return out;
}

const std::shared_ptr<dist::Communicator>& Fabric::comm_for(const Tensor& tensor) const {
  return tensor.device().is_cuda() ? device_comm_ : comm_;
}

void Fabric::barrier() const {
  if (comm_) comm_->barrier();
}

Tensor Fabric::all_reduce(const Tensor& tensor, dist::ReduceOp op) const {
  Tensor out = tensor.detach().clone();
  if (comm_) comm_for(tensor)->all_reduce(out, op);
  return out;
}

Tensor Fabric::all_gather(const Tensor& tensor) const {
  if (!comm_) return tensor.detach().clone().unsqueeze(0);
  return comm_for(tensor)->all_gather(tensor.detach().contiguous());
}

Tensor Fabric::broadcast(const Tensor& tensor, int src) const {
  Tensor out = tensor.detach().clone();
  if (comm_) comm_for(tensor)->broadcast(out, src);
  return out;
}

std::string Fabric::broadcast(const std::string& value, int src) const {
  return comm_ ? comm_->broadcast_string(value, src) : value;
}

void Fabric::rank_zero_first(const std::function<void()>& fn, bool local) const {
  bool first = (local ? local_rank() : global_rank()) == 0;
  run_and_agree(comm_.get(), "Fabric", "rank_zero_first's function", first, fn);
  run_and_agree(comm_.get(), "Fabric", "rank_zero_first's function", !first, fn);
}

void Fabric::log(const std::string& name, double value, std::optional<int64_t> step) {
  log_dict({{name, value}}, step);
}

void Fabric::log(const std::string& name, const Tensor& value, std::optional<int64_t> step) {
  LUMEN_CHECK(value.defined() && value.numel() == 1, "Fabric.log: \"", name,
              "\" must be a one-element tensor");
  log_dict({{name, value.item()}}, step);
}

void Fabric::log_dict(const std::map<std::string, double>& metrics, std::optional<int64_t> step) {
  int64_t s = step.value_or(log_calls_);
  ++log_calls_;
  for (const auto& lg : loggers_) lg->log_metrics(metrics, s);
}

void Fabric::save(const std::string& path, const FabricState& state) const {
  State root;
  for (const auto& [name, entry] : state) {
    LUMEN_CHECK(!reserved_name(name), "Fabric.save: \"", name,
                "\" is reserved in a Fabric checkpoint (format, version, lumen_version, "
                "created, fabric); name the entry otherwise");
    entry.save(root, name);
  }
  State& fabric = root.groups["fabric"];
  fabric.attrs["precision"] = precision_.name;
  if (scaler_) fabric.groups["grad_scaler"] = grad_scaler()->state_dict();
  run_and_agree(comm_.get(), "Fabric", "save(\"" + path + "\")", is_global_zero(), [&] {
    // As Lightning's checkpoint IO, the directory is made when missing.
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    io::save_checkpoint(path, root);
  });
}

State Fabric::load(const std::string& path, const FabricState& state, bool strict) {
  // Every rank reads once all are here (a file rank 0 wrote by other means than save() may be
  // in the making), and all stop if any cannot read it or finds it does not fit.
  for (const auto& [name, entry] : state)
    LUMEN_CHECK(!reserved_name(name), "Fabric.load: \"", name,
                "\" is reserved in a Fabric checkpoint (format, version, lumen_version, "
                "created, fabric); name the entry otherwise");
  barrier();
  State root;
  run_and_agree(comm_.get(), "Fabric", "load(\"" + path + "\")", true, [&] {
    root = io::load_checkpoint(path);
    std::vector<std::string> problems;
    for (const auto& [name, entry] : state)
      for (std::string& p : entry.problems(root, name, strict))
        if (strict || !p.starts_with("missing \"")) problems.push_back(std::move(p));
    LUMEN_CHECK(problems.empty(), "Fabric.load: checkpoint ", path,
                " does not fit the state: ", joined(problems));
  });
  auto present = [&](const std::string& name, const Stateful& entry) {
    return entry.is_value() ? root.has_attr(name) : root.has_group(name);
  };
  // The entries that check their state as they load it go first, each restored from a copy if a
  // later one fails; modules and plain values, checked above, cannot fail after them.
  if (state.empty()) return root;
  // The entries loaded here, each with the state it had (the failing one included: its
  // load_state_dict may have changed part of it before refusing).
  std::vector<std::pair<const Stateful*, State>> loaded;
  std::string loading;
  try {
    for (const auto& [name, entry] : state) {
      if (!present(name, entry) || !entry.can_fail_to_load()) continue;
      loading = "\"" + name + "\" (" + entry.kind() + ")";
      loaded.emplace_back(&entry, entry.snapshot());
      entry.load(root, name, strict);
    }
    loading = "the loss scaler";
    const State* scaler_state = nullptr;
    if (root.has_group("fabric") && root.group("fabric").has_group("grad_scaler"))
      scaler_state = &root.group("fabric").group("grad_scaler");
    if (scaler_ && scaler_state) {
      scaler_->load_state_dict(*scaler_state);  // drops any due adjustment
    }
  } catch (const std::exception& e) {
    try {
      for (auto it = loaded.rbegin(); it != loaded.rend(); ++it) it->first->restore(it->second);
    } catch (const std::exception& again) {
      throw Error("Fabric.load: checkpoint " + path + ", " + loading + ": " + e.what() +
                  "; giving the earlier state back failed too: " + again.what());
    }
    throw Error("Fabric.load: checkpoint " + path + ", " + loading + ": " + e.what() +
                " (nothing was loaded)");
  }
  for (const auto& [name, entry] : state)
    if (present(name, entry) && !entry.can_fail_to_load()) entry.load(root, name, strict);

  State remainder;
  for (const auto& [name, value] : root.attrs)
    if (!reserved_name(name) && !state.count(name)) remainder.attrs[name] = value;
  for (const auto& [name, group] : root.groups)
    if (!reserved_name(name) && !state.count(name)) remainder.groups[name] = group;
  return remainder;
}

}  // namespace lumen
