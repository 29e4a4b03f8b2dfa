// The control socket's protocol, shared by the agent (core/control.cpp) and
// hostlet-ctl (ctl/): the command names, the limits on a request, and the
// request parser as a pure function (no I/O), which the fuzzer drives too.
//
// A request is one JSON object on one line:
//
//   {"id": 7, "cmd": "call", "action": "virt.domain.list", "attrs": {"state": "running"}}
//
// `id` is optional, a string or an integer, and echoed in the reply; `cmd`
// names the command; the other keys are its arguments. The line is refused,
// with a reason and nothing executed, when it holds a NUL byte, is not
// exactly one JSON value (text after the object counts), nests deeper than
// kMaxDepth, or is not an object. Argument strings must not contain NUL
// (`\u0000`): C plugins see attributes as NUL-terminated strings, and a
// path cut at the NUL is not the path the client sent.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hostlet::control {

// The "cmd" of each request the agent answers.
// The version of this protocol, exchanged by `hello` (hostlet-ctl sends it
// first on every connection). Raised when a command or argument changes
// meaning; additions that old agents refuse cleanly do not need it.
inline constexpr int kProtocolVersion = 1;

namespace cmd {
inline constexpr std::string_view hello = "hello";
inline constexpr std::string_view status = "status";
inline constexpr std::string_view plugins = "plugins";
inline constexpr std::string_view describe = "describe";
inline constexpr std::string_view stats = "stats";
inline constexpr std::string_view call = "call";
inline constexpr std::string_view notify = "notify";
inline constexpr std::string_view events = "events";
inline constexpr std::string_view reload = "reload";
inline constexpr std::string_view metrics = "metrics";
}  // namespace cmd

// Deepest nesting of arrays and objects in a request. The deepest the agent
// reads is an `attrs` object inside the request (2); a deep request is
// refused before it is parsed, so that nothing recursive (nlohmann copies and
// prints values recursively) ever sees it.
inline constexpr size_t kMaxDepth = 16;

// Deepest nesting hostlet-ctl reads in a reply: action data passes through
// unchanged and may nest deeper than any request, but not without end.
inline constexpr size_t kMaxReplyDepth = 512;

using Attrs = std::vector<std::pair<std::string, std::string>>;

// Checks what a JSON parser should not be trusted with: a NUL byte anywhere
// (nlohmann stops at one as if the text ended there) and nesting deeper than
// max_depth. One pass, no allocation; the text need not be valid JSON.
// Returns an empty string, or the reason to refuse the line ("contains a NUL
// byte at byte 17", "nests deeper than 16 levels").
std::string check_line(std::string_view line, size_t max_depth);

// One parsed request.
struct Request {
  nlohmann::json body = nlohmann::json::object();  // the whole request object
  nlohmann::json id = nullptr;                      // null, a string or an integer
  std::string cmd;

  // The string argument `key`: true and `out` set when present; true and
  // `out` untouched when absent or null; false with `error` when it is not a
  // string or contains NUL.
  bool string_arg(std::string_view key, std::string& out, std::string& error) const;
  // The non-negative integer argument `key`, at most `max`: true and `out`
  // set when present; true and `out` untouched when absent or null; false
  // with `error` for another type, a fraction, a negative or too large value.
  bool uint_arg(std::string_view key, uint64_t max, uint64_t& out, std::string& error) const;
  // `attrs`: an object of strings (absent or null: none). False with `error`
  // for another type, a non-string value, an empty name or a NUL.
  bool attrs_arg(Attrs& out, std::string& error) const;
};

// Parses one request line (without its '\n'; a trailing '\r' is the
// caller's to strip). False with `error` set to the message for the client;
// `out.id` is set whenever the line was an object with a valid id, so that the
// error reply can echo it.
bool parse_request(std::string_view line, Request& out, std::string& error);

}  // namespace hostlet::control
