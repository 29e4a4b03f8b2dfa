// What the mqtt plugin reads and writes, as pure functions (no I/O, no
// libmosquitto): the broker address, the `publish:` entries and how events
// match them, the JSON of an event, of a request and of an answer, and the
// topic layout. tests/mqtt/wire_test.cpp covers each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet::mqtt {

// `broker`: "HOST:PORT", "[V6]:PORT" or an absolute Unix socket path.
struct Broker {
  std::string host;  // a name, a numeric address, or the socket path
  int port = 0;      // 0: a Unix socket
  bool unix_socket() const { return port == 0; }
};
// The address, or the problem in *error.
std::optional<Broker> parse_broker(std::string_view text, std::string* error);

// One `publish:` entry: events whose source and type match (fnmatch globs,
// as rules match: an absent source or type matches any, but source
// "hostlet" only when the entry names it) go out at `qos`.
struct PublishRule {
  std::string source, type;
  int qos = 1;
  bool retain = false;
  bool matches(std::string_view source, std::string_view type) const;
};
// An entry from its config item (a JSON object of strings, plugin.h's
// MAP_LIST): keys source, type, qos (0 or 1), retain.
std::optional<PublishRule> parse_publish_rule(const std::string& json_item, std::string* error);
// The problem with glob `g`, or "" (core/glob.hpp's rule).
std::string glob_problem(std::string_view g);
// fnmatch(3) with flags 0; a pattern without special characters compares exactly.
bool glob_match(std::string_view pattern, std::string_view s);

struct Attr {
  std::string key, value;
};

// {"id":..,"time":..,"source":..,"type":..,"attrs":{..}}; time in seconds since the epoch.
std::string event_json(uint64_t id, uint64_t time_ns, std::string_view source, std::string_view type,
                       const std::vector<Attr>& attrs);

// A request received on a call topic: its payload is a JSON object
// {"attrs": {KEY: VALUE...}, "id": ANY, "reply_to": TOPIC}, every member
// optional; an empty payload is {}. Values of attrs are strings, numbers or
// booleans (read as their JSON text).
inline constexpr size_t kMaxRequestDepth = 32;
struct Request {
  std::vector<Attr> attrs;
  std::string id_json;   // the "id" member as JSON text, or "" when absent
  std::string reply_to;  // the 3.1.1 answer topic, or ""
};
// The request, or the problem in *error (malformed JSON, wrong member types,
// arrays and objects nested deeper than kMaxRequestDepth).
// `reply_to` is filled whenever the payload is an object with a string
// reply_to, even when *error is set, so that the error can be answered
// (except past kMaxRequestDepth: such a payload is not parsed at all).
std::optional<Request> parse_request(std::string_view payload, std::string* error, std::string* reply_to);

// {"id":..,"from":..,"ok":true,"attrs":{..},"data":..} (data_json may be empty: no
// data member). `from` is the answering host's prefix: a group call gets one
// answer per host on one answer topic.
std::string answer_ok(const std::string& id_json, std::string_view from, const std::vector<Attr>& attrs,
                      const std::string& data_json);
// {"id":..,"from":..,"ok":false,"error":".."}
std::string answer_error(const std::string& id_json, std::string_view from, std::string_view message);

// The action named by a call topic ("<prefix>/call/<action>" or
// "hostlet/group/<g>/call/<action>"): the last level.
std::string_view action_of_topic(std::string_view topic);
// A topic to publish to: not empty, no '+' or '#', at most 65535 bytes, valid UTF-8 without NUL.
std::string topic_problem(std::string_view topic);
// A group name or a prefix level: not empty, no '/', '+', '#'.
bool valid_level(std::string_view s);

}  // namespace hostlet::mqtt
