#include "nn/repr_format.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>

namespace lumen::nn {

std::string python_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Shortest round-trip digits in scientific form, "d[.ddd]e[+-]XX", then re-laid out.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string sign;
  if (sci.front() == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  const int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  // Built by appending: GCC 12 warns falsely (-Wrestrict) on `"literal" + std::string`.
  std::string out = sign;
  if (exponent >= -4 && exponent < 16) {
    // Positional: the decimal point sits after digit (exponent + 1).
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out += digits;
    } else {
      const size_t int_len = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= int_len) {
        out += digits;
        out.append(int_len - digits.size(), '0');
        out += ".0";
      } else {
        out += digits.substr(0, int_len);
        out += '.';
        out += digits.substr(int_len);
      }
    }
    return out;
  }
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  const int mag = std::abs(exponent);
  out += exponent < 0 ? "e-" : "e+";
  if (mag < 10) out += '0';
  out += std::to_string(mag);
  return out;
}

std::string python_float(std::optional<double> v) {
  return v ? python_float(*v) : std::string("None");
}

std::string python_tuple(const Shape& values) {
  std::string out = "(";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(values[i]);
  }
  return out + (values.size() == 1 ? ",)" : ")");
}

}  // namespace lumen::nn
