#include "trainer/profiler.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

#include "tensor/error.h"
#include "trainer/python_float_format.h"

namespace lumen {

Profiler::Profiler(std::string dirpath, std::string filename)
    : dirpath_(std::move(dirpath)), filename_(std::move(filename)) {}

void Profiler::setup(const std::string& stage, std::optional<int> local_rank,
                     const std::string& log_dir, bool global_zero) {
  stage_ = stage;
  local_rank_ = local_rank;
  global_zero_ = global_zero;
  if (dirpath_.empty()) dirpath_ = log_dir;
}

// Lightning's _prepare_filename: "{stage}-{filename}[-{local_rank}].txt".
void Profiler::describe() {
  const std::string report = summary();
  if (report.empty()) return;
  if (filename_.empty()) {
    if (global_zero_) std::cout << report << std::flush;
    return;
  }
  std::string name = filename_;
  if (!stage_.empty()) name = stage_ + "-" + name;
  if (local_rank_) name.append("-").append(std::to_string(*local_rank_));
  std::filesystem::path path = std::filesystem::path(dirpath_.empty() ? "." : dirpath_) / name;
  path += ".txt";
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::app);
  LUMEN_CHECK(out.good(), "Profiler: cannot open \"", path.string(), "\" to write the report");
  out << report;
  LUMEN_CHECK(out.good(), "Profiler: writing the report to \"", path.string(), "\" failed");
}

Profiler::Scope::Scope(Profiler* profiler, std::string action)
    : profiler_(profiler), action_(std::move(action)) {
  profiler_->start(action_);
}

Profiler::Scope::~Scope() {
  try {
    profiler_->stop(action_);
  } catch (...) {
    // stop() fails only for an action that was never started, which the constructor did.
  }
}

SimpleProfiler::SimpleProfiler(SimpleProfilerOptions options)
    : Profiler(std::move(options.dirpath), std::move(options.filename)),
      extended_(options.extended) {}

void SimpleProfiler::start(const std::string& action) {
  auto [it, inserted] = running_.try_emplace(action, Clock::now());
  LUMEN_CHECK(inserted, "SimpleProfiler: attempted to start \"", action,
              "\", which has already started");
}

void SimpleProfiler::stop(const std::string& action) {
  const Clock::time_point end = Clock::now();
  auto it = running_.find(action);
  LUMEN_CHECK(it != running_.end(), "SimpleProfiler: attempted to stop \"", action,
              "\", which was never started");
  Record& r = records_[action];
  r.calls += 1;
  r.total_seconds += std::chrono::duration<double>(end - it->second).count();
  running_.erase(it);
}

namespace {

// len(text.expandtabs()) in Python: tab stops every 8 columns, a newline restarts the count
// (and counts itself).
size_t expanded_length(const std::string& text) {
  size_t length = 0, col = 0;
  for (char ch : text) {
    const size_t width = ch == '\t' ? 8 - col % 8 : 1;
    length += width;
    col = ch == '\n' ? 0 : col + width;
  }
  return length;
}

// A newline and `width` dashes (built without operator+ on a literal, which trips GCC 12's
// -Wrestrict false positive).
std::string ruler(size_t width) {
  std::string rule(1, '\n');
  rule.append(width, '-');
  return rule;
}

std::string left(const std::string& text, size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

}  // namespace

// Lightning's SimpleProfiler.summary, character for character (tabs included).
std::string SimpleProfiler::summary() const {
  std::string out;
  if (!stage_.empty()) {
    std::string upper = stage_;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    out += upper + " ";
  }
  out += "Profiler Report\n";
  if (records_.empty()) return extended_ ? out + "\n" : "";
  size_t key = 0;
  for (const auto& [action, r] : records_) key = std::max(key, action.size());
  auto fmt = [](double v) { return python_format_precision(v, 5); };

  struct Row {
    std::string action;
    Record r;
    double share;
  };
  std::vector<Row> rows;
  const double whole = std::chrono::duration<double>(Clock::now() - created_).count();
  for (const auto& [action, r] : records_)
    rows.push_back({action, r, whole > 0 ? 100.0 * r.total_seconds / whole : 0.0});
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.r.total_seconds > b.r.total_seconds;
  });

  auto line = [&](const std::vector<std::string>& cells) {
    std::string row = "\n|  " + left(cells[0], key) + "\t|";
    for (size_t i = 1; i < cells.size(); ++i) row += "  " + left(cells[i], 15) + "\t|";
    return row;
  };
  if (extended_) {
    const std::string header =
        line({"Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"});
    const std::string rule = ruler(expanded_length(header));
    int64_t calls = 0;
    for (const Row& row : rows) calls += row.r.calls;
    out += rule + header + rule;
    out += line({"Total", "-", std::to_string(calls), fmt(whole), "100 %"}) + rule;
    for (const Row& row : rows)
      out += line({row.action, fmt(row.r.total_seconds / static_cast<double>(row.r.calls)),
                   std::to_string(row.r.calls), fmt(row.r.total_seconds), fmt(row.share)});
    out += rule;
  } else {
    const std::string header = line({"Action", "Mean duration (s)", "Total time (s)"});
    const std::string rule = ruler(expanded_length(header));
    out += rule + header + rule;
    for (const Row& row : rows)
      out += line({row.action, fmt(row.r.total_seconds / static_cast<double>(row.r.calls)),
                   fmt(row.r.total_seconds)});
    out += rule;
  }
  return out + "\n";
}

}  // namespace lumen
