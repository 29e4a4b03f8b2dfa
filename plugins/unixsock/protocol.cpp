#include "protocol.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>

namespace hostlet::unixsock {
namespace {

using json = nlohmann::json;

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

// What the top-level key being parsed means.
enum class Field { other, type, attrs, id, ack };

Field field_of(std::string_view key) {
  if (key == "type") return Field::type;
  if (key == "attrs") return Field::attrs;
  if (key == "id") return Field::id;
  if (key == "ack") return Field::ack;
  return Field::other;
}

// Fills a Notification from SAX events. Semantic errors do not stop the parse
// (only the first is kept), so that an id after a bad field is still echoed.
class Handler {
 public:
  explicit Handler(Notification& n) : n_(n) {}

  std::string error;        // first semantic error
  std::string syntax;       // set by parse_error
  bool not_object = false;  // the top-level value is not an object

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (is_id()) {
      n_.id_json.clear();
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, v);
      n_.id_json.append(buf, r.ptr);
      return true;
    }
    return scalar("a number");
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (is_id()) {
      n_.id_json.clear();
      append_uint(n_.id_json, v);
      return true;
    }
    return scalar("a number");
  }
  bool number_float(json::number_float_t, const json::string_t& raw) {
    if (is_id()) {
      n_.id_json = raw;
      return true;
    }
    return scalar("a number");
  }
  bool binary(json::binary_t&) { return scalar("binary"); }

  bool string(json::string_t& v) {
    if (depth_ == 0) return top_not_object();
    if (depth_ == 1) {
      switch (field_) {
        case Field::type:
          n_.type.assign(v);
          n_.has_type = true;
          break;
        case Field::id:
          n_.id_json.clear();
          append_json_string(n_.id_json, v);
          break;
        case Field::ack:
          if (v == "accepted") n_.ack = Ack::accepted;
          else if (v == "done") n_.ack = Ack::done;
          else if (v == "none") n_.ack = Ack::none;
          else fail("unknown \"ack\" value " + cited(v) + " (expected none, accepted or done)");
          break;
        case Field::attrs:
          fail("\"attrs\" must be an object, not a string");
          break;
        case Field::other:
          break;
      }
    } else if (depth_ == 2 && in_attrs_ && attr_open_) {
      auto& kv = n_.attrs[n_.n_attrs];
      if (v.find('\0') != std::string::npos) {
        fail("attribute " + cited(kv.first) + " contains a NUL character");
      } else {
        kv.second.assign(v);
        n_.n_attrs++;
      }
      attr_open_ = false;
    }
    return true;
  }

  bool key(json::string_t& k) {
    if (depth_ == 1) {
      field_ = field_of(k);
    } else if (depth_ == 2 && in_attrs_) {
      attr_open_ = false;
      if (k.empty()) return fail("attribute names must not be empty");
      if (k.find('\0') != std::string::npos) return fail("attribute names must not contain NUL characters");
      if (n_.n_attrs == n_.attrs.size()) n_.attrs.emplace_back();
      n_.attrs[n_.n_attrs].first.assign(k);
      attr_open_ = true;
    }
    return true;
  }

