// The unixsock wire protocol, without any I/O: one notification per line of
// newline-delimited JSON in, one JSON reply line out.
//
//   in:  {"type": "vm.start", "attrs": {"name": "vm1"}, "id": 7, "ack": "done"}
//   out: {"id":7,"ok":true,"event":42}                                   ack accepted
//        {"id":7,"ok":true,"event":42,"results":[{"action":...}]}        ack done
//        {"id":7,"ok":false,"error":"..."}                               any error
//
// A line is parsed exactly once, by a strict single-pass JSON parser written
// for this schema, straight into a reusable Notification (no DOM, and after
// the first few lines no allocation for typical notifications). It replaced
// nlohmann::json's SAX parser, which cost half the loop's time at 1M lines/s
// (a lexer per line: localeconv(), a token buffer and a state stack). It stays
// rather than simdjson (Debian 3.0.1) because it is faster on these lines:
// bench/parse_bench puts it at 106 ns per 52-byte line against 160 ns for
// simdjson's DOM and 177 ns for its on-demand API doing the same extraction
// (on-demand with the portable implementation that Debian's x86-64 baseline
// compiles in; it also leaves skipped values and text after the object
// unchecked). Replies are formatted by hand into
// the caller's output buffer; every string that goes into a reply is escaped
// and any invalid UTF-8 in it is replaced, so a reply is always valid JSON.
#pragma once

#include <hostlet/json_text.hpp>
#include <hostlet/plugin.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostlet::unixsock {

enum class Ack { none, accepted, done };

// Bounds on one notification's attributes (the plugin's max_attrs, max_key and
// max_value), so that one line cannot make an event, and the work on it,
// arbitrarily large. Sizes are in bytes of the decoded UTF-8 text.
struct AttrLimits {
  size_t max_attrs = 256;  // members of "attrs", a repeated key counted each time
  size_t max_key = 256;
  size_t max_value = 64 * 1024;
};

// The longest string id (decoded bytes). Each pending `ack: done` keeps its
// id, so without a bound max_pending * max_line bytes per connection would be.
constexpr size_t kMaxIdBytes = 256;

// A parsed line. Reused from line to line: strings keep their capacity.
struct Notification {
  std::string type;
  // attrs[0 .. n_attrs) are valid; entries past n_attrs are spare capacity.
  std::vector<std::pair<std::string, std::string>> attrs;
  size_t n_attrs = 0;
  // The request's id as JSON text ("7", "\"abc\""), or "null" when absent or
  // unusable. An id is a string of at most kMaxIdBytes, an integer that fits
  // in int64 or uint64 written without fraction or exponent (what
  // nlohmann::json keeps as an integer; -0 is echoed as 0), or null.
  std::string id_json = "null";
  Ack ack = Ack::accepted;
  bool has_type = false;
  // Parser scratch, kept here so that its capacity is reused too.
  std::string scratch_key, scratch_value, scratch_stack;
  std::vector<uint32_t> scratch_order;  // dedupe's sort

  void clear();
};

// True when `type` is a dotted word: [A-Za-z0-9_.:-]{1,256}.
bool valid_type(std::string_view type);

// Parses one line (without its '\n'). On failure returns false and sets
// `error` to a message fit for a reply; `out.id_json` still holds the id when
// the line had a usable one, so the error reply can echo it. A repeated
// attribute key keeps its first position and its last value (as a JSON DOM
// keeps the last). A number anywhere in the line that overflows a double
// (1e999) makes it invalid JSON, as for nlohmann::json and the core's
// json_check. The cost is linear in the line's length, plus O(n log n) in its
// attributes, which `limits` bound.
bool parse_notification(std::string_view line, Notification& out, std::string& error,
                        const AttrLimits& limits = {});

// Appends `s` as a JSON string literal (with quotes). Control characters are
// escaped; invalid UTF-8 sequences become U+FFFD. (The SDK's, shared with
// other plugins: sdk/include/hostlet/json_text.hpp.)
using ::hostlet::append_json_string;

// Reply lines, each appended to `out` with its trailing '\n'.
void append_accepted_reply(std::string& out, std::string_view id_json, uint64_t event_id);
void append_error_reply(std::string& out, std::string_view id_json, std::string_view message);
// The reply of an `ack: done` notification: ok is true when every outcome is.
void append_done_reply(std::string& out, std::string_view id_json, uint64_t event_id,
                       const hostlet_outcome* outcomes, size_t n_outcomes);

}  // namespace hostlet::unixsock
