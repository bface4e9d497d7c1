#include "io/token_windows.h"

#include <utility>

#include "tensor/error.h"

namespace lumen::io {

TokenWindows::TokenWindows(Tensor tokens, int64_t block_size, int64_t stride)
    : tokens_(std::move(tokens)), block_size_(block_size), stride_(stride) {
  LUMEN_CHECK(tokens_.dim() == 1 && tokens_.dtype() == DType::i64, "TokenWindows: tokens must be ",
              "i64 [n], got ", dtype_name(tokens_.dtype()), " ", ShapeStr{tokens_.shape()});
  length_ = tokens_.size(0);
  check_sizes();
}

TokenWindows::TokenWindows(std::shared_ptr<const TokenFile> file, int64_t block_size,
                           int64_t stride)
    : file_(std::move(file)), block_size_(block_size), stride_(stride) {
  LUMEN_CHECK(file_ != nullptr, "TokenWindows: the token file is null");
  length_ = file_->size();
  check_sizes();
}

void TokenWindows::check_sizes() const {
  LUMEN_CHECK(block_size_ >= 1, "TokenWindows: block_size must be >= 1, got ", block_size_);
  LUMEN_CHECK(stride_ >= 1, "TokenWindows: stride must be >= 1, got ", stride_);
}

int64_t TokenWindows::size() const {
  // A window at s needs tokens s .. s + block_size (its x and the y one further).
  const int64_t last_start = length_ - block_size_ - 1;
  return last_start < 0 ? 0 : last_start / stride_ + 1;
}

Batch TokenWindows::get(int64_t index) const {
  LUMEN_CHECK(index >= 0 && index < size(), "TokenWindows::get: index ", index,
              " is out of range for ", size(), " windows");
  const int64_t s = index * stride_;
  // Views of one window of block_size + 1 tokens (the collate function copies them into the
  // batch).
  Tensor window = file_ ? file_->read(s, block_size_ + 1) : tokens_.narrow(0, s, block_size_ + 1);
  return {window.narrow(0, 0, block_size_), window.narrow(0, 1, block_size_)};
}

}  // namespace lumen::io
