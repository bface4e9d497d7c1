#pragma once
// DataModule, as Lightning's LightningDataModule: where the data comes from, how it is split,
// and the loaders of each stage.
#include <memory>
#include <string>

#include "nn/state.h"
#include "trainer/data_loader.h"

namespace lumen {

class DataModule {
 public:
  virtual ~DataModule() = default;
  // Downloads or checks files once per node (on its local rank 0 under DDP, as Lightning's
  // prepare_data_per_node; the node's other ranks wait for it); setup(stage) then builds the
  // datasets of "fit", "validate", "test" or "predict" on every process.
  virtual void prepare_data() {}
  virtual void setup(const std::string& stage) { (void)stage; }
  virtual void teardown(const std::string& stage) { (void)stage; }
  // A stage without data returns nullptr; the trainer says which loader is missing.
  virtual std::shared_ptr<DataLoader> train_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> val_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> test_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> predict_dataloader() { return nullptr; }
  virtual State state_dict() const { return {}; }
  virtual void load_state_dict(const State& state) { (void)state; }
};

}  // namespace lumen
