#include "io/hdf5_data.h"

#include <filesystem>

#include "io/hdf5_file.h"
#include "io/hdf5_tensor.h"
#include "tensor/error.h"

namespace lumen::io {

Tensor read_hdf5(const std::string& file, const std::string& dataset) {
  std::error_code ec;
  LUMEN_CHECK(std::filesystem::is_regular_file(file, ec), "read_hdf5: no file '", file,
              "'; expected an HDF5 file");
  hdf5::silence_errors();
  LUMEN_CHECK(H5Fis_hdf5(file.c_str()) > 0, "read_hdf5: '", file, "' is not an HDF5 file");
  const size_t start = dataset.find_first_not_of('/');
  LUMEN_CHECK(start != std::string::npos, "read_hdf5: expected a dataset's path in '", file,
              "' (\"images\", \"/train/images\"), got '", dataset, "'");
  const hdf5::File f = hdf5::File::open_read_only(file);
  return read_tensor(f.root().open_dataset(dataset.substr(start)), "read_hdf5",
                     /*widen_integers=*/true);
}

}  // namespace lumen::io
