#pragma once
// Text forms of numbers as Python writes them, so the files Lumen's loggers and checkpoint
// names produce read the same as Lightning's: repr(float) and "%"-style format specs.
#include <string>

namespace lumen {

// Python's repr(float): the shortest digits that round-trip, fixed notation for decimal
// exponents in [-4, 16) with at least one digit after the point ("1.0", "0.0001", "123.5"),
// scientific otherwise with a two-digit exponent ("1e-05", "1e+16"); "nan", "inf", "-inf".
std::string python_float_repr(double value);

// Formats `value` with a printf-style spec without the '%' (".3f", "02d", "e", ".4g"): flags
// from "-+ #0", a width, a precision, and one conversion of "diouxXeEfFgG". Integer
// conversions truncate the value toward zero first. Anything else throws lumen::Error.
std::string format_number(double value, const std::string& spec);

// Python's format(value, ".{precision}") (a precision and no type, as in f"{x:.5}"): 'g' with
// `precision` significant digits, but scientific from exponent precision - 1 on, and fixed
// notation keeps one digit after the point ("12.0", "1.2346e+04", "1e+04", "1.2e-05").
std::string python_format_precision(double value, int precision);

}  // namespace lumen
