#pragma once
// PNG files of grayscale images (8 bits per pixel), written without zlib: the image data goes
// into "stored" deflate blocks (no compression), which every PNG reader accepts. What the
// examples write their generated images with.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lumen::io {

// The PNG file's bytes for `pixels`, row by row, width * height bytes.
std::string encode_png_gray(int64_t width, int64_t height, const std::vector<uint8_t>& pixels);
// The same for a [H, W] (or [1, H, W]) floating tensor, any device, with values in [0, 1]:
// values outside are clamped (NaN to 0), and each becomes floor(255 v), as torch's
// SummaryWriter.add_image converts them.
std::string encode_png(const Tensor& image);

// The same, written to `path`. Throws lumen::Error naming the path when it cannot be written.
void write_png_gray(const std::string& path, int64_t width, int64_t height,
                    const std::vector<uint8_t>& pixels);
void write_png(const std::string& path, const Tensor& image);

}  // namespace lumen::io
