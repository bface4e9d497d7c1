// Loggers: CSVLogger's metrics.csv and hparams.yaml parsed back, TensorBoardLogger's event
// file parsed back record by record (TFRecord framing, CRC-32C, protobuf), and the number
// formatting they share with ModelCheckpoint's file names.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/crc32c.h"
#include "io/event_file_writer.h"
#include "op_harness.h"
#include "trainer/csv_logger.h"
#include "trainer/hparams_yaml.h"
#include "trainer/python_float_format.h"
#include "trainer/tensorboard_logger.h"

namespace lumen {
namespace {

using io::crc32c;
using io::EventFileWriter;
using io::masked_crc32c;
using io::wall_time_now;

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           ("lumen_loggers_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

// ---- CRC-32C: the check value and the RFC 3720 (iSCSI) B.4 test vectors.
TEST(LoggerCrc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0x00000000u);
  std::string zeros(32, '\0'), ones(32, '\xFF'), ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
}

TEST(LoggerCrc32c, MaskRotatesAndAddsTheConstant) {
  // ror15(0xE3069283) = 0x2507C60D; + 0xA282EAD8 = 0xC78AB0E5 (computed by hand / in Python).
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

// ---- Python-compatible number text.
TEST(LoggerNumberFormat, PythonFloatRepr) {
  // Python's format(v, ".5"), as the profiler's report writes its times.
  const std::vector<std::pair<double, std::string>> general = {
      {12.0, "12.0"},       {0.5, "0.5"},
      {1.23456, "1.2346"},  {12345.6, "1.2346e+04"},
      {1.2e-05, "1.2e-05"}, {10000.0, "1e+04"},
      {9999.96, "1e+04"},   {0.00012345678, "0.00012346"},
      {3e-07, "3e-07"},     {123.456789, "123.46"},
      {0.0, "0.0"},         {99999.5, "1e+05"}};
  for (const auto& [v, want] : general) EXPECT_EQ(python_format_precision(v, 5), want) << v;
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
  EXPECT_EQ(python_float_repr(-2.5), "-2.5");
  EXPECT_EQ(python_float_repr(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(2.5e-7), "2.5e-07");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123456789.125), "123456789.125");
  EXPECT_EQ(python_float_repr(static_cast<double>(0.1f)), "0.10000000149011612");
  EXPECT_EQ(python_float_repr(std::nan("")), "nan");
  EXPECT_EQ(python_float_repr(-INFINITY), "-inf");
}

TEST(LoggerNumberFormat, PrintfSpecs) {
  // Expected strings from Python's '%'-formatting of the same values.
  EXPECT_EQ(format_number(3.14159, "05.1f"), "003.1");
  EXPECT_EQ(format_number(12345.678, "+.2e"), "+1.23e+04");
  EXPECT_EQ(format_number(255, "x"), "ff");
  EXPECT_EQ(format_number(0.000123456, ".4g"), "0.0001235");
  EXPECT_EQ(format_number(7, "02d"), "07");
  EXPECT_EQ(format_number(0.8765, ".3f"), "0.876");  // 0.8765 is 0.87649999... in binary
  EXPECT_EQ(format_number(0.8766, ".3f"), "0.877");
  EXPECT_THROW_MSG(format_number(1.0, ",.2f"), "',.2f' is not a printf-style spec");
  EXPECT_THROW_MSG(format_number(1.0, "s"), "printf-style");
  EXPECT_THROW_MSG(format_number(1.0, ""), "printf-style");
  EXPECT_THROW_MSG(format_number(NAN, "d"), "integer conversion");
}

// ---- CSVLogger
TEST(LoggerCSV, VersionsCountUpFromExistingDirectories) {
  TempDir dir;
  CSVLoggerOptions opts;
  opts.save_dir = dir.str();
  CSVLogger first(opts);
  EXPECT_EQ(first.version(), "version_0");
  EXPECT_EQ(first.log_dir(), (dir.path / "lightning_logs" / "version_0").string());
  first.log_metrics({{"a", 1.0}}, 0);
  first.save();
  fs::create_directories(dir.path / "lightning_logs" / "version_7");
  fs::create_directories(dir.path / "lightning_logs" / "version_x");  // not a version
  CSVLogger second(opts);
  EXPECT_EQ(second.version(), "version_8");
  opts.version = 3;
  EXPECT_EQ(CSVLogger(opts).version(), "version_3");
  opts.version = "my_run";
  opts.name = "";
  EXPECT_EQ(CSVLogger(opts).log_dir(), (dir.path / "my_run").string());
  EXPECT_EQ(next_logger_version((dir.path / "missing").string()), 0);
}

TEST(LoggerCSV, HeaderIsTheSortedUnionAndRowsKeepTheirCells) {
  TempDir dir;
  CSVLogger logger(
      {.save_dir = dir.str(), .name = "runs", .version = 0, .flush_logs_every_n_steps = 100});
  logger.log_metrics({{"train_loss", 0.5}, {"epoch", 0}}, 0);
  logger.log_metrics({{"train_loss", 0.25}, {"epoch", 0}}, 1);
  logger.save();
  auto path = dir.path / "runs" / "version_0" / "metrics.csv";
  EXPECT_EQ(read_file(path), "epoch,step,train_loss\n0,0,0.5\n0,1,0.25\n");

  // A new key rewrites the file under the wider header; older rows get empty cells.
  logger.log_metrics({{"val_acc", 0.875}, {"epoch", 0}}, 1);
  logger.log_metrics({{"train_loss", 1.0 / 3.0}, {"epoch", 1}}, 2);
  logger.save();
  auto rows = lines_of(read_file(path));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], "epoch,step,train_loss,val_acc");
  EXPECT_EQ(rows[1], "0,0,0.5,");
  EXPECT_EQ(rows[2], "0,1,0.25,");
  EXPECT_EQ(rows[3], "0,1,,0.875");
  EXPECT_EQ(rows[4], "1,2,0.3333333333333333,");

