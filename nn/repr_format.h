#pragma once
// Values formatted as Python's repr(), so a layer's extra_repr() reads exactly as PyTorch's
// ("eps=1e-05, momentum=0.1, affine=True").
#include <optional>
#include <string>

#include "tensor/shape.h"

namespace lumen::nn {

// The shortest decimal that reads back as `v`, laid out as Python does: positional for
// exponents in [-4, 16) with at least one fractional digit ("0.1", "2.0"), else scientific with
// a signed two-digit exponent ("1e-05", "1e+16"); "inf", "-inf", "nan".
std::string python_float(double v);
// "None" when empty.
std::string python_float(std::optional<double> v);
inline std::string python_bool(bool v) { return v ? "True" : "False"; }
// A tuple of ints: "(10,)" for one, "(3, 4)" for more.
std::string python_tuple(const Shape& values);

}  // namespace lumen::nn
