#pragma once
// Token files: a tokenized corpus as one flat array of little-endian unsigned ids, as nanoGPT's
// prepare scripts write train.bin (numpy uint16) for GPT-2's 50257 tokens. A TokenFile maps the
// file into memory, so the operating system pages in what is read and a corpus larger than
// memory trains; io::TokenWindows cuts examples from it, each converted to i64 when taken:
//   auto train = std::make_shared<io::TokenWindows>(
//       std::make_shared<io::TokenFile>("train.bin"), 1024, 1024);
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace lumen::io {

class TokenFile {
 public:
  // Ids of `bytes_per_token` (1, 2 or 4) bytes. Throws lumen::Error when the file is missing,
  // empty, or not a whole number of tokens.
  explicit TokenFile(const std::string& path, int bytes_per_token = 2);
  ~TokenFile();  // unmaps the file
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const std::string& path() const { return path_; }
  int bytes_per_token() const { return bytes_per_token_; }
  int64_t size() const { return size_; }  // tokens

  // Tokens [start, start + n) as i64 [n]; the range must lie in the file.
  Tensor read(int64_t start, int64_t n) const;

 private:
  std::string path_;
  int bytes_per_token_;
  int64_t size_ = 0;
  const unsigned char* bytes_ = nullptr;
  size_t mapped_ = 0;
};

// The whole file as i64 [n] (8 bytes a token in memory: for small corpora; TokenFile for large).
Tensor read_token_file(const std::string& path, int bytes_per_token = 2);

}  // namespace lumen::io
