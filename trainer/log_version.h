#pragma once
// Where a logger's run goes, as Lightning's loggers lay it out: <save_dir>/<name>/<version>,
// the version an integer ("version_3") or a string used as is, and by default the next free
// integer after the highest version_N already under <save_dir>/<name>.
#include <cstdint>
#include <optional>
#include <string>

namespace lumen {

// Lightning's `version: int | str | None` option.
struct LoggerVersion {
  std::optional<std::string> directory;  // unset: the next free version_N
  LoggerVersion() = default;
  LoggerVersion(int v) : directory("version_" + std::to_string(v)) {}      // NOLINT: implicit
  LoggerVersion(int64_t v) : directory("version_" + std::to_string(v)) {}  // NOLINT
  LoggerVersion(const char* s) : directory(s) {}                           // NOLINT
  LoggerVersion(std::string s) : directory(std::move(s)) {}                // NOLINT
};

// 1 + the highest N of the directories "version_N" in root_dir, or 0 when there are none (or
// root_dir does not exist).
int64_t next_logger_version(const std::string& root_dir);

// <save_dir>/<name> (just save_dir when name is empty).
std::string logger_root_dir(const std::string& save_dir, const std::string& name);

}  // namespace lumen
