// io::read_hdf5: datasets of any HDF5 file (as h5py writes them) as tensors.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "io/hdf5_data.h"
#include "io/hdf5_tensor.h"
#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::TempDir;

TEST(IoHdf5, ReadsDatasetsByPathWithTheirDtypeAndShape) {
  TempDir dir("hdf5");
  const std::string path = dir.str("data.h5");
  const Tensor images = rand({3, 2, 4});
  const Tensor labels = from_vector<int64_t>({4, 0, 9});
  {
    io::hdf5::File f = io::hdf5::File::create(path);
    io::hdf5::Group train = f.root().create_group("train");
    io::write_tensor(train, "images", images);
    io::write_tensor(train, "labels", labels);
    // Integer types Lumen has no dtype for, at the ends of their ranges: widened on read.
    const uint16_t u16[3] = {0, 1, 65535};
    f.root().create_dataset("u16", H5T_STD_U16LE, {3}).write(H5T_NATIVE_UINT16, u16);
    const int16_t i16[3] = {-32768, -1, 32767};
    f.root().create_dataset("i16", H5T_STD_I16BE, {3}).write(H5T_NATIVE_INT16, i16);
    const int8_t i8[2] = {-128, 127};
    f.root().create_dataset("i8", H5T_STD_I8LE, {2}).write(H5T_NATIVE_INT8, i8);
    const uint32_t u32[2] = {0, 4294967295u};
    f.root().create_dataset("u32", H5T_STD_U32LE, {2}).write(H5T_NATIVE_UINT32, u32);
    const uint64_t u64[1] = {1};
    f.root().create_dataset("u64", H5T_STD_U64LE, {1}).write(H5T_NATIVE_UINT64, u64);
    // In a checkpoint (exact dtypes) a u16 is refused.
    io::hdf5::Group exact = f.root().create_group("exact");
    exact.create_dataset("u16", H5T_STD_U16LE, {3}).write(H5T_NATIVE_UINT16, u16);
  }
  const Tensor x = io::read_hdf5(path, "/train/images"), y = io::read_hdf5(path, "train/labels");
  ASSERT_EQ(x.shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(x.to_vector<float>(), images.to_vector<float>());
  ASSERT_EQ(y.dtype(), DType::i64);
  EXPECT_EQ(y.to_vector<int64_t>(), (std::vector<int64_t>{4, 0, 9}));

  EXPECT_THROW_MSG(io::read_hdf5(path, "/train/missing"), "H5Dopen2", "/train/missing", "data.h5");
  const Tensor u16 = io::read_hdf5(path, "u16"), i16 = io::read_hdf5(path, "i16"),
               i8 = io::read_hdf5(path, "i8"), u32 = io::read_hdf5(path, "u32");
  ASSERT_EQ(u16.dtype(), DType::i32);
  EXPECT_EQ(u16.to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 65535}));
  ASSERT_EQ(i16.dtype(), DType::i32);
  EXPECT_EQ(i16.to_vector<int32_t>(), (std::vector<int32_t>{-32768, -1, 32767}));
  ASSERT_EQ(i8.dtype(), DType::i32);
  EXPECT_EQ(i8.to_vector<int32_t>(), (std::vector<int32_t>{-128, 127}));
  ASSERT_EQ(u32.dtype(), DType::i64);
  EXPECT_EQ(u32.to_vector<int64_t>(), (std::vector<int64_t>{0, 4294967295LL}));
  EXPECT_THROW_MSG(io::read_hdf5(path, "u64"), "read_hdf5: dataset '/u64'",
                   "8-byte unsigned integer", "Lumen has no dtype it fits in");
  {
    const io::hdf5::File f = io::hdf5::File::open_read_only(path);
    EXPECT_THROW_MSG(io::read_tensor(f.root().open_dataset("exact/u16"), "checkpoint"),
                     "checkpoint: dataset '/exact/u16'", "2-byte unsigned integer",
                     "Lumen has no dtype for it");
  }
  EXPECT_THROW_MSG(io::read_hdf5(dir.str("none.h5"), "x"), "read_hdf5: no file", "none.h5");
  EXPECT_THROW_MSG(io::read_hdf5(dir.write("text.h5", "not hdf5"), "x"), "text.h5",
                   "is not an HDF5 file");
  EXPECT_THROW_MSG(io::read_hdf5(path, "/"), "expected a dataset's path");
}

}  // namespace
}  // namespace lumen
