// Fuzz target: the uevent parser (plugins/uevent/parser.cpp). The input is
// one datagram, parsed with the default limits and with tight ones, each
// with libudev parsing off and on.
//
// Besides crashes and hangs it checks what parser.hpp promises of a parsed
// event, in either format: an ACTION of [a-z0-9_]{1,64}, a DEVPATH starting
// with '/', both equal to their entries, at most max_entries entries under
// distinct [A-Za-z0-9_]{1,128} keys, a SEQNUM entry exactly when seqnum is
// set (and the same number), valid UTF-8 values that are the message's own
// bytes unless `sanitized` says otherwise. A refused datagram names a
// reason and its detail is short and printable. sanitize_utf8 is checked
// against the SDK's UTF-8 rule (utf8_sequence_length): the same sequences
// are valid, and each byte that starts none becomes one U+FFFD.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <hostlet/json_text.hpp>

#include "fuzz_support.hpp"
#include "parser.hpp"

namespace {

using hostlet::fuzz::check;
namespace uevent = hostlet::uevent;

bool all_of_chars(std::string_view s, size_t max, bool upper_too) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (upper_too && c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

// A decimal number that fits in 64 bits, leading zeros allowed.
std::optional<uint64_t> decimal(const std::string& s) {
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > (UINT64_MAX - static_cast<uint64_t>(c - '0')) / 10) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (s.empty()) return std::nullopt;
  return v;
}

// What sanitize_utf8 must make of s, by the SDK's rule.
std::string sanitized_by_sdk_rule(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = static_cast<unsigned char>(s[i]) < 0x80 ? 1 : hostlet::utf8_sequence_length(&s[i], s.data() + s.size());
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      i++;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

void check_sanitize(const std::string& s) {
  std::string copy = s;
  const std::string expected = sanitized_by_sdk_rule(s);
  check(uevent::sanitize_utf8(copy) == (expected != s));
  check(copy == expected);
  check(!uevent::sanitize_utf8(copy));
}

void check_event(std::string_view msg, const uevent::ParseLimits& limits, const uevent::Uevent& ev) {
  check(all_of_chars(ev.action, 64, false));
  check(!ev.devpath.empty() && ev.devpath.front() == '/');
  check(ev.libudev == uevent::is_libudev(msg) && (!ev.libudev || limits.libudev));
  check(ev.attrs.size() <= limits.max_entries);
  std::set<std::string_view> keys;
  for (const auto& [k, v] : ev.attrs) {
    check(all_of_chars(k, 128, true) && keys.insert(k).second);
    check(sanitized_by_sdk_rule(v) == v);
    if (!ev.sanitized) {
      std::string entry = k + "=" + v;
      entry.push_back('\0');
      check(msg.find(entry) != std::string_view::npos);
    }
  }
  const std::string* action = ev.find("ACTION");
  const std::string* devpath = ev.find("DEVPATH");
  check(action && *action == ev.action && devpath && *devpath == ev.devpath);
  const std::string* seq = ev.find("SEQNUM");
  check(ev.seqnum.has_value() == (seq != nullptr));
  if (seq) check(decimal(*seq) == ev.seqnum);
}

void check_parse(std::string_view msg, const uevent::ParseLimits& limits) {
  const uevent::ParseResult r = uevent::parse(msg, limits);
  check(std::strcmp(uevent::parse_error_name(r.error), "unknown") != 0);
  check(std::strcmp(uevent::parse_error_text(r.error), "unknown") != 0);
  if (msg.empty()) check(r.error == uevent::ParseError::empty);
  else if (msg.size() > limits.max_message) check(r.error == uevent::ParseError::oversized);
  else if (uevent::is_libudev(msg) && !limits.libudev) check(r.error == uevent::ParseError::libudev);
  if (r.ok()) {
    check_event(msg, limits, r.event);
    return;
  }
  check(r.detail.size() <= 300);  // at most 64 bytes quoted, each as \xHH at worst
  for (unsigned char c : r.detail) check(c >= 0x20 && c < 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view msg(reinterpret_cast<const char*>(data), size);
  uevent::ParseLimits tight;
  tight.max_message = 64;
  tight.max_entries = 3;
  for (uevent::ParseLimits limits : {uevent::ParseLimits{}, tight}) {
    for (bool libudev : {false, true}) {
      limits.libudev = libudev;
      check_parse(msg, limits);
    }
  }
  check_sanitize(std::string(msg));
  return 0;
}
