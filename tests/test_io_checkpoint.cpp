// HDF5 checkpoints (io/checkpoint.h): exact round trips of every dtype, shape and attribute kind,
// readability by other HDF5 tools, clear errors on bad files, and atomic writes that survive a
// failing and a killed writer.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>

#include "io/checkpoint.h"
#include "io/hdf5_file.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class IoCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("lumen_io_") + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    io::detail::set_fail_after_datasets(-1);
    io::detail::set_dataset_written_hook({});
    fs::remove_all(dir_);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files_in_dir() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

// Same dtype, shape and bytes (row-major).
void expect_same_tensor(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  EXPECT_EQ(a.dtype(), b.dtype()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  size_t bytes = static_cast<size_t>(a.numel()) * a.element_size();
  if (bytes > 0) {
    EXPECT_EQ(std::memcmp(ca.data_ptr(), cb.data_ptr(), bytes), 0) << what;
  }
}

// Same attrs (bit-exact for doubles), tensors and groups, recursively.
void expect_same_state(const State& a, const State& b, const std::string& where = "/") {
  ASSERT_EQ(a.attrs.size(), b.attrs.size()) << where;
  for (const auto& [name, v] : a.attrs) {
    ASSERT_TRUE(b.has_attr(name)) << where << name;
    const AttrValue& w = b.attrs.at(name);
    ASSERT_EQ(v.index(), w.index()) << where << name;
    if (const auto* d = std::get_if<double>(&v)) {
      EXPECT_EQ(std::bit_cast<uint64_t>(*d), std::bit_cast<uint64_t>(std::get<double>(w)))
          << where << name;
    } else if (const auto* ds = std::get_if<std::vector<double>>(&v)) {
      const auto& ws = std::get<std::vector<double>>(w);
      ASSERT_EQ(ds->size(), ws.size()) << where << name;
      for (size_t i = 0; i < ds->size(); ++i)
        EXPECT_EQ(std::bit_cast<uint64_t>((*ds)[i]), std::bit_cast<uint64_t>(ws[i]));
    } else {
      EXPECT_TRUE(v == w) << where << name;
    }
  }
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << where;
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.has_tensor(name)) << where << name;
    expect_same_tensor(t, b.tensor(name), where + name);
  }
  ASSERT_EQ(a.groups.size(), b.groups.size()) << where;
  for (const auto& [name, g] : a.groups) {
    ASSERT_TRUE(b.has_group(name)) << where << name;
    expect_same_state(g, b.group(name), where + name + "/");
  }
}

// A state_dict-like tree with a few datasets, distinguishable by `tag`.
State small_model(double tag) {
  State s;
  s.attrs["tag"] = tag;
  s.groups["state_dict"].tensors["fc1.weight"] = full({4, 3}, tag);
  s.groups["state_dict"].tensors["fc1.bias"] = full({4}, tag + 1);
  s.groups["state_dict"].tensors["fc2.weight"] = full({2, 4}, tag + 2);
  return s;
}

TEST_F(IoCheckpoint, EveryDtypeRoundTripsExactly) {
  State s;
  // Values at the edges of each type; 1/3 and 0.1 are inexact, so any conversion would show.
  s.tensors["f32"] = from_vector<float>({1.0f / 3, -0.1f, 3.4e38f, 1e-45f, -0.0f, 7.0f}, {2, 3});
  s.tensors["f64"] = from_vector<double>({1.0 / 3, -0.1, 1e308, 5e-324}, {2, 2});
  s.tensors["f16"] = from_vector<float>({0.1f, -65504.0f, 6e-8f, 1.0f / 3}, {4}).to(DType::f16);
  s.tensors["bf16"] = from_vector<float>({0.1f, -3e38f, 1e-38f, 1.0f / 3}, {2, 2}).to(DType::bf16);
  s.tensors["i32"] = from_vector<int32_t>(
      {std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()}, {4});
  // 2^62 + 1 is not a double: a round trip through floating point would lose the +1.
  s.tensors["i64"] = from_vector<int64_t>(
      {(int64_t{1} << 62) + 1, std::numeric_limits<int64_t>::min(), -7}, {3, 1});
  s.tensors["u8"] = from_vector<uint8_t>({0, 1, 128, 255}, {2, 2});
  s.tensors["bool"] = from_vector<uint8_t>({1, 0, 0, 1, 1}, {5}).to(DType::boolean);
  io::save_state(file("d.h5"), s);
  State back = io::load_state(file("d.h5"));
  expect_same_state(s, back);
  // Independently of the byte comparison: the values read back are the ones written.
  EXPECT_EQ(back.tensor("i64").to_vector<int64_t>()[0], (int64_t{1} << 62) + 1);
  EXPECT_EQ(back.tensor("bool").to_vector<int>(), (std::vector<int>{1, 0, 0, 1, 1}));
  EXPECT_EQ(back.tensor("f16").to_vector<float>(), s.tensor("f16").to_vector<float>());
  EXPECT_FLOAT_EQ(back.tensor("f16").to_vector<float>()[1], -65504.0f);
}

