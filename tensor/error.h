#pragma once
// lumen::Error is what every misuse of the library throws: its message names the op, the
// shapes, dtypes and devices involved, and what was expected (DESIGN.md, Contracts).
#include <sstream>
#include <stdexcept>
#include <string>

namespace lumen {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An allocation the device could not satisfy (torch.OutOfMemoryError): what Tuner's batch-size
// search catches, and what a caller may handle by retrying with less.
struct OutOfMemoryError : Error {
  using Error::Error;
};

namespace detail {
template <class... Args>
[[noreturn]] void throw_error(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail
}  // namespace lumen

// LUMEN_CHECK(cond, "op: message ", value, ...) throws lumen::Error with the streamed parts.
#define LUMEN_CHECK(cond, ...)                   \
  do {                                           \
    if (!(cond)) [[unlikely]]                    \
      ::lumen::detail::throw_error(__VA_ARGS__); \
  } while (0)
