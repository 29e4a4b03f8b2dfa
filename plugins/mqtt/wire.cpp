// See wire.hpp.
#include "wire.hpp"

#include <fnmatch.h>

#include <cstdlib>
#include <hostlet/json_text.hpp>
#include <nlohmann/json.hpp>

#include "glob.hpp"

namespace hostlet::mqtt {

using json = nlohmann::json;

std::optional<Broker> parse_broker(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Broker> {
    *error = "broker '" + std::string(text) + "': " + why;
    return std::nullopt;
  };
  if (text.empty()) return fail("empty");
  if (text.front() == '/') return Broker{std::string(text), 0};
  std::string_view host, port;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("expected [ADDRESS]:PORT");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("expected HOST:PORT or an absolute socket path");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return fail("an IPv6 address goes in brackets: [ADDRESS]:PORT");
  }
  if (host.empty()) return fail("no host");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
    return fail("port must be a number from 1 to 65535");
  const int p = std::atoi(std::string(port).c_str());
  if (p < 1 || p > 65535) return fail("port must be a number from 1 to 65535");
  return Broker{std::string(host), p};
}

std::string glob_problem(std::string_view g) { return glob_syntax_error(g); }

bool glob_match(std::string_view pattern, std::string_view s) {
  if (!is_glob(pattern)) return pattern == s;
  return fnmatch(std::string(pattern).c_str(), std::string(s).c_str(), 0) == 0;
}

bool PublishRule::matches(std::string_view ev_source, std::string_view ev_type) const {
  // As rules do (core/rules.cpp): the core's own events only when named, so
  // that a catch-all entry does not carry every instance.health and the like.
  if (ev_source == "hostlet" && source != "hostlet") return false;
  if (!source.empty() && !glob_match(source, ev_source)) return false;
  return type.empty() || glob_match(type, ev_type);
}

std::optional<PublishRule> parse_publish_rule(const std::string& json_item, std::string* error) {
  json j = json::parse(json_item, nullptr, false);
  if (!j.is_object()) {
    *error = "not a mapping";
    return std::nullopt;
  }
  PublishRule r;
  for (auto& [key, value] : j.items()) {
    const std::string v = value.is_string() ? value.get<std::string>() : value.dump();
    if (key == "source" || key == "type") {
      if (std::string p = glob_problem(v); !p.empty()) {
        *error = key + ": " + p;
        return std::nullopt;
      }
      (key == "source" ? r.source : r.type) = v;
    } else if (key == "qos") {
      if (v != "0" && v != "1") {
        *error = "qos: must be 0 or 1, got '" + v + "'";
        return std::nullopt;
      }
      r.qos = v == "1" ? 1 : 0;
    } else if (key == "retain") {
      if (v == "true" || v == "yes" || v == "on")
        r.retain = true;
      else if (v == "false" || v == "no" || v == "off")
        r.retain = false;
      else {
        *error = "retain: expected true or false, got '" + v + "'";
        return std::nullopt;
      }
    } else {
      *error = "unknown key '" + key + "' (keys: source, type, qos, retain)";
      return std::nullopt;
    }
  }
  return r;
}

std::string event_json(uint64_t id, uint64_t time_ns, std::string_view source, std::string_view type,
                       const std::vector<Attr>& attrs) {
  std::string out = "{\"id\":" + std::to_string(id) + ",\"time\":";
  char t[48];
  snprintf(t, sizeof t, "%llu.%09llu", static_cast<unsigned long long>(time_ns / 1000000000ull),
           static_cast<unsigned long long>(time_ns % 1000000000ull));
  out += t;
  out += ",\"source\":";
  append_json_string(out, source);
  out += ",\"type\":";
  append_json_string(out, type);
  out += ",\"attrs\":{";
  for (size_t i = 0; i < attrs.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, attrs[i].key);
    out.push_back(':');
    append_json_string(out, attrs[i].value);
  }
  out += "}}";
  return out;
}

namespace {
// How deep arrays and objects nest in `text`, read as JSON (brackets inside
// strings do not count), stopping once past `limit`. nlohmann parses
// iteratively but dump()s recursively: an "id" nested a million deep (a
// max_request of a few MiB allows it) would overflow the loop's stack when
// echoed in the answer.
size_t nesting(std::string_view text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) break;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}
}  // namespace

