// Checkpoints of a run, as Lightning's _CheckpointConnector, in DESIGN.md's layout:
//   /state_dict/<name>   the module's parameters and buffers
//   /optimizers/<i>      Optimizer::state_dict
//   /schedulers/<i>      LRScheduler::state_dict
//   /trainer             attrs: epoch, global_step, batches_that_stepped, and the loop
//                        position (phase, batches_completed) for mid-epoch resume; groups:
//                        train_results (the epoch's running metric reductions)
//   /callbacks/<key>     Callback::state_dict by state_key()
//   /rng                 attrs: seed, offset of the default generator; group train_dataloader
//                        (DataLoader::state_dict: seed, epoch, batches_consumed)
//   /hparams             attrs: LightningModule::hparams()
//   /precision           attrs: precision; with "16-mixed", GradScaler::state_dict's
//   /datamodule          DataModule::state_dict, when it has one
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "io/checkpoint.h"
#include "tensor/error.h"
#include "tensor/generator.h"
#include "trainer/model_checkpoint.h"
#include "trainer/trainer_loop.h"

namespace lumen {

namespace {

// HDF5 group names cannot hold '/', which state keys and metric names may.
std::string group_name(const std::string& key) {
  std::string out = key;
  for (char& c : out)
    if (c == '/') c = '|';
  return out;
}

// callback_metrics as two attrs: names joined by '\n', values in the same order.
void put_metrics(State& s, const std::map<std::string, double>& metrics) {
  std::string names;
  std::vector<double> values;
  for (const auto& [k, v] : metrics) {
    if (!names.empty() || !values.empty()) names += '\n';
    names += k;
    values.push_back(v);
  }
  s.attrs["callback_metric_names"] = names;
  s.attrs["callback_metric_values"] = values;
}

std::map<std::string, double> get_metrics(const State& s) {
  std::map<std::string, double> out;
  if (!s.has_attr("callback_metric_names")) return out;
  const std::vector<double>& values = s.get_doubles("callback_metric_values");
  std::istringstream names(s.get_string("callback_metric_names"));
  std::string name;
  for (double v : values) {
    std::getline(names, name);
    out[name] = v;
  }
  return out;
}

}  // namespace

// Lightning's dump_checkpoint: every piece of the run, then the callbacks' and the module's
// on_save_checkpoint, which may add to the tree. weights_only leaves out what only resuming
// needs (and the callbacks' hook), as Lightning's.
State Trainer::dump_checkpoint(bool weights_only) {
  Loop& L = *loop_;
  LUMEN_CHECK(L.model != nullptr,
              "Trainer.save_checkpoint: no model yet; call it during or after fit/validate/test");
  LightningModule& model = *L.model;
  State ckpt;
  ckpt.groups["state_dict"] = nn::to_state(model.state_dict());
  if (!weights_only) {
    State& optimizers = ckpt.groups["optimizers"];
    for (size_t i = 0; i < L.optimizers.size(); ++i)
      optimizers.groups[std::to_string(i)] = L.optimizers[i]->state_dict();
    State& schedulers = ckpt.groups["schedulers"];
    for (size_t i = 0; i < L.schedulers.size(); ++i)
      schedulers.groups[std::to_string(i)] = L.schedulers[i].scheduler->state_dict();
  }

  State& trainer = ckpt.groups["trainer"];
  trainer.attrs["epoch"] = L.current_epoch;
  trainer.attrs["global_step"] = L.global_step;
  trainer.attrs["batches_that_stepped"] = L.batches_that_stepped;
  trainer.attrs["batches_completed"] = L.batches_completed;
  trainer.attrs["world_size"] = static_cast<int64_t>(world_size());
  if (L.train_loader) trainer.attrs["batch_size"] = L.train_loader->options().batch_size;
  trainer.attrs["phase"] = std::string(fit_phase_name(L.phase));
  put_metrics(trainer, callback_metrics());
  trainer.groups["train_results"] = L.train_results.state_dict();

  ckpt.groups["hparams"].attrs = model.hparams();
  if (L.data) {
    State d = L.data->state_dict();
    if (!d.attrs.empty() || !d.tensors.empty() || !d.groups.empty())
      ckpt.groups["datamodule"] = std::move(d);
  }
  if (weights_only) {
    call_module("on_save_checkpoint", [&] { model.on_save_checkpoint(ckpt); });
    return ckpt;
  }

  State& callbacks = ckpt.groups["callbacks"];
  for (const auto& cb : L.callbacks) {
    State s = cb->state_dict();
    if (!s.attrs.empty() || !s.tensors.empty() || !s.groups.empty())
      callbacks.groups[group_name(cb->state_key())] = std::move(s);
  }

  State& rng = ckpt.groups["rng"];
  Generator& gen = default_generator();
  rng.attrs["seed"] = static_cast<int64_t>(gen.seed());
  rng.attrs["offset"] = static_cast<int64_t>(gen.offset());
  if (L.train_loader) rng.groups["train_dataloader"] = L.train_loader->state_dict();

  State& precision = ckpt.groups["precision"];
  if (L.scaler) {
    // A checkpoint written between a manual step and the end of its training step holds the
    // scale that step leads to; the live scaler waits for the loop (every rank adjusts it at
    // the same point, whichever rank writes).
    optim::GradScaler adjusted = *L.scaler;
    if (adjusted.update_due()) adjusted.update();
    precision = adjusted.state_dict();
  }
  precision.attrs["precision"] = L.precision;

  call_callbacks("on_save_checkpoint",
                 [&](Callback& cb) { cb.on_save_checkpoint(*this, model, ckpt); });
  call_module("on_save_checkpoint", [&] { model.on_save_checkpoint(ckpt); });
  return ckpt;
}

// Under DDP only rank 0 writes (every rank holds the same parameters and optimizer state).
void Trainer::save_checkpoint(const std::string& path, bool weights_only) {
  if (is_global_zero()) io::save_checkpoint(path, dump_checkpoint(weights_only));
}

// ckpt_path: a file, or "last" (<dirpath>/last.ckpt of the ModelCheckpoint callback) or "best"
// (its best_model_path), as Lightning's _parse_ckpt_path.
std::string Trainer::resolve_checkpoint_path(const std::string& ckpt_path) const {
  std::string path = ckpt_path;
  if (ckpt_path == "last" || ckpt_path == "best") {
    const ModelCheckpoint* mc = nullptr;
    for (const auto& cb : loop_->callbacks)
      if ((mc = dynamic_cast<const ModelCheckpoint*>(cb.get())) != nullptr) break;
    LUMEN_CHECK(mc != nullptr, "ckpt_path=\"", ckpt_path,
                "\" needs a ModelCheckpoint callback, which this trainer does not have");
    if (ckpt_path == "best") {
      path = mc->best_model_path();
      LUMEN_CHECK(!path.empty(),
                  "ckpt_path=\"best\": the ModelCheckpoint has not saved a best "
                  "checkpoint yet (fit first, or pass a path)");
    } else {
      path = mc->last_model_path();
      if (path.empty()) path = mc->dirpath(*this) + "/last.ckpt";
    }
  }
  LUMEN_CHECK(std::filesystem::exists(path), "ckpt_path: no checkpoint file at \"", path, "\"");
  return path;
}

// Lightning's _restore_modules_and_callbacks: the module's weights (after checking names,
// shapes and dtypes), the DataModule, and (when fitting) the callbacks.
void Trainer::restore_modules_and_callbacks(const State& checkpoint, const std::string& path) {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  LUMEN_CHECK(checkpoint.has_group("state_dict"), "checkpoint ", path, " has no /state_dict group");
  const State& weights = checkpoint.group("state_dict");
  io::compare_state("checkpoint " + path + " does not match the model",
                    nn::to_state(model.state_dict()), weights);
  call_module("on_load_checkpoint", [&] { model.on_load_checkpoint(checkpoint); });
  model.load_state_dict(nn::StateDict(weights.tensors.begin(), weights.tensors.end()));
  if (checkpoint.has_group("datamodule")) L.data->load_state_dict(checkpoint.group("datamodule"));
  if (L.stage != "fit") return;
  call_callbacks("on_load_checkpoint",
                 [&](Callback& cb) { cb.on_load_checkpoint(*this, model, checkpoint); });
  if (checkpoint.has_group("callbacks")) {
    const State& states = checkpoint.group("callbacks");
    for (const auto& cb : L.callbacks) {
      std::string key = group_name(cb->state_key());
      if (states.has_group(key)) cb->load_state_dict(states.group(key));
    }
  }
}

// Lightning's restore_training_state: optimizers, schedulers and the loops; Lumen also
// restores the random generator and the train loader's order, which makes the resumed run
// continue bit-identically (DESIGN.md, Determinism).
void Trainer::restore_training_state(const State& checkpoint) {
  Loop& L = *loop_;
  for (const char* g : {"optimizers", "schedulers", "trainer", "rng"})
    LUMEN_CHECK(checkpoint.has_group(g), "checkpoint has no /", g,
                " group, so it cannot resume a fit (it holds weights only)");
  const State& optimizers = checkpoint.group("optimizers");
  LUMEN_CHECK(optimizers.groups.size() == L.optimizers.size(), "checkpoint holds ",
              optimizers.groups.size(), " optimizer states but configure_optimizers returned ",
              L.optimizers.size(), " optimizer(s)");
  for (size_t i = 0; i < L.optimizers.size(); ++i)
    L.optimizers[i]->load_state_dict(optimizers.group(std::to_string(i)));
  const State& schedulers = checkpoint.group("schedulers");
  LUMEN_CHECK(schedulers.groups.size() == L.schedulers.size(), "checkpoint holds ",
              schedulers.groups.size(), " scheduler states but configure_optimizers returned ",
              L.schedulers.size(), " scheduler(s)");
  for (size_t i = 0; i < L.schedulers.size(); ++i)
    L.schedulers[i].scheduler->load_state_dict(schedulers.group(std::to_string(i)));

  const State& trainer = checkpoint.group("trainer");
  L.current_epoch = trainer.get_int("epoch");
  L.global_step = trainer.get_int("global_step");
  L.batches_that_stepped = trainer.get_int("batches_that_stepped");
  L.batches_completed = trainer.get_int("batches_completed");
  L.phase = parse_fit_phase(trainer.get_string("phase"));
  // Written by another number of ranks in the middle of an epoch: the ranks' batches together
  // covered the first batches_completed * batch_size * world_size positions of the epoch's
  // order; this run skips as many of its own batches as fit in them. The data order then
  // differs from an uninterrupted run's, so the resume is not bit-identical.
  int64_t saved_world = trainer.attrs.count("world_size") ? trainer.get_int("world_size") : 1;
  if (saved_world != world_size() && L.phase != FitPhase::idle && L.train_loader) {
    int64_t saved_batch = trainer.attrs.count("batch_size") ? trainer.get_int("batch_size")
                                                            : L.train_loader->options().batch_size;
    int64_t seen = L.batches_completed * saved_batch * saved_world;
    int64_t skip = seen / (L.train_loader->options().batch_size * world_size());
    if (is_global_zero())
      std::fprintf(stderr,
                   "lumen: the checkpoint was written by %lld rank(s) in the middle of epoch %lld "
                   "and this run has %d: resuming after %lld of the epoch's batches (%lld "
                   "examples seen of the epoch), not bit-identically\n",
                   static_cast<long long>(saved_world), static_cast<long long>(L.current_epoch),
                   world_size(), static_cast<long long>(std::min(skip, L.num_training_batches)),
                   static_cast<long long>(seen));
    L.batches_completed = std::min(skip, L.num_training_batches);
  }
  LUMEN_CHECK(L.batches_completed <= L.num_training_batches, "checkpoint: it stopped after batch ",
              L.batches_completed, " of epoch ", L.current_epoch, ", but this fit's epochs have ",
              L.num_training_batches, " batches");
  for (const auto& [k, v] : get_metrics(trainer)) L.callback_metrics[k] = v;
  if (trainer.has_group("train_results"))
    L.train_results.load_state_dict(trainer.group("train_results"));
  if (L.phase != FitPhase::idle) L.resume_phase = L.phase;

  // Lightning's precision plugin state: the loss scaler continues from its saved scale; a
  // checkpoint of another precision leaves this run's scaler at its initial state.
  if (L.scaler && L.scaler->is_enabled() && checkpoint.has_group("precision") &&
      checkpoint.group("precision").has_attr("scale")) {
    L.scaler->load_state_dict(checkpoint.group("precision"));  // drops any due adjustment
  }

  const State& rng = checkpoint.group("rng");
  default_generator().set_state(static_cast<uint64_t>(rng.get_int("seed")),
                                static_cast<uint64_t>(rng.get_int("offset")));
  if (rng.has_group("train_dataloader") && L.train_loader)
    L.train_loader->load_state_dict(rng.group("train_dataloader"));
}

}  // namespace lumen