TEST_F(IoCheckpoint, ZeroDimEmptyAndStridedTensors) {
  State s;
  s.tensors["scalar"] = scalar_tensor(2.5, {.dtype = DType::f64});
  s.tensors["scalar_i64"] = scalar_tensor(-3, {.dtype = DType::i64});
  s.tensors["empty"] = zeros({0, 3});
  s.tensors["empty_mid"] = zeros({3, 0, 2}, {.dtype = DType::i32});
  s.tensors["empty_1d"] = zeros({0}, {.dtype = DType::bf16});
  Tensor base = arange(0, 12, 1, {.dtype = DType::f32}).reshape({3, 4});
  s.tensors["transposed"] = base.t();
  s.tensors["stepped"] = base.slice(1, 0, 4, 2);  // columns 0 and 2
  ASSERT_FALSE(s.tensors["transposed"].is_contiguous());
  ASSERT_FALSE(s.tensors["stepped"].is_contiguous());
  io::save_state(file("s.h5"), s);
  State back = io::load_state(file("s.h5"));
  expect_same_state(s, back);
  EXPECT_EQ(back.tensor("scalar").dim(), 0);
  EXPECT_EQ(back.tensor("scalar").item(), 2.5);
  EXPECT_EQ(back.tensor("scalar_i64").item<int64_t>(), -3);
  EXPECT_EQ(back.tensor("empty_mid").shape(), (Shape{3, 0, 2}));
  // base[r][c] = 4r + c, so its transpose row c is {c, 4 + c, 8 + c}.
  EXPECT_EQ(back.tensor("transposed").to_vector<float>(),
            (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(back.tensor("stepped").to_vector<float>(), (std::vector<float>{0, 2, 4, 6, 8, 10}));
}

TEST_F(IoCheckpoint, NestedGroupsAndEveryAttributeKind) {
  State s;
  s.attrs["int"] = int64_t{-42};
  s.attrs["int_max"] = std::numeric_limits<int64_t>::max();
  s.attrs["double"] = 0.1;
  s.attrs["neg_zero"] = -0.0;
  s.attrs["inf"] = std::numeric_limits<double>::infinity();
  s.attrs["nan"] = std::numeric_limits<double>::quiet_NaN();
  s.attrs["string"] = std::string("16-mixed");
  s.attrs["empty_string"] = std::string();
  s.attrs["utf8"] = std::string("\xc3\xa9t\xc3\xa9 \xe2\x86\x92 \xce\xbb");  // "été → λ"
  s.attrs["ints"] = std::vector<int64_t>{3, -1, std::numeric_limits<int64_t>::min()};
  s.attrs["one_int"] = std::vector<int64_t>{5};  // a list of one, not the int 5
  s.attrs["no_ints"] = std::vector<int64_t>{};
  s.attrs["doubles"] = std::vector<double>{0.5, 1e-300};
  s.attrs["no_doubles"] = std::vector<double>{};
  // 200 000 ints (1.6 MB) is beyond the 64 KiB HDF5 keeps in an object header.
  std::vector<int64_t> order(200000);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(order.size() - i);
  s.attrs["data_order"] = order;
  State& opt = s.groups["optimizers"].groups["0"];
  opt.attrs["lr"] = 1e-3;
  opt.attrs["step"] = int64_t{17};
  opt.groups["exp_avg"].tensors["fc1.weight"] = full({2, 2}, 0.25);
  opt.groups["exp_avg"].groups["deeper"].groups["deepest"].attrs["leaf"] = std::string("x");
  s.groups["empty_group"] = State{};
  s.groups["schedulers"].attrs["last_epoch"] = int64_t{3};
  io::save_state(file("n.h5"), s);
  State back = io::load_state(file("n.h5"));
  expect_same_state(s, back);
  EXPECT_EQ(back.get_ints("one_int"), (std::vector<int64_t>{5}));
  EXPECT_TRUE(std::isnan(back.get_double("nan")));
  EXPECT_EQ(back.group("optimizers").group("0").get_int("step"), 17);
  EXPECT_EQ(back.get_ints("data_order").front(), 200000);
}

TEST_F(IoCheckpoint, BadNamesAreRefusedBeforeAnyFileIsWritten) {
  State slash;
  slash.tensors["fc1/weight"] = zeros({1});
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), slash), "fc1/weight", "'/'");
  State nested;
  nested.groups["state_dict"].groups["a/b"] = State{};
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), nested), "a/b", "/state_dict");
  State empty_name;
  empty_name.attrs[""] = int64_t{1};
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), empty_name), "empty attribute name");
  State dot;
  dot.groups["."] = State{};
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), dot), "'.'");
  State clash;
  clash.tensors["x"] = zeros({1});
  clash.groups["x"] = State{};
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), clash), "'x'", "both a tensor and a group");
  State undefined;
  undefined.tensors["w"] = Tensor();
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), undefined), "'w'", "undefined");
  State nul;
  nul.attrs["s"] = std::string("a\0b", 3);
  EXPECT_THROW_MSG(io::save_state(file("a.h5"), nul), "NUL", "unchanged");
  EXPECT_TRUE(files_in_dir().empty());
  // Dots are ordinary characters in a name.
  State dots;
  dots.tensors["layers.0.fc1.weight"] = ones({2});
  io::save_state(file("a.h5"), dots);
  EXPECT_TRUE(io::load_state(file("a.h5")).has_tensor("layers.0.fc1.weight"));
}

