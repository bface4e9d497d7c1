#pragma once
// Data in HDF5 files (prepared with h5py, say) as tensors. Make a dataset of them:
//   TensorDataset ds({io::read_hdf5("data.h5", "/train/images"),
//                     io::read_hdf5("data.h5", "/train/labels")});
#include <string>

#include "tensor/tensor.h"

namespace lumen::io {

// The dataset at `dataset` ("images" or "/train/images") of an HDF5 file, as h5py's
// f[dataset][...]: f16, f32, f64, i32, i64 or u8 (and Lumen's tagged bool and bf16); i8, i16
// and u16 widened to i32, u32 to i64 (Lumen has no such dtypes; the values are kept). Throws
// lumen::Error naming the file and the dataset when either is missing or its type fits no
// dtype (u64, strings, compounds).
Tensor read_hdf5(const std::string& file, const std::string& dataset);

}  // namespace lumen::io
