#include "trainer/python_float_format.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensor/error.h"

namespace lumen {

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // Shortest round-trip digits in scientific form "d.ddde±XX" give the digit string and the
  // decimal exponent; Python then picks fixed or scientific by the exponent alone.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exponent = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out += digits;
    } else {
      auto int_len = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= int_len) {
        out += digits;
        out.append(int_len - digits.size(), '0');
        out += ".0";
      } else {
        out.append(digits, 0, int_len);
        out += '.';
        out.append(digits, int_len);
      }
    }
  } else {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp_buf;
  }
  return out;
}

std::string python_format_precision(double value, int precision) {
  LUMEN_CHECK(precision >= 1, "python_format_precision: precision must be >= 1, got ", precision);
  if (!std::isfinite(value)) return python_float_repr(value);
  // The decimal exponent after rounding to `precision` digits (9999.96 becomes 1e+04).
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", precision - 1, value);
  const int exp = std::atoi(std::strchr(buf, 'e') + 1);
  auto strip_zeros = [](std::string digits, bool keep_one) {
    if (digits.find('.') == std::string::npos) return digits;
    while (digits.back() == '0') digits.pop_back();
    if (digits.back() == '.') {
      if (keep_one)
        digits += '0';
      else
        digits.pop_back();
    }
    return digits;
  };
  if (exp < -4 || exp >= precision - 1) {
    std::string text(buf);
    size_t e = text.find('e');
    return strip_zeros(text.substr(0, e), false) + text.substr(e);
  }
  std::snprintf(buf, sizeof buf, "%.*f", precision - 1 - exp, value);
  return strip_zeros(buf, true);
}

std::string format_number(double value, const std::string& spec) {
  // Validate flags, width, precision and conversion before handing the spec to snprintf.
  size_t i = 0;
  while (i < spec.size() && std::string("-+ #0").find(spec[i]) != std::string::npos) ++i;
  while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i]))) ++i;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i]))) ++i;
  }
  LUMEN_CHECK(
      i + 1 == spec.size() && std::string("diouxXeEfFgG").find(spec.back()) != std::string::npos,
      "format_number: '", spec,
      "' is not a printf-style spec: expected [flags][width][.precision] and one "
      "conversion of d i o u x X e E f F g G (e.g. '.3f', '02d')");
  char conversion = spec.back();
  std::string head = "%";
  head.append(spec, 0, spec.size() - 1);
  char buf[512];
  if (std::string("diouxX").find(conversion) != std::string::npos) {
    LUMEN_CHECK(std::isfinite(value), "format_number: cannot format ", value,
                " with the integer conversion '", spec, "'");
    long long v = static_cast<long long>(value);
    std::string fmt = head;
    fmt += "ll";
    fmt += conversion;
    std::snprintf(buf, sizeof buf, fmt.c_str(), v);
  } else {
    std::string fmt = head;
    fmt += conversion;
    std::snprintf(buf, sizeof buf, fmt.c_str(), value);
  }
  return buf;
}

}  // namespace lumen
