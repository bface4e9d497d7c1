#pragma once
// 16-bit floating-point storage types. Arithmetic on them happens in float: these types only
// convert (round-to-nearest-even), which is all the CPU needs and what the CUDA kernels share.
#include <cstdint>
#include <cstring>
#include <type_traits>

// Host code built for x86-64-v3 (or any target with F16C) converts f16 with one instruction
// (vcvtps2ph / vcvtph2ps, IEEE round-to-nearest-even like the portable code below, which
// device code and other hosts use); loops of conversions then vectorise.
#if defined(__F16C__) && !defined(__CUDACC__)
#include <immintrin.h>
#define LUMEN_F16C 1
#endif

#if defined(__CUDACC__)
#define LUMEN_HD __host__ __device__ __forceinline__
#else
#define LUMEN_HD inline
#endif

namespace lumen {

LUMEN_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
LUMEN_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  LUMEN_HD Half(float f) : bits(from_float(f)) {}
  LUMEN_HD operator float() const { return to_float(bits); }

  LUMEN_HD static uint16_t from_float(float f) {
#if defined(LUMEN_F16C)
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
    return from_float_portable(f);
#endif
  }
  LUMEN_HD static float to_float(uint16_t h) {
#if defined(LUMEN_F16C)
    return _cvtsh_ss(h);
#else
    return to_float_portable(h);
#endif
  }

  // The same conversions in plain integer arithmetic (device code, hosts without F16C).
  LUMEN_HD static uint16_t from_float_portable(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);  // nan / inf
    if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
    if (ax < 0x38800000u) {                        // below 2^-14: subnormal half (or zero)
      // value * 2^24 rounded to nearest even gives the subnormal mantissa.
      float v = bits_float(ax) * 16777216.0f;
      uint32_t m = static_cast<uint32_t>(v);
      float rem = v - static_cast<float>(m);
      if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
      return static_cast<uint16_t>(sign | m);
    }
    // Normal: rebias exponent, round mantissa from 23 to 10 bits (nearest even).
    uint32_t r = ax - 0x38000000u;  // exponent bias 127 -> 15
    uint32_t lsb = (r >> 13) & 1u;
    r += 0xfffu + lsb;
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  LUMEN_HD static float to_float_portable(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {  // zero or subnormal: man * 2^-24
      float v = static_cast<float>(man) * 5.9604644775390625e-8f;
      return sign ? -v : v;
    }
    if (exp == 31) return bits_float(sign | 0x7f800000u | (man << 13));
    return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  }
};

// bfloat16: the top 16 bits of an IEEE float32 (8 exponent bits), rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  LUMEN_HD BFloat16(float f) : bits(from_float(f)) {}
  LUMEN_HD operator float() const { return bits_float(static_cast<uint32_t>(bits) << 16); }
  LUMEN_HD static uint16_t from_float(float f) {
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
      return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<uint16_t>(x >> 16);
  }
};

template <class T>
inline constexpr bool is_16bit_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

#if !defined(__CUDACC__)
// Conversions of n contiguous elements on the host. A loop over the scalar F16C conversions
// above does not vectorise (GCC keeps one vcvtph2ps per element): these convert 8 per
// instruction. bf16 is integer arithmetic, which the compiler vectorises by itself. Results are
// those of the scalar conversions, bit for bit.
template <class T>
inline void widen_n(const T* in, float* out, int64_t n) {
  int64_t i = 0;
#if defined(LUMEN_F16C)
  if constexpr (std::is_same_v<T, Half>)
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i,
                       _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
#endif
  for (; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

template <class T>
inline void narrow_n(const float* in, T* out, int64_t n) {
  int64_t i = 0;
#if defined(LUMEN_F16C)
  if constexpr (std::is_same_v<T, Half>)
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) out[i] = T(in[i]);
}
#endif

}  // namespace lumen
