#include "protocol.hpp"

#include <hostlet/json_text.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <numeric>

namespace hostlet::unixsock {
namespace {

// Field names and attribute keys quoted in error messages are cut to this.
constexpr size_t kQuoteMax = 64;

std::string cited(std::string_view s) {
  std::string q = "'";
  if (s.size() > kQuoteMax) {
    q.append(s.substr(0, kQuoteMax));
    q.append("...");
  } else {
    q.append(s);
  }
  q.push_back('\'');
  return q;  // may hold invalid UTF-8 cut in the middle: append_json_string repairs it
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

std::string count_text(uint64_t v) {
  std::string s;
  append_uint(s, v);
  return s;
}

// What the top-level key being parsed means.
enum class Field { other, type, attrs, id, ack };

Field field_of(std::string_view key) {
  if (key == "type") return Field::type;
  if (key == "attrs") return Field::attrs;
  if (key == "id") return Field::id;
  if (key == "ack") return Field::ack;
  return Field::other;
}

// Bytes that stand for themselves inside a JSON string: printable ASCII but
// '"' and '\\'. Everything else takes the slow path (escape, UTF-8, error).
constexpr std::array<bool, 256> make_plain() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; c++) t[c] = c != '"' && c != '\\';
  return t;
}
constexpr auto kPlain = make_plain();

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// A strict RFC 8259 parser for one line, in one pass, specialised to the
// notification: the known top-level keys are decoded straight into the
// Notification, everything else is checked and skipped (iteratively, so deep
// nesting costs no stack). Any syntax error, anywhere, makes the line invalid
// JSON. Semantic errors do not stop the parse (only the first is kept), so
// that an id after a bad field is still echoed.
class Parser {
 public:
  Parser(std::string_view line, Notification& n, const AttrLimits& limits)
      : begin_(line.data()), p_(line.data()), end_(line.data() + line.size()), n_(n), limits_(limits) {}

  std::string error;        // first semantic error
  std::string syntax;       // set on a syntax error
  bool not_object = false;  // the top-level value is not an object

  // False on a syntax error or a top-level value that is not an object.
  bool run() {
    if (end_ - p_ >= 3 && std::string_view(p_, 3) == "\xEF\xBB\xBF") p_ += 3;  // a UTF-8 BOM, as JSON parsers allow
    ws();
    if (p_ == end_) return bad("unexpected end of input");
    if (*p_ != '{') {
      // Like a SAX parser that gives up at the first complete value: a
      // well-formed scalar or any array is "not an object"; a broken token
      // is invalid JSON.
      if (*p_ != '[') {
        std::string_view raw;
        if (!scalar(raw)) return false;
      }
      not_object = true;
      return false;
    }
    if (!object()) return false;
    ws();
    if (p_ != end_) return bad("unexpected content after the object");
    return true;
  }

 private:
  bool bad(const char* what) {
    if (syntax.empty()) {
      syntax.assign("invalid JSON: syntax error at column ");
      append_uint(syntax, static_cast<uint64_t>(p_ - begin_) + 1);
      syntax.append(": ").append(what);
    }
    return false;
  }
  void fail(std::string message) {
    if (error.empty()) error = std::move(message);
  }

  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool expect(char c, const char* what) {
    ws();
    if (p_ == end_ || *p_ != c) return bad(p_ == end_ ? "unexpected end of input" : what);
    ++p_;
    ws();
    return true;
  }

  // What the value at p_ is, for messages; null when no value can start here.
  const char* kind() const {
    if (p_ == end_) return nullptr;
    switch (*p_) {
      case '"': return "a string";
      case '{': return "an object";
      case '[': return "an array";
      case 't':
      case 'f': return "a boolean";
      case 'n': return "null";
      default: return *p_ == '-' || (*p_ >= '0' && *p_ <= '9') ? "a number" : nullptr;
    }
  }
  bool no_value() {
    if (p_ == end_) return bad("unexpected end of input");
    return bad(static_cast<unsigned char>(*p_) >= 0x80 ? "invalid byte outside a string" : "unexpected character");
  }