  bool start_object(std::size_t) {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 1 && field_ == Field::attrs) {
      in_attrs_ = true;
      attr_open_ = false;
      n_.n_attrs = 0;  // a repeated "attrs" replaces the earlier one, as in a JSON DOM
    } else {
      container("an object");
    }
    depth_++;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return top_not_object();
    container("an array");
    depth_++;
    return true;
  }
  bool end_object() { return end(); }
  bool end_array() { return end(); }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error
    // while parsing value - invalid literal; last read: 'x'": keep the middle part; the
    // last-read token is raw client bytes of any length.
    std::string_view what = ex.what();
    if (auto p = what.find("] "); p != std::string_view::npos && what.substr(0, 1) == "[") what.remove_prefix(p + 2);
    if (auto p = what.find("; last read"); p != std::string_view::npos) what = what.substr(0, p);
    syntax.assign("invalid JSON: ").append(what.substr(0, 200));
    return false;
  }

 private:
  bool is_id() const { return depth_ == 1 && field_ == Field::id; }

  bool top_not_object() {
    not_object = true;
    return false;  // nothing more to learn from this line
  }

  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return true;  // keep parsing: a later "id" is still echoed
  }

  // A non-string scalar (`what` names its kind).
  bool scalar(const char* what) {
    if (depth_ == 0) return top_not_object();
    if (depth_ == 1) {
      switch (field_) {
        case Field::type: return fail(std::string("\"type\" must be a string, not ") + what);
        case Field::attrs: return fail(std::string("\"attrs\" must be an object, not ") + what);
        case Field::ack: return fail(std::string("\"ack\" must be a string, not ") + what);
        case Field::id:
          if (std::string_view(what) == "null") n_.id_json = "null";
          else fail(std::string("\"id\" must be a string or a number, not ") + what);
          return true;
        case Field::other: return true;
      }
    }
    if (depth_ == 2 && in_attrs_ && attr_open_) {
      attr_open_ = false;
      return fail("attribute " + cited(n_.attrs[n_.n_attrs].first) + " must be a string, not " + what);
    }
    return true;
  }

  // An object or array opened somewhere other than at the top or as "attrs".
  void container(const char* what) {
    if (depth_ == 1) {
      switch (field_) {
        case Field::type: fail(std::string("\"type\" must be a string, not ") + what); break;
        case Field::attrs: fail(std::string("\"attrs\" must be an object, not ") + what); break;
        case Field::ack: fail(std::string("\"ack\" must be a string, not ") + what); break;
        case Field::id: fail(std::string("\"id\" must be a string or a number, not ") + what); break;
        case Field::other: break;
      }
    } else if (depth_ == 2 && in_attrs_ && attr_open_) {
      attr_open_ = false;
      fail("attribute " + cited(n_.attrs[n_.n_attrs].first) + " must be a string, not " + what);
    }
  }

  bool end() {
    depth_--;
    if (depth_ == 1) in_attrs_ = false;
    return true;
  }

  Notification& n_;
  int depth_ = 0;
  Field field_ = Field::other;
  bool in_attrs_ = false;   // the container at depth 2 is the "attrs" object
  bool attr_open_ = false;  // a key was read in attrs and its value not yet
};

// Keeps the last of duplicate attribute keys (what a JSON DOM does), in
// first-seen order. Quadratic only for the rare line with many attributes.
void dedupe_attrs(Notification& n) {
  if (n.n_attrs < 2) return;
  auto* a = n.attrs.data();
  size_t out = 0;
  for (size_t i = 0; i < n.n_attrs; i++) {
    size_t j = 0;
    while (j < out && a[j].first != a[i].first) j++;
    if (j < out) {
      a[j].second.swap(a[i].second);
    } else {
      if (out != i) a[out].swap(a[i]);
      out++;
    }
  }
  n.n_attrs = out;
}

constexpr std::array<bool, 256> make_type_chars() {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; c++) t[c] = true;
  for (int c = 'A'; c <= 'Z'; c++) t[c] = true;
  for (int c = '0'; c <= '9'; c++) t[c] = true;
  t['_'] = t['.'] = t[':'] = t['-'] = true;
  return t;
}
constexpr auto kTypeChars = make_type_chars();

// Length of the valid UTF-8 sequence at s[i], or 0 when invalid (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = s.size() - i;
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return n >= 2 && cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || !cont(i + 1) || !cont(i + 2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

void Notification::clear() {
  type.clear();
  n_attrs = 0;
  id_json.assign("null");
  ack = Ack::accepted;
  has_type = false;
}

bool valid_type(std::string_view type) {
  if (type.empty() || type.size() > kMaxTypeLength) return false;
  for (unsigned char c : type)
    if (!kTypeChars[c]) return false;
  return true;
}

bool parse_notification(std::string_view line, Notification& out, std::string& error) {
  out.clear();
  Handler h(out);
  bool parsed = json::sax_parse(line.data(), line.data() + line.size(), &h);
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

void append_json_string(std::string& out, std::string_view s) {
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
      size_t n = utf8_len(s, i);
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
          out.append("\\ufffd");  // an invalid UTF-8 byte
        }
    }
    plain = ++i;
  }
  out.append(s.data() + plain, s.size() - plain);
  out.push_back('"');
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

// data_json comes from a plugin through the host, which checks it is JSON; it
// is checked again here because one bad value would corrupt the whole stream.
// Raw newlines can only be insignificant whitespace in valid JSON, so they are
// blanked to keep the reply on one line.
void append_data(std::string& out, const char* data) {
  std::string_view d(data);
  if (!json::accept(d)) {
    out.append("null");
    return;
  }
  size_t start = out.size();
  out.append(d);
  std::replace_if(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
                  [](char c) { return c == '\n' || c == '\r'; }, ' ');
}

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
