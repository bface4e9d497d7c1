#include "io/hdf5_file.h"

#include <cstring>
#include <mutex>

#include "tensor/error.h"

namespace lumen::io::hdf5 {
namespace {

// The stack from the API call (first) down to where HDF5 detected the problem (last).
herr_t collect_message(unsigned, const H5E_error2_t* e, void* out) {
  auto* messages = static_cast<std::vector<std::string>*>(out);
  std::string text = e->desc != nullptr ? e->desc : "";
  if (text.empty()) {
    char buf[256] = {};
    if (H5Eget_msg(e->min_num, nullptr, buf, sizeof buf) > 0) text = buf;
  }
  if (!text.empty()) messages->push_back(std::move(text));
  return 0;
}

std::string take_error_stack() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_message, &messages);
  H5Eclear2(H5E_DEFAULT);
  if (messages.empty()) return "HDF5 reported no details";
  std::string text = messages.front();
  if (messages.size() > 1 && messages.back() != messages.front())
    text += " (cause: " + messages.back() + ")";
  return text;
}

std::vector<hsize_t> to_hsize(const Shape& dims) {
  std::vector<hsize_t> out;
  for (int64_t d : dims) out.push_back(static_cast<hsize_t>(d));
  return out;
}

const Where kNoFile{"", "datatype", ""};

herr_t collect_attribute_name(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

herr_t collect_link_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

}  // namespace

void silence_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string Where::str() const {
  std::string s = "'" + path + "'";
  return attribute.empty() ? s : "attribute '" + attribute + "' of " + s;
}

void throw_error(std::string_view call, const Where& where) {
  std::string stack = take_error_stack();
  std::string msg = std::string(call) + " failed on " + where.str();
  if (!where.file.empty()) msg += " in '" + where.file + "'";
  throw Error(msg + ": " + stack);
}

herr_t Handle::close() {
  if (id_ < 0) return 0;
  return close_(std::exchange(id_, H5I_INVALID_HID));
}

void Handle::reset() {
  if (close() < 0) H5Eclear2(H5E_DEFAULT);
}

Handle make_dataspace(const Shape& dims, const Where& where) {
  silence_errors();
  if (dims.empty()) return {check(H5Screate(H5S_SCALAR), "H5Screate", where), H5Sclose};
  std::vector<hsize_t> d = to_hsize(dims);
  return {check(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr), "H5Screate_simple",
                where),
          H5Sclose};
}

Shape dataspace_dims(hid_t space, const Where& where) {
  H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_NO_CLASS) throw_error("H5Sget_simple_extent_type", where);
  if (cls == H5S_SCALAR) return {};
  LUMEN_CHECK(cls == H5S_SIMPLE, where.str(), " in '", where.file,
              "' has a null dataspace (no value), which Lumen does not read");
  int rank = check(H5Sget_simple_extent_ndims(space), "H5Sget_simple_extent_ndims", where);
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  check(H5Sget_simple_extent_dims(space, d.data(), nullptr), "H5Sget_simple_extent_dims", where);
  return Shape(d.begin(), d.end());
}

Handle utf8_string_type() {
  silence_errors();
  Handle t(check(H5Tcopy(H5T_C_S1), "H5Tcopy", kNoFile), H5Tclose);
  check(H5Tset_size(t.id(), H5T_VARIABLE), "H5Tset_size", kNoFile);
  check(H5Tset_cset(t.id(), H5T_CSET_UTF8), "H5Tset_cset", kNoFile);
  return t;
}

Handle ieee_f16_type(bool file_order) {
  silence_errors();
  // binary16: sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9. The fields are
  // set inside the 32-bit type first, then the size shrinks to 2 bytes (HDF5 refuses a size
  // the fields do not fit in), as h5py builds its float16.
  Handle t(check(H5Tcopy(file_order ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT), "H5Tcopy", kNoFile),
           H5Tclose);
  check(H5Tset_fields(t.id(), 15, 10, 5, 0, 10), "H5Tset_fields", kNoFile);
  check(H5Tset_size(t.id(), 2), "H5Tset_size", kNoFile);
  check(H5Tset_ebias(t.id(), 15), "H5Tset_ebias", kNoFile);
  return t;
}