  // Parsed back as numbers, the values are the logged doubles exactly.
  EXPECT_EQ(std::stod(rows[4].substr(4, rows[4].size() - 5)), 1.0 / 3.0);
}

TEST(LoggerCSV, FlushesEveryNStepsAndOnSave) {
  TempDir dir;
  CSVLogger logger(
      {.save_dir = dir.str(), .name = "l", .version = {}, .flush_logs_every_n_steps = 2});
  auto path = fs::path(logger.metrics_file_path());
  logger.log_metrics({{"x", 1.0}}, 0);
  EXPECT_FALSE(fs::exists(path));  // (0 + 1) % 2 != 0: buffered
  logger.log_metrics({{"x", 2.0}}, 1);
  EXPECT_EQ(read_file(path), "step,x\n0,1.0\n1,2.0\n");
  logger.log_metrics({{"x", 3.0}}, 2);
  logger.finalize("success");
  EXPECT_EQ(read_file(path), "step,x\n0,1.0\n1,2.0\n2,3.0\n");
  EXPECT_THROW_MSG(
      CSVLogger({.save_dir = dir.str(), .name = "l", .version = {}, .flush_logs_every_n_steps = 0}),
      "flush_logs_every_n_steps must be >= 1");
}

TEST(LoggerCSV, QuotesCellsWithCommas) {
  TempDir dir;
  CSVLogger logger(
      {.save_dir = dir.str(), .name = "l", .version = 0, .flush_logs_every_n_steps = 100});
  logger.log_metrics({{"a,b", 1.5}}, 4);
  logger.save();
  logger.log_metrics({{"c", 2.5}}, 5);  // forces a rewrite, which must parse the quoted header
  logger.save();
  EXPECT_EQ(read_file(logger.metrics_file_path()), "\"a,b\",c,step\n1.5,,4\n,2.5,5\n");
}

