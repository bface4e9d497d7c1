#include "trainer/results_table.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "trainer/python_float_format.h"

namespace lumen {
namespace {

int terminal_columns() {
  if (const char* env = std::getenv("COLUMNS")) {
    int columns = std::atoi(env);
    if (columns > 0) return columns;
  }
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 120;
}

// Python's f"{s:^{width}}": the odd space of padding goes to the right.
std::string centred(const std::string& s, size_t width) {
  if (s.size() >= width) return s;
  size_t left = (width - s.size()) / 2;
  return std::string(left, ' ') + s + std::string(width - s.size() - left, ' ');
}

std::string bar(int width) {
  std::string line;
  for (int i = 0; i < width; ++i) line += "\u2500";
  return line + "\n";
}

}  // namespace

std::string format_results_table(const std::string& stage,
                                 const std::map<std::string, double>& metrics, int width) {
  if (metrics.empty()) return "";
  if (width <= 0) width = terminal_columns();
  const std::string header = "DataLoader 0";
  std::map<std::string, std::string> values;
  size_t longest = header.size();
  for (const auto& [name, value] : metrics) {
    values[name] = python_float_repr(value);
    longest = std::max({longest, name.size(), values[name].size()});
  }
  const size_t half = static_cast<size_t>(width / 2);
  const size_t column = std::min(std::max(longest, size_t{25}), half);
  std::string title = stage + " metric";
  title[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(title[0])));

  std::string out = bar(width);
  out += centred(title, half) + " " + centred(header, column) + "\n";
  out += bar(width);
  for (const auto& [name, value] : values)
    out += centred(name, half) + " " + centred(value, column) + "\n";
  out += bar(width);
  return out;
}

}  // namespace lumen
