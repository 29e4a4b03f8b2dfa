// hostlet plugin SDK: writing JSON text without a DOM (header-only, C++17).
//
// An action's result data (hostlet_host_api::call_reply_ok's data_json) is
// JSON text. Building a DOM (nlohmann::json and the like) to print a list of
// a thousand entries costs more than the calls that produced it; these helpers
// let a plugin write the text directly, safely:
//
//   std::string out = "[";
//   for (const auto& d : domains) {
//     if (out.size() > 1) out.push_back(',');
//     out += "{\"name\":";
//     hostlet::append_json_string(out, d.name);  // quoted and escaped
//     out += '}';
//   }
//   out += ']';
//
// append_json_string escapes '"', '\\' and control characters (\n, \t, ...,
// others as \u00XX), copies valid UTF-8 as is and writes U+FFFD (as \ufffd)
// for each byte that does not start a valid UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are invalid), so the result is
// always a valid JSON string whatever bytes `s` holds.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace hostlet {

// Length (2, 3 or 4) of the valid UTF-8 sequence of several bytes starting at
// p (p < end), or 0 when the bytes there are not one (including a plain ASCII
// byte, which the caller handles itself).
inline size_t utf8_sequence_length(const char* p, const char* end) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(p[k]); };
  unsigned char c = b(0);
  size_t n = static_cast<size_t>(end - p);
  auto cont = [&](size_t k) { return k < n && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Appends `s` as a JSON string literal, quotes included (see the top of this file).
inline void append_json_string(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0, plain = 0;  // s[plain, i) is copied as is
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      i++;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_sequence_length(s.data() + i, s.data() + s.size());
      if (n) {
        i += n;
        continue;
      }
    }
    out.append(s.data() + plain, i - plain);
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default:
        if (c < 0x20) {
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.append("\\ufffd");  // a byte that starts no valid UTF-8 sequence
        }
    }
    plain = ++i;
  }
  out.append(s.data() + plain, s.size() - plain);
  out.push_back('"');
}

}  // namespace hostlet
