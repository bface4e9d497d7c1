// io::read_csv: numeric CSV files as tensors, and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "io/csv.h"
#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::TempDir;

TEST(IoCsv, ReadsTheHeaderAndTheValuesRowByRow) {
  TempDir dir("csv");
  const std::string path = dir.write("a.csv",
                                     "x1, \"x2\",label\r\n"
                                     "1.5,-2,0\r\n"
                                     "\r\n"
                                     "  3e-2 ,+4,1\n"
                                     "nan,inf,\"2\"\n");
  io::CsvTable t = io::read_csv(path);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"x1", "x2", "label"}));
  ASSERT_EQ(t.values.shape(), (Shape{3, 3}));
  ASSERT_EQ(t.values.dtype(), DType::f32);
  const std::vector<float> v = t.values.to_vector<float>();
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_EQ(v[1], -2.f);
  EXPECT_EQ(v[3], 0.03f);
  EXPECT_EQ(v[4], 4.f);
  EXPECT_EQ(v[5], 1.f);
  EXPECT_TRUE(std::isnan(v[6]));
  EXPECT_TRUE(std::isinf(v[7]));
  EXPECT_EQ(v[8], 2.f);
}

// pandas' and Excel's habits: a delimiter inside quotes, "" for a quote, a byte-order mark,
// numbers beyond double's range (numpy reads them as inf and 0).
TEST(IoCsv, QuotesByteOrderMarkAndOutOfRangeNumbers) {
  TempDir dir("csv");
  const std::string path = dir.write("q.csv",
                                     "\xEF\xBB\xBF\"weight, kg\",\"say \"\"hi\"\"\",z\n"
                                     "\" 3 \",1e400,-1e-400\n");
  io::CsvTable t = io::read_csv(path, {.dtype = DType::f64});
  EXPECT_EQ(t.columns, (std::vector<std::string>{"weight, kg", "say \"hi\"", "z"}));
  const std::vector<double> v = t.values.to_vector<double>();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], 3.0);
  EXPECT_TRUE(std::isinf(v[1]) && v[1] > 0);
  EXPECT_EQ(v[2], 0.0);
  EXPECT_TRUE(std::signbit(v[2]));
  EXPECT_THROW_MSG(io::read_csv(dir.write("s.csv", "+-3\n"), {.header = false}),
                   "'+-3' is not a number");
}

TEST(IoCsv, OptionsDelimiterNoHeaderAndF64) {
  TempDir dir("csv");
  const std::string path = dir.write("b.csv", "0.1;2\n3;0.30000000000000004\n");
  io::CsvTable t = io::read_csv(path, {.delimiter = ';', .header = false, .dtype = DType::f64});
  EXPECT_TRUE(t.columns.empty());
  ASSERT_EQ(t.values.shape(), (Shape{2, 2}));
  const std::vector<double> v = t.values.to_vector<double>();
  EXPECT_EQ(v, (std::vector<double>{0.1, 2, 3, 0.30000000000000004}));
}

TEST(IoCsv, BadInputSaysWhereAndWhat) {
  TempDir dir("csv");
  EXPECT_THROW_MSG(io::read_csv(dir.str("none.csv")), "cannot open", "none.csv");
  EXPECT_THROW_MSG(io::read_csv(dir.write("c.csv", "a,b\n1,2\n3\n")), "c.csv", "line 3",
                   "has 1 fields; expected 2 (as the header)");
  EXPECT_THROW_MSG(io::read_csv(dir.write("d.csv", "1,2\n3,4,5\n"), {.header = false}), "line 2",
                   "has 3 fields; expected 2 (as the first row)");
  EXPECT_THROW_MSG(io::read_csv(dir.write("e.csv", "a,b\n1,2\n3,x7\n")), "line 3 column 2 ('b')",
                   "'x7' is not a number");
  EXPECT_THROW_MSG(io::read_csv(dir.write("f.csv", "1,2,\n"), {.header = false}), "column 3",
                   "'' is not a number");
  EXPECT_THROW_MSG(io::read_csv(dir.write("g.csv", "a,b\n\n")), "no rows of values",
                   "after its header");
  EXPECT_THROW_MSG(io::read_csv(dir.write("h.csv", "1\n"), {.dtype = DType::i64}), "f32 or f64");
}

}  // namespace
}  // namespace lumen
