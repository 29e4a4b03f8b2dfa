#include "parser.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace hostlet::uevent {
namespace {

constexpr std::string_view kLibudevPrefix{"libudev\0", 8};
constexpr uint32_t kLibudevMagic = 0xfeedcafe;
// prefix[8] + magic, header_size, properties_off, properties_len, 2 hashes, 2 bloom words.
constexpr size_t kLibudevHeaderSize = 8 + 8 * 4;
constexpr size_t kMaxKey = 128;
constexpr size_t kMaxAction = 64;

// A bounded, printable rendering of untrusted bytes for error details.
std::string printable(std::string_view s, size_t max = 64) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; i++) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

bool valid_key(std::string_view k) {
  if (k.empty() || k.size() > kMaxKey) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool valid_action(std::string_view a) {
  if (a.empty() || a.size() > kMaxAction) return false;
  return std::all_of(a.begin(), a.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

ParseResult fail(ParseError e, std::string detail) {
  ParseResult r;
  r.error = e;
  r.detail = std::move(detail);
  return r;
}

// Parses "KEY=VALUE\0" entries filling `region` exactly (its last byte is NUL).
ParseResult parse_entries(std::string_view region, const ParseLimits& limits) {
  ParseResult r;
  Uevent& ev = r.event;
  size_t pos = 0;
  while (pos < region.size()) {
    size_t nul = region.find('\0', pos);  // found: the region ends with NUL
    std::string_view entry = region.substr(pos, nul - pos);
    pos = nul + 1;
    if (ev.attrs.size() >= limits.max_entries)
      return fail(ParseError::too_many_entries, "more than " + std::to_string(limits.max_entries));
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos)
      return fail(ParseError::bad_entry, entry.empty() ? "empty entry" : "no '=' in \"" + printable(entry) + "\"");
    std::string_view key = entry.substr(0, eq);
    if (!valid_key(key)) return fail(ParseError::bad_entry, "invalid key \"" + printable(key) + "\"");
    std::string value(entry.substr(eq + 1));
    if (sanitize_utf8(value)) ev.sanitized = true;
    ev.attrs.emplace_back(std::string(key), std::move(value));
  }

  std::vector<std::string_view> keys;
  keys.reserve(ev.attrs.size());
  for (const auto& kv : ev.attrs) keys.emplace_back(kv.first);
  std::sort(keys.begin(), keys.end());
  auto dup = std::adjacent_find(keys.begin(), keys.end());
  if (dup != keys.end()) return fail(ParseError::duplicate_key, std::string(*dup));

  if (const std::string* s = ev.find("SEQNUM")) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), n);
    if (s->empty() || ec != std::errc() || end != s->data() + s->size())
      return fail(ParseError::bad_seqnum, "SEQNUM=" + printable(*s));
    ev.seqnum = n;
  }
  return r;
}

uint32_t load_u32(std::string_view msg, size_t off, bool big_endian) {
  unsigned char b[4];
  std::memcpy(b, msg.data() + off, 4);
  if (big_endian) return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
  uint32_t v;
  std::memcpy(&v, b, 4);  // host order, as udevd writes it
  return v;
}

ParseResult parse_libudev(std::string_view msg, const ParseLimits& limits) {
  if (msg.size() < kLibudevHeaderSize) return fail(ParseError::bad_libudev, "short header");
  if (load_u32(msg, 8, true) != kLibudevMagic) return fail(ParseError::bad_libudev, "bad magic");
  uint32_t off = load_u32(msg, 16, false);
  uint32_t len = load_u32(msg, 20, false);
  if (off < kLibudevHeaderSize || off > msg.size() || len == 0 || len > msg.size() - off)
    return fail(ParseError::bad_libudev, "properties outside the message");
  std::string_view region = msg.substr(off, len);
  if (region.back() != '\0') return fail(ParseError::no_nul, "properties not NUL-terminated");
  ParseResult r = parse_entries(region, limits);
  if (!r.ok()) return r;
  const std::string* action = r.event.find("ACTION");
  const std::string* devpath = r.event.find("DEVPATH");
  if (!action || !devpath) return fail(ParseError::header_mismatch, "no ACTION or DEVPATH");
  if (!valid_action(*action)) return fail(ParseError::bad_header, "action \"" + printable(*action) + "\"");
  if (devpath->empty() || devpath->front() != '/')
    return fail(ParseError::bad_header, "DEVPATH \"" + printable(*devpath) + "\"");
  r.event.action = *action;
  r.event.devpath = *devpath;
  r.event.libudev = true;
  return r;
}

}  // namespace

