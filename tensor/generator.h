#pragma once
// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). Element i of a draw is a
// pure function of (seed, offset, i), so the CPU and CUDA kernels produce the same numbers and
// any element can be computed independently, in any order, by any thread.
#include <cmath>
#include <cstdint>
#include <mutex>
#include <utility>

#include "tensor/half.h"

namespace lumen {

struct PhiloxOut {
  uint32_t w[4];
};

// One Philox4x32-10 block: 10 rounds of multiply-xor over a 128-bit counter with a 64-bit key.
LUMEN_HD PhiloxOut philox4x32(uint64_t counter, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = static_cast<uint32_t>(p1);
    c2 = n2;
    c3 = static_cast<uint32_t>(p0);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// The i-th number of a draw that starts at Philox block `offset`.
// Uniform f32 uses one 32-bit word per element (4 per block): u = (w >> 8) * 2^-24 in [0, 1).
LUMEN_HD float philox_word_to_f32(uint32_t w) {
  return static_cast<float>(w >> 8) * 5.9604644775390625e-8f;
}
LUMEN_HD float philox_uniform_f32(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox_word_to_f32(philox4x32(offset + i / 4, seed).w[i % 4]);
}
// Uniform f64 uses two words per element (2 per block): 53 random bits * 2^-53 in [0, 1).
LUMEN_HD double philox_words_to_f64(uint32_t hi, uint32_t lo) {
  return static_cast<double>(((static_cast<uint64_t>(hi) << 32) | lo) >> 11) *
         1.1102230246251565e-16;
}
// Standard normals by Box-Muller, a pair per block: u1 in (0, 1] (words 0, 1) and u2 (words 2,
// 3) give r = sqrt(-2 ln u1) and the angle 2 pi u2; the pair is (r cos, r sin) of the angle.
// log, sin and cos are the platform's (glibc on the host, CUDA's on a device), which may differ
// in the last bit: f64 normals agree across devices to a few ulp, f32 ones (rounded) exactly.
struct PhiloxPolar {
  double r, angle;
};
LUMEN_HD PhiloxPolar philox_normal_polar(const PhiloxOut& o) {
  double u1 = philox_words_to_f64(o.w[0], o.w[1]) + 1.1102230246251565e-16;
  double u2 = philox_words_to_f64(o.w[2], o.w[3]);
  return {std::sqrt(-2.0 * std::log(u1)), 6.283185307179586 * u2};
}

// A seed and a position in the Philox stream. Every draw reserves its blocks (advances
// `offset`) under a lock, so draws from several threads never overlap.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  // Seed and offset read together (no draw of another thread falls between).
  std::pair<uint64_t, uint64_t> state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {seed_, offset_};
  }
  void set_state(uint64_t seed, uint64_t offset) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `blocks` Philox blocks; returns the first.
  uint64_t reserve(uint64_t blocks) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t start = offset_;
    offset_ += blocks;
    return start;
  }

 private:
  mutable std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

// Puts a generator's state back when the scope ends (torch.random.fork_rng): what the scope
// drew is drawn again after it.
class GeneratorStateGuard {
 public:
  explicit GeneratorStateGuard(Generator& gen = default_generator())
      : gen_(gen), saved_(gen.state()) {}
  ~GeneratorStateGuard() { gen_.set_state(saved_.first, saved_.second); }
  GeneratorStateGuard(const GeneratorStateGuard&) = delete;
  GeneratorStateGuard& operator=(const GeneratorStateGuard&) = delete;

 private:
  Generator& gen_;
  std::pair<uint64_t, uint64_t> saved_;
};

}  // namespace lumen
