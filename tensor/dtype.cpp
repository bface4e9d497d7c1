#include "tensor/dtype.h"

namespace lumen {

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::boolean:
        return 0;
      case DType::u8:
        return 1;
      case DType::i32:
        return 2;
      case DType::i64:
        return 3;
      case DType::f16:
      case DType::bf16:
        return 4;
      case DType::f32:
        return 5;
      case DType::f64:
        return 6;
    }
    return 0;
  };
  if ((a == DType::f16 && b == DType::bf16) || (a == DType::bf16 && b == DType::f16))
    return DType::f32;
  return rank(a) >= rank(b) ? a : b;
}

namespace detail {
void throw_unsupported_dtype(const char* op, DType dt, DTypes set) {
  const char* names[] = {"f32, f64", "f32, f64, f16, bf16", "f32, f64, f16, bf16, i32, i64",
                         "any dtype"};
  throw_error(op, ": dtype ", dt,
              " is not supported (expected one of: ", names[static_cast<int>(set)], ")");
}
}  // namespace detail

}  // namespace lumen
