// IDX files (plain and gzip) and the Fashion-MNIST DataModule: round trips through files this
// test writes with zlib, every kind of damaged file, and the real data set when installed.
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "io/fashion_mnist.h"
#include "io/idx.h"
#include "tests/op_harness.h"

namespace lumen::io {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

// An IDX file's bytes: magic 0x0000 type ndim, big-endian u32 dims, then `data`.
Bytes idx_bytes(const Shape& dims, const Bytes& data, unsigned char type = 0x08) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (int64_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8)
      b.push_back(static_cast<unsigned char>(d >> shift));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes pattern(size_t n, unsigned seed = 1) {
  Bytes b(n);
  uint32_t s = seed;
  for (auto& v : b) {
    s = s * 1664525u + 1013904223u;  // LCG: incompressible enough to give a sizeable .gz
    v = static_cast<unsigned char>(s >> 24);
  }
  return b;
}

void write_plain(const fs::path& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& path, const Bytes& bytes, const char* mode = "wb") {
  gzFile f = gzopen(path.c_str(), mode);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes read_all(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lumen_idx_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(IdxTest, RoundTripPlainAndGzip) {
  Bytes data = pattern(3 * 5 * 7);
  write_plain(dir_ / "images.idx", idx_bytes({3, 5, 7}, data));
  write_gz(dir_ / "images.idx.gz", idx_bytes({3, 5, 7}, data));
  // Recognised by content, not by name: a .gz name on a plain file and the other way round.
  write_plain(dir_ / "plain.gz", idx_bytes({3, 5, 7}, data));
  write_gz(dir_ / "compressed.idx", idx_bytes({3, 5, 7}, data));
  for (const char* name : {"images.idx", "images.idx.gz", "plain.gz", "compressed.idx"}) {
    Tensor t = read_idx((dir_ / name).string());
    EXPECT_EQ(t.dtype(), DType::u8) << name;
    EXPECT_EQ(t.shape(), (Shape{3, 5, 7})) << name;
    std::vector<uint8_t> got = t.to_vector<uint8_t>();
    EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin())) << name;
  }
  Bytes labels = {0, 9, 3, 3};
  write_gz(dir_ / "labels.gz", idx_bytes({4}, labels));
  Tensor l = read_idx((dir_ / "labels.gz").string());
  EXPECT_EQ(l.shape(), (Shape{4}));
  EXPECT_EQ(l.to_vector<int64_t>(), (std::vector<int64_t>{0, 9, 3, 3}));
  // Concatenated gzip members read as one stream, as gunzip does.
  Bytes whole = idx_bytes({3, 5, 7}, data);
  write_gz(dir_ / "two.gz", Bytes(whole.begin(), whole.begin() + 50));
  write_gz(dir_ / "two.gz", Bytes(whole.begin() + 50, whole.end()), "ab");
  EXPECT_EQ(read_idx((dir_ / "two.gz").string()).to_vector<uint8_t>(),
            std::vector<uint8_t>(data.begin(), data.end()));
  // A zero-sized dim is a valid, empty file.
  write_plain(dir_ / "empty_dim", idx_bytes({0, 28, 28}, {}));
  EXPECT_EQ(read_idx((dir_ / "empty_dim").string()).shape(), (Shape{0, 28, 28}));
}

TEST_F(IdxTest, MissingEmptyAndBadMagic) {
  std::string missing = (dir_ / "nope.gz").string();
  EXPECT_THROW_MSG(read_idx(missing), "cannot open", missing.c_str(), "No such file");
  EXPECT_THROW_MSG(read_idx(dir_.string()), "is a directory");
  write_plain(dir_ / "empty", {});
  EXPECT_THROW_MSG(read_idx((dir_ / "empty").string()), "empty");
  write_plain(dir_ / "short", {0, 0});
  EXPECT_THROW_MSG(read_idx((dir_ / "short").string()), "truncated", "2 bytes");
  write_plain(dir_ / "magic", {0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0});
  EXPECT_THROW_MSG(read_idx((dir_ / "magic").string()), "magic'", "bad magic number 0x12345678",
                   "0x00000803");
  write_gz(dir_ / "magic.gz", {0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0});
  EXPECT_THROW_MSG(read_idx((dir_ / "magic.gz").string()), "bad magic number 0x12345678",
                   "magic.gz");
  write_plain(dir_ / "float", idx_bytes({2}, Bytes(8), 0x0D));
  EXPECT_THROW_MSG(read_idx((dir_ / "float").string()), "magic number 0x00000D01",
                   "(f32) is not supported", "only u8");
  write_plain(dir_ / "nodims", {0, 0, 8, 0});
  EXPECT_THROW_MSG(read_idx((dir_ / "nodims").string()), "declares 0 dims");
}

TEST_F(IdxTest, TruncatedAndTrailingData) {
  Bytes data = pattern(24);
  Bytes full = idx_bytes({3, 2, 4}, data);
  write_plain(dir_ / "trunc", Bytes(full.begin(), full.end() - 4));
  EXPECT_THROW_MSG(read_idx((dir_ / "trunc").string()), "trunc'", "truncated", "[3, 2, 4]",
                   "24 bytes of data", "only 20 bytes follow");
  write_plain(dir_ / "trunc_header", Bytes(full.begin(), full.begin() + 9));
  EXPECT_THROW_MSG(read_idx((dir_ / "trunc_header").string()), "truncated in its header",
                   "3 dims need 12 bytes", "only 5 follow");
  Bytes longer = full;
  longer.push_back(7);
  longer.push_back(7);
  write_plain(dir_ / "trailing", longer);
  EXPECT_THROW_MSG(read_idx((dir_ / "trailing").string()), "has 2 trailing bytes", "24 bytes",
                   "[3, 2, 4]");
  write_gz(dir_ / "trunc.gz", Bytes(full.begin(), full.end() - 4));
  EXPECT_THROW_MSG(read_idx((dir_ / "trunc.gz").string()), "trunc.gz", "truncated",
                   "only 20 bytes follow (after gunzip)");
  write_gz(dir_ / "trailing.gz", longer);
  EXPECT_THROW_MSG(read_idx((dir_ / "trailing.gz").string()),
                   "has 2 trailing bytes (after gunzip)");
  // Dims claiming far more than the file could ever hold fail before allocating.
  write_plain(dir_ / "huge", idx_bytes({65535, 65535, 65535}, data));
  EXPECT_THROW_MSG(read_idx((dir_ / "huge").string()), "truncated", "[65535, 65535, 65535]");
  write_gz(dir_ / "huge.gz", idx_bytes({65535, 65535, 65535}, data));
  EXPECT_THROW_MSG(read_idx((dir_ / "huge.gz").string()), "more data than a gzip file");
}

TEST_F(IdxTest, DamagedGzip) {
  Bytes full = idx_bytes({100, 100}, pattern(10000));
  write_gz(dir_ / "good.gz", full);
  Bytes gz = read_all(dir_ / "good.gz");
  ASSERT_GT(gz.size(), 5000u);
  ASSERT_EQ(read_idx((dir_ / "good.gz").string()).numel(), 10000);

  // Cut in the middle of the deflate data, and just before the 8-byte trailer.
  for (size_t cut : {gz.size() / 2, gz.size() - 8, gz.size() - 3}) {
    write_plain(dir_ / "cut.gz", Bytes(gz.begin(), gz.begin() + static_cast<long>(cut)));
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(gz.size()));
    EXPECT_THROW_MSG(read_idx((dir_ / "cut.gz").string()), "cut.gz", "truncated gzip file");
  }
  // The trailer is CRC-32 then the length mod 2^32, little-endian.
  Bytes bad_crc = gz;
  bad_crc[gz.size() - 8] ^= 0x01;
  write_plain(dir_ / "crc.gz", bad_crc);
  EXPECT_THROW_MSG(read_idx((dir_ / "crc.gz").string()), "crc.gz", "corrupt gzip",
                   "incorrect data check");
  Bytes bad_len = gz;
  bad_len[gz.size() - 4] ^= 0x01;
  write_plain(dir_ / "len.gz", bad_len);
  EXPECT_THROW_MSG(read_idx((dir_ / "len.gz").string()), "len.gz", "incorrect length check");
  Bytes flipped = gz;
  flipped[gz.size() / 2] ^= 0xFF;  // inside the deflate data: an invalid code or a bad CRC
  write_plain(dir_ / "flip.gz", flipped);
  EXPECT_THROW_MSG(read_idx((dir_ / "flip.gz").string()), "flip.gz");
  Bytes garbage = gz;
  for (unsigned char c : {'j', 'u', 'n', 'k'}) garbage.push_back(c);
  write_plain(dir_ / "junk.gz", garbage);
  EXPECT_THROW_MSG(read_idx((dir_ / "junk.gz").string()), "junk.gz",
                   "trailing bytes after gzip member 1");
}