TEST_F(IoCheckpoint, CheckpointRootAttributes) {
  std::time_t before = std::time(nullptr);
  io::save_checkpoint(file("c.h5"), small_model(1));
  std::time_t after = std::time(nullptr);
  State c = io::load_checkpoint(file("c.h5"));
  EXPECT_EQ(c.get_string("format"), "lumen.checkpoint");
  EXPECT_EQ(c.get_int("version"), 1);
  EXPECT_TRUE(std::regex_match(c.get_string("lumen_version"), std::regex(R"(\d+\.\d+\.\d+)")))
      << c.get_string("lumen_version");
  const std::string& created = c.get_string("created");
  ASSERT_TRUE(std::regex_match(created, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << created;
  std::tm tm{};
  ASSERT_NE(strptime(created.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm), nullptr);
  std::time_t t = timegm(&tm);
  EXPECT_GE(t, before);
  EXPECT_LE(t, after);
  expect_same_state(small_model(1).group("state_dict"), c.group("state_dict"));
  EXPECT_EQ(c.get_double("tag"), 1.0);
}

TEST_F(IoCheckpoint, ReadableByH5dump) {
  if (!fs::exists("/usr/bin/h5dump"))
    GTEST_SKIP() << "h5dump is absent (apt-get install hdf5-tools)";
  State s = small_model(2);
  s.tensors["half"] = ones({3}).to(DType::f16);
  s.tensors["flag"] = ones({2}).to(DType::boolean);
  s.attrs["list"] = std::vector<double>{};
  io::save_checkpoint(file("c.h5"), s);
  std::string out = file("dump.txt");
  int rc = std::system(("/usr/bin/h5dump '" + file("c.h5") + "' > '" + out + "' 2>&1").c_str());
  EXPECT_EQ(rc, 0);
  std::ifstream in(out);
  std::string dump((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(dump.find("DATASET \"fc1.weight\""), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"lumen.checkpoint\""), std::string::npos) << dump;
  // A file that is not HDF5 makes h5dump fail: the exit code above is a real check.
  std::ofstream(file("junk.h5")) << "junk";
  EXPECT_NE(std::system(("/usr/bin/h5dump '" + file("junk.h5") + "' > /dev/null 2>&1").c_str()), 0);
}

TEST_F(IoCheckpoint, ReadableByH5py) {
  std::string python;
  for (std::string candidate : {"python3", "/usr/bin/python3"})
    if (std::system((candidate + " -c 'import h5py' > /dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  if (python.empty()) GTEST_SKIP() << "no python3 with h5py (apt-get install python3-h5py)";
  State s;
  s.tensors["half"] = from_vector<float>({0.5f, -2.0f, 65504.0f}).to(DType::f16);
  s.tensors["w"] = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  s.attrs["name"] = std::string("mlp");
  s.attrs["dims"] = std::vector<int64_t>{784, 256};
  io::save_state(file("p.h5"), s);
  std::string script =
      "import h5py, numpy as np, sys\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "assert f['half'].dtype == np.float16, f['half'].dtype\n"
      "assert list(f['half'][()]) == [0.5, -2.0, 65504.0]\n"
      "assert f['w'].dtype == np.float32 and f['w'].shape == (2, 3)\n"
      "assert f['w'][1, 2] == 6\n"
      "assert f.attrs['name'] == 'mlp', f.attrs['name']\n"
      "assert list(f.attrs['dims']) == [784, 256]\n"
      // And the other way: a file as h5py writes it, with gzip-compressed chunks, fixed-length
      // strings and 32-bit attributes, which Lumen reads in its own types.
      "g = h5py.File(sys.argv[2], 'w')\n"
      "g.create_dataset('w', data=np.arange(6, dtype=np.float32).reshape(2, 3),\n"
      "                 chunks=(1, 3), compression='gzip')\n"
      "g['grp/h'] = np.array([0.5, 1.5], dtype=np.float16)\n"
      "g.attrs['fixed'] = np.bytes_(b'abc')\n"
      "g.attrs['i32'] = np.int32(-5)\n"
      "g.attrs['f32s'] = np.array([0.5, 2.0], dtype=np.float32)\n"
      "g.close()\n";
  std::ofstream(file("check.py")) << script;
  ASSERT_EQ(std::system((python + " '" + file("check.py") + "' '" + file("p.h5") + "' '" +
                         file("from_py.h5") + "'")
                            .c_str()),
            0);
  State py = io::load_state(file("from_py.h5"));
  expect_same_tensor(py.tensor("w"), from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3}), "w");
  expect_same_tensor(py.group("grp").tensor("h"), from_vector<float>({0.5f, 1.5f}).to(DType::f16),
                     "h");
  EXPECT_EQ(py.get_string("fixed"), "abc");
  EXPECT_EQ(py.get_int("i32"), -5);
  EXPECT_EQ(py.get_doubles("f32s"), (std::vector<double>{0.5, 2.0}));
}

TEST_F(IoCheckpoint, BadFilesGiveClearErrors) {
  // (Paths are named strings: EXPECT_THROW_MSG keeps only the char pointers.)
  const std::string absent = file("absent.h5"), garbage_path = file("garbage.h5"),
                    cut = file("cut.h5"), unwritable = file("no/such/dir/x.h5");
  EXPECT_THROW_MSG(io::load_state(absent), "no such file", absent.c_str());
  EXPECT_THROW_MSG(io::load_checkpoint(file("absent.h5")), "no such file");
  EXPECT_THROW_MSG(io::load_state(dir_.string()), "is a directory");
  std::ofstream(file("empty.h5")).close();
  EXPECT_THROW_MSG(io::load_state(file("empty.h5")), "not an HDF5 file", "empty");
  {
    std::ofstream garbage(file("garbage.h5"), std::ios::binary);
    for (int i = 0; i < 4096; ++i) garbage.put(static_cast<char>(i * 7919 % 251));
  }
  EXPECT_THROW_MSG(io::load_state(garbage_path), "not an HDF5 file", garbage_path.c_str());
  // Half a good file: the signature is there, the rest is not.
  State big;
  big.tensors["w"] = zeros({256, 256});
  io::save_state(file("cut.h5"), big);
  auto size = fs::file_size(file("cut.h5"));
  ASSERT_EQ(::truncate(file("cut.h5").c_str(), static_cast<off_t>(size / 2)), 0);
  ::testing::internal::CaptureStderr();
  EXPECT_THROW_MSG(io::load_state(cut), "truncated", cut.c_str());
  // HDF5's own error printing is off: the message is in the exception only.
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_THROW_MSG(io::save_state(unwritable, big), unwritable.c_str(), "H5Fcreate", "unchanged");
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);  // no handle leaked on the way out
}

TEST_F(IoCheckpoint, WrongFormatOrNewerVersionIsRefused) {
  State other = small_model(1);
  other.attrs["format"] = std::string("keras");
  io::save_state(file("other.h5"), other);
  EXPECT_THROW_MSG(io::load_checkpoint(file("other.h5")), "is not a Lumen checkpoint",
                   "format attribute is 'keras'");
  io::save_state(file("plain.h5"), small_model(1));
  EXPECT_THROW_MSG(io::load_checkpoint(file("plain.h5")), "format attribute is missing");
  State newer = small_model(1);
  newer.attrs["format"] = std::string("lumen.checkpoint");
  newer.attrs["version"] = int64_t{7};
  newer.attrs["lumen_version"] = std::string("9.0.0");
  io::save_state(file("newer.h5"), newer);
  EXPECT_THROW_MSG(io::load_checkpoint(file("newer.h5")),
                   "checkpoint version 7 is newer than this Lumen's 1", "9.0.0");
  newer.attrs["version"] = std::string("1");
  io::save_state(file("newer.h5"), newer);
  EXPECT_THROW_MSG(io::load_checkpoint(file("newer.h5")), "no integer version");
}

TEST_F(IoCheckpoint, UnsupportedContentIsNamed) {
  // An int16 dataset (Lumen has no i16), written with the raw layer as another tool would.
  {
    io::hdf5::File f = io::hdf5::File::create(file("i16.h5"));
    io::hdf5::Group root = f.root();
    io::hdf5::Group g = root.create_group("weights");
    int16_t v[2] = {1, 2};
    g.create_dataset("w", H5T_STD_I16LE, {2}).write(H5T_NATIVE_INT16, v);
  }
  const std::string i16 = file("i16.h5");
  EXPECT_THROW_MSG(io::load_state(i16), "'/weights/w'", i16.c_str(), "2-byte signed integer");
  // The raw layer names the call, the object and the file.
  io::hdf5::File f = io::hdf5::File::open_read_only(file("i16.h5"));
  io::hdf5::Group root = f.root();
  EXPECT_THROW_MSG(root.open_group("nope"), "H5Gopen2 failed on '/nope' in '", i16.c_str());
  EXPECT_THROW_MSG(root.open_attribute("missing"), "H5Aopen", "attribute 'missing' of '/'");
}

TEST_F(IoCheckpoint, InjectedFailureKeepsTheOldFile) {
  const std::string path = file("ckpt.h5");
  io::save_checkpoint(path, small_model(1));
  for (int n : {0, 1, 2}) {
    io::detail::set_fail_after_datasets(n);
    EXPECT_THROW_MSG(io::save_checkpoint(path, small_model(2)), "injected failure", "is unchanged");
    io::detail::set_fail_after_datasets(-1);
    State back = io::load_checkpoint(path);
    expect_same_state(small_model(1).group("state_dict"), back.group("state_dict"));
    EXPECT_EQ(back.get_double("tag"), 1.0);
    EXPECT_EQ(files_in_dir(), std::vector<std::string>{"ckpt.h5"}) << "n = " << n;
    // Every handle of the failed write was closed on the way out.
    EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0) << "n = " << n;
  }
  // No old file: none appears.
  io::detail::set_fail_after_datasets(1);
  EXPECT_THROW_MSG(io::save_state(file("new.h5"), small_model(3)), "injected failure");
  EXPECT_EQ(files_in_dir(), std::vector<std::string>{"ckpt.h5"});
  // With the hook off the next save goes through.
  io::detail::set_fail_after_datasets(-1);
  io::save_checkpoint(path, small_model(2));
  EXPECT_EQ(io::load_checkpoint(path).get_double("tag"), 2.0);
}

// A writer killed with SIGKILL in the middle of a save (it has written some datasets and holds
// the temporary open) leaves the previous checkpoint loadable and unchanged.
TEST_F(IoCheckpoint, WriterKilledMidSaveLeavesTheOldFile) {
  const std::string path = file("ckpt.h5");
  State old_state = small_model(1);
  io::save_checkpoint(path, old_state);
  State big;
  for (int i = 0; i < 8; ++i)
    big.tensors[std::string("w") + std::to_string(i)] = full({256, 1024}, i);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: tensors are ready-made and contiguous, so it only runs HDF5 and POSIX calls.
    ::close(ready[0]);
    io::detail::set_dataset_written_hook([&](const std::string&, int count) {
      if (count == 3) {
        char c = 'x';
        (void)!::write(ready[1], &c, 1);
        for (;;) ::pause();  // killed here, mid-save
      }
    });
    try {
      io::save_checkpoint(path, big);
    } catch (...) {
    }
    ::_exit(3);  // not reached
  }
  ::close(ready[1]);
  pollfd p{ready[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "the child never reached its third dataset";
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  const std::string tmp = path + ".tmp-" + std::to_string(child);
  EXPECT_TRUE(fs::exists(tmp)) << "the child writes to " << tmp;
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  State back = io::load_checkpoint(path);
  expect_same_state(old_state.group("state_dict"), back.group("state_dict"));
  EXPECT_EQ(back.get_double("tag"), 1.0);
  EXPECT_TRUE(fs::exists(tmp)) << "a killed writer cannot clean up";

  // The leftover neither breaks the next save nor survives it.
  io::save_checkpoint(path, small_model(5));
  EXPECT_EQ(io::load_checkpoint(path).get_double("tag"), 5.0);
  EXPECT_EQ(files_in_dir(), std::vector<std::string>{"ckpt.h5"});
}

TEST_F(IoCheckpoint, LeftoverTemporariesAreHandled) {
  const std::string path = file("ckpt.h5");
  // Our own pid's name taken by garbage (a reused pid): the save truncates it.
  std::ofstream(path + ".tmp-" + std::to_string(::getpid())) << "garbage from a dead writer";
  // A dead process's leftover is removed; a live process's (pid 1, init) is not touched.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  std::ofstream(path + ".tmp-" + std::to_string(dead)) << "garbage";
  std::ofstream(path + ".tmp-1") << "in progress elsewhere";
  std::ofstream(file(std::string("other.h5.tmp-") + std::to_string(dead))) << "another file's";
  io::save_checkpoint(path, small_model(4));
  EXPECT_EQ(io::load_checkpoint(path).get_double("tag"), 4.0);
  EXPECT_EQ(files_in_dir(),
            (std::vector<std::string>{"ckpt.h5", "ckpt.h5.tmp-1",
                                      std::string("other.h5.tmp-") + std::to_string(dead)}));
}

TEST_F(IoCheckpoint, CompareStateListsEveryDifference) {
  State model;
  model.tensors["fc1.weight"] = zeros({128, 784});
  model.tensors["fc1.bias"] = zeros({128});
  model.tensors["fc2.bias"] = zeros({10});
  model.groups["bn"].tensors["running_mean"] = zeros({4});
  model.groups["extra"] = State{};
  State ckpt;
  ckpt.tensors["fc1.weight"] = zeros({256, 784});
  ckpt.tensors["fc1.bias"] = zeros({128}, {.dtype = DType::f16});
  ckpt.tensors["fc3.weight"] = zeros({10, 128});
  ckpt.groups["bn"].tensors["running_mean"] = zeros({4}, {.dtype = DType::f64});
  ckpt.groups["bn"].tensors["running_var"] = zeros({4});
  // Names in order, tensors before groups, each side named as asked.
  EXPECT_EQ(io::state_differences(model, ckpt),
            (std::vector<std::string>{
                "fc1.bias dtype f16 in checkpoint vs f32 in model",
                "fc1.weight shape [256, 784] in checkpoint vs [128, 784] in model",
                "missing fc2.bias",
                "unexpected fc3.weight",
                "bn/running_mean dtype f64 in checkpoint vs f32 in model",
                "unexpected bn/running_var",
                "missing group extra",
            }));
  EXPECT_THROW_MSG(
      io::compare_state("state_dict", model, ckpt),
      "state_dict: fc1.bias dtype f16 in checkpoint vs f32 in model; fc1.weight shape [256, "
      "784] in checkpoint vs [128, 784] in model; missing fc2.bias; unexpected fc3.weight; "
      "bn/running_mean dtype f64 in checkpoint vs f32 in model; unexpected bn/running_var; "
      "missing group extra");
  EXPECT_EQ(io::state_differences(ckpt, model, {.expected = "file", .got = "module"})[0],
            "fc1.bias dtype f32 in module vs f16 in file");
  // Equal names, shapes and dtypes pass, whatever the values and attributes.
  State same = model;
  same.tensors["fc1.bias"] = ones({128});
  same.attrs["step"] = int64_t{3};
  EXPECT_NO_THROW(io::compare_state("state_dict", model, same));
  EXPECT_TRUE(io::state_differences(model, same).empty());
}

TEST_F(IoCheckpoint, CudaTensorsAreSavedFromTheHost) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor host = randn({5, 7}, {.dtype = DType::f32});
  State s;
  s.tensors["w"] = host.to(Device::cuda());
  s.tensors["wt"] = host.to(Device::cuda()).t();  // non-contiguous on the device
  s.tensors["h"] = host.to(DType::f16).to(Device::cuda());
  io::save_state(file("g.h5"), s);
  State back = io::load_state(file("g.h5"));
  EXPECT_TRUE(back.tensor("w").device().is_cpu());
  expect_same_tensor(back.tensor("w"), host, "w");
  expect_same_tensor(back.tensor("wt"), host.t().contiguous(), "wt");
  expect_same_tensor(back.tensor("h"), host.to(DType::f16), "h");
}

}  // namespace
}  // namespace lumen::testing
