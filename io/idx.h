#pragma once
// IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a magic
// number 0x0000TTDD (TT the element type, DD the number of dims), DD big-endian u32 sizes, then
// the elements in row-major order. Images are 0x00000803 (u8 [N, rows, cols]), labels
// 0x00000801 (u8 [N]).
#include <string>

#include "tensor/tensor.h"

namespace lumen::io {

// Reads a u8 IDX file, plain or gzip-compressed (recognised by its first two bytes, 1f 8b, not
// by its name), into a u8 tensor of the dims in its header. Throws lumen::Error naming the file
// and what is wrong: it cannot be opened, the magic is not an IDX one or its type is not u8,
// the data is shorter (truncated) or longer (trailing bytes) than the header's dims, or the
// gzip stream is corrupt (bad CRC or length) or ends early.
Tensor read_idx(const std::string& path);

}  // namespace lumen::io
