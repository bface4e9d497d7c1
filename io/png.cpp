#include "io/png.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "tensor/error.h"

namespace lumen::io {

namespace {

// CRC-32 of PNG chunks (ISO 3309: reflected polynomial 0xEDB88320, initial and final xor
// 0xFFFFFFFF), table-driven a byte at a time.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// Adler-32 of the zlib stream (RFC 1950): a = 1 + sum of bytes, b = sum of the a's, mod 65521.
uint32_t adler32(const std::vector<uint8_t>& data) {
  uint32_t a = 1, b = 0;
  for (uint8_t v : data) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// length, type, data, CRC of type and data.
void put_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32(out, crc32(out.data() + start, out.size() - start));
}

// A zlib stream (RFC 1950/1951) of stored blocks: header 0x78 0x01, then blocks of at most
// 65535 bytes, each [final bit, type 00] LEN NLEN (little-endian) and the bytes, then Adler-32.
std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out = {0x78, 0x01};
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(65535, data.size() - pos);
    bool last = pos + n == data.size();
    out.push_back(last ? 1 : 0);
    out.push_back(static_cast<uint8_t>(n & 0xFF));
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(~n & 0xFF));
    out.push_back(static_cast<uint8_t>((~n >> 8) & 0xFF));
    out.insert(out.end(), data.begin() + static_cast<std::ptrdiff_t>(pos),
               data.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < data.size());
  put_u32(out, adler32(data));
  return out;
}

}  // namespace

std::string encode_png_gray(int64_t width, int64_t height, const std::vector<uint8_t>& pixels) {
  LUMEN_CHECK(width > 0 && height > 0 && width <= (1 << 24) && height <= (1 << 24),
              "encode_png_gray: width and height must be in [1, 2^24], got ", width, " x ", height);
  LUMEN_CHECK(static_cast<int64_t>(pixels.size()) == width * height,
              "encode_png_gray: ", pixels.size(), " pixels for a ", width, " x ", height,
              " image (expected ", width * height, ")");
  // Each row starts with its filter type, 0 (none).
  std::vector<uint8_t> rows;
  rows.reserve(static_cast<size_t>((width + 1) * height));
  for (int64_t r = 0; r < height; ++r) {
    rows.push_back(0);
    auto row = pixels.begin() + static_cast<std::ptrdiff_t>(r * width);
    rows.insert(rows.end(), row, row + static_cast<std::ptrdiff_t>(width));
  }
  std::vector<uint8_t> header;
  put_u32(header, static_cast<uint32_t>(width));
  put_u32(header, static_cast<uint32_t>(height));
  header.insert(header.end(), {8, 0, 0, 0, 0});  // 8 bits, grayscale, deflate, no filter/interlace
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(rows));
  put_chunk(png, "IEND", {});
  return std::string(png.begin(), png.end());
}

std::string encode_png(const Tensor& image) {
  const bool shaped =
      image.defined() && (image.dim() == 2 || (image.dim() == 3 && image.size(0) == 1));
  LUMEN_CHECK(shaped && is_floating(image.dtype()),
              "encode_png: expected a floating tensor [H, W] (or [1, H, W]) with values in [0, 1], "
              "got ",
              image.defined() ? detail::concat(image.dtype(), " of shape ", ShapeStr{image.shape()})
                              : std::string("an undefined tensor"));
  std::vector<double> values = image.to_vector<double>();
  std::vector<uint8_t> pixels(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    pixels[i] = values[i] >= 0.0  // NaN too goes to 0; truncated, as SummaryWriter.add_image
                    ? static_cast<uint8_t>(255.0 * std::min(values[i], 1.0))
                    : 0;
  return encode_png_gray(image.size(-1), image.size(-2), pixels);
}

namespace {

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.close();
  LUMEN_CHECK(file.good(), "write_png: cannot write '", path, "': ", std::strerror(errno));
}

}  // namespace

void write_png_gray(const std::string& path, int64_t width, int64_t height,
                    const std::vector<uint8_t>& pixels) {
  write_file(path, encode_png_gray(width, height, pixels));
}

void write_png(const std::string& path, const Tensor& image) {
  write_file(path, encode_png(image));
}

}  // namespace lumen::io
