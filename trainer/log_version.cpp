#include "trainer/log_version.h"

#include <filesystem>

namespace lumen {

namespace fs = std::filesystem;

int64_t next_logger_version(const std::string& root_dir) {
  std::error_code ec;
  if (!fs::is_directory(root_dir, ec)) return 0;
  int64_t highest = -1;
  for (const auto& entry : fs::directory_iterator(root_dir, ec)) {
    if (!entry.is_directory()) continue;
    std::string name = entry.path().filename().string();
    const std::string prefix = "version_";
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) continue;
    std::string number = name.substr(prefix.size());
    if (number.find_first_not_of("0123456789") != std::string::npos) continue;
    highest = std::max<int64_t>(highest, std::stoll(number));
  }
  return highest + 1;
}

std::string logger_root_dir(const std::string& save_dir, const std::string& name) {
  return name.empty() ? save_dir : (fs::path(save_dir) / name).string();
}

}  // namespace lumen
