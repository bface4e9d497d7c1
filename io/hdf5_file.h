#pragma once
// A thin RAII layer over the HDF5 C API: files, groups, datasets, attributes, dataspaces and
// datatypes are owned by handles that close them in their destructors, and every HDF5 call is
// checked. HDF5's own printing of its error stack to stderr is switched off; a failed call throws
// lumen::Error naming the call, the object inside the file and the file, followed by HDF5's
// messages (the top of the stack, and its deepest entry, which is usually the cause):
//   H5Fopen failed on '/' in 'run.h5': unable to open file (cause: truncated file: eof = ...)
// Not thread-safe: the HDF5 build here is the serial one.
#include <hdf5.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/shape.h"

namespace lumen::io::hdf5 {

// Switches off HDF5's automatic error printing (once per process). Every entry point below
// calls it; call it yourself before using the raw C API directly.
void silence_errors();

struct Where;

// Throws lumen::Error for the failed `call` on the object at `where`, with HDF5's error stack.
[[noreturn]] void throw_error(std::string_view call, const Where& where);

// Returns `result` when it is not negative (HDF5's failure value), else throws as above.
template <class T>
T check(T result, std::string_view call, const Where& where) {
  if (result < 0) [[unlikely]]
    throw_error(call, where);
  return result;
}

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and returns HDF5's result, leaving its error stack for the caller to report.
  herr_t close();
  // Closes, ignoring a failure (destructors, unwinding).
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Where an object lives, for error messages: the file's name, the path inside it and, for an
// attribute, its name.
struct Where {
  std::string file;
  std::string path;
  std::string attribute;
  std::string str() const;  // "'/trainer'" or "attribute 'epoch' of '/trainer'"
};

// A dataspace: scalar for an empty shape, else simple with these dims (0 allowed).
Handle make_dataspace(const Shape& dims, const Where& where);
// Scalar -> {}; simple -> its dims; a null dataspace throws.
Shape dataspace_dims(hid_t space, const Where& where);
// Variable-length UTF-8 string type, as h5py writes `str`.
Handle utf8_string_type();
// IEEE 754 binary16, little-endian in the file (`file_order`) or native in memory; h5py reads
// it as numpy.float16.
Handle ieee_f16_type(bool file_order);

// Attribute values come in these shapes; the checkpoint layer maps them onto lumen::AttrValue.
class Attribute {
 public:
  Attribute(Handle h, Where where) : h_(std::move(h)), where_(std::move(where)) {}
  hid_t id() const { return h_.id(); }
  const Where& where() const { return where_; }
  Handle type() const;
  Shape dims() const;  // {} for a scalar
  void write(hid_t mem_type, const void* data);
  void read(hid_t mem_type, void* data) const;
  // Scalar string attributes, fixed or variable length.
  void write_string(const std::string& value);
  std::string read_string() const;

 private:
  Handle h_;
  Where where_;
};

// Groups and datasets both carry attributes.
class Object {
 public:
  hid_t id() const { return h_.id(); }
  const Where& where() const { return where_; }

  bool has_attribute(const std::string& name) const;
  std::vector<std::string> attribute_names() const;  // in name order
  Attribute open_attribute(const std::string& name) const;
  // A new attribute of `file_type` over make_dataspace(dims).
  Attribute create_attribute(const std::string& name, hid_t file_type, const Shape& dims);
  void write_string_attribute(const std::string& name, const std::string& value);

 protected:
  Object(Handle h, Where where) : h_(std::move(h)), where_(std::move(where)) {}
  std::string child_path(const std::string& name) const;

  Handle h_;
  Where where_;
};

class Dataset : public Object {
 public:
  Dataset(Handle h, Where where) : Object(std::move(h), std::move(where)) {}
  Handle type() const;
  Shape dims() const;  // {} for a scalar
  // Whole-dataset transfers; `data` holds all elements in row-major order. Zero elements skip
  // the call (HDF5 refuses a null buffer even then).
  void write(hid_t mem_type, const void* data);
  void read(hid_t mem_type, void* data) const;
};

class Group : public Object {
 public:
  Group(Handle h, Where where) : Object(std::move(h), std::move(where)) {}
  enum class ChildKind { Group, Dataset, Other };
  struct Child {
    std::string name;
    ChildKind kind;
  };
  std::vector<Child> children() const;  // in name order
  Group create_group(const std::string& name);
  Group open_group(const std::string& name) const;
  // A contiguous dataset of `file_type`; scalar when dims is empty.
  Dataset create_dataset(const std::string& name, hid_t file_type, const Shape& dims);
  Dataset open_dataset(const std::string& name) const;
};

class File {
 public:
  // Creates (truncating) a file in the HDF5 1.8 format, which stores attributes over 64 KiB.
  static File create(const std::string& path);
  static File open_read_only(const std::string& path);

  const std::string& path() const { return path_; }
  Group root() const;
  void flush();
  // Closes now, checked; every group, dataset and attribute of the file must be closed first.
  void close();

 private:
  File(Handle h, std::string path) : h_(std::move(h)), path_(std::move(path)) {}
  Handle h_;
  std::string path_;
};

}  // namespace lumen::io::hdf5
