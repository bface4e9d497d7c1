#include "trainer/hparams_yaml.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"
#include "trainer/python_float_format.h"

namespace lumen {

namespace {

// A plain scalar is left unquoted only when YAML would read it back as the same string: not
// empty, no leading indicator character, no ": " or " #", and not a number, bool or null.
std::string yaml_string(const std::string& s) {
  bool plain = !s.empty() && s.find_first_of("\n\r\t") == std::string::npos &&
               std::string("-?:,[]{}#&*!|>'\"%@` ").find(s.front()) == std::string::npos &&
               s.back() != ' ' && s.find(": ") == std::string::npos &&
               s.find(" #") == std::string::npos;
  if (plain) {
    static const char* const kReserved[] = {"true", "false", "True", "False", "yes", "no",
                                            "on",   "off",   "null", "Null",  "~"};
    for (const char* r : kReserved)
      if (s == r) plain = false;
    char* end = nullptr;
    std::strtod(s.c_str(), &end);
    if (end == s.c_str() + s.size()) plain = false;  // looks like a number
  }
  if (plain) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

// YAML floats: Python's repr, with YAML's spellings of the special values.
std::string yaml_float(double v) {
  std::string r = python_float_repr(v);
  if (r == "nan") return ".nan";
  if (r == "inf") return ".inf";
  if (r == "-inf") return "-.inf";
  return r;
}

}  // namespace

std::string hparams_to_yaml(const std::map<std::string, AttrValue>& params) {
  std::string out;
  for (const auto& [key, value] : params) {
    out += yaml_string(key);
    out += ':';
    if (const auto* i = std::get_if<int64_t>(&value)) {
      out += ' ';
      out += std::to_string(*i);
      out += '\n';
    } else if (const auto* d = std::get_if<double>(&value)) {
      out += ' ';
      out += yaml_float(*d);
      out += '\n';
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      out += ' ';
      out += yaml_string(*s);
      out += '\n';
    } else if (const auto* is = std::get_if<std::vector<int64_t>>(&value)) {
      if (is->empty()) out += " []";
      out += "\n";
      for (int64_t x : *is) {
        out += "- ";
        out += std::to_string(x);
        out += '\n';
      }
    } else if (const auto* ds = std::get_if<std::vector<double>>(&value)) {
      if (ds->empty()) out += " []";
      out += "\n";
      for (double x : *ds) {
        out += "- ";
        out += yaml_float(x);
        out += '\n';
      }
    }
  }
  return out;
}

void write_hparams_yaml(const std::string& path, const std::map<std::string, AttrValue>& params) {
  namespace fs = std::filesystem;
  fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  fs::path tmp = target;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    LUMEN_CHECK(f.good(), "write_hparams_yaml: cannot open '", tmp.string(), "' for writing");
    f << hparams_to_yaml(params);
    f.flush();
    LUMEN_CHECK(f.good(), "write_hparams_yaml: writing '", tmp.string(), "' failed");
  }
  fs::rename(tmp, target);
}

}  // namespace lumen
