#include "io/csv.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string_view>

#include "tensor/error.h"

namespace lumen::io {
namespace {

// The line's fields: split at the delimiter outside double quotes, each without surrounding
// spaces and quotes ("" inside quotes is a quote; a number field never holds one).
std::vector<std::string> fields(std::string_view line, char delimiter) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"' && quoted && i + 1 < line.size() && line[i + 1] == '"') {
      out.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == delimiter && !quoted) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  for (std::string& f : out) {
    const size_t first = f.find_first_not_of(" \t"), last = f.find_last_not_of(" \t");
    f = first == std::string::npos ? "" : f.substr(first, last - first + 1);
  }
  return out;
}

// The field as a number, as strtod reads it (out of range: +-inf or +-0, as numpy), or nothing
// when it is not one whole number.
std::optional<double> number(const std::string& f) {
  if (f.empty() || std::isspace(static_cast<unsigned char>(f[0]))) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(f.c_str(), &end);
  if (end != f.c_str() + f.size()) return std::nullopt;
  return v;
}

}  // namespace

CsvTable read_csv(const std::string& path, CsvOptions options) {
  LUMEN_CHECK(options.dtype == DType::f32 || options.dtype == DType::f64,
              "read_csv: dtype must be f32 or f64, got ", dtype_name(options.dtype));
  LUMEN_CHECK(options.delimiter != '"' && options.delimiter != '\n' && options.delimiter != '\r',
              "read_csv: the delimiter cannot be a quote or a line end");
  std::ifstream in(path, std::ios::binary);
  LUMEN_CHECK(in.good(), "read_csv: cannot open '", path, "'; expected a readable CSV file");
  CsvTable table;
  std::vector<double> values;
  size_t width = 0;
  int64_t rows = 0, line_number = 0;
  std::string line;
  bool header_pending = options.header;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line_number == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 BOM
    const std::vector<std::string> row = fields(line, options.delimiter);
    if (header_pending) {
      header_pending = false;
      table.columns = row;
      width = row.size();
      continue;
    }
    if (width == 0) width = row.size();
    LUMEN_CHECK(row.size() == width, "read_csv: '", path, "' line ", line_number, " has ",
                row.size(), " fields; expected ", width,
                table.columns.empty() ? " (as the first row)" : " (as the header)");
    for (size_t c = 0; c < row.size(); ++c) {
      const std::optional<double> v = number(row[c]);
      LUMEN_CHECK(v.has_value(), "read_csv: '", path, "' line ", line_number, " column ", c + 1,
                  table.columns.empty() ? std::string() : " ('" + table.columns[c] + "')", ": '",
                  row[c], "' is not a number");
      values.push_back(*v);
    }
    ++rows;
  }
  LUMEN_CHECK(!in.bad(), "read_csv: reading '", path, "' failed");
  LUMEN_CHECK(rows > 0, "read_csv: '", path, "' has no rows of values",
              options.header ? " after its header" : "");
  table.values = from_vector(values, {rows, static_cast<int64_t>(width)}).to(options.dtype);
  return table;
}

}  // namespace lumen::io
