#pragma once
// Language-modelling examples cut from one token sequence (a text's bytes, or a token file's
// ids, io/token_file.h).
#include <cstdint>

#include "trainer/dataset.h"

namespace lumen::io {

// Windows of a token sequence (i64 [n]): example i is (x, y) = (tokens[s : s + block],
// tokens[s + 1 : s + block + 1]) with s = i * stride, for every window that fits.
class TokenWindows : public Dataset {
 public:
  TokenWindows(Tensor tokens, int64_t block_size, int64_t stride);
  int64_t size() const override;
  Batch get(int64_t index) const override;

 private:
  Tensor tokens_;
  int64_t block_size_, stride_;
};

}  // namespace lumen::io
