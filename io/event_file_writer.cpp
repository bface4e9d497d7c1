#include "io/event_file_writer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "io/crc32c.h"
#include "tensor/error.h"

namespace lumen::io {

namespace {

void put_le(std::string& out, uint64_t v, int n_bytes) {
  for (int i = 0; i < n_bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFFu);
}

std::atomic<int64_t> g_writer_count{0};

}  // namespace

void ProtoEncoder::raw_varint(uint64_t v) {
  // Seven bits per byte, least significant first; the high bit says another byte follows.
  while (v >= 0x80) {
    out_ += static_cast<char>((v & 0x7Fu) | 0x80u);
    v >>= 7;
  }
  out_ += static_cast<char>(v);
}

ProtoEncoder& ProtoEncoder::varint(int field, uint64_t value) {
  raw_varint(static_cast<uint64_t>(field) << 3 | 0u);
  raw_varint(value);
  return *this;
}

ProtoEncoder& ProtoEncoder::float64(int field, double value) {
  raw_varint(static_cast<uint64_t>(field) << 3 | 1u);
  uint64_t bits;
  std::memcpy(&bits, &value, 8);
  put_le(out_, bits, 8);
  return *this;
}

ProtoEncoder& ProtoEncoder::float32(int field, float value) {
  raw_varint(static_cast<uint64_t>(field) << 3 | 5u);
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  put_le(out_, bits, 4);
  return *this;
}

ProtoEncoder& ProtoEncoder::bytes(int field, std::string_view value) {
  raw_varint(static_cast<uint64_t>(field) << 3 | 2u);
  raw_varint(value.size());
  out_.append(value.data(), value.size());
  return *this;
}

std::string tfrecord(std::string_view data) {
  std::string header;
  put_le(header, data.size(), 8);
  std::string out = header;
  put_le(out, masked_crc32c(header.data(), header.size()), 4);
  out.append(data.data(), data.size());
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

std::string scalar_summary(const std::string& tag, float value) {
  std::string v = ProtoEncoder().bytes(1, tag).float32(2, value).str();
  return ProtoEncoder().bytes(1, v).str();
}

std::string image_summary(const std::string& tag, int64_t height, int64_t width,
                          const std::string& png, int colorspace) {
  std::string image =
      ProtoEncoder().int64(1, height).int64(2, width).int64(3, colorspace).bytes(4, png).str();
  std::string v = ProtoEncoder().bytes(1, tag).bytes(4, image).str();
  return ProtoEncoder().bytes(1, v).str();
}

double wall_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  LUMEN_CHECK(!ec, "EventFileWriter: cannot create '", dir, "': ", ec.message());
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  char name[512];
  std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%lld.%lld",
                static_cast<long long>(wall_time_now()), host, static_cast<long long>(getpid()),
                static_cast<long long>(g_writer_count++));
  path_ = (fs::path(dir) / name).string();
  file_.open(path_, std::ios::binary | std::ios::trunc);
  LUMEN_CHECK(file_.good(), "EventFileWriter: cannot open '", path_, "' for writing");
  write_event(ProtoEncoder().float64(1, wall_time_now()).bytes(3, "brain.Event:2").str());
  flush();
}

EventFileWriter::~EventFileWriter() { file_.flush(); }

void EventFileWriter::write_event(const std::string& event) {
  std::string record = tfrecord(event);
  file_.write(record.data(), static_cast<std::streamsize>(record.size()));
  LUMEN_CHECK(file_.good(), "EventFileWriter: writing '", path_, "' failed");
}

void EventFileWriter::add_summary(const std::string& summary, int64_t step) {
  write_event(ProtoEncoder().float64(1, wall_time_now()).int64(2, step).bytes(5, summary).str());
}

void EventFileWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_summary(scalar_summary(tag, static_cast<float>(value)), step);
}

void EventFileWriter::flush() {
  file_.flush();
  LUMEN_CHECK(file_.good(), "EventFileWriter: flushing '", path_, "' failed");
}

}  // namespace lumen::io