  // A string at p_ (on its opening quote), decoded into out. *nul is set when
  // it holds a NUL character (only possible as \u0000).
  bool string(std::string& out, bool* nul = nullptr) {
    out.clear();
    const char* s = ++p_;
    for (;;) {
      const char* q = s;
      while (q != end_ && kPlain[static_cast<unsigned char>(*q)]) ++q;
      out.append(s, static_cast<size_t>(q - s));
      p_ = q;
      if (q == end_) return bad("unterminated string");
      unsigned char c = static_cast<unsigned char>(*q);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c == '\\') {
        if (!escape(out, nul)) return false;
        s = p_;
        continue;
      }
      if (c < 0x20) return bad("control character in a string (it must be escaped)");
      size_t n = utf8_sequence_length(q, end_);
      if (n == 0) return bad("invalid UTF-8 in a string");
      out.append(q, n);
      s = q + n;
    }
  }

  // p_ on a backslash inside a string: appends what the escape stands for.
  bool escape(std::string& out, bool* nul) {
    if (end_ - p_ < 2) {
      ++p_;
      return bad("unterminated string");
    }
    char e = p_[1];
    p_ += 2;
    switch (e) {
      case '"': out.push_back('"'); return true;
      case '\\': out.push_back('\\'); return true;
      case '/': out.push_back('/'); return true;
      case 'b': out.push_back('\b'); return true;
      case 'f': out.push_back('\f'); return true;
      case 'n': out.push_back('\n'); return true;
      case 'r': out.push_back('\r'); return true;
      case 't': out.push_back('\t'); return true;
      case 'u': break;
      default: p_ -= 1; return bad("invalid escape in a string");
    }
    uint32_t cp = 0;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return bad("unpaired UTF-16 surrogate in a string");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo = 0;
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return bad("unpaired UTF-16 surrogate in a string");
      p_ += 2;
      if (!hex4(lo)) return false;
      if (lo < 0xDC00 || lo > 0xDFFF) return bad("unpaired UTF-16 surrogate in a string");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0 && nul) *nul = true;
    append_utf8(out, cp);
    return true;
  }
  bool hex4(uint32_t& v) {
    if (end_ - p_ < 4) return bad("invalid \\u escape in a string");
    for (int i = 0; i < 4; i++) {
      int d = hex_digit(p_[i]);
      if (d < 0) return bad("invalid \\u escape in a string");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    p_ += 4;
    return true;
  }

  bool digits() {
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return bad("invalid number");
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return true;
  }
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, finite as a double:
  // nlohmann::json and the core's json_check reject a number that overflows
  // one, so it is invalid JSON here too. `decimal` is the power of ten of its
  // first significant digit (exact; 0 for zero), which decides that without
  // converting all but the numbers near DBL_MAX (1.8e308). *integer is set
  // when it has neither fraction nor exponent.
  bool number(std::string_view& raw, bool* integer = nullptr) {
    const char* s = p_;
    if (*p_ == '-') ++p_;
    const char* int_begin = p_;
    if (p_ != end_ && *p_ == '0') ++p_;
    else if (!digits()) return false;
    bool zero = *int_begin == '0';
    int64_t decimal = zero ? 0 : p_ - int_begin - 1;
    const char* int_end = p_;
    if (p_ != end_ && *p_ == '.') {
      const char* frac = ++p_;
      if (!digits()) return false;
      if (zero) {
        const char* nz = std::find_if(frac, p_, [](char c) { return c != '0'; });
        if (nz != p_) {
          zero = false;
          decimal = -(nz - frac) - 1;
        }
      }
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      bool negative = p_ != end_ && *p_ == '-';
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      const char* e = p_;
      if (!digits()) return false;
      int64_t exponent = 0;
      for (; e != p_ && exponent < 1000000000; ++e) exponent = exponent * 10 + (*e - '0');
      decimal += negative ? -exponent : exponent;
    }
    raw = std::string_view(s, static_cast<size_t>(p_ - s));
    if (integer) *integer = p_ == int_end;
    if (zero || decimal < 308) return true;
    double v = 0;
    if (decimal > 308 || std::from_chars(raw.data(), raw.data() + raw.size(), v).ec == std::errc::result_out_of_range)
      return bad("number out of range (it overflows a double)");
    return true;
  }
  bool literal() {
    for (std::string_view w : {"true", "false", "null"}) {
      if (static_cast<size_t>(end_ - p_) >= w.size() && std::string_view(p_, w.size()) == w) {
        p_ += w.size();
        return true;
      }
    }
    return bad("invalid literal");
  }
  // A string, number, true, false or null at p_; raw is the number's text.
  bool scalar(std::string_view& raw) {
    if (p_ == end_) return no_value();
    char c = *p_;
    if (c == '"') return string(scratch_);
    if (c == '-' || (c >= '0' && c <= '9')) return number(raw);
    if (c == 't' || c == 'f' || c == 'n') return literal();
    return no_value();
  }

  // Any value at p_, checked and dropped. Containers are walked with an
  // explicit stack ('o' object, 'a' array), not by recursion.
  bool skip_value() {
    std::string& stack = stack_;
    stack.clear();
    for (;;) {
      if (p_ == end_) return no_value();
      char c = *p_;
      if (c == '{' || c == '[') {
        ++p_;
        ws();
        char close = c == '{' ? '}' : ']';
        if (p_ != end_ && *p_ == close) {
          ++p_;
        } else {
          stack.push_back(c == '{' ? 'o' : 'a');
          if (c == '{' && !key_then_colon()) return false;
          continue;  // the first member's value
        }
      } else {
        std::string_view raw;
        if (!scalar(raw)) return false;
      }
      // After a value: close containers, or move on to the next member.
      for (;;) {
        if (stack.empty()) return true;
        ws();
        char top = stack.back();
        if (p_ != end_ && *p_ == ',') {
          ++p_;
          ws();
          if (top == 'o' && !key_then_colon()) return false;
          break;
        }
        if (p_ != end_ && *p_ == (top == 'o' ? '}' : ']')) {
          ++p_;
          stack.pop_back();
          continue;
        }
        return bad(p_ == end_ ? "unexpected end of input" : top == 'o' ? "expected ',' or '}'" : "expected ',' or ']'");
      }
    }
  }
  bool key_then_colon() {
    if (p_ == end_ || *p_ != '"') return bad(p_ == end_ ? "unexpected end of input" : "expected a string key");
    if (!string(scratch_)) return false;
    return expect(':', "expected ':'");
  }

  // A value of the wrong kind for a known field: noted, then skipped.
  bool wrong(std::string message_prefix) {
    const char* k = kind();
    if (!k) return no_value();
    fail(std::move(message_prefix) + k);
    return skip_value();
  }

  // Walks the members of the object at p_ (on its '{'): member() is called
  // with p_ on each key's opening quote and reads the key, ':' and the value.
  template <class F> bool members(F&& member) {
    ++p_;
    ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      if (p_ == end_ || *p_ != '"') return bad(p_ == end_ ? "unexpected end of input" : "expected a string key");
      if (!member()) return false;
      ws();
      if (p_ != end_ && *p_ == ',') {
        ++p_;
        ws();
        continue;
      }
      if (p_ != end_ && *p_ == '}') {
        ++p_;
        return true;
      }
      return bad(p_ == end_ ? "unexpected end of input" : "expected ',' or '}'");
    }
  }

  bool object() {
    return members([&] {
      if (!string(key_) || !expect(':', "expected ':'")) return false;
      switch (field_of(key_)) {
        case Field::type: return field_type();
        case Field::attrs: return field_attrs();
        case Field::id: return field_id();
        case Field::ack: return field_ack();
        case Field::other: break;
      }
      return skip_value();
    });
  }

  bool field_type() {
    if (p_ == end_ || *p_ != '"') return wrong("\"type\" must be a string, not ");
    n_.has_type = true;
    return string(n_.type);
  }

  // The id is echoed, so it must read the same in every JSON reader (see
  // Notification::id_json); a repeated "id" replaces the earlier one, and an
  // unusable one is an error and is not echoed.
  bool field_id() {
    if (p_ == end_) return no_value();
    char c = *p_;
    if (c == '"') {
      if (!string(scratch_)) return false;
      if (scratch_.size() > kMaxIdBytes)
        return bad_id("\"id\" is too long (" + count_text(scratch_.size()) + " bytes > " + count_text(kMaxIdBytes) + ")");
      n_.id_json.clear();
      append_json_string(n_.id_json, scratch_);
      return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      std::string_view raw;
      bool integer = false;
      if (!number(raw, &integer)) return false;
      if (!integer) return bad_id("\"id\" must be a string or an integer, not a number with a fraction or an exponent");
      return integer_id(raw);
    }
    n_.id_json.assign("null");
    if (c == 'n') return literal();
    return wrong("\"id\" must be a string or an integer, not ");
  }
  // raw is a JSON integer (no leading zeros): it becomes the id, as written,
  // if it fits in an int64 or a uint64; -0 becomes 0, as nlohmann::json reads it.
  bool integer_id(std::string_view raw) {
    bool negative = raw.front() == '-';
    std::string_view digits = raw.substr(negative ? 1 : 0);
    if (digits.size() > 18) {  // 18 digits fit either way
      uint64_t magnitude = 0;
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
      if (r.ec == std::errc::result_out_of_range || (negative && magnitude > (uint64_t{1} << 63)))
        return bad_id("\"id\" is out of range: integers must lie in [-9223372036854775808, 18446744073709551615]");
    }
    n_.id_json.assign(raw == "-0" ? std::string_view("0") : raw);
    return true;
  }
  // A well-formed id that cannot be one: noted, and the parse goes on.
  [[gnu::noinline]] bool bad_id(std::string message) {
    n_.id_json.assign("null");
    fail(std::move(message));
    return true;
  }

  bool field_ack() {
    if (p_ == end_ || *p_ != '"') return wrong("\"ack\" must be a string, not ");
    if (!string(scratch_)) return false;
    if (scratch_ == "accepted") n_.ack = Ack::accepted;
    else if (scratch_ == "done") n_.ack = Ack::done;
    else if (scratch_ == "none") n_.ack = Ack::none;
    else fail("unknown \"ack\" value " + cited(scratch_) + " (expected none, accepted or done)");
    return true;
  }

  // Members past max_attrs are only checked as JSON (nothing is kept), and
  // counted for the message. The rare rejections are out of line (noinline)
  // so that the common path inlines into the member loop: ~60 instructions
  // per attribute less.
  bool field_attrs() {
    if (p_ == end_ || *p_ != '{') return wrong("\"attrs\" must be an object, not ");
    n_.n_attrs = 0;  // a repeated "attrs" replaces the earlier one, as in a JSON DOM
    size_t members_seen = 0;
    bool parsed = members([&] {
      if (++members_seen > limits_.max_attrs) return key_then_colon() && skip_value();
      if (n_.n_attrs == n_.attrs.size()) n_.attrs.emplace_back();
      auto& kv = n_.attrs[n_.n_attrs];
      bool nul = false;
      if (!string(kv.first, &nul) || !expect(':', "expected ':'")) return false;
      if (kv.first.empty() || nul || kv.first.size() > limits_.max_key) return bad_name(kv.first, nul);
      if (p_ == end_ || *p_ != '"') return not_a_string(kv.first);
      bool vnul = false;
      if (!string(kv.second, &vnul)) return false;
      if (vnul || kv.second.size() > limits_.max_value) bad_value(kv.first, kv.second.size(), vnul);
      else n_.n_attrs++;
      return true;
    });
    if (parsed && members_seen > limits_.max_attrs)
      fail("too many attributes (" + count_text(members_seen) + " > max_attrs " + count_text(limits_.max_attrs) + ")");
    return parsed;
  }
  [[gnu::noinline]] bool bad_name(const std::string& name, bool nul) {
    if (name.empty()) fail("attribute names must not be empty");
    else if (nul) fail("attribute names must not contain NUL characters");
    else
      fail("attribute name " + cited(name) + " is too long (" + count_text(name.size()) + " bytes > max_key " +
           count_text(limits_.max_key) + ")");
    return skip_value();
  }
  [[gnu::noinline]] bool not_a_string(const std::string& name) {
    return wrong("attribute " + cited(name) + " must be a string, not ");
  }
  [[gnu::noinline]] void bad_value(const std::string& name, size_t size, bool nul) {
    if (nul) fail("attribute " + cited(name) + " contains a NUL character");
    else
      fail("attribute " + cited(name) + " is too long (" + count_text(size) + " bytes > max_value " +
           count_text(limits_.max_value) + ")");
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  Notification& n_;
  const AttrLimits& limits_;
  std::string& key_ = n_.scratch_key;
  std::string& scratch_ = n_.scratch_value;
  std::string& stack_ = n_.scratch_stack;
};

