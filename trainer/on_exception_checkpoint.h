#pragma once
// OnExceptionCheckpoint, as Lightning's: when a stage fails with an exception (a crash, a
// KeyboardInterrupt in Python, a failed data file), the run's state is saved to
// <dirpath>/<filename>.ckpt before the exception goes on to the caller, so the work done is not
// lost. The checkpoint is the Trainer's full one, written where the exception struck (as
// Lightning's: a failure inside a batch saves that batch's state as it was). A stage that ends
// normally removes the file, which would otherwise be mistaken for a newer one.
#include <string>

#include "trainer/callback.h"

namespace lumen {

class OnExceptionCheckpoint : public Callback {
 public:
  explicit OnExceptionCheckpoint(std::string dirpath, std::string filename = "on_exception");
  std::string state_key() const override { return "OnExceptionCheckpoint"; }

  std::string ckpt_path() const { return dirpath_ + "/" + filename_ + ".ckpt"; }

  // Saving must not hide the exception being handled: a failure to save is printed instead.
  void on_exception(Trainer& trainer, LightningModule& module, const std::exception& e) override;
  void teardown(Trainer& trainer, LightningModule& module, const std::string& stage) override;

 private:
  std::string dirpath_, filename_;
};

}  // namespace lumen
