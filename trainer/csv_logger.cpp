#include "trainer/csv_logger.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tensor/error.h"
#include "trainer/hparams_yaml.h"
#include "trainer/python_float_format.h"

namespace lumen {

namespace fs = std::filesystem;

namespace {

// RFC 4180 quoting, as Python's csv module does with its default QUOTE_MINIMAL.
std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Splits one CSV line written by csv_cell (no embedded newlines in our keys or values).
std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.push_back(cell);
      cell.clear();
    } else if (c != '\r') {
      cell += c;
    }
  }
  cells.push_back(cell);
  return cells;
}

std::string csv_row(const std::vector<std::string>& keys,
                    const std::map<std::string, std::string>& row) {
  std::string line;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) line += ',';
    auto it = row.find(keys[i]);
    if (it != row.end()) line += csv_cell(it->second);
  }
  return line + "\n";
}

}  // namespace

CSVLogger::CSVLogger(CSVLoggerOptions options) : options_(std::move(options)) {
  LUMEN_CHECK(options_.flush_logs_every_n_steps >= 1,
              "CSVLogger: flush_logs_every_n_steps must be >= 1, got ",
              options_.flush_logs_every_n_steps);
}

CSVLogger::~CSVLogger() {
  try {
    save();
  } catch (...) {  // a destructor must not throw; finalize() reports write errors
  }
}

std::string CSVLogger::version() const {
  if (version_.empty()) {
    version_ = options_.version.directory
                   ? *options_.version.directory
                   : "version_" + std::to_string(next_logger_version(root_dir()));
  }
  return version_;
}

std::string CSVLogger::log_dir() const { return (fs::path(root_dir()) / version()).string(); }

void CSVLogger::make_log_dir() {
  std::error_code ec;
  fs::create_directories(log_dir(), ec);
  LUMEN_CHECK(!ec, "CSVLogger: cannot create the log directory '", log_dir(), "': ", ec.message());
}

void CSVLogger::log_metrics(const std::map<std::string, double>& metrics, int64_t step) {
  std::map<std::string, std::string> row;
  for (const auto& [key, value] : metrics) {
    // Lightning logs the epoch as a Python int; every other metric is a float.
    bool integral_epoch =
        key == "epoch" && value == static_cast<double>(static_cast<int64_t>(value));
    row[key] =
        integral_epoch ? std::to_string(static_cast<int64_t>(value)) : python_float_repr(value);
  }
  row["step"] = std::to_string(step);
  pending_.push_back(std::move(row));
  if ((step + 1) % options_.flush_logs_every_n_steps == 0) save();
}

void CSVLogger::log_hyperparams(const std::map<std::string, AttrValue>& params) {
  for (const auto& [key, value] : params) hparams_[key] = value;
  make_log_dir();
  write_hparams_yaml(log_dir() + "/hparams.yaml", hparams_);
}

void CSVLogger::save() {
  if (pending_.empty()) return;
  make_log_dir();
  const std::string path = metrics_file_path();
  std::set<std::string> all(keys_.begin(), keys_.end());
  size_t known = all.size();
  for (const auto& row : pending_)
    for (const auto& [key, value] : row) all.insert(key);
  bool new_keys = all.size() != known;
  keys_.assign(all.begin(), all.end());  // a std::set iterates sorted, as Lightning sorts keys

  bool file_exists = fs::exists(path);
  if (new_keys && file_exists) {
    // Read back the rows written under the old header and rewrite them under the new one.
    std::ifstream in(path);
    std::string line;
    std::vector<std::string> old_keys;
    std::vector<std::map<std::string, std::string>> old_rows;
    if (std::getline(in, line)) old_keys = csv_split(line);
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto cells = csv_split(line);
      std::map<std::string, std::string> row;
      for (size_t i = 0; i < old_keys.size() && i < cells.size(); ++i)
        if (!cells[i].empty()) row[old_keys[i]] = cells[i];
      old_rows.push_back(std::move(row));
    }
    in.close();
    fs::path tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      LUMEN_CHECK(out.good(), "CSVLogger: cannot write '", tmp.string(), "'");
      for (size_t i = 0; i < keys_.size(); ++i) out << (i ? "," : "") << csv_cell(keys_[i]);
      out << "\n";
      for (const auto& row : old_rows) out << csv_row(keys_, row);
      LUMEN_CHECK(out.good(), "CSVLogger: writing '", tmp.string(), "' failed");
    }
    fs::rename(tmp, path);
  }

  std::ofstream out(path, std::ios::binary | std::ios::app);
  LUMEN_CHECK(out.good(), "CSVLogger: cannot open '", path, "' for appending");
  if (!file_exists) {
    for (size_t i = 0; i < keys_.size(); ++i) out << (i ? "," : "") << csv_cell(keys_[i]);
    out << "\n";
  }
  for (const auto& row : pending_) out << csv_row(keys_, row);
  out.flush();
  LUMEN_CHECK(out.good(), "CSVLogger: writing '", path, "' failed");
  pending_.clear();
}

}  // namespace lumen
