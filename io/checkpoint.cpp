#include "io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>

#include "io/hdf5_file.h"
#include "io/hdf5_tensor.h"
#include "tensor/error.h"

#ifndef LUMEN_VERSION_STRING
#error "LUMEN_VERSION_STRING is set by CMakeLists.txt for this file"
#endif

namespace lumen::io {
namespace {

namespace fs = std::filesystem;
using hdf5::Handle;

int g_fail_after_datasets = -1;
std::function<void(const std::string&, int)> g_dataset_written_hook;

std::string errno_text() { return std::strerror(errno); }

void check_name(const std::string& name, const std::string& where, const char* kind) {
  LUMEN_CHECK(!name.empty(), "empty ", kind, " name in group '", where, "'");
  LUMEN_CHECK(name != "." && name.find('/') == std::string::npos, kind, " name '", name,
              "' in group '", where,
              "' contains '/' or is '.'; HDF5 reads '/' as a path separator ('.' is fine "
              "inside a name, as in \"fc1.weight\")");
}

void check_names(const State& s, const std::string& where) {
  for (const auto& [name, value] : s.attrs) check_name(name, where, "attribute");
  for (const auto& [name, t] : s.tensors) {
    check_name(name, where, "tensor");
    LUMEN_CHECK(t.defined(), "tensor '", name, "' in group '", where, "' is undefined");
    LUMEN_CHECK(!s.has_group(name), "'", name, "' in group '", where,
                "' is both a tensor and a group; HDF5 needs one name per object");
  }
  for (const auto& [name, g] : s.groups) {
    check_name(name, where, "group");
    check_names(g, where == "/" ? "/" + name : where + "/" + name);
  }
}

struct WriteProgress {
  int datasets = 0;
};

void maybe_inject_failure(const WriteProgress& progress) {
  if (g_fail_after_datasets >= 0 && progress.datasets >= g_fail_after_datasets)
    lumen::detail::throw_error("injected failure after ", progress.datasets,
                               " datasets (io::detail::set_fail_after_datasets)");
}

void write_attribute(hdf5::Group& g, const std::string& name, const AttrValue& value) {
  // HDF5 refuses a null buffer even for 0 elements; any valid address will do then.
  static const int64_t kNoElements = 0;
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, int64_t>) {
          g.create_attribute(name, H5T_STD_I64LE, {}).write(H5T_NATIVE_INT64, &v);
        } else if constexpr (std::is_same_v<V, double>) {
          g.create_attribute(name, H5T_IEEE_F64LE, {}).write(H5T_NATIVE_DOUBLE, &v);
        } else if constexpr (std::is_same_v<V, std::string>) {
          g.write_string_attribute(name, v);
        } else if constexpr (std::is_same_v<V, std::vector<int64_t>>) {
          g.create_attribute(name, H5T_STD_I64LE, {static_cast<int64_t>(v.size())})
              .write(H5T_NATIVE_INT64, v.empty() ? &kNoElements : v.data());
        } else {
          static_assert(std::is_same_v<V, std::vector<double>>);
          g.create_attribute(name, H5T_IEEE_F64LE, {static_cast<int64_t>(v.size())})
              .write(H5T_NATIVE_DOUBLE,
                     v.empty() ? static_cast<const void*>(&kNoElements) : v.data());
        }
      },
      value);
}

void write_group(hdf5::Group& g, const State& s, WriteProgress& progress) {
  for (const auto& [name, value] : s.attrs) write_attribute(g, name, value);
  for (const auto& [name, t] : s.tensors) {
    std::string written = write_tensor(g, name, t);
    ++progress.datasets;
    if (g_dataset_written_hook) g_dataset_written_hook(written, progress.datasets);
    maybe_inject_failure(progress);
  }
  for (const auto& [name, child] : s.groups) {
    hdf5::Group sub = g.create_group(name);
    write_group(sub, child, progress);
  }
}

void fsync_path(const std::string& path, int flags, bool directory) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  LUMEN_CHECK(fd >= 0, "cannot open '", path, "' to fsync it: ", errno_text());
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as
  // they make it.
  if (r != 0 && !(directory && err == EINVAL))
    lumen::detail::throw_error("fsync of '", path, "' failed: ", std::strerror(err));
}

// A writer killed mid-save cannot remove its "<name>.tmp-<pid>"; the next successful save of
// <name> removes those whose process is gone. Best effort: errors are ignored.
void remove_stale_temporaries(const fs::path& target) {
  std::error_code ec;
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string prefix = target.filename().string() + ".tmp-";
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid()) continue;
    if (::kill(pid, 0) == -1 && errno == ESRCH) fs::remove(e.path(), ec);
  }
}