// Up to this many attributes dedupe compares every pair: for the usual
// handful that costs fewer instructions than sorting (cachegrind, per line:
// ~340 fewer with 3 attributes, ~1600 fewer with 16; sorting wins from ~30).
constexpr size_t kPairwiseDedupeMax = 16;

// Keeps the last value of a repeated attribute key (what a JSON DOM does), at
// the key's first position. A kept key is never empty, so an emptied key
// marks an entry to drop.
void drop_marked(Notification& n) {
  auto* a = n.attrs.data();
  size_t out = 0;
  for (size_t i = 0; i < n.n_attrs; i++) {
    if (a[i].first.empty()) continue;
    if (out != i) a[out].swap(a[i]);
    out++;
  }
  n.n_attrs = out;
}

void dedupe_pairwise(Notification& n) {
  auto* a = n.attrs.data();
  bool repeated = false;
  for (size_t i = 1; i < n.n_attrs; i++) {
    for (size_t j = 0; j < i; j++) {
      if (a[j].first.empty() || a[j].first != a[i].first) continue;
      a[j].second.swap(a[i].second);
      a[i].first.clear();
      repeated = true;
      break;
    }
  }
  if (repeated) drop_marked(n);
}

// O(n log n): the indices are sorted by (key, index), a total order, so
// std::sort is stable here without the buffer std::stable_sort allocates;
// each run of equal keys then gives its last value to its first entry. It
// replaced a quadratic scan that took 145 ms for a 64 KiB line of ~7000
// distinct keys.
void dedupe_sorted(Notification& n) {
  auto* a = n.attrs.data();
  auto& order = n.scratch_order;
  order.resize(n.n_attrs);
  std::iota(order.begin(), order.end(), uint32_t{0});
  std::sort(order.begin(), order.end(), [a](uint32_t x, uint32_t y) {
    int c = a[x].first.compare(a[y].first);
    return c < 0 || (c == 0 && x < y);
  });
  bool repeated = false;
  for (size_t i = 0; i < order.size();) {
    size_t j = i + 1;
    while (j < order.size() && a[order[j]].first == a[order[i]].first) j++;
    if (j - i > 1) {
      repeated = true;
      a[order[i]].second.swap(a[order[j - 1]].second);
      for (size_t k = i + 1; k < j; k++) a[order[k]].first.clear();
    }
    i = j;
  }
  if (repeated) drop_marked(n);
}