Handle Attribute::type() const {
  return {check(H5Aget_type(id()), "H5Aget_type", where_), H5Tclose};
}

Shape Attribute::dims() const {
  Handle space(check(H5Aget_space(id()), "H5Aget_space", where_), H5Sclose);
  return dataspace_dims(space.id(), where_);
}

void Attribute::write(hid_t mem_type, const void* data) {
  check(H5Awrite(id(), mem_type, data), "H5Awrite", where_);
}

void Attribute::read(hid_t mem_type, void* data) const {
  check(H5Aread(id(), mem_type, data), "H5Aread", where_);
}

void Attribute::write_string(const std::string& value) {
  // Variable-length strings end at the first NUL; refuse rather than cut one short.
  LUMEN_CHECK(value.find('\0') == std::string::npos, "HDF5 string ", where_.str(), " in '",
              where_.file, "' contains a NUL character, which HDF5 strings cannot hold");
  Handle t = utf8_string_type();
  const char* p = value.c_str();
  write(t.id(), &p);
}

std::string Attribute::read_string() const {
  Handle file_type = type();
  LUMEN_CHECK(H5Tget_class(file_type.id()) == H5T_STRING, where_.str(), " in '", where_.file,
              "' is not a string");
  LUMEN_CHECK(dims().empty(), where_.str(), " in '", where_.file,
              "' is an array of strings; expected one string");
  htri_t variable = check(H5Tis_variable_str(file_type.id()), "H5Tis_variable_str", where_);
  if (variable > 0) {
    Handle mem(check(H5Tcopy(H5T_C_S1), "H5Tcopy", where_), H5Tclose);
    check(H5Tset_size(mem.id(), H5T_VARIABLE), "H5Tset_size", where_);
    check(H5Tset_cset(mem.id(), H5Tget_cset(file_type.id())), "H5Tset_cset", where_);
    char* p = nullptr;
    read(mem.id(), &p);
    std::string s = p != nullptr ? p : "";
    H5free_memory(p);
    return s;
  }
  size_t n = H5Tget_size(file_type.id());
  if (n == 0) throw_error("H5Tget_size", where_);
  std::vector<char> buf(n + 1, '\0');
  read(file_type.id(), buf.data());
  std::string s(buf.data(), strnlen(buf.data(), n));
  if (H5Tget_strpad(file_type.id()) == H5T_STR_SPACEPAD) s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

bool Object::has_attribute(const std::string& name) const {
  return check(H5Aexists(id(), name.c_str()), "H5Aexists", Where{where_.file, where_.path, name}) >
         0;
}

std::vector<std::string> Object::attribute_names() const {
  std::vector<std::string> names;
  hsize_t idx = 0;
  check(H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attribute_name, &names),
        "H5Aiterate2", where_);
  return names;
}

Attribute Object::open_attribute(const std::string& name) const {
  Where w{where_.file, where_.path, name};
  return {Handle(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), "H5Aopen", w), H5Aclose), w};
}

