#include "io/hdf5_data.h"

#include "io/hdf5_file.h"
#include "io/hdf5_tensor.h"

namespace lumen::io {

Tensor read_hdf5(const std::string& file, const std::string& dataset) {
  const hdf5::File f = hdf5::File::open_read_only(file);
  const std::string name = dataset.starts_with('/') ? dataset.substr(1) : dataset;
  return read_tensor(f.root().open_dataset(name), "read_hdf5");
}

}  // namespace lumen::io
