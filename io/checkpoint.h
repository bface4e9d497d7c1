#pragma once
// Checkpoints: a State tree (nn/state.h) as an HDF5 file that any HDF5 tool reads (h5dump,
// h5py). Groups are HDF5 groups, tensors datasets of the tensor's shape (a 0-d tensor is a
// scalar dataset), attrs HDF5 attributes. Dtypes in the file:
//   f32, f64            IEEE little-endian floats
//   f16                 IEEE binary16 little-endian (h5py reads numpy.float16)
//   i32, i64, u8        little-endian integers
//   bool                u8 (0 or 1) with the attribute lumen_dtype = "bool"
//   bf16                u16 bit patterns with the attribute lumen_dtype = "bf16"
// Attributes: int64 -> 64-bit integer, double -> 64-bit float, string -> variable-length UTF-8,
// vectors -> 1-D attributes of those (an empty vector is a 1-D attribute of 0 elements).
//
// Writes are atomic (DESIGN.md, "Nothing lost"): the file is written to "<path>.tmp-<pid>" in
// the same directory, flushed, fsync'ed, renamed over <path>, and the directory fsync'ed. A
// failure removes the temporary and leaves any old file at <path> as it was; a process killed
// mid-write leaves only its temporary, which the next successful save of <path> removes.
#include <functional>
#include <string>
#include <vector>

#include "nn/state.h"

namespace lumen::io {

inline constexpr const char* kCheckpointFormat = "lumen.checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;

// Writes `state` to `path` atomically. CUDA tensors are copied to the CPU, strided ones made
// contiguous. Tensor and group names may contain '.' ("fc1.weight") but not '/', and may not be
// empty or "."; a name used both as a tensor and as a group is refused.
void save_state(const std::string& path, const State& state);
// Reads a file written by save_state back exactly: dtypes, shapes, attribute types (CPU
// tensors). Throws lumen::Error naming the path when the file is missing, not HDF5, truncated
// or corrupt, or holds a dataset or attribute of a type Lumen has no equivalent for.
State load_state(const std::string& path);

// save_state with the root attributes of DESIGN.md added: format = "lumen.checkpoint",
// version = kCheckpointVersion, lumen_version, created (ISO 8601 UTC, "2026-11-23T02:16:28Z").
void save_checkpoint(const std::string& path, const State& checkpoint);
// load_state, then checks the format attribute and that the version is not newer than this
// Lumen's. Returns the whole tree, root attributes included.
State load_checkpoint(const std::string& path);

// Names for the two sides in compare_state's messages.
struct StateSides {
  std::string expected = "model";
  std::string got = "checkpoint";
};

// The differences in tensor names, shapes and dtypes between `expected` and `got`, recursively
// (tensors in groups are named "group/name"), one line each in name order:
//   "missing fc2.bias", "unexpected fc3.weight", "missing group optimizers/1",
//   "fc1.weight shape [256, 784] in checkpoint vs [128, 784] in model",
//   "fc1.bias dtype f16 in checkpoint vs f32 in model".
// Attributes are not compared.
std::vector<std::string> state_differences(const State& expected, const State& got,
                                           const StateSides& sides = {});
// Throws one lumen::Error "<what>: <difference>; <difference>; ..." when there is any.
void compare_state(const std::string& what, const State& expected, const State& got,
                   const StateSides& sides = {});

namespace detail {
// TEST-ONLY fault injection for the atomic-write tests; not for use in programs. While n >= 0,
// every save throws lumen::Error ("injected failure") once it has written n datasets (n = 0:
// before the first). n < 0 turns it off. Process-wide; not thread-safe.
void set_fail_after_datasets(int n);
// TEST-ONLY: called after each dataset is written with its path in the file and the count of
// datasets written so far in this save (a crash test blocks here and is killed). An empty
// function turns it off.
void set_dataset_written_hook(std::function<void(const std::string& path, int count)> hook);
}  // namespace detail

}  // namespace lumen::io