TEST(LoggerCSV, HparamsYaml) {
  TempDir dir;
  CSVLogger logger(
      {.save_dir = dir.str(), .name = "l", .version = 0, .flush_logs_every_n_steps = 100});
  logger.log_hyperparams({{"lr", 0.001},
                          {"batch_size", int64_t{64}},
                          {"optimizer", std::string("adamw")},
                          {"note", std::string("a: b")},
                          {"hidden", std::vector<int64_t>{256, 128}},
                          {"betas", std::vector<double>{0.9, 0.999}}});
  logger.log_hyperparams({{"seed", int64_t{7}}});  // merges with what came before
  EXPECT_EQ(read_file(dir.path / "l" / "version_0" / "hparams.yaml"),
            "batch_size: 64\n"
            "betas:\n- 0.9\n- 0.999\n"
            "hidden:\n- 256\n- 128\n"
            "lr: 0.001\n"
            "note: 'a: b'\n"
            "optimizer: adamw\n"
            "seed: 7\n");
  EXPECT_EQ(
      hparams_to_yaml(
          {{"s", std::string("1e5")}, {"t", std::string("true")}, {"u", std::string("it's")}}),
      "s: '1e5'\nt: 'true'\nu: it's\n");
}

// ---- TensorBoard event files, decoded independently of the writer.
struct Field {
  int number = 0;
  int wire = 0;
  uint64_t varint = 0;
  std::string bytes;  // wire type 2; also the raw 8/4 bytes of fixed types
};

uint64_t read_varint(const std::string& s, size_t& i) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (i >= s.size()) throw std::runtime_error("truncated varint");
    auto b = static_cast<unsigned char>(s[i++]);
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error("varint too long");
}

std::vector<Field> decode(const std::string& msg) {
  std::vector<Field> out;
  size_t i = 0;
  while (i < msg.size()) {
    uint64_t key = read_varint(msg, i);
    Field f;
    f.number = static_cast<int>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.wire == 0) {
      f.varint = read_varint(msg, i);
    } else if (f.wire == 1 || f.wire == 5) {
      size_t n = f.wire == 1 ? 8 : 4;
      f.bytes = msg.substr(i, n);
      i += n;
    } else if (f.wire == 2) {
      size_t n = read_varint(msg, i);
      f.bytes = msg.substr(i, n);
      i += n;
    } else {
      throw std::runtime_error("unexpected wire type");
    }
    out.push_back(f);
  }
  EXPECT_EQ(i, msg.size());
  return out;
}

const Field* field(const std::vector<Field>& fs, int number) {
  for (const auto& f : fs)
    if (f.number == number) return &f;
  return nullptr;
}

uint64_t le(const std::string& s, size_t at, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = v << 8 | static_cast<unsigned char>(s[at + k]);
  return v;
}

uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xA282EAD8u; }

// Splits a TFRecord stream, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> records;
  size_t i = 0;
  while (i < file.size()) {
    EXPECT_LE(i + 12, file.size());
    uint64_t len = le(file, i, 8);
    EXPECT_EQ(le(file, i + 8, 4), mask(crc32c(file.data() + i, 8)));
    std::string data = file.substr(i + 12, len);
    EXPECT_EQ(le(file, i + 12 + len, 4), mask(crc32c(data)));
    records.push_back(data);
    i += 12 + len + 4;
  }
  EXPECT_EQ(i, file.size());
  return records;
}

struct ScalarEvent {
  std::string tag;
  int64_t step;
  float value;
  double wall_time;
};

std::vector<ScalarEvent> scalar_events(const std::vector<std::string>& records) {
  std::vector<ScalarEvent> out;
  for (const auto& r : records) {
    auto ev = decode(r);
    const Field* summary = field(ev, 5);
    if (!summary) continue;
    for (const auto& v : decode(summary->bytes)) {
      auto value = decode(v.bytes);
      const Field* simple = field(value, 2);
      if (!simple) continue;
      EXPECT_EQ(simple->wire, 5);
      ScalarEvent s;
      s.tag = field(value, 1)->bytes;
      s.step = field(ev, 2) ? static_cast<int64_t>(field(ev, 2)->varint) : 0;
      uint32_t bits = static_cast<uint32_t>(le(simple->bytes, 0, 4));
      std::memcpy(&s.value, &bits, 4);
      uint64_t wt = le(field(ev, 1)->bytes, 0, 8);
      std::memcpy(&s.wall_time, &wt, 8);
      out.push_back(s);
    }
  }
  return out;
}

