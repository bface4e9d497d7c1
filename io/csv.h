#pragma once
// Numeric CSV files as tensors (numpy.loadtxt, or pandas.read_csv of an all-number table): one
// row per line, the fields split at `delimiter` outside double quotes, each parsed as a number
// as strtod reads it ("nan" and "inf" included, out of range as +-inf or 0; surrounding spaces
// and quotes are ignored). Empty lines are skipped, "\r\n" line ends and a UTF-8 byte-order
// mark accepted. Make a dataset of it by columns:
//   io::CsvTable t = io::read_csv("data.csv");
//   TensorDataset ds({t.values.narrow(1, 0, 4).contiguous(), t.values.select(1, 4).contiguous()});
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lumen::io {

struct CsvOptions {
  char delimiter = ',';
  bool header = true;        // the first line names the columns
  DType dtype = DType::f32;  // f32 or f64
};

struct CsvTable {
  std::vector<std::string> columns;  // the header's names; empty without a header
  Tensor values;                     // [rows, columns]
};

// Throws lumen::Error naming the file, the line and the column of a field that is not a
// number, a row whose field count differs from the first row's, or a file without rows.
CsvTable read_csv(const std::string& path, CsvOptions options = {});

}  // namespace lumen::io
