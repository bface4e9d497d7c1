#include "io/fashion_mnist.h"

#include <array>
#include <filesystem>
#include <numeric>
#include <utility>
#include <vector>

#include "io/idx.h"
#include "tensor/error.h"

namespace lumen::io {
namespace {

constexpr const char* kTrainImages = "train-images-idx3-ubyte.gz";
constexpr const char* kTrainLabels = "train-labels-idx1-ubyte.gz";
constexpr const char* kTestImages = "t10k-images-idx3-ubyte.gz";
constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte.gz";

// Throws naming the files of `names` missing from `dir`, and where to get them.
void check_files(const std::string& dir, const std::vector<const char*>& names) {
  std::string missing;
  for (const char* name : names) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / name, ec))
      missing += std::string(missing.empty() ? "" : ", ") + name;
  }
  LUMEN_CHECK(missing.empty(), "FashionMNIST: missing in '", dir, "': ", missing,
              "; install the Debian package dataset-fashion-mnist (apt-get install "
              "dataset-fashion-mnist), or set data_dir to a directory holding the four IDX .gz "
              "files");
}

// The first `limit` examples of `dataset` (all of them when limit is 0 or larger).
std::shared_ptr<const Dataset> first(std::shared_ptr<const Dataset> dataset, int64_t limit) {
  if (limit <= 0 || limit >= dataset->size()) return dataset;
  std::vector<int64_t> indices(static_cast<size_t>(limit));
  std::iota(indices.begin(), indices.end(), int64_t{0});
  return std::make_shared<Subset>(std::move(dataset), std::move(indices));
}

}  // namespace

FashionMNIST::FashionMNIST(FashionMNISTOptions options) : options_(std::move(options)) {
  set_batch_size(options_.batch_size);
  LUMEN_CHECK(options_.val_size >= 0, "FashionMNIST: val_size must be >= 0, got ",
              options_.val_size);
  LUMEN_CHECK(options_.num_workers >= 0, "FashionMNIST: num_workers must be >= 0, got ",
              options_.num_workers);
  LUMEN_CHECK(options_.limit >= 0, "FashionMNIST: limit must be >= 0 (0: all), got ",
              options_.limit);
}

void FashionMNIST::set_batch_size(int64_t batch_size) {
  LUMEN_CHECK(batch_size >= 1, "FashionMNIST: batch_size must be >= 1, got ", batch_size);
  options_.batch_size = batch_size;
}

void FashionMNIST::prepare_data() {
  check_files(options_.data_dir, {kTestImages, kTestLabels, kTrainImages, kTrainLabels});
}

std::shared_ptr<const Dataset> FashionMNIST::load(const std::string& images_file,
                                                  const std::string& labels_file) const {
  std::string images_path = (std::filesystem::path(options_.data_dir) / images_file).string();
  std::string labels_path = (std::filesystem::path(options_.data_dir) / labels_file).string();
  Tensor pixels = read_idx(images_path);
  LUMEN_CHECK(pixels.dim() == 3 && pixels.size(1) == 28 && pixels.size(2) == 28, "FashionMNIST: '",
              images_path, "' holds shape ", ShapeStr{pixels.shape()},
              "; expected images [N, 28, 28]");
  Tensor raw_labels = read_idx(labels_path);
  LUMEN_CHECK(raw_labels.dim() == 1 && raw_labels.size(0) == pixels.size(0), "FashionMNIST: '",
              labels_path, "' holds shape ", ShapeStr{raw_labels.shape()}, "; expected [",
              pixels.size(0), "] labels, one per image of '", images_path, "'");

  // u8 -> f32 in one pass through a table of the 256 possible values, each computed in f64 and
  // rounded once: x / 255, then (x / 255 - mean) / std when normalising.
  std::array<float, 256> table;
  for (int v = 0; v < 256; ++v) {
    double x = v / 255.0;
    table[static_cast<size_t>(v)] = static_cast<float>(options_.normalize ? (x - kMean) / kStd : x);
  }
  int64_t n = pixels.size(0);
  Tensor images = empty({n, 1, 28, 28});
  const uint8_t* src = pixels.data<uint8_t>();
  float* dst = images.data<float>();
  int64_t count = images.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) dst[i] = table[src[i]];

  Tensor labels = empty({n}, {.dtype = DType::i64});
  const uint8_t* lsrc = raw_labels.data<uint8_t>();
  int64_t* ldst = labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    LUMEN_CHECK(lsrc[i] < 10, "FashionMNIST: '", labels_path, "' has label ",
                static_cast<int>(lsrc[i]), " at index ", i, "; expected classes 0..9");
    ldst[i] = lsrc[i];
  }
  return std::make_shared<TensorDataset>(std::vector<Tensor>{images, labels});
}

void FashionMNIST::setup(const std::string& stage) {
  if (stage == "fit" || stage == "validate") {
    if (train_) return;
    check_files(options_.data_dir, {kTrainImages, kTrainLabels});
    std::shared_ptr<const Dataset> all = load(kTrainImages, kTrainLabels);
    int64_t n = all->size();
    LUMEN_CHECK(options_.val_size < n, "FashionMNIST: val_size ", options_.val_size,
                " must be less than the ", n, " training images in '", options_.data_dir,
                "', or none would be left to train on");
    auto pieces = random_split(all, {n - options_.val_size, options_.val_size}, options_.seed);
    train_ = first(pieces[0], options_.limit);
    val_ = first(pieces[1], options_.limit);
  } else if (stage == "test" || stage == "predict") {
    if (test_) return;
    check_files(options_.data_dir, {kTestImages, kTestLabels});
    test_ = first(load(kTestImages, kTestLabels), options_.limit);
  } else {
    detail::throw_error("FashionMNIST::setup: unknown stage '", stage,
                        "'; expected \"fit\", \"validate\", \"test\" or \"predict\"");
  }
}

std::shared_ptr<DataLoader> FashionMNIST::loader(const std::shared_ptr<const Dataset>& dataset,
                                                 const char* which, const char* stage,
                                                 bool shuffle) const {
  LUMEN_CHECK(dataset != nullptr, "FashionMNIST::", which, ": no data yet; call setup(\"", stage,
              "\") first");
  DataLoaderOptions opts;
  opts.batch_size = options_.batch_size;
  opts.shuffle = shuffle;
  opts.num_workers = options_.num_workers;
  opts.seed = options_.shuffle_seed;
  return std::make_shared<DataLoader>(dataset, std::move(opts));
}

std::shared_ptr<DataLoader> FashionMNIST::train_dataloader() {
  return loader(train_, "train_dataloader", "fit", options_.shuffle);
}

std::shared_ptr<DataLoader> FashionMNIST::val_dataloader() {
  if (options_.val_size == 0) return nullptr;  // no validation split
  return loader(val_, "val_dataloader", "fit", false);
}

std::shared_ptr<DataLoader> FashionMNIST::test_dataloader() {
  return loader(test_, "test_dataloader", "test", false);
}

std::shared_ptr<DataLoader> FashionMNIST::predict_dataloader() {
  return loader(test_, "predict_dataloader", "predict", false);
}

}  // namespace lumen::io
