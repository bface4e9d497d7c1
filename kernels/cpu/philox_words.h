#pragma once
// Philox4x32-10 words in bulk, for the CPU loops that draw one word per element (dropout, the
// attention kernel's dropout): bit for bit philox4x32 (tensor/generator.h), about twice as fast
// with AVX2, which runs eight blocks per vector. A round maps the counter (c0, c1, c2, c3) to
//   (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
// with 32x32 -> 64-bit products; vpmuludq multiplies the even 32-bit lanes of a vector, so the
// odd lanes go through it shifted down, and blends put the halves back in lane order.
#include <algorithm>
#include <cstdint>

#include "tensor/generator.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

namespace lumen::cpu {

#ifdef __AVX2__
namespace philox_avx2 {

// (hi, lo) of the eight 64-bit products a_l * m.
inline void mul_hi_lo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// Blocks counter .. counter + 7 into out[0..32), word j of block b at 4b + j.
inline void eight_blocks(uint64_t counter, uint64_t key, uint32_t* out) {
  // c0 = low half of counter + l, c1 its high half (plus the carry where the low half wrapped:
  // the compare gives -1 there, unsigned order by flipping the sign bits).
  const __m256i lo = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(counter)));
  __m256i c0 = _mm256_add_epi32(lo, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  const __m256i wrapped =
      _mm256_cmpgt_epi32(_mm256_xor_si256(lo, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(
      _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(counter >> 32))), wrapped);
  __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    __m256i hi0, lo0, hi1, lo1;
    mul_hi_lo(c0, m0, hi0, lo0);
    mul_hi_lo(c2, m1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c1 = lo1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // Transpose the four word vectors (lane = block) to element order.
  const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
  const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
  const __m256i b04 = _mm256_unpacklo_epi64(t0, t2), b15 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i b26 = _mm256_unpacklo_epi64(t1, t3), b37 = _mm256_unpackhi_epi64(t1, t3);
  auto* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(b04, b15, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(b26, b37, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(b04, b15, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(b26, b37, 0x31));
}

}  // namespace philox_avx2
#endif

// out[4b + j] = word j of philox4x32(counter + b, key), for b < blocks.
inline void philox_words(uint64_t counter, uint64_t key, int64_t blocks, uint32_t* out) {
  int64_t b = 0;
#ifdef __AVX2__
  for (; b + 8 <= blocks; b += 8)
    philox_avx2::eight_blocks(counter + static_cast<uint64_t>(b), key, out + 4 * b);
#endif
  for (; b < blocks; ++b) {
    const PhiloxOut o = philox4x32(counter + static_cast<uint64_t>(b), key);
    for (int j = 0; j < 4; ++j) out[4 * b + j] = o.w[j];
  }
}

// The words of stream positions first .. first + n - 1 into out[0..n): position i is word i % 4
// of block offset + i / 4 (philox_uniform_f32's numbering), whatever first's alignment.
inline void philox_position_words(uint64_t key, uint64_t offset, uint64_t first, int64_t n,
                                  uint32_t* out) {
  int64_t i = 0;
  auto partial_block = [&](int64_t count) {  // count words of the block holding first + i
    const uint64_t pos = first + static_cast<uint64_t>(i);
    const PhiloxOut o = philox4x32(offset + pos / 4, key);
    for (int64_t j = 0; j < count; ++j) out[i + j] = o.w[pos % 4 + static_cast<uint64_t>(j)];
    i += count;
  };
  if (first % 4 != 0 && n > 0)
    partial_block(std::min<int64_t>(4 - static_cast<int64_t>(first % 4), n));
  const int64_t whole = (n - i) / 4;
  philox_words(offset + (first + static_cast<uint64_t>(i)) / 4, key, whole, out + i);
  i += 4 * whole;
  if (i < n) partial_block(n - i);
}

}  // namespace lumen::cpu
