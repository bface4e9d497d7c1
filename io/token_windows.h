#pragma once
// Language-modelling examples cut from one token sequence: a tensor (a text's bytes) or a
// memory-mapped token file (io/token_file.h).
#include <cstdint>
#include <memory>

#include "io/token_file.h"
#include "trainer/dataset.h"

namespace lumen::io {

// Windows of a token sequence (i64 [n]): example i is (x, y) = (tokens[s : s + block],
// tokens[s + 1 : s + block + 1]) with s = i * stride, for every window that fits.
class TokenWindows : public Dataset {
 public:
  TokenWindows(Tensor tokens, int64_t block_size, int64_t stride);
  // From the file's ids, read (and converted to i64) as each window is taken.
  TokenWindows(std::shared_ptr<const TokenFile> file, int64_t block_size, int64_t stride);
  int64_t size() const override;
  Batch get(int64_t index) const override;

 private:
  void check_sizes() const;
  Tensor tokens_;
  std::shared_ptr<const TokenFile> file_;
  int64_t length_, block_size_, stride_;
};

}  // namespace lumen::io