const std::string* Uevent::find(std::string_view key) const {
  for (const auto& kv : attrs)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const char* parse_error_text(ParseError e) {
  switch (e) {
    case ParseError::none: return "ok";
    case ParseError::empty: return "empty message";
    case ParseError::oversized: return "oversized message";
    case ParseError::no_nul: return "missing NUL termination";
    case ParseError::no_header: return "no '@' header";
    case ParseError::bad_header: return "invalid ACTION@DEVPATH header";
    case ParseError::bad_entry: return "invalid KEY=VALUE entry";
    case ParseError::duplicate_key: return "duplicate key";
    case ParseError::too_many_entries: return "too many entries";
    case ParseError::header_mismatch: return "header does not match ACTION/DEVPATH";
    case ParseError::bad_seqnum: return "invalid SEQNUM";
    case ParseError::bad_libudev: return "invalid libudev message";
    case ParseError::libudev: return "libudev message (ignored)";
  }
  return "unknown";
}

const char* parse_error_name(ParseError e) {
  switch (e) {
    case ParseError::none: return "none";
    case ParseError::empty: return "empty";
    case ParseError::oversized: return "oversized";
    case ParseError::no_nul: return "no_nul";
    case ParseError::no_header: return "no_header";
    case ParseError::bad_header: return "bad_header";
    case ParseError::bad_entry: return "bad_entry";
    case ParseError::duplicate_key: return "duplicate_key";
    case ParseError::too_many_entries: return "too_many_entries";
    case ParseError::header_mismatch: return "header_mismatch";
    case ParseError::bad_seqnum: return "bad_seqnum";
    case ParseError::bad_libudev: return "bad_libudev";
    case ParseError::libudev: return "libudev";
  }
  return "unknown";
}

bool is_libudev(std::string_view msg) { return msg.substr(0, kLibudevPrefix.size()) == kLibudevPrefix; }

ParseResult parse(std::string_view msg, const ParseLimits& limits) {
  if (msg.empty()) return fail(ParseError::empty, {});
  if (msg.size() > limits.max_message)
    return fail(ParseError::oversized,
                std::to_string(msg.size()) + " bytes, limit " + std::to_string(limits.max_message));
  if (is_libudev(msg)) {
    if (!limits.libudev) return fail(ParseError::libudev, {});
    return parse_libudev(msg, limits);
  }
  if (msg.back() != '\0') return fail(ParseError::no_nul, "ends with \"" + printable(msg.substr(msg.size() > 16 ? msg.size() - 16 : 0)) + "\"");

  size_t hdr_end = msg.find('\0');
  std::string_view header = msg.substr(0, hdr_end);
  size_t at = header.find('@');
  if (at == std::string_view::npos) return fail(ParseError::no_header, "\"" + printable(header) + "\"");
  std::string_view action = header.substr(0, at);
  std::string_view devpath = header.substr(at + 1);
  if (!valid_action(action) || devpath.empty() || devpath.front() != '/')
    return fail(ParseError::bad_header, "\"" + printable(header) + "\"");

  ParseResult r = parse_entries(msg.substr(hdr_end + 1), limits);
  if (!r.ok()) return r;
  const std::string* a = r.event.find("ACTION");
  const std::string* d = r.event.find("DEVPATH");
  if (!a || !d || *a != action || *d != devpath)
    return fail(ParseError::header_mismatch, "\"" + printable(header) + "\"");
  r.event.action = std::string(action);
  r.event.devpath = std::string(devpath);
  return r;
}

bool sanitize_utf8(std::string& s) {
  auto cont = [&](size_t i) { return i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; };
  auto in = [&](size_t i, unsigned lo, unsigned hi) {
    if (i >= s.size()) return false;
    auto c = static_cast<unsigned char>(s[i]);
    return c >= lo && c <= hi;
  };
  std::string out;
  bool changed = false;
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    if (c < 0x80) n = 1;
    else if (c >= 0xC2 && c <= 0xDF && cont(i + 1)) n = 2;
    else if (c == 0xE0 && in(i + 1, 0xA0, 0xBF) && cont(i + 2)) n = 3;
    else if (((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) && cont(i + 1) && cont(i + 2)) n = 3;
    else if (c == 0xED && in(i + 1, 0x80, 0x9F) && cont(i + 2)) n = 3;
    else if (c == 0xF0 && in(i + 1, 0x90, 0xBF) && cont(i + 2) && cont(i + 3)) n = 4;
    else if (c >= 0xF1 && c <= 0xF3 && cont(i + 1) && cont(i + 2) && cont(i + 3)) n = 4;
    else if (c == 0xF4 && in(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3)) n = 4;
    if (n == 0) {
      if (!changed) out.assign(s, 0, i);
      changed = true;
      out += "\xEF\xBF\xBD";
      i++;
      continue;
    }
    if (changed) out.append(s, i, n);
    i += n;
  }
  if (changed) s = std::move(out);
  return changed;
}

bool Filter::accepts(const Uevent& ev) const {
  auto match = [](const std::vector<std::string>& pats, const std::string* v) {
    if (pats.empty()) return true;
    if (!v) return false;
    return std::any_of(pats.begin(), pats.end(),
                       [&](const std::string& p) { return fnmatch(p.c_str(), v->c_str(), 0) == 0; });
  };
  return match(subsystems, ev.find("SUBSYSTEM")) && match(devtypes, ev.find("DEVTYPE"));
}

std::optional<SeqTracker::Gap> SeqTracker::observe(uint64_t seq) {
  if (!started_) {
    started_ = true;
    last_ = seq;
    return std::nullopt;
  }
  if (seq <= last_) {
    reordered_++;
    return std::nullopt;
  }
  std::optional<Gap> gap;
  if (seq > last_ + 1) gap = Gap{last_ + 1, seq - 1};
  last_ = seq;
  return gap;
}

bool RateLimiter::allow(uint64_t now_ns, uint64_t* suppressed) {
  if (!started_ || now_ns - window_start_ >= interval_) {
    started_ = true;
    window_start_ = now_ns;
    in_window_ = 0;
  }
  if (in_window_ < burst_) {
    in_window_++;
    if (suppressed) *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }
  suppressed_++;
  return false;
}

}  // namespace hostlet::uevent
