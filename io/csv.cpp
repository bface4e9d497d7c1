#include "io/csv.h"

#include <charconv>
#include <fstream>
#include <string_view>

#include "tensor/error.h"

namespace lumen::io {
namespace {

// The line split at the delimiter, each field without surrounding spaces and double quotes.
std::vector<std::string_view> fields(std::string_view line, char delimiter) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t end = line.find(delimiter, start);
    std::string_view f = line.substr(start, end == std::string_view::npos ? end : end - start);
    while (!f.empty() && (f.front() == ' ' || f.front() == '\t')) f.remove_prefix(1);
    while (!f.empty() && (f.back() == ' ' || f.back() == '\t')) f.remove_suffix(1);
    if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
    out.push_back(f);
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
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
    const std::vector<std::string_view> row = fields(line, options.delimiter);
    if (header_pending) {
      header_pending = false;
      for (std::string_view name : row) table.columns.emplace_back(name);
      width = row.size();
      continue;
    }
    if (width == 0) width = row.size();
    LUMEN_CHECK(row.size() == width, "read_csv: '", path, "' line ", line_number, " has ",
                row.size(), " fields; expected ", width,
                table.columns.empty() ? " (as the first row)" : " (as the header)");
    for (size_t c = 0; c < row.size(); ++c) {
      double v = 0;
      const char *first = row[c].data(), *last = first + row[c].size();
      if (first != last && *first == '+') ++first;  // from_chars takes no '+'
      const auto [end, ec] = std::from_chars(first, last, v);
      LUMEN_CHECK(ec == std::errc() && end == last && first != last, "read_csv: '", path, "' line ",
                  line_number, " column ", c + 1,
                  table.columns.empty() ? std::string() : " ('" + table.columns[c] + "')", ": '",
                  row[c], "' is not a number");
      values.push_back(v);
    }
    ++rows;
  }
  LUMEN_CHECK(!in.bad(), "read_csv: reading '", path, "' failed");
  LUMEN_CHECK(rows > 0, "read_csv: '", path, "' has no rows of values",
              options.header ? " after its header" : "");
  table.values = empty({rows, static_cast<int64_t>(width)}, {.dtype = options.dtype});
  if (options.dtype == DType::f64)
    std::copy(values.begin(), values.end(), table.values.data<double>());
  else
    for (size_t i = 0; i < values.size(); ++i)
      table.values.data<float>()[i] = static_cast<float>(values[i]);
  return table;
}

}  // namespace lumen::io
