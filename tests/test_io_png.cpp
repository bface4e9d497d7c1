// PNG writer: the bytes must be those Python's zlib and struct give for the same pixels and
// chunk layout, computed independently and pasted here.
#include "io/png.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string hex(const std::vector<uint8_t>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

// CRC-32 (zlib's) of a whole file, bit by bit: independent of the writer's table.
uint32_t crc32_bitwise(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// python3: zlib.compress(rows, 0) inside IHDR/IDAT/IEND chunks with zlib.crc32.
TEST(IoPng, ASmallImageIsByteForByteWhatZlibWrites) {
  TempDir dir("png");
  io::write_png_gray(dir.str("small.png"), 3, 2, {0, 128, 255, 7, 64, 200});
  EXPECT_EQ(hex(read_bytes(dir.str("small.png"))),
            "89504e470d0a1a0a0000000d4948445200000003000000020800000000b81f39c60000001349444154"
            "7801010800f7ff000080ff000740c80960028f172ec4f00000000049454e44ae426082");
}

// 300 x 300 pixels: more than one stored block (65535 bytes at most each). The expected file
// was built in Python with blocks of 65535 bytes (zlib itself splits at 65531), checked with
// zlib.decompress, and summed with zlib.crc32.
TEST(IoPng, ALargeImageSpansSeveralStoredBlocks) {
  TempDir dir("png");
  std::vector<uint8_t> pixels;
  for (int r = 0; r < 300; ++r)
    for (int c = 0; c < 300; ++c) pixels.push_back(static_cast<uint8_t>((r * 7 + c * 13) % 256));
  io::write_png_gray(dir.str("large.png"), 300, 300, pixels);
  std::vector<uint8_t> bytes = read_bytes(dir.str("large.png"));
  EXPECT_EQ(bytes.size(), 90373u);
  EXPECT_EQ(crc32_bitwise(bytes), 0xd0cc6adeu);
}

// A tensor in [0, 1] becomes floor(255 v), clamped; bad input says what was expected.
TEST(IoPng, TensorsAreScaledClampedAndChecked) {
  TempDir dir("png");
  io::write_png(
      dir.str("t.png"),
      from_vector<float>({0.f, 128.5f / 255.f, 1.f, 7.5f / 255.f, 64.9f / 255.f, 1.5f}, {2, 3}));
  io::write_png_gray(dir.str("u.png"), 3, 2, {0, 128, 255, 7, 64, 255});
  EXPECT_EQ(read_bytes(dir.str("t.png")), read_bytes(dir.str("u.png")));
  EXPECT_THROW_MSG(io::write_png(dir.str("x.png"), zeros({2, 3, 4})), "encode_png",
                   "floating tensor [H, W] (or [1, H, W])", "[2, 3, 4]");
  EXPECT_THROW_MSG(io::write_png_gray(dir.str("x.png"), 3, 2, {1, 2, 3}), "encode_png_gray",
                   "3 pixels for a 3 x 2 image");
  // One channel first, as torch's add_image takes it, is the same image.
  EXPECT_EQ(io::encode_png(from_vector<float>({0.f, 1.f, 0.5f, 0.25f}, {1, 2, 2})),
            io::encode_png(from_vector<float>({0.f, 1.f, 0.5f, 0.25f}, {2, 2})));
  EXPECT_THROW_MSG(io::write_png_gray(dir.str("no/such/dir/x.png"), 1, 1, {0}), "cannot write",
                   "no/such/dir/x.png");
}

}  // namespace
}  // namespace lumen::testing
