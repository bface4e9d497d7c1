#pragma once
// Token files: a tokenized corpus as one flat array of little-endian unsigned ids, as nanoGPT's
// prepare scripts write train.bin (numpy uint16) for GPT-2's 50257 tokens. Cut into examples
// with io::TokenWindows:
//   TokenWindows train(io::read_token_file("train.bin"), 1024, 1024);
#include <string>

#include "tensor/tensor.h"

namespace lumen::io {

// The ids of `path` as i64 [n], each `bytes_per_token` (1, 2 or 4) bytes. Throws lumen::Error
// when the file is missing, empty, or not a whole number of tokens.
Tensor read_token_file(const std::string& path, int bytes_per_token = 2);

}  // namespace lumen::io