AttrValue read_attribute(const hdf5::Attribute& a) {
  const hdf5::Where& w = a.where();
  Handle t = a.type();
  Shape dims = a.dims();
  H5T_class_t cls = H5Tget_class(t.id());
  LUMEN_CHECK(dims.size() <= 1, "load_state: ", w.str(), " in '", w.file, "' has shape ",
              shape_str(dims), "; Lumen reads scalars and 1-D lists");
  if (cls == H5T_STRING) {
    return a.read_string();
  }
  LUMEN_CHECK(cls == H5T_INTEGER || cls == H5T_FLOAT, "load_state: ", w.str(), " in '", w.file,
              "' is a ", describe_type(t.id()),
              "; Lumen reads integer, float and string attributes");
  auto read_as = [&]<class T>(hid_t mem) -> AttrValue {
    if (dims.empty()) {
      T v{};
      a.read(mem, &v);
      return v;
    }
    std::vector<T> v(static_cast<size_t>(dims[0]));
    T none{};
    a.read(mem, v.empty() ? &none : v.data());
    return v;
  };
  if (cls == H5T_INTEGER) return read_as.operator()<int64_t>(H5T_NATIVE_INT64);
  return read_as.operator()<double>(H5T_NATIVE_DOUBLE);
}

void read_group(const hdf5::Group& g, State& out) {
  for (const std::string& name : g.attribute_names())
    out.attrs.emplace(name, read_attribute(g.open_attribute(name)));
  for (const hdf5::Group::Child& c : g.children()) {
    if (c.kind == hdf5::Group::ChildKind::Group) {
      read_group(g.open_group(c.name), out.groups[c.name]);
    } else if (c.kind == hdf5::Group::ChildKind::Dataset) {
      out.tensors.emplace(c.name, read_tensor(g.open_dataset(c.name), "load_state"));
    } else {
      lumen::detail::throw_error("load_state: '", g.where().path == "/" ? "" : g.where().path, "/",
                                 c.name, "' in '", g.where().file,
                                 "' is neither a group nor a dataset (a named datatype?)");
    }
  }
}

std::string utc_now_iso8601() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void collect_differences(const State& e, const State& g, const std::string& prefix,
                         const StateSides& sides, std::vector<std::string>& out) {
  std::set<std::string> names;
  for (const auto& [name, t] : e.tensors) names.insert(name);
  for (const auto& [name, t] : g.tensors) names.insert(name);
  for (const std::string& name : names) {
    std::string full = prefix + name;
    auto ei = e.tensors.find(name), gi = g.tensors.find(name);
    if (gi == g.tensors.end()) {
      out.push_back("missing " + full);
    } else if (ei == e.tensors.end()) {
      out.push_back("unexpected " + full);
    } else if (!ei->second.defined() || !gi->second.defined()) {
      if (ei->second.defined() != gi->second.defined())
        out.push_back(full + " is undefined in " +
                      (ei->second.defined() ? sides.got : sides.expected));
    } else {
      const Tensor &et = ei->second, &gt = gi->second;
      if (et.shape() != gt.shape())
        out.push_back(lumen::detail::concat(full, " shape ", shape_str(gt.shape()), " in ",
                                            sides.got, " vs ", shape_str(et.shape()), " in ",
                                            sides.expected));
      if (et.dtype() != gt.dtype())
        out.push_back(lumen::detail::concat(full, " dtype ", gt.dtype(), " in ", sides.got, " vs ",
                                            et.dtype(), " in ", sides.expected));
    }
  }
  std::set<std::string> groups;
  for (const auto& [name, s] : e.groups) groups.insert(name);
  for (const auto& [name, s] : g.groups) groups.insert(name);
  for (const std::string& name : groups) {
    auto ei = e.groups.find(name), gi = g.groups.find(name);
    if (gi == g.groups.end())
      out.push_back("missing group " + prefix + name);
    else if (ei == e.groups.end())
      out.push_back("unexpected group " + prefix + name);
    else
      collect_differences(ei->second, gi->second, prefix + name + "/", sides, out);
  }
}

}  // namespace

