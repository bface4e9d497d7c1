#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing in
// TensorBoard event files, and TensorFlow's "masked" form of it.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lumen::io {

// crc32c("123456789") == 0xE3069283 (the standard check value).
uint32_t crc32c(const void* data, size_t size);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

// TensorFlow masks stored CRCs so that a CRC of data that itself holds CRCs stays well mixed:
// rotate right by 15 bits, then add 0xA282EAD8 (mod 2^32).
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace lumen::io
