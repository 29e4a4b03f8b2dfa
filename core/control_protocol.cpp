#include "control_protocol.hpp"

namespace hostlet::control {

using json = nlohmann::json;

namespace {

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// "a number", "an array", "null": how a wrong type is named in an error.
std::string a_type(const json& v) {
  if (v.is_null()) return "null";
  std::string name = v.type_name();
  return (name[0] == 'a' || name[0] == 'o' ? "an " : "a ") + name;
}

std::string nul_error(std::string_view what) { return std::string(what) + " contains a NUL character (\\u0000)"; }

// nlohmann's parse_error says where and what in its own words; the client
// gets the byte and the kind of mistake.
std::string invalid_json(const json::parse_error& e) {
  std::string at = " at byte " + std::to_string(e.byte);
  std::string_view what = e.what();
  if (what.find("; expected end of input") != std::string_view::npos)
    return "invalid JSON: text after the request object" + at;
  if (what.find("UTF-8") != std::string_view::npos) return "invalid JSON: a string is not valid UTF-8" + at;
  return "invalid JSON" + at;
}

}  // namespace

std::string check_line(std::string_view line, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < line.size(); i++) {
    char c = line[i];
    if (c == '\0') return "contains a NUL byte at byte " + std::to_string(i + 1);
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth) return "nests deeper than " + std::to_string(max_depth) + " levels";
        break;
      case ']':
      case '}':
        if (depth) depth--;
        break;
      default: break;
    }
  }
  return {};
}

bool Request::uint_arg(std::string_view key, uint64_t max, uint64_t& out, std::string& error) const {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > max) {
    error = "'" + std::string(key) + "' must be an integer from 0 to " + std::to_string(max) + ", not " +
            (it->is_number() ? it->dump() : a_type(*it));
    return false;
  }
  out = it->get<uint64_t>();
  return true;
}

bool Request::string_arg(std::string_view key, std::string& out, std::string& error) const {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_string()) {
    error = "'" + std::string(key) + "' must be a string, not " + a_type(*it);
    return false;
  }
  const std::string& s = it->get_ref<const std::string&>();
  if (has_nul(s)) {
    error = nul_error("'" + std::string(key) + "'");
    return false;
  }
  out = s;
  return true;
}

bool Request::attrs_arg(Attrs& out, std::string& error) const {
  auto it = body.find("attrs");
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_object()) {
    error = "'attrs' must be an object of strings, not " + a_type(*it);
    return false;
  }
  for (auto a = it->begin(); a != it->end(); ++a) {
    const std::string& key = a.key();
    if (key.empty()) {
      error = "attribute names must not be empty";
      return false;
    }
    if (has_nul(key)) {
      error = nul_error("an attribute name");
      return false;
    }
    if (!a.value().is_string()) {
      error = "attribute '" + key + "' must be a string, not " + a_type(a.value());
      return false;
    }
    const std::string& value = a.value().get_ref<const std::string&>();
    if (has_nul(value)) {
      error = nul_error("attribute '" + key + "'");
      return false;
    }
    out.emplace_back(key, value);
  }
  return true;
}

bool parse_request(std::string_view line, Request& out, std::string& error) {
  out = Request{};
  if (std::string why = check_line(line, kMaxDepth); !why.empty()) {
    error = "request " + why;
    return false;
  }
  try {
    out.body = json::parse(line);
  } catch (const json::parse_error& e) {
    error = invalid_json(e);
    return false;
  } catch (const json::out_of_range&) {  // a number beyond a double, such as 1e999
    error = "invalid JSON: a number is out of range";
    return false;
  } catch (const json::exception&) {
    error = "invalid JSON";
    return false;
  }
  if (!out.body.is_object()) {
    error = "a request must be a JSON object";
    return false;
  }
  if (auto id = out.body.find("id"); id != out.body.end() && !id->is_null()) {
    if (!id->is_string() && !id->is_number_integer()) {
      error = "'id' must be a string or an integer";
      return false;
    }
    if (id->is_string() && has_nul(id->get_ref<const std::string&>())) {
      error = nul_error("'id'");
      return false;
    }
    out.id = *id;
  }
  auto cmd = out.body.find("cmd");
  if (cmd == out.body.end() || !cmd->is_string()) {
    error = "missing string 'cmd'";
    return false;
  }
  out.cmd = cmd->get<std::string>();
  return true;
}

}  // namespace hostlet::control