TEST(LoggerTensorBoard, FramingProtobufAndScalarsParseBack) {
  TempDir dir;
  TensorBoardLogger logger(
      {.save_dir = dir.str(), .name = "tb", .version = {}, .default_hp_metric = true});
  EXPECT_EQ(logger.log_dir(), (dir.path / "tb" / "version_0").string());
  logger.log_metrics({{"train_loss", 0.75}, {"lr", 0.001}}, 10);
  logger.log_metrics({{"train_loss", -2.5}}, 20);
  logger.save();

  std::string path = logger.event_file_path();
  std::string fname = fs::path(path).filename().string();
  EXPECT_EQ(fname.rfind("events.out.tfevents.", 0), 0u) << fname;
  EXPECT_EQ(fs::path(path).parent_path(), dir.path / "tb" / "version_0");
  // events.out.tfevents.<10-digit time>.<host>.<pid>.<n>
  std::string rest = fname.substr(std::strlen("events.out.tfevents."));
  EXPECT_EQ(rest.find('.'), 10u);
  EXPECT_NE(rest.find("." + std::to_string(getpid()) + "."), std::string::npos);

  auto records = read_records(read_file(path));
  ASSERT_EQ(records.size(), 4u);
  auto first = decode(records[0]);
  ASSERT_NE(field(first, 3), nullptr);
  EXPECT_EQ(field(first, 3)->bytes, "brain.Event:2");
  EXPECT_EQ(field(first, 1)->wire, 1);  // wall_time is a double

  auto scalars = scalar_events(records);
  ASSERT_EQ(scalars.size(), 3u);
  EXPECT_EQ(scalars[0].tag, "lr");  // a std::map iterates keys in order
  EXPECT_EQ(scalars[0].step, 10);
  EXPECT_EQ(scalars[0].value, 0.001f);
  EXPECT_EQ(scalars[1].tag, "train_loss");
  EXPECT_EQ(scalars[1].value, 0.75f);
  EXPECT_EQ(scalars[2].step, 20);
  EXPECT_EQ(scalars[2].value, -2.5f);
  double now = wall_time_now();
  EXPECT_GT(scalars[2].wall_time, now - 60);
  EXPECT_LE(scalars[2].wall_time, now);
}

// add_image: an Event at the step whose Summary value holds the tag and an Image message with
// the height, width, grayscale colorspace and the PNG bytes io::encode_png gives.
TEST(LoggerTensorBoard, ImagesParseBack) {
  TempDir dir;
  TensorBoardLogger logger({.save_dir = dir.str(), .name = "tb"});
  Tensor image = from_vector<float>({0.f, 0.25f, 0.5f, 0.75f, 1.f, 0.1f}, {2, 3});
  logger.add_image("samples", image, 7);
  auto records = read_records(read_file(logger.event_file_path()));
  ASSERT_EQ(records.size(), 2u);  // file_version, the image
  auto event = decode(records[1]);
  ASSERT_NE(field(event, 2), nullptr);
  EXPECT_EQ(field(event, 2)->varint, 7u);
  auto value = decode(decode(field(event, 5)->bytes)[0].bytes);
  EXPECT_EQ(field(value, 1)->bytes, "samples");
  ASSERT_NE(field(value, 4), nullptr);
  auto img = decode(field(value, 4)->bytes);
  EXPECT_EQ(field(img, 1)->varint, 2u);  // height
  EXPECT_EQ(field(img, 2)->varint, 3u);  // width
  EXPECT_EQ(field(img, 3)->varint, 1u);  // grayscale
  EXPECT_EQ(field(img, 4)->bytes, io::encode_png(image));
  EXPECT_EQ(field(img, 4)->bytes.substr(1, 3), "PNG");
  EXPECT_THROW_MSG(logger.add_image("bad", zeros({3, 2, 2}), 8), "encode_png", "[3, 2, 2]");
}

