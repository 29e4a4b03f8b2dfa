// See config_error.hpp.
#include "config_error.hpp"

#include <hostlet/json_text.hpp>
#include <yaml-cpp/yaml.h>

namespace hostlet {

Mark mark_of(const YAML::Node& node) {
  if (!node.IsDefined()) return {};
  const YAML::Mark m = node.Mark();
  if (m.is_null() || m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

std::string ConfigError::str() const {
  std::string s = printable(file);
  if (mark.line > 0) s += ":" + std::to_string(mark.line) + ":" + std::to_string(mark.column);
  return s + ": " + printable(message);
}

namespace {

void append_hex(std::string& out, const char* prefix, unsigned v, int digits) {
  static const char kHex[] = "0123456789abcdef";
  out += prefix;
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) out.push_back(kHex[(v >> shift) & 15]);
}

// The code point of the valid UTF-8 sequence of `n` bytes at p.
unsigned decode(const unsigned char* p, size_t n) {
  if (n == 2) return (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu);
  if (n == 3) return (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
  return (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
}

// Code points that move the cursor or reorder what follows on a terminal.
bool invisible_control(unsigned cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const char* end = text.data() + text.size();
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c >= 0x80) {
      // json_text.hpp's reading of UTF-8 (no overlongs, surrogates or > U+10FFFF).
      const size_t n = utf8_sequence_length(text.data() + i, end);
      if (n == 0) {
        append_hex(out, "\\x", c, 2);
        ++i;
        continue;
      }
      const unsigned cp = decode(reinterpret_cast<const unsigned char*>(text.data() + i), n);
      if (invisible_control(cp))
        append_hex(out, "\\u", cp, 4);
      else
        out.append(text.data() + i, n);
      i += n;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: append_hex(out, "\\x", c, 2);  // the other C0 controls and DEL
    }
    ++i;
  }
  return out;
}

}  // namespace hostlet
