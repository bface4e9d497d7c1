#include "io/token_file.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tensor/error.h"

namespace lumen::io {

Tensor read_token_file(const std::string& path, int bytes_per_token) {
  LUMEN_CHECK(bytes_per_token == 1 || bytes_per_token == 2 || bytes_per_token == 4,
              "read_token_file: bytes_per_token must be 1, 2 or 4, got ", bytes_per_token);
  std::error_code ec;
  LUMEN_CHECK(std::filesystem::is_regular_file(path, ec), "read_token_file: no file '", path,
              "'; expected a token file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  LUMEN_CHECK(in.good(), "read_token_file: cannot open '", path, "'; expected a token file");
  const auto size = static_cast<int64_t>(in.tellg());
  LUMEN_CHECK(size > 0, "read_token_file: '", path, "' is empty");
  LUMEN_CHECK(size % bytes_per_token == 0, "read_token_file: '", path, "' has ", size,
              " bytes, not a whole number of ", bytes_per_token, "-byte tokens");
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  LUMEN_CHECK(in.good(), "read_token_file: reading '", path, "' failed");
  const int64_t n = size / bytes_per_token;
  Tensor tokens = empty({n}, {.dtype = DType::i64});
  int64_t* t = tokens.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    uint32_t id = 0;  // little-endian, whatever the host's order
    for (int b = bytes_per_token - 1; b >= 0; --b)
      id = id << 8 | bytes[static_cast<size_t>(i * bytes_per_token + b)];
    t[i] = id;
  }
  return tokens;
}

}  // namespace lumen::io