void dedupe_attrs(Notification& n) {
  if (n.n_attrs < 2) return;
  if (n.n_attrs <= kPairwiseDedupeMax) dedupe_pairwise(n);
  else dedupe_sorted(n);
}

}  // namespace

void Notification::clear() {
  type.clear();
  n_attrs = 0;
  id_json.assign("null");
  ack = Ack::accepted;
  has_type = false;
}

bool valid_type(std::string_view type) { return hostlet_event_type_valid_n(type.data(), type.size()); }

bool parse_notification(std::string_view line, Notification& out, std::string& error, const AttrLimits& limits) {
  out.clear();
  Parser h(line, out, limits);
  bool parsed = h.run();
  if (!parsed) {
    if (h.not_object) error = "not a JSON object";
    else if (!h.syntax.empty()) error = std::move(h.syntax);
    else error = "invalid JSON";
    return false;
  }
  if (!h.error.empty()) {
    error = std::move(h.error);
    return false;
  }
  if (!out.has_type) {
    error = "missing \"type\"";
    return false;
  }
  if (out.type.empty()) {
    error = "empty \"type\"";
    return false;
  }
  if (!valid_type(out.type)) {
    error = "invalid \"type\" " + cited(out.type) + ": expected 1 to 256 of A-Z a-z 0-9 _ . : -";
    return false;
  }
  dedupe_attrs(out);
  return true;
}

