#pragma once
#include <cstddef>
#include <cstdint>
#include <ostream>

#include "tensor/error.h"
#include "tensor/half.h"

namespace lumen {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8, boolean };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64:
    case DType::i64:
      return 8;
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::f16:
    case DType::bf16:
      return 2;
    case DType::u8:
    case DType::boolean:
      return 1;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u8:
      return "u8";
    case DType::boolean:
      return "bool";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}

// The 16-bit floats: stored in 16 bits, computed in f32.
constexpr bool is_16bit_float(DType t) { return t == DType::f16 || t == DType::bf16; }

// Type promotion for binary ops, as PyTorch's for tensors of equal category:
// any float beats any integer; among floats the wider wins (f16 with bf16 gives f32).
DType promote_types(DType a, DType b);

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<Half> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<BFloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::boolean;
};
template <class T>
inline constexpr DType dtype_v = dtype_of<T>::value;

// The type arithmetic on T runs in: float for the 16-bit types, T otherwise.
template <class T>
struct acc_type {
  using type = T;
};
template <>
struct acc_type<Half> {
  using type = float;
};
template <>
struct acc_type<BFloat16> {
  using type = float;
};
template <class T>
using acc_t = typename acc_type<T>::type;

// Dtype sets a kernel may accept; dispatch_dtype<set>(dt, "op", f) calls f.template
// operator()<T>() with T the C++ type of dt, or throws naming the op and the accepted set.
enum class DTypes { Float, FloatAndHalf, Arithmetic, All };

namespace detail {
[[noreturn]] void throw_unsupported_dtype(const char* op, DType dt, DTypes set);
}

template <DTypes set, class F>
decltype(auto) dispatch_dtype(DType dt, const char* op, F&& f) {
  constexpr bool half = set != DTypes::Float;
  constexpr bool ints = set == DTypes::Arithmetic || set == DTypes::All;
  switch (dt) {
    case DType::f32:
      return f.template operator()<float>();
    case DType::f64:
      return f.template operator()<double>();
    case DType::f16:
      if constexpr (half) return f.template operator()<Half>();
      break;
    case DType::bf16:
      if constexpr (half) return f.template operator()<BFloat16>();
      break;
    case DType::i32:
      if constexpr (ints) return f.template operator()<int32_t>();
      break;
    case DType::i64:
      if constexpr (ints) return f.template operator()<int64_t>();
      break;
    case DType::u8:
      if constexpr (set == DTypes::All) return f.template operator()<uint8_t>();
      break;
    case DType::boolean:
      if constexpr (set == DTypes::All) return f.template operator()<bool>();
      break;
  }
  detail::throw_unsupported_dtype(op, dt, set);
}

}  // namespace lumen