void save_state(const std::string& path, const State& state) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    check_names(state, "/");
    {
      hdf5::File file = hdf5::File::create(tmp);
      WriteProgress progress;
      maybe_inject_failure(progress);
      {
        hdf5::Group root = file.root();
        write_group(root, state, progress);
      }
      file.flush();
      file.close();
    }
    fsync_path(tmp, O_RDONLY, /*directory=*/false);
    LUMEN_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path,
                "': ", errno_text());
  } catch (const Error& e) {
    std::remove(tmp.c_str());
    throw Error("save_state('" + path + "'): " + e.what() + "; '" + path + "' is unchanged");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  fs::path dir = fs::path(path).parent_path();
  try {
    fsync_path(dir.empty() ? "." : dir.string(), O_RDONLY | O_DIRECTORY, /*directory=*/true);
  } catch (const Error& e) {
    throw Error("save_state('" + path + "'): the file is written, but " + e.what());
  }
  remove_stale_temporaries(path);
}

State load_state(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    LUMEN_CHECK(errno != ENOENT, "load_state: no such file '", path, "'");
    lumen::detail::throw_error("load_state: cannot access '", path, "': ", errno_text());
  }
  LUMEN_CHECK(!S_ISDIR(st.st_mode), "load_state: '", path, "' is a directory, not a file");
  hdf5::silence_errors();
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) H5Eclear2(H5E_DEFAULT);
  LUMEN_CHECK(is_hdf5 > 0, "load_state: '", path, "' is not an HDF5 file (",
              st.st_size == 0 ? "it is empty" : "no HDF5 signature", ")");
  std::optional<hdf5::File> file;
  try {
    file.emplace(hdf5::File::open_read_only(path));
  } catch (const Error& e) {
    lumen::detail::throw_error("load_state: cannot read '", path,
                               "' as HDF5 (truncated or corrupt file?): ", e.what());
  }
  State out;
  read_group(file->root(), out);
  return out;
}

void save_checkpoint(const std::string& path, const State& checkpoint) {
  State s = checkpoint;  // tensors are handles: this copies no data
  s.attrs["format"] = std::string(kCheckpointFormat);
  s.attrs["version"] = kCheckpointVersion;
  s.attrs["lumen_version"] = std::string(LUMEN_VERSION_STRING);
  s.attrs["created"] = utc_now_iso8601();
  save_state(path, s);
}

State load_checkpoint(const std::string& path) {
  State s = load_state(path);
  auto format = s.attrs.find("format");
  const std::string* format_value =
      format == s.attrs.end() ? nullptr : std::get_if<std::string>(&format->second);
  if (format_value == nullptr || *format_value != kCheckpointFormat) {
    std::string found = format == s.attrs.end()   ? "missing"
                        : format_value == nullptr ? "not a string"
                                                  : lumen::detail::concat("'", *format_value, "'");
    lumen::detail::throw_error("load_checkpoint: '", path,
                               "' is not a Lumen checkpoint (format attribute is ", found,
                               ", expected '", kCheckpointFormat, "')");
  }
  auto version = s.attrs.find("version");
  LUMEN_CHECK(version != s.attrs.end() && std::holds_alternative<int64_t>(version->second),
              "load_checkpoint: '", path, "' has no integer version attribute");
  int64_t v = std::get<int64_t>(version->second);
  auto writer_version = s.attrs.find("lumen_version");
  const std::string* writer =
      writer_version == s.attrs.end() ? nullptr : std::get_if<std::string>(&writer_version->second);
  LUMEN_CHECK(v <= kCheckpointVersion, "load_checkpoint: '", path, "': checkpoint version ", v,
              " is newer than this Lumen's ", kCheckpointVersion, " (written by Lumen ",
              writer != nullptr ? *writer : "unknown", ")", "; load it with a newer Lumen");
  LUMEN_CHECK(v >= 1, "load_checkpoint: '", path, "': checkpoint version ", v,
              " is invalid (versions start at 1)");
  return s;
}

std::vector<std::string> state_differences(const State& expected, const State& got,
                                           const StateSides& sides) {
  std::vector<std::string> out;
  collect_differences(expected, got, "", sides, out);
  return out;
}

void compare_state(const std::string& what, const State& expected, const State& got,
                   const StateSides& sides) {
  std::vector<std::string> diffs = state_differences(expected, got, sides);
  if (diffs.empty()) return;
  std::string msg = what + ": ";
  for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
  throw Error(msg);
}

namespace detail {
void set_fail_after_datasets(int n) { g_fail_after_datasets = n; }
void set_dataset_written_hook(std::function<void(const std::string&, int)> hook) {
  g_dataset_written_hook = std::move(hook);
}
}  // namespace detail

}  // namespace lumen::io
