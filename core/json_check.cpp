#include "json_check.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <hostlet/json_text.hpp>

namespace hostlet {

namespace {

class Checker {
 public:
  explicit Checker(std::string_view t)
      : p_(reinterpret_cast<const unsigned char*>(t.data())), end_(p_ + t.size()) {}

  bool run() {
    ws();
    for (;;) {
      if (!value()) return false;
      // After a value: close what ends here, then a separator or the end.
      for (;;) {
        ws();
        if (stack_.empty()) return p_ == end_;
        if (p_ == end_) return false;
        const char top = stack_.back();
        if (*p_ == (top == '{' ? '}' : ']')) {
          p_++;
          stack_.pop_back();
          continue;
        }
        if (*p_ != ',') return false;
        p_++;
        ws();
        if (top == '{' && !key()) return false;
        break;  // the next value
      }
    }
  }

 private:
  // One value; an opened container pushes itself and returns with `p_` at
  // its first value (or past its immediate close).
  bool value() {
    for (;;) {
      if (p_ == end_) return false;
      switch (*p_) {
        case '{':
          p_++;
          ws();
          if (p_ < end_ && *p_ == '}') return ++p_, true;
          stack_.push_back('{');
          if (!key()) return false;
          continue;  // its first member's value
        case '[':
          p_++;
          ws();
          if (p_ < end_ && *p_ == ']') return ++p_, true;
          stack_.push_back('[');
          continue;  // its first element
        case '"': return string();
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        default: return number();
      }
    }
  }

  // "name" ws ':' ws
  bool key() {
    if (p_ == end_ || *p_ != '"' || !string()) return false;
    ws();
    if (p_ == end_ || *p_ != ':') return false;
    p_++;
    ws();
    return true;
  }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) p_++;
  }

  bool literal(const char* word) {
    size_t n = strlen(word);
    if (static_cast<size_t>(end_ - p_) < n || memcmp(p_, word, n) != 0) return false;
    p_ += n;
    return true;
  }

  bool digits() {
    const unsigned char* start = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') p_++;
    return p_ != start;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and finite as a double
  // (nlohmann rejects a number that overflows one, so must we).
  bool number() {
    const unsigned char* start = p_;
    if (p_ < end_ && *p_ == '-') p_++;
    if (p_ == end_) return false;
    const unsigned char* int_start = p_;
    if (*p_ == '0') {
      p_++;
    } else if (*p_ >= '1' && *p_ <= '9') {
      digits();
    } else {
      return false;
    }
    long magnitude = (p_ - int_start) - 1;  // decimal exponent of the integer part, roughly
    if (p_ < end_ && *p_ == '.') {
      p_++;
      if (!digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      p_++;
      bool neg = p_ < end_ && *p_ == '-';
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) p_++;
      const unsigned char* e = p_;
      if (!digits()) return false;
      long exp = 0;
      for (; e < p_ && exp < 100000; e++) exp = exp * 10 + (*e - '0');
      magnitude += neg ? -exp : exp;
    }
    // Below 1e307 nothing overflows; near or above it, let strtod decide.
    if (magnitude < 307) return true;
    std::string text(reinterpret_cast<const char*>(start), static_cast<size_t>(p_ - start));
    return std::isfinite(std::strtod(text.c_str(), nullptr));
  }

  bool hex4(unsigned& v) {
    if (end_ - p_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; i++, p_++) {
      unsigned c = *p_, d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return false;
      v = v << 4 | d;
    }
    return true;
  }

  // One UTF-8 sequence of two or more bytes: the SDK's one rule (RFC 3629:
  // no overlongs, no surrogates, nothing above U+10FFFF).
  bool utf8() {
    size_t n = utf8_sequence_length(reinterpret_cast<const char*>(p_), reinterpret_cast<const char*>(end_));
    p_ += n;
    return n != 0;
  }

  // Moves p_ past plain string bytes (printable ASCII other than '"' and
  // '\\'), 16 at a time where SSE2 is there: most string bytes are plain,
  // and per byte this scan was most of the check's time (a 113 KB list of
  // 1000 domains: 97 -> 58 us). Stops at the first byte string() must look at.
  void skip_plain() {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end_ - p_ >= 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_));
      // Signed: bytes 0x80-0xFF are negative, so "less than 0x20" also
      // catches them (UTF-8, checked byte by byte below).
      const __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                           _mm_cmplt_epi8(v, space));
      if (const int m = _mm_movemask_epi8(special)) {
        p_ += __builtin_ctz(static_cast<unsigned>(m));
        return;
      }
      p_ += 16;
    }
#endif
    while (p_ < end_ && *p_ >= 0x20 && *p_ < 0x80 && *p_ != '"' && *p_ != '\\') p_++;
  }

  bool string() {
    p_++;  // the opening quote
    while (p_ < end_) {
      skip_plain();
      if (p_ == end_) break;
      const unsigned c = *p_;
      if (c == '"') return ++p_, true;
      if (c < 0x20) return false;
      if (c >= 0x80) {
        if (!utf8()) return false;
        continue;
      }
      p_++;
      if (c != '\\') continue;
      if (p_ == end_) return false;
      switch (*p_++) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
        case 'u': {
          unsigned v;
          if (!hex4(v)) return false;
          if (v >= 0xDC00 && v <= 0xDFFF) return false;  // a low surrogate alone
          if (v >= 0xD800 && v <= 0xDBFF) {               // must be followed by a low one
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!hex4(v) || v < 0xDC00 || v > 0xDFFF) return false;
          }
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  const unsigned char* p_;
  const unsigned char* end_;
  std::vector<char> stack_;
};

}  // namespace

bool json_valid(std::string_view text) { return Checker(text).run(); }

}  // namespace hostlet
