// Fuzz target: the control socket's request parser (core/control_protocol.cpp,
// parse_request and the argument getters). The input is one request line.
//
// parse_request uses nlohmann::json itself, so what is checked is the gate in
// front of it and what it hands on, against nlohmann's own view of the line:
//   - a line with a NUL byte is refused, for the NUL or for a nesting met
//     before it (nlohmann would stop at the NUL and run "{"cmd":"status"}\0garbage");
//   - check_line's depth, counted on raw bytes, is the DOM's depth for every
//     valid line (a SAX walk measures it without recursion); deeper than
//     kMaxDepth is refused before nlohmann parses it (nested ids 20 000 deep
//     overflowed the stack in nlohmann's recursive copy);
//   - otherwise the line is accepted exactly when it is a JSON object with a
//     string "cmd" and an id that is absent, null, an integer or a string
//     without NUL; then body, cmd and id are the DOM's, and the id is null or
//     a string or an integer;
//   - invalid JSON is always refused with a message saying so;
//   - attrs_arg and string_arg accept exactly objects of NUL-free strings
//     under non-empty NUL-free names (and absent or null), and then return
//     them unchanged; a refusal always says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control_protocol.hpp"
#include "fuzz_support.hpp"

namespace {

using hostlet::fuzz::check;
using nlohmann::json;
namespace control = hostlet::control;

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }
bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool nul_free_string(const json& v) { return v.is_string() && !has_nul(v.get_ref<const std::string&>()); }

void check_string_arg(const control::Request& req, const char* key) {
  std::string out = "unchanged", error;
  const bool ok = req.string_arg(key, out, error);
  auto it = req.body.find(key);
  if (it == req.body.end() || it->is_null()) {
    check(ok && out == "unchanged");
    return;
  }
  check(ok == nul_free_string(*it));
  if (ok) check(out == it->get_ref<const std::string&>());
  else check(!error.empty());
}

void check_attrs_arg(const control::Request& req) {
  control::Attrs attrs;
  std::string error;
  const bool ok = req.attrs_arg(attrs, error);
  auto it = req.body.find("attrs");
  if (it == req.body.end() || it->is_null()) {
    check(ok && attrs.empty());
    return;
  }
  bool valid = it->is_object();
  if (valid)
    for (auto a = it->begin(); a != it->end(); ++a)
      valid = valid && !a.key().empty() && !has_nul(a.key()) && nul_free_string(*a);
  check(ok == valid);
  if (!ok) {
    check(!error.empty());
    return;
  }
  check(attrs.size() == it->size());
  for (const auto& [k, v] : attrs) {
    auto value = it->find(k);
    check(value != it->end() && *value == v);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  control::Request req;
  std::string error;
  const bool ok = control::parse_request(line, req, error);
  check(ok || !error.empty());
  check(req.id.is_null() || req.id.is_string() || req.id.is_number_integer());

  if (line.find('\0') != std::string_view::npos) {
    // Refused, for the NUL or for a nesting met before it.
    check(!ok && (error.find("NUL") != std::string::npos || error.find("nests deeper") != std::string::npos));
    return 0;
  }
  const bool deep = !control::check_line(line, control::kMaxDepth).empty();
  hostlet::fuzz::SaxWalker walker;
  if (!json::sax_parse(line, &walker)) {
    check(!ok && (deep || starts_with(error, "invalid JSON")));
    return 0;
  }
  check(deep == (walker.max_depth() > control::kMaxDepth));
  if (deep) {
    check(!ok && error.find("nests deeper") != std::string::npos);
    return 0;
  }

  const json body = json::parse(line);
  bool valid = body.is_object();
  json id;
  if (valid) {
    auto cmd = body.find("cmd");
    valid = cmd != body.end() && cmd->is_string();
    if (auto i = body.find("id"); i != body.end() && !i->is_null()) {
      if (i->is_number_integer() || nul_free_string(*i)) id = *i;
      else valid = false;
    }
  }
  check(ok == valid);
  if (body.is_object()) check(req.id == id);  // also for a refused object: the reply echoes it
  if (!ok) return 0;
  check(req.body == body && req.cmd == body["cmd"].get<std::string>());
  check_attrs_arg(req);
  for (const char* key : {"action", "type", "source", "name", "ack"}) check_string_arg(req, key);
  return 0;
}