TEST(LoggerTensorBoard, HparamsPluginSummaries) {
  TempDir dir;
  TensorBoardLogger logger(
      {.save_dir = dir.str(), .name = "tb", .version = 2, .default_hp_metric = true});
  logger.log_hyperparams({{"lr", 0.01}, {"layers", int64_t{3}}, {"act", std::string("relu")}});
  auto records = read_records(read_file(logger.event_file_path()));
  // file_version, hp_metric = -1 at step 0, experiment, session start, session end.
  ASSERT_EQ(records.size(), 5u);
  auto scalars = scalar_events(records);
  ASSERT_EQ(scalars.size(), 1u);
  EXPECT_EQ(scalars[0].tag, "hp_metric");
  EXPECT_EQ(scalars[0].value, -1.0f);

  std::vector<std::string> tags;
  std::string experiment, start;
  for (size_t r = 2; r < 5; ++r) {
    auto value = decode(decode(field(decode(records[r]), 5)->bytes)[0].bytes);
    tags.push_back(field(value, 1)->bytes);
    auto plugin = decode(field(decode(field(value, 9)->bytes), 1)->bytes);
    EXPECT_EQ(field(plugin, 1)->bytes, "hparams");
    auto content = decode(field(plugin, 2)->bytes);
    if (r == 2) experiment = field(content, 2)->bytes;
    if (r == 3) start = field(content, 3)->bytes;
    if (r == 4) {
      EXPECT_EQ(field(decode(field(content, 4)->bytes), 1)->varint, 1u);  // STATUS_SUCCESS
    }
  }
  EXPECT_EQ(tags, (std::vector<std::string>{"_hparams_/experiment", "_hparams_/session_start_info",
                                            "_hparams_/session_end_info"}));
  // Experiment: hparam_infos (4) in key order with types, and the metric "hp_metric" (5).
  std::vector<std::pair<std::string, uint64_t>> infos;
  std::string metric_tag;
  for (const auto& f : decode(experiment)) {
    if (f.number == 4) {
      auto info = decode(f.bytes);
      infos.emplace_back(field(info, 1)->bytes, field(info, 4)->varint);
    }
    if (f.number == 5) metric_tag = field(decode(field(decode(f.bytes), 1)->bytes), 2)->bytes;
  }
  EXPECT_EQ(infos,
            (std::vector<std::pair<std::string, uint64_t>>{{"act", 1}, {"layers", 3}, {"lr", 3}}));
  EXPECT_EQ(metric_tag, "hp_metric");
  // Session start: the map entries with google.protobuf.Value values.
  std::map<std::string, std::string> values;
  for (const auto& f : decode(start)) {
    if (f.number != 1) continue;
    auto entry = decode(f.bytes);
    auto v = decode(field(entry, 2)->bytes);
    if (const Field* num = field(v, 2)) {
      uint64_t bits = le(num->bytes, 0, 8);
      double d;
      std::memcpy(&d, &bits, 8);
      values[field(entry, 1)->bytes] = python_float_repr(d);
    } else {
      values[field(entry, 1)->bytes] = field(v, 3)->bytes;
    }
  }
  EXPECT_EQ(values, (std::map<std::string, std::string>{
                        {"act", "relu"}, {"layers", "3.0"}, {"lr", "0.01"}}));
  EXPECT_TRUE(fs::exists(dir.path / "tb" / "version_2" / "hparams.yaml"));
}

TEST(LoggerTensorBoard, EachWriterGetsItsOwnFile) {
  TempDir dir;
  EventFileWriter a(dir.str()), b(dir.str());
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1.0, 0);
  a.flush();
  EXPECT_EQ(scalar_events(read_records(read_file(a.path()))).size(), 1u);
  EXPECT_EQ(read_records(read_file(b.path())).size(), 1u);  // only the file_version record
}

}  // namespace
}  // namespace lumen