void append_accepted_reply(std::string& out, std::string_view id_json, uint64_t event_id) {
  out.append("{\"id\":").append(id_json).append(",\"ok\":true,\"event\":");
  append_uint(out, event_id);
  out.append("}\n");
}

void append_error_reply(std::string& out, std::string_view id_json, std::string_view message) {
  out.append("{\"id\":").append(id_json).append(",\"ok\":false,\"error\":");
  append_json_string(out, message);
  out.append("}\n");
}

namespace {

void append_cstr(std::string& out, const char* s) {
  if (s) append_json_string(out, s);
  else out.append("null");
}

// data_json comes from the host, which checked that it is one JSON value on
// one line (hostlet_result in plugin.h): it goes into the reply as is. (This
// plugin used to validate it again and blank line breaks itself: ~0.15 ms of
// loop time for a 110 KB list of 1000 domains, for every reply.)
void append_data(std::string& out, const char* data) { out.append(data); }

}  // namespace

void append_done_reply(std::string& out, std::string_view id_json, uint64_t event_id,
                       const hostlet_outcome* outcomes, size_t n_outcomes) {
  bool all_ok = true;
  for (size_t i = 0; i < n_outcomes; i++) all_ok = all_ok && outcomes[i].result.ok;
  out.append("{\"id\":").append(id_json).append(all_ok ? ",\"ok\":true" : ",\"ok\":false");
  out.append(",\"event\":");
  append_uint(out, event_id);
  out.append(",\"results\":[");
  for (size_t i = 0; i < n_outcomes; i++) {
    const hostlet_outcome& o = outcomes[i];
    if (i) out.push_back(',');
    out.append("{\"action\":");
    append_cstr(out, o.action);
    out.append(",\"rule\":");
    append_cstr(out, o.rule);
    if (o.result.ok) {
      out.append(",\"ok\":true,\"attrs\":{");
      for (size_t k = 0; k < o.result.n_attrs; k++) {
        if (k) out.push_back(',');
        append_cstr(out, o.result.attrs[k].key);
        out.push_back(':');
        append_cstr(out, o.result.attrs[k].value);
      }
      out.push_back('}');
      if (o.result.data_json) {
        out.append(",\"data\":");
        append_data(out, o.result.data_json);
      }
    } else {
      out.append(",\"ok\":false,\"error\":");
      append_cstr(out, o.result.error ? o.result.error : "unknown error");
    }
    out.push_back('}');
  }
  out.append("]}\n");
}

}  // namespace hostlet::unixsock