std::optional<Request> parse_request(std::string_view payload, std::string* error, std::string* reply_to) {
  Request r;
  if (payload.find_first_not_of(" \t\r\n") == std::string_view::npos) return r;  // empty: no attrs
  if (nesting(payload, kMaxRequestDepth) > kMaxRequestDepth) {
    *error = "malformed request: nests deeper than " + std::to_string(kMaxRequestDepth) + " levels";
    return std::nullopt;
  }
  json j = json::parse(payload.begin(), payload.end(), nullptr, false);
  if (j.is_discarded()) {
    *error = "malformed request: not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = "malformed request: expected a JSON object {\"attrs\": {...}}";
    return std::nullopt;
  }
  if (auto it = j.find("reply_to"); it != j.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      *error = "malformed request: reply_to must be a topic";
      return std::nullopt;
    }
    r.reply_to = it->get<std::string>();
    *reply_to = r.reply_to;
  }
  if (auto it = j.find("id"); it != j.end()) r.id_json = it->dump();
  for (auto& [key, value] : j.items()) {
    if (key != "attrs" && key != "id" && key != "reply_to") {
      *error = "malformed request: unknown member '" + key + "' (members: attrs, id, reply_to)";
      return std::nullopt;
    }
  }
  if (auto it = j.find("attrs"); it != j.end()) {
    if (!it->is_object()) {
      *error = "malformed request: attrs must be an object";
      return std::nullopt;
    }
    for (auto& [key, value] : it->items()) {
      if (key.empty()) {
        *error = "malformed request: an attribute name is empty";
        return std::nullopt;
      }
      if (value.is_string())
        r.attrs.push_back({key, value.get<std::string>()});
      else if (value.is_number() || value.is_boolean())
        r.attrs.push_back({key, value.dump()});
      else {
        *error = "malformed request: attribute '" + key + "' must be a string, a number or a boolean";
        return std::nullopt;
      }
    }
  }
  return r;
}

namespace {
void append_id(std::string& out, const std::string& id_json, std::string_view from) {
  if (!id_json.empty()) out += "\"id\":" + id_json + ",";
  out += "\"from\":";
  append_json_string(out, from);
  out += ",";
}
}  // namespace

std::string answer_ok(const std::string& id_json, std::string_view from, const std::vector<Attr>& attrs,
                      const std::string& data_json) {
  std::string out = "{";
  append_id(out, id_json, from);
  out += "\"ok\":true,\"attrs\":{";
  for (size_t i = 0; i < attrs.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, attrs[i].key);
    out.push_back(':');
    append_json_string(out, attrs[i].value);
  }
  out += "}";
  if (!data_json.empty()) out += ",\"data\":" + data_json;  // checked by the host (hostlet_result)
  out += "}";
  return out;
}

std::string answer_error(const std::string& id_json, std::string_view from, std::string_view message) {
  std::string out = "{";
  append_id(out, id_json, from);
  out += "\"ok\":false,\"error\":";
  append_json_string(out, message);
  out += "}";
  return out;
}

std::string_view action_of_topic(std::string_view topic) {
  const size_t slash = topic.rfind('/');
  return slash == std::string_view::npos ? topic : topic.substr(slash + 1);
}

std::string topic_problem(std::string_view topic) {
  if (topic.empty()) return "empty topic";
  if (topic.size() > 65535) return "topic longer than 65535 bytes";
  if (topic.find_first_of("+#") != std::string_view::npos) return "a topic to publish to has no '+' or '#'";
  if (topic.find('\0') != std::string_view::npos) return "topic contains a NUL byte";
  for (size_t i = 0; i < topic.size();) {
    const unsigned char c = static_cast<unsigned char>(topic[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    const size_t n = utf8_sequence_length(topic.data() + i, topic.data() + topic.size());
    if (n == 0) return "topic is not valid UTF-8";
    i += n;
  }
  return {};
}

bool valid_level(std::string_view s) { return !s.empty() && s.find_first_of("/+#") == std::string_view::npos; }

}  // namespace hostlet::mqtt
