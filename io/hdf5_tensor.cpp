#include "io/hdf5_tensor.h"

#include <string>

#include "tensor/error.h"

namespace lumen::io {
namespace {

using hdf5::Handle;

// The HDF5 type a dtype is stored as (bool and bf16 also get the lumen_dtype tag).
Handle file_type(DType dt) {
  auto copy = [](hid_t t) {
    return Handle(hdf5::check(H5Tcopy(t), "H5Tcopy", {"", "datatype", ""}), H5Tclose);
  };
  switch (dt) {
    case DType::f32:
      return copy(H5T_IEEE_F32LE);
    case DType::f64:
      return copy(H5T_IEEE_F64LE);
    case DType::f16:
      return hdf5::ieee_f16_type(/*file_order=*/true);
    case DType::bf16:
      return copy(H5T_STD_U16LE);
    case DType::i32:
      return copy(H5T_STD_I32LE);
    case DType::i64:
      return copy(H5T_STD_I64LE);
    case DType::u8:
    case DType::boolean:
      return copy(H5T_STD_U8LE);
  }
  throw Error("write_tensor: unknown dtype");
}

Handle memory_type(DType dt) {
  auto copy = [](hid_t t) {
    return Handle(hdf5::check(H5Tcopy(t), "H5Tcopy", {"", "datatype", ""}), H5Tclose);
  };
  switch (dt) {
    case DType::f32:
      return copy(H5T_NATIVE_FLOAT);
    case DType::f64:
      return copy(H5T_NATIVE_DOUBLE);
    case DType::f16:
      return hdf5::ieee_f16_type(/*file_order=*/false);
    case DType::bf16:
      return copy(H5T_NATIVE_UINT16);
    case DType::i32:
      return copy(H5T_NATIVE_INT32);
    case DType::i64:
      return copy(H5T_NATIVE_INT64);
    case DType::u8:
    case DType::boolean:
      return copy(H5T_NATIVE_UINT8);
  }
  throw Error("read_tensor: unknown dtype");
}

}  // namespace

std::string describe_type(hid_t t) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  const char* name = cls == H5T_INTEGER
                         ? (H5Tget_sign(t) == H5T_SGN_NONE ? "unsigned integer" : "signed integer")
                     : cls == H5T_FLOAT    ? "float"
                     : cls == H5T_STRING   ? "string"
                     : cls == H5T_COMPOUND ? "compound"
                     : cls == H5T_ARRAY    ? "array"
                     : cls == H5T_ENUM     ? "enum"
                                           : "other";
  return lumen::detail::concat(size, "-byte ", name);
}

DType dtype_in_file(const hdf5::Dataset& ds, const char* caller, bool widen_integers) {
  Handle t = ds.type();
  std::string tag =
      ds.has_attribute(kDtypeAttribute) ? ds.open_attribute(kDtypeAttribute).read_string() : "";
  H5T_class_t cls = H5Tget_class(t.id());
  size_t size = H5Tget_size(t.id());
  bool is_unsigned = cls == H5T_INTEGER && H5Tget_sign(t.id()) == H5T_SGN_NONE;
  auto fail = [&](const char* why) {
    lumen::detail::throw_error(
        caller, ": dataset '", ds.where().path, "' in '", ds.where().file, "' is a ",
        describe_type(t.id()),
        tag.empty() ? "" : " tagged " + std::string(kDtypeAttribute) + "=" + tag, ": ", why);
  };
  if (tag == "bool") {
    if (!(is_unsigned && size == 1)) fail("a bool tensor is stored as 1-byte unsigned integers");
    return DType::boolean;
  }
  if (tag == "bf16") {
    if (!(is_unsigned && size == 2)) fail("a bf16 tensor is stored as 2-byte unsigned integers");
    return DType::bf16;
  }
  if (!tag.empty()) fail("the tag is not one Lumen writes (bool, bf16)");
  if (cls == H5T_FLOAT) {
    if (size == 2) return DType::f16;
    if (size == 4) return DType::f32;
    if (size == 8) return DType::f64;
  } else if (cls == H5T_INTEGER) {
    if (!is_unsigned && size == 4) return DType::i32;
    if (!is_unsigned && size == 8) return DType::i64;
    if (is_unsigned && size == 1) return DType::u8;
    // HDF5 converts the integers as it reads them into the wider type's memory.
    if (widen_integers && size <= 2) return DType::i32;  // i8, i16, u16
    if (widen_integers && is_unsigned && size == 4) return DType::i64;
  }
  fail(widen_integers ? "Lumen has no dtype it fits in (f16, f32, f64, i32, i64, u8; i8, i16 and "
                        "u16 read as i32, u32 as i64; bool and bf16 tagged)"
                      : "Lumen has no dtype for it (f16, f32, f64, i32, i64, u8; bool and bf16 "
                        "tagged)");
  return DType::f32;
}

// Returns the dataset's path in the file.
std::string write_tensor(hdf5::Group& g, const std::string& name, const Tensor& tensor) {
  // The bytes HDF5 gets: on the CPU, row-major, without the autograd graph.
  Tensor t = tensor.detach();
  if (!t.device().is_cpu()) t = t.to(Device::cpu());
  t = t.contiguous();
  Handle ft = file_type(t.dtype());
  Handle mt = memory_type(t.dtype());
  hdf5::Dataset ds = g.create_dataset(name, ft.id(), t.shape());
  ds.write(mt.id(), t.data_ptr());
  if (t.dtype() == DType::boolean || t.dtype() == DType::bf16)
    ds.write_string_attribute(kDtypeAttribute, dtype_name(t.dtype()));
  return ds.where().path;
}

Tensor read_tensor(const hdf5::Dataset& ds, const char* caller, bool widen_integers) {
  DType dt = dtype_in_file(ds, caller, widen_integers);
  Tensor t = empty(ds.dims(), {.dtype = dt});
  Handle mt = memory_type(dt);
  ds.read(mt.id(), t.data_ptr());
  if (dt == DType::boolean) {
    // Any nonzero byte is true; a bool holding another byte than 0 or 1 is not a valid bool.
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] != 0;
  }
  return t;
}

}  // namespace lumen::io
