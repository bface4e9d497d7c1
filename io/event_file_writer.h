#pragma once
// TensorBoard event files written by hand: a TFRecord stream (for each record: uint64 length,
// masked CRC-32C of those 8 bytes, the data, masked CRC-32C of the data; little endian) whose
// records are serialized tensorflow.Event protocol buffers:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; SummaryMetadata metadata = 9; }
// The first record carries file_version "brain.Event:2", which TensorBoard expects.
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <string_view>

namespace lumen::io {

// Protocol-buffer wire format (proto3): each field is a varint key (field << 3 | wire type)
// followed by a varint (type 0), 8 little-endian bytes (1), a varint length and the bytes
// (2), or 4 little-endian bytes (5).
class ProtoEncoder {
 public:
  ProtoEncoder& varint(int field, uint64_t value);
  ProtoEncoder& int64(int field, int64_t value) {
    return varint(field, static_cast<uint64_t>(value));
  }
  ProtoEncoder& float64(int field, double value);
  ProtoEncoder& float32(int field, float value);
  ProtoEncoder& bytes(int field, std::string_view value);  // strings and sub-messages
  const std::string& str() const { return out_; }

 private:
  void raw_varint(uint64_t v);
  std::string out_;
};

// One TFRecord: the framing around `data`.
std::string tfrecord(std::string_view data);

// Summary{value: [Value{tag, simple_value}]} for one scalar.
std::string scalar_summary(const std::string& tag, float value);
// Summary{value: [Value{tag, image = 4: Image{height = 1, width = 2, colorspace = 3,
// encoded_image_string = 4}}]} for one PNG image; colorspace 1 is grayscale.
std::string image_summary(const std::string& tag, int64_t height, int64_t width,
                          const std::string& png, int colorspace = 1);

class EventFileWriter {
 public:
  // Creates <dir>/events.out.tfevents.<unix seconds, 10 digits>.<host>.<pid>.<n> (n counts the
  // writers of this process, as torch's SummaryWriter does) and writes the file_version record.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  const std::string& path() const { return path_; }
  // One Event per scalar (as SummaryWriter.add_scalar), stamped with the current time.
  void add_scalar(const std::string& tag, double value, int64_t step);
  // An Event holding an already serialized Summary message.
  void add_summary(const std::string& summary, int64_t step);
  void flush();

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::ofstream file_;
};

double wall_time_now();  // seconds since the Unix epoch

}  // namespace lumen::io