// Four small IDX .gz files in Fashion-MNIST's layout. Train image i has pixel 0 = i (so a
// test can tell which image it got), the rest a pattern; labels i % 10.
void write_fake_fashion(const fs::path& dir, int64_t n_train, int64_t n_test) {
  fs::create_directories(dir);
  auto write_set = [&](const std::string& prefix, int64_t n) {
    Bytes pixels = pattern(static_cast<size_t>(n) * 784, static_cast<unsigned>(n));
    Bytes labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      pixels[static_cast<size_t>(i) * 784] = static_cast<unsigned char>(i);
      labels[static_cast<size_t>(i)] = static_cast<unsigned char>(i % 10);
    }
    write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), idx_bytes({n, 28, 28}, pixels));
    write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), idx_bytes({n}, labels));
  };
  write_set("train", n_train);
  write_set("t10k", n_test);
}

TEST_F(IdxTest, FashionMNISTMissingFilesNameThePackage) {
  FashionMNIST none({.data_dir = (dir_ / "nowhere").string()});
  EXPECT_THROW_MSG(none.prepare_data(), "nowhere", "train-images-idx3-ubyte.gz",
                   "t10k-labels-idx1-ubyte.gz",
                   "install the Debian package dataset-fashion-mnist (apt-get install "
                   "dataset-fashion-mnist)");
  EXPECT_THROW_MSG(none.setup("test"), "t10k-images-idx3-ubyte.gz", "dataset-fashion-mnist");
  write_fake_fashion(dir_ / "partial", 10, 10);
  fs::remove(dir_ / "partial" / "t10k-labels-idx1-ubyte.gz");
  FashionMNIST partial({.data_dir = (dir_ / "partial").string(), .val_size = 2});
  try {
    partial.prepare_data();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing in"), std::string::npos) << msg;
    EXPECT_NE(msg.find("t10k-labels-idx1-ubyte.gz"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("train-images"), std::string::npos) << msg;  // only the missing one
  }
  partial.setup("fit");  // the training files are there
  EXPECT_THROW_MSG(partial.test_dataloader(), "call setup(\"test\") first");
  EXPECT_THROW_MSG(partial.setup("train"), "unknown stage 'train'");
}

TEST_F(IdxTest, FashionMNISTOnSmallFiles) {
  write_fake_fashion(dir_ / "fake", 30, 12);
  FashionMNIST data({.data_dir = (dir_ / "fake").string(),
                     .batch_size = 8,
                     .val_size = 10,
                     .num_workers = 1,
                     .seed = 5,
                     .shuffle_seed = 3});
  data.prepare_data();
  EXPECT_THROW_MSG(data.train_dataloader(), "call setup(\"fit\") first");
  data.setup("fit");
  ASSERT_EQ(data.train_dataset()->size(), 20);
  ASSERT_EQ(data.val_dataset()->size(), 10);
  EXPECT_EQ(data.test_dataset(), nullptr);

  // Split: disjoint, covering the 30 images; values normalised from the u8 pixels.
  std::set<int64_t> ids;
  for (const auto& ds : {data.train_dataset(), data.val_dataset()})
    for (int64_t i = 0; i < ds->size(); ++i) {
      Batch e = ds->get(i);
      ASSERT_EQ(e[0].shape(), (Shape{1, 28, 28}));
      ASSERT_EQ(e[0].dtype(), DType::f32);
      ASSERT_EQ(e[1].dtype(), DType::i64);
      double p0 = e[0].to_vector<double>()[0];
      auto id = static_cast<int64_t>(std::lround((p0 * 0.3530 + 0.2860) * 255.0));
      EXPECT_NEAR(p0, (id / 255.0 - 0.2860) / 0.3530, 1e-6);
      EXPECT_EQ(e[1].item<int64_t>(), id % 10);
      ids.insert(id);
    }
  EXPECT_EQ(ids.size(), 30u);
  EXPECT_EQ(*ids.rbegin(), 29);

  auto train = data.train_dataloader();
  EXPECT_TRUE(train->options().shuffle);
  EXPECT_EQ(train->seed(), 3u);
  EXPECT_EQ(train->size(), 3);
  EXPECT_FALSE(data.val_dataloader()->options().shuffle);
  train->begin_epoch(0);
  Batch b = *train->next();
  EXPECT_EQ(b[0].shape(), (Shape{8, 1, 28, 28}));
  EXPECT_EQ(b[1].shape(), (Shape{8}));

  data.setup("test");
  EXPECT_EQ(data.test_dataset()->size(), 12);
  EXPECT_EQ(data.predict_dataloader()->size(), 2);

  // Without normalisation the pixels are x / 255; limit keeps the first examples of each set.
  FashionMNIST raw(
      {.data_dir = (dir_ / "fake").string(), .val_size = 10, .normalize = false, .limit = 4});
  raw.setup("validate");
  raw.setup("predict");
  EXPECT_EQ(raw.train_dataset()->size(), 4);
  EXPECT_EQ(raw.val_dataset()->size(), 4);
  EXPECT_EQ(raw.test_dataset()->size(), 4);
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_FLOAT_EQ(raw.test_dataset()->get(i)[0].to_vector<float>()[0],
                    static_cast<float>(i / 255.0));
  FashionMNIST no_val({.data_dir = (dir_ / "fake").string(), .val_size = 0});
  no_val.setup("fit");
  EXPECT_EQ(no_val.val_dataloader(), nullptr);
  EXPECT_EQ(no_val.train_dataset()->size(), 30);
  FashionMNIST all_val({.data_dir = (dir_ / "fake").string(), .val_size = 30});
  EXPECT_THROW_MSG(all_val.setup("fit"), "val_size 30 must be less than the 30 training images");

  // Labels outside 0..9 and mismatched counts name the file.
  write_gz(dir_ / "fake" / "t10k-labels-idx1-ubyte.gz", idx_bytes({12}, Bytes(12, 10)));
  EXPECT_THROW_MSG(FashionMNIST({.data_dir = (dir_ / "fake").string()}).setup("test"),
                   "t10k-labels-idx1-ubyte.gz", "label 10", "classes 0..9");
  write_gz(dir_ / "fake" / "t10k-labels-idx1-ubyte.gz", idx_bytes({11}, Bytes(11, 1)));
  EXPECT_THROW_MSG(FashionMNIST({.data_dir = (dir_ / "fake").string()}).setup("test"),
                   "holds shape [11]", "expected [12] labels");
}

TEST(FashionMNISTData, RealFilesWhenInstalled) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << dir << " is absent (apt-get install dataset-fashion-mnist)";
  Tensor images = read_idx(dir + "/t10k-images-idx3-ubyte.gz");
  Tensor labels = read_idx(dir + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(images.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(labels.shape(), (Shape{10000}));
  std::vector<int> histogram(10);
  for (int64_t v : labels.to_vector<int64_t>()) {
    ASSERT_LT(v, 10);
    ++histogram[static_cast<size_t>(v)];
  }
  EXPECT_EQ(histogram, std::vector<int>(10, 1000));
  const uint8_t* p = images.data<uint8_t>();
  EXPECT_EQ(*std::min_element(p, p + images.numel()), 0);
  EXPECT_EQ(*std::max_element(p, p + images.numel()), 255);

  // The training set, normalised with the published mean and std, has mean 0 and std 1: an
  // independent check of the constants and the conversion.
  FashionMNIST data({.val_size = 5000, .num_workers = 0});
  auto start = std::chrono::steady_clock::now();
  data.setup("fit");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ info     ] loading the 60000 training images took " << seconds << " s\n";
  EXPECT_LT(seconds, 5.0);  // well under a second on an idle core; slack for a busy machine
  EXPECT_EQ(data.train_dataset()->size(), 55000);
  EXPECT_EQ(data.val_dataset()->size(), 5000);
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  std::set<int64_t> classes;
  for (const auto& ds : {data.train_dataset(), data.val_dataset()})
    for (int64_t i = 0; i < ds->size(); ++i) {
      Batch e = ds->get(i);
      Tensor x = e[0].contiguous();
      const float* v = x.data<float>();
      for (int64_t j = 0; j < x.numel(); ++j) {
        sum += v[j];
        sum_sq += static_cast<double>(v[j]) * v[j];
      }
      count += x.numel();
      classes.insert(e[1].item<int64_t>());
    }
  EXPECT_EQ(count, 60000 * 784);
  double mean = sum / static_cast<double>(count);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sum_sq / static_cast<double>(count) - mean * mean), 1.0, 0.01);
  EXPECT_EQ(classes.size(), 10u);

  data.setup("test");
  auto test = data.test_dataloader();
  EXPECT_EQ(test->size(), (10000 + 63) / 64);
  test->begin_epoch(0);
  Batch b = *test->next();
  EXPECT_EQ(b[0].shape(), (Shape{64, 1, 28, 28}));
  EXPECT_EQ(b[1].to_vector<int64_t>()[0], labels.to_vector<int64_t>()[0]);  // test is not shuffled
  float lo = static_cast<float>((0 - 0.2860) / 0.3530),
        hi = static_cast<float>((1 - 0.2860) / 0.3530);
  std::vector<float> px = b[0].to_vector<float>();
  EXPECT_GE(*std::min_element(px.begin(), px.end()), lo);
  EXPECT_LE(*std::max_element(px.begin(), px.end()), hi);
}

}  // namespace
}  // namespace lumen::io
