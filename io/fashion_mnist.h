#pragma once
// Fashion-MNIST (Xiao et al., 2017) as a DataModule: 60000 training and 10000 test images of
// 28x28 grey clothes in 10 classes, read from the four IDX .gz files that the Debian package
// dataset-fashion-mnist installs in /usr/share/datasets/fashion-mnist.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "trainer/data_module.h"

namespace lumen::io {

struct FashionMNISTOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t batch_size = 64;
  // Split off the 60000 training images by random_split with `seed` (Lightning's MNIST
  // examples keep 55000 for training and 5000 for validation).
  int64_t val_size = 5000;
  int num_workers = 2;
  uint64_t seed = 42;
  // Pixels become x / 255 in [0, 1], then with normalize (x - 0.2860) / 0.3530: the training
  // set's mean and standard deviation, as torchvision users normalise it.
  bool normalize = true;
  bool shuffle = true;  // the training loader's order
  // The training loader's shuffle seed; unset: the default generator's seed when the loader is
  // made (what seed_everything sets).
  std::optional<uint64_t> shuffle_seed = std::nullopt;
  // At most this many examples in each of the train, val and test sets (the first ones); 0: all.
  int64_t limit = 0;
};

class FashionMNIST : public DataModule {
 public:
  static constexpr double kMean = 0.2860, kStd = 0.3530;
  static constexpr std::array<const char*, 10> kClasses = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

  explicit FashionMNIST(FashionMNISTOptions options = {});

  // Checks that the four files exist; the error names the missing ones and the package.
  void prepare_data() override;
  // "fit" and "validate" load the training files and split them; "test" and "predict" load
  // the test files. Images are f32 [N, 1, 28, 28], normalised once here; labels i64 [N].
  void setup(const std::string& stage) override;
  std::shared_ptr<DataLoader> train_dataloader() override;
  std::shared_ptr<DataLoader> val_dataloader() override;
  std::shared_ptr<DataLoader> test_dataloader() override;
  std::shared_ptr<DataLoader> predict_dataloader() override;

  const FashionMNISTOptions& options() const { return options_; }
  // The batch size of the loaders made from now on (Tuner::scale_batch_size sets it).
  void set_batch_size(int64_t batch_size);
  // Null until setup of a stage that builds them.
  std::shared_ptr<const Dataset> train_dataset() const { return train_; }
  std::shared_ptr<const Dataset> val_dataset() const { return val_; }
  std::shared_ptr<const Dataset> test_dataset() const { return test_; }

 private:
  // Images and labels of one file pair as a TensorDataset.
  std::shared_ptr<const Dataset> load(const std::string& images_file,
                                      const std::string& labels_file) const;
  std::shared_ptr<DataLoader> loader(const std::shared_ptr<const Dataset>& dataset,
                                     const char* which, const char* stage, bool shuffle) const;

  FashionMNISTOptions options_;
  std::shared_ptr<const Dataset> train_, val_, test_;
};

}  // namespace lumen::io
