#include "trainer/tensorboard_logger.h"

#include <filesystem>

#include "io/png.h"
#include "trainer/hparams_yaml.h"
#include "trainer/python_float_format.h"

namespace lumen {

using io::EventFileWriter;
using io::ProtoEncoder;
using io::wall_time_now;

namespace fs = std::filesystem;

namespace {

// The hparams plugin's messages (tensorboard/plugins/hparams/{api,plugin_data}.proto):
//   HParamsPluginData { int32 version = 1; Experiment experiment = 2;
//                       SessionStartInfo session_start_info = 3; SessionEndInfo session_end_info =
//                       4; }
//   Experiment { repeated HParamInfo hparam_infos = 4; repeated MetricInfo metric_infos = 5; }
//   HParamInfo { string name = 1; DataType type = 4; }   (STRING = 1, FLOAT64 = 3)
//   MetricInfo { MetricName name = 1; }   MetricName { string group = 1; string tag = 2; }
//   SessionStartInfo { map<string, google.protobuf.Value> hparams = 1; double start_time_secs = 5;
//   } SessionEndInfo { Status status = 1; double end_time_secs = 2; }   (STATUS_SUCCESS = 1)
//   google.protobuf.Value { double number_value = 2; string string_value = 3; }
// Each goes into Summary.Value{tag, metadata = SummaryMetadata{plugin_data = PluginData{
// plugin_name = 1: "hparams", content = 2: the serialized HParamsPluginData}}} with no value.
std::string plugin_summary(const std::string& tag, const std::string& content) {
  std::string plugin_data = ProtoEncoder().bytes(1, "hparams").bytes(2, content).str();
  std::string metadata = ProtoEncoder().bytes(1, plugin_data).str();
  std::string value = ProtoEncoder().bytes(1, tag).bytes(9, metadata).str();
  return ProtoEncoder().bytes(1, value).str();
}

// Lists become their Python text ("[1, 2]"), as Lightning's _sanitize_params does.
std::string attr_text(const AttrValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return python_float_repr(*d);
  std::string out = "[";
  if (const auto* is = std::get_if<std::vector<int64_t>>(&v))
    for (size_t k = 0; k < is->size(); ++k) out += (k ? ", " : "") + std::to_string((*is)[k]);
  if (const auto* ds = std::get_if<std::vector<double>>(&v))
    for (size_t k = 0; k < ds->size(); ++k) out += (k ? ", " : "") + python_float_repr((*ds)[k]);
  return out + "]";
}

}  // namespace

HParamsSummaries hparams_summaries(const std::map<std::string, AttrValue>& params,
                                   const std::vector<std::string>& metric_tags) {
  ProtoEncoder experiment, start;
  for (const auto& [key, value] : params) {
    bool numeric = std::holds_alternative<int64_t>(value) || std::holds_alternative<double>(value);
    experiment.bytes(4, ProtoEncoder().bytes(1, key).varint(4, numeric ? 3 : 1).str());
    ProtoEncoder pb_value;
    if (const auto* i = std::get_if<int64_t>(&value)) {
      pb_value.float64(2, static_cast<double>(*i));
    } else if (const auto* d = std::get_if<double>(&value)) {
      pb_value.float64(2, *d);
    } else {
      pb_value.bytes(3, attr_text(value));
    }
    // A map field is a repeated message {key = 1, value = 2}.
    start.bytes(1, ProtoEncoder().bytes(1, key).bytes(2, pb_value.str()).str());
  }
  for (const auto& tag : metric_tags)
    experiment.bytes(5, ProtoEncoder().bytes(1, ProtoEncoder().bytes(2, tag).str()).str());
  start.float64(5, wall_time_now());
  std::string end = ProtoEncoder().varint(1, 1).float64(2, wall_time_now()).str();

  HParamsSummaries out;
  out.experiment =
      plugin_summary("_hparams_/experiment", ProtoEncoder().bytes(2, experiment.str()).str());
  out.session_start =
      plugin_summary("_hparams_/session_start_info", ProtoEncoder().bytes(3, start.str()).str());
  out.session_end =
      plugin_summary("_hparams_/session_end_info", ProtoEncoder().bytes(4, end).str());
  return out;
}

TensorBoardLogger::TensorBoardLogger(TensorBoardLoggerOptions options)
    : options_(std::move(options)) {}

std::string TensorBoardLogger::version() const {
  if (version_.empty()) {
    version_ = options_.version.directory
                   ? *options_.version.directory
                   : "version_" + std::to_string(next_logger_version(root_dir()));
  }
  return version_;
}

std::string TensorBoardLogger::log_dir() const {
  return (fs::path(root_dir()) / version()).string();
}

EventFileWriter& TensorBoardLogger::writer() {
  if (!writer_) writer_ = std::make_unique<EventFileWriter>(log_dir());
  return *writer_;
}

void TensorBoardLogger::log_metrics(const std::map<std::string, double>& metrics, int64_t step) {
  auto& w = writer();
  for (const auto& [tag, value] : metrics) w.add_scalar(tag, value, step);
  w.flush();
}

void TensorBoardLogger::add_image(const std::string& tag, const Tensor& image, int64_t step) {
  std::string png = io::encode_png(image);
  auto& w = writer();
  w.add_summary(io::image_summary(tag, image.size(-2), image.size(-1), png), step);
  w.flush();
}

void TensorBoardLogger::log_hyperparams(const std::map<std::string, AttrValue>& params) {
  for (const auto& [key, value] : params) hparams_[key] = value;
  std::map<std::string, double> metrics;
  if (options_.default_hp_metric) metrics["hp_metric"] = -1.0;
  if (!metrics.empty()) log_metrics(metrics, 0);
  std::vector<std::string> tags;
  for (const auto& [tag, value] : metrics) tags.push_back(tag);
  HParamsSummaries s = hparams_summaries(params, tags);
  auto& w = writer();
  w.add_summary(s.experiment, 0);
  w.add_summary(s.session_start, 0);
  w.add_summary(s.session_end, 0);
  w.flush();
  write_hparams_yaml(log_dir() + "/hparams.yaml", hparams_);
}

void TensorBoardLogger::save() {
  if (writer_) writer_->flush();
}

}  // namespace lumen
