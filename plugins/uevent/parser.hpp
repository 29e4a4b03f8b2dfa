// Kernel uevent messages: parsing, filtering, SEQNUM gap tracking.
//
// Pure code (no sockets, no host): the plugin feeds it what recvmsg returned,
// the tests feed it captured and malformed payloads.
//
// A kernel message is "ACTION@DEVPATH\0" followed by "KEY=VALUE\0" entries,
// the whole datagram NUL-terminated. udevd re-broadcasts on group 2 in its
// own format: "libudev\0", a binary header, then the same KEY=VALUE\0 list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostlet::uevent {

using Attrs = std::vector<std::pair<std::string, std::string>>;

struct Uevent {
  std::string action;    // ACTION, e.g. "add"; the event type
  std::string devpath;   // DEVPATH, e.g. "/devices/virtual/net/hl0"
  Attrs attrs;           // every KEY=VALUE, in message order (ACTION, DEVPATH, SEQNUM included)
  std::optional<uint64_t> seqnum;
  bool libudev = false;  // came in udevd's format
  bool sanitized = false;  // a value had invalid UTF-8, replaced by U+FFFD

  // The value of `key`, or nullptr.
  const std::string* find(std::string_view key) const;
};

enum class ParseError {
  none,
  empty,            // zero-length datagram
  oversized,        // longer than the limit
  no_nul,           // last byte is not NUL
  no_header,        // first string has no '@'
  bad_header,       // empty or invalid action, devpath not starting with '/' (in either format)
  bad_entry,        // an entry without '=' or with an invalid key
  duplicate_key,
  too_many_entries,
  header_mismatch,  // ACTION / DEVPATH entries missing or different from the header
  bad_seqnum,       // SEQNUM not a decimal number
  bad_libudev,      // libudev magic with a broken header
  libudev,          // a well-formed libudev message while libudev parsing is off (not an error)
};

// A short text for logs, e.g. "no '@' header".
const char* parse_error_text(ParseError e);
// An identifier for counters, e.g. "no_header".
const char* parse_error_name(ParseError e);

struct ParseLimits {
  size_t max_message = 16 * 1024;  // bytes; longer datagrams are `oversized`
  size_t max_entries = 512;
  bool libudev = false;            // parse libudev messages instead of returning ParseError::libudev
};

struct ParseResult {
  ParseError error = ParseError::none;
  std::string detail;  // for errors: what exactly was wrong (printable, bounded)
  Uevent event;
  bool ok() const { return error == ParseError::none; }
};

// Parses one datagram. Never throws on any input except std::bad_alloc.
ParseResult parse(std::string_view msg, const ParseLimits& limits);

// True when msg starts with the libudev prefix "libudev\0".
bool is_libudev(std::string_view msg);

// Replaces invalid UTF-8 sequences by U+FFFD; returns true when it changed anything.
bool sanitize_utf8(std::string& s);

// SUBSYSTEM / DEVTYPE filters; an empty list accepts everything. Entries are
// fnmatch(3) patterns ("usb*"). With a non-empty devtypes list, an event
// without DEVTYPE is rejected.
struct Filter {
  std::vector<std::string> subsystems;
  std::vector<std::string> devtypes;
  bool accepts(const Uevent& ev) const;
};

// Detects SEQNUM gaps. The kernel numbers every uevent it sends with one
// global counter, so a jump means messages that did not reach this socket:
// dropped on overflow (ENOBUFS), or, legitimately, sent only to another
// network namespace. A SEQNUM at or below the last one seen is counted as
// reordered and otherwise ignored.
class SeqTracker {
 public:
  struct Gap {
    uint64_t from = 0, to = 0;  // inclusive
    uint64_t count() const { return to - from + 1; }
  };
  std::optional<Gap> observe(uint64_t seq);
  std::optional<uint64_t> last() const { return started_ ? std::optional<uint64_t>(last_) : std::nullopt; }
  uint64_t reordered() const { return reordered_; }

 private:
  bool started_ = false;
  uint64_t last_ = 0;
  uint64_t reordered_ = 0;
};

// At most `burst` allowed calls per `interval_ns`; reports how many were
// refused since the last allowed one, so a log line can say "(N suppressed)".
class RateLimiter {
 public:
  RateLimiter(uint64_t interval_ns, unsigned burst) : interval_(interval_ns), burst_(burst) {}
  bool allow(uint64_t now_ns, uint64_t* suppressed);

 private:
  uint64_t interval_;
  unsigned burst_;
  uint64_t window_start_ = 0;
  unsigned in_window_ = 0;
  bool started_ = false;
  uint64_t suppressed_ = 0;
};

}  // namespace hostlet::uevent
