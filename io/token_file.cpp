#include "io/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace lumen::io {

TokenFile::TokenFile(const std::string& path, int bytes_per_token)
    : path_(path), bytes_per_token_(bytes_per_token) {
  LUMEN_CHECK(bytes_per_token == 1 || bytes_per_token == 2 || bytes_per_token == 4,
              "TokenFile: bytes_per_token must be 1, 2 or 4, got ", bytes_per_token);
  std::error_code ec;
  LUMEN_CHECK(std::filesystem::is_regular_file(path, ec), "TokenFile: no file '", path,
              "'; expected a token file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LUMEN_CHECK(fd >= 0, "TokenFile: cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    detail::throw_error("TokenFile: cannot stat '", path, "': ", std::strerror(err));
  }
  const auto bytes = static_cast<int64_t>(st.st_size);
  if (bytes == 0 || bytes % bytes_per_token != 0) {
    ::close(fd);
    LUMEN_CHECK(bytes > 0, "TokenFile: '", path, "' is empty");
    detail::throw_error("TokenFile: '", path, "' has ", bytes, " bytes, not a whole number of ",
                        bytes_per_token, "-byte tokens");
  }
  void* p = ::mmap(nullptr, static_cast<size_t>(bytes), PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file
  LUMEN_CHECK(p != MAP_FAILED, "TokenFile: cannot map '", path, "': ", std::strerror(err));
  bytes_ = static_cast<const unsigned char*>(p);
  mapped_ = static_cast<size_t>(bytes);
  size_ = bytes / bytes_per_token;
}

TokenFile::~TokenFile() {
  if (bytes_) ::munmap(const_cast<unsigned char*>(bytes_), mapped_);
}

Tensor TokenFile::read(int64_t start, int64_t n) const {
  LUMEN_CHECK(start >= 0 && n >= 0 && start <= size_ - n, "TokenFile::read: tokens [", start, ", ",
              start + n, ") are not in '", path_, "' (", size_, " tokens)");
  Tensor tokens = empty({n}, {.dtype = DType::i64});
  int64_t* t = tokens.data<int64_t>();
  const unsigned char* b = bytes_ + start * bytes_per_token_;
  for (int64_t i = 0; i < n; ++i, b += bytes_per_token_) {
    uint32_t id = 0;  // little-endian, whatever the host's order
    for (int k = bytes_per_token_ - 1; k >= 0; --k) id = id << 8 | b[k];
    t[i] = id;
  }
  return tokens;
}

Tensor read_token_file(const std::string& path, int bytes_per_token) {
  const TokenFile file(path, bytes_per_token);
  return file.read(0, file.size());
}

}  // namespace lumen::io
