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
    // A type Lumen has no dtype for: 2-byte unsigned integers without a tag.
    const uint16_t raw[2] = {1, 2};
    f.root().create_dataset("u16", H5T_STD_U16LE, {2}).write(H5T_NATIVE_UINT16, raw);
  }
  const Tensor x = io::read_hdf5(path, "/train/images"), y = io::read_hdf5(path, "train/labels");
  ASSERT_EQ(x.shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(x.to_vector<float>(), images.to_vector<float>());
  ASSERT_EQ(y.dtype(), DType::i64);
  EXPECT_EQ(y.to_vector<int64_t>(), (std::vector<int64_t>{4, 0, 9}));

  EXPECT_THROW_MSG(io::read_hdf5(path, "/train/missing"), "H5Dopen2", "/train/missing", "data.h5");
  EXPECT_THROW_MSG(io::read_hdf5(path, "u16"), "read_hdf5: dataset '/u16'",
                   "2-byte unsigned integer", "Lumen has no dtype for it");
  EXPECT_THROW_MSG(io::read_hdf5(dir.str("none.h5"), "x"), "read_hdf5: no file", "none.h5");
  EXPECT_THROW_MSG(io::read_hdf5(dir.write("text.h5", "not hdf5"), "x"), "text.h5",
                   "is not an HDF5 file");
  EXPECT_THROW_MSG(io::read_hdf5(path, "/"), "expected a dataset's path");
}

}  // namespace
}  // namespace lumen