Attribute Object::create_attribute(const std::string& name, hid_t file_type, const Shape& dims) {
  Where w{where_.file, where_.path, name};
  Handle space = make_dataspace(dims, w);
  return {
      Handle(check(H5Acreate2(id(), name.c_str(), file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                   "H5Acreate2", w),
             H5Aclose),
      w};
}

void Object::write_string_attribute(const std::string& name, const std::string& value) {
  Handle t = utf8_string_type();
  create_attribute(name, t.id(), {}).write_string(value);
}

std::string Object::child_path(const std::string& name) const {
  return where_.path == "/" ? "/" + name : where_.path + "/" + name;
}

Handle Dataset::type() const { return {check(H5Dget_type(id()), "H5Dget_type", where_), H5Tclose}; }

Shape Dataset::dims() const {
  Handle space(check(H5Dget_space(id()), "H5Dget_space", where_), H5Sclose);
  return dataspace_dims(space.id(), where_);
}

void Dataset::write(hid_t mem_type, const void* data) {
  if (numel_of(dims()) == 0) return;
  check(H5Dwrite(id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", where_);
}

void Dataset::read(hid_t mem_type, void* data) const {
  if (numel_of(dims()) == 0) return;
  check(H5Dread(id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dread", where_);
}

std::vector<Group::Child> Group::children() const {
  std::vector<std::string> names;
  hsize_t idx = 0;
  check(H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link_name, &names), "H5Literate",
        where_);
  std::vector<Child> out;
  for (std::string& name : names) {
    Where w{where_.file, child_path(name), ""};
    Handle obj(check(H5Oopen(id(), name.c_str(), H5P_DEFAULT), "H5Oopen", w), H5Oclose);
    H5I_type_t t = H5Iget_type(obj.id());
    if (t == H5I_BADID) throw_error("H5Iget_type", w);
    ChildKind kind = t == H5I_GROUP     ? ChildKind::Group
                     : t == H5I_DATASET ? ChildKind::Dataset
                                        : ChildKind::Other;
    out.push_back({std::move(name), kind});
  }
  return out;
}

Group Group::create_group(const std::string& name) {
  Where w{where_.file, child_path(name), ""};
  return {Handle(check(H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                       "H5Gcreate2", w),
                 H5Gclose),
          w};
}

Group Group::open_group(const std::string& name) const {
  Where w{where_.file, child_path(name), ""};
  return {Handle(check(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), "H5Gopen2", w), H5Gclose), w};
}

Dataset Group::create_dataset(const std::string& name, hid_t file_type, const Shape& dims) {
  Where w{where_.file, child_path(name), ""};
  Handle space = make_dataspace(dims, w);
  return {Handle(check(H5Dcreate2(id(), name.c_str(), file_type, space.id(), H5P_DEFAULT,
                                  H5P_DEFAULT, H5P_DEFAULT),
                       "H5Dcreate2", w),
                 H5Dclose),
          w};
}

Dataset Group::open_dataset(const std::string& name) const {
  Where w{where_.file, child_path(name), ""};
  return {Handle(check(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), "H5Dopen2", w), H5Dclose), w};
}

namespace {

Handle file_access_properties(const Where& w) {
  Handle fapl(check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate", w), H5Pclose);
  // SEMI: closing a file with objects still open fails instead of silently keeping it open.
  check(H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_SEMI), "H5Pset_fclose_degree", w);
#if H5_VERSION_GE(1, 10, 7)
  // Lock where the file system supports it; where it does not (some network file systems),
  // go on without instead of failing.
  check(H5Pset_file_locking(fapl.id(), true, true), "H5Pset_file_locking", w);
#endif
  return fapl;
}

}  // namespace

File File::create(const std::string& path) {
  silence_errors();
  Where w{path, "/", ""};
  Handle fapl = file_access_properties(w);
  // The 1.8 format (readable by HDF5 >= 1.8 and h5py) keeps attributes over 64 KiB in dense
  // storage; the default earliest format cannot store them at all.
  check(H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18), "H5Pset_libver_bounds", w);
  return {
      Handle(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()), "H5Fcreate", w),
             H5Fclose),
      path};
}

File File::open_read_only(const std::string& path) {
  silence_errors();
  Where w{path, "/", ""};
  Handle fapl = file_access_properties(w);
  return {Handle(check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), "H5Fopen", w), H5Fclose),
          path};
}

Group File::root() const {
  Where w{path_, "/", ""};
  return {Handle(check(H5Gopen2(h_.id(), "/", H5P_DEFAULT), "H5Gopen2", w), H5Gclose), w};
}

void File::flush() {
  check(H5Fflush(h_.id(), H5F_SCOPE_GLOBAL), "H5Fflush", Where{path_, "/", ""});
}

void File::close() {
  if (h_.close() < 0) throw_error("H5Fclose", Where{path_, "/", ""});
}

}  // namespace lumen::io::hdf5
