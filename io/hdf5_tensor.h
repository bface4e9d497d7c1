#pragma once
// Tensors as HDF5 datasets, for the checkpoints (io/checkpoint.h) and io::read_hdf5:
// f16/f32/f64 as IEEE floats, i32/i64 as signed and u8 as unsigned integers, little-endian;
// bool (1-byte) and bf16 (2-byte unsigned) carry the attribute lumen_dtype naming them, since
// HDF5 has no such types (h5py reads them as uint8 and uint16).
#include <string>

#include "io/hdf5_file.h"
#include "tensor/tensor.h"

namespace lumen::io {

inline constexpr const char* kDtypeAttribute = "lumen_dtype";

// "4-byte float", "2-byte unsigned integer", ...: an HDF5 type in error messages.
std::string describe_type(hid_t type);
// The dtype a dataset reads as; throws naming `caller`, the dataset and its type when Lumen has
// none for it. A checkpoint reads exactly what was written; with widen_integers (data files),
// integer types Lumen lacks read as the next wider one it has: i8, i16 and u16 as i32, u32 as
// i64.
DType dtype_in_file(const hdf5::Dataset& ds, const char* caller, bool widen_integers = false);
Tensor read_tensor(const hdf5::Dataset& ds, const char* caller, bool widen_integers = false);
// Writes `tensor` (from any device, any layout) as dataset `name` of `g`; returns its path.
std::string write_tensor(hdf5::Group& g, const std::string& name, const Tensor& tensor);

}  // namespace lumen::io
