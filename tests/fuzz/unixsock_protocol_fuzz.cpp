// Fuzz target: the unixsock line parser (plugins/unixsock/protocol.cpp,
// parse_notification) and its replies, differential against nlohmann::json.
// The input is one line (without its '\n').
//
// Each line is parsed three times: with the default AttrLimits, with tight
// ones (so that every limit is reached by short inputs) and with loose ones
// (so that thousands of attributes reach the dedupe), each time both into a
// fresh Notification and into one reused after another line, which must
// agree. Every result is compared with what a reader of the line through
// nlohmann::json concludes:
//
//   - syntax: the line is "invalid JSON" exactly when nlohmann::json::accept
//     says so;
//   - meaning: the line is accepted exactly when nlohmann's DOM of it is a
//     valid notification (reference_of() below, written from protocol.hpp's
//     promises), and then it carries the DOM's type, attributes (no key
//     twice, in the order of their first appearance), id and ack;
//   - the id: id_json is always one JSON value; whenever the DOM's id is
//     usable, even on a refused line, it reads as that id, else as null;
//   - replies: the error and accepted replies built from the result are one
//     valid JSON line with that id.
//
// Where the two legitimately disagree (documented, and checked as such):
//   1. A raw NUL byte: nlohmann reads it as the end of the input and accepts
//      "{...}\0junk"; the parser, like RFC 8259, refuses every such line.
//      nlohmann's verdict must then be the parser's on the text before the
//      NUL.
//   2. A top-level value that is not an object: the parser stops at the
//      first token (a SAX parser's way), so "[1,]" and "1 2" are "not a JSON
//      object" for it and invalid JSON for nlohmann. Either way it refuses,
//      and an answer of "invalid JSON" then means nlohmann refuses too.
//   3. A repeated key: a DOM keeps the last of `"type"`, `"attrs"`, `"id"`,
//      `"ack"` and of each attribute name, while the parser checks every
//      occurrence (and counts each repeated attribute against max_attrs), so
//      a bad earlier occurrence refuses a line that nlohmann's DOM finds
//      valid. Only the other direction (a DOM that is invalid, the parser
//      accepting) stays forbidden, and what is accepted is still the DOM's.
//   4. Size limits (max_attrs, max_key, max_value, the 256-byte id) exist
//      only in the parser: reference_of() applies them to the DOM.
// Nesting depth is no class: both walk nested values without recursion.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "protocol.hpp"

namespace {

using nlohmann::json;
namespace us = hostlet::unixsock;

using hostlet::fuzz::check;

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// [A-Za-z0-9_.:-]{1,256}, as plugin.h defines an event type.
bool type_ok(const std::string& t) {
  if (t.empty() || t.size() > 256) return false;
  for (unsigned char c : t)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
          c == ':' || c == '-'))
      return false;
  return true;
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// What nlohmann's DOM of a line says a notification is.
struct Reference {
  bool ok = true;
  std::string type;
  json attrs = json::object();
  json id;  // null when absent or unusable
  us::Ack ack = us::Ack::accepted;
};

Reference reference_of(const json& j, const us::AttrLimits& limits) {
  Reference r;
  auto type = j.find("type");
  if (type == j.end() || !type->is_string() || !type_ok(type->get_ref<const std::string&>())) r.ok = false;
  else r.type = type->get<std::string>();

  if (auto attrs = j.find("attrs"); attrs != j.end()) {
    if (!attrs->is_object() || attrs->size() > limits.max_attrs) r.ok = false;
    else r.attrs = *attrs;
    for (auto a = r.attrs.begin(); a != r.attrs.end(); ++a) {
      const std::string& k = a.key();
      if (k.empty() || has_nul(k) || k.size() > limits.max_key || !a->is_string() ||
          has_nul(a->get_ref<const std::string&>()) || a->get_ref<const std::string&>().size() > limits.max_value)
        r.ok = false;
    }
  }

  if (auto id = j.find("id"); id != j.end()) {
    bool usable = id->is_null() || id->is_number_integer() ||
                  (id->is_string() && id->get_ref<const std::string&>().size() <= us::kMaxIdBytes);
    if (usable) r.id = *id;
    else r.ok = false;
  }

  if (auto ack = j.find("ack"); ack != j.end()) {
    if (*ack == "accepted") r.ack = us::Ack::accepted;
    else if (*ack == "done") r.ack = us::Ack::done;
    else if (*ack == "none") r.ack = us::Ack::none;
    else r.ok = false;
  }
  return r;
}

// From nlohmann's SAX events: whether a key repeats (class 3) and the order
// in which the last "attrs" object names its attributes.
class KeyRecorder : public hostlet::fuzz::SaxWalker {
 public:
  bool repeated = false;
  std::vector<std::string> attr_order;  // first appearances, in order

 protected:
  void on_open(bool object) override {
    if (object && depth() == 2 && value_of_attrs_) {
      in_attrs_ = true;
      attr_order.clear();
    }
  }
  void on_close(bool) override {
    if (depth() == 2) in_attrs_ = false;
  }
  void on_key(const std::string& k) override {
    if (depth() == 1) {
      value_of_attrs_ = k == "attrs";
      if (k == "type" || k == "attrs" || k == "id" || k == "ack") note(top_keys_, k);
    } else if (depth() == 2 && in_attrs_) {
      note(attr_order, k);
    }
  }

 private:
  // Adds k to seen, or sets `repeated` when it was there already.
  void note(std::vector<std::string>& seen, const std::string& k) {
    for (const auto& s : seen)
      if (s == k) {
        repeated = true;
        return;
      }
    seen.push_back(k);
  }

  bool value_of_attrs_ = false, in_attrs_ = false;
  std::vector<std::string> top_keys_;
};

enum class Verdict { ok, invalid_json, not_object, refused };

Verdict verdict_of(bool ok, const std::string& error) {
  if (ok) return Verdict::ok;
  if (starts_with(error, "invalid JSON")) return Verdict::invalid_json;
  if (error == "not a JSON object") return Verdict::not_object;
  return Verdict::refused;
}

bool same_result(const us::Notification& a, const us::Notification& b) {
  if (a.type != b.type || a.n_attrs != b.n_attrs || a.id_json != b.id_json || a.ack != b.ack) return false;
  for (size_t i = 0; i < a.n_attrs; i++)
    if (a.attrs[i] != b.attrs[i]) return false;
  return true;
}

// The replies built from a result are one valid JSON line echoing the id.
void check_replies(const us::Notification& n, const std::string& error) {
  const json id = json::parse(n.id_json);
  std::string reply;
  us::append_error_reply(reply, n.id_json, error);
  us::append_accepted_reply(reply, n.id_json, UINT64_MAX);
  size_t first = reply.find('\n');
  check(first != std::string::npos && reply.find('\n', first + 1) == reply.size() - 1);
  for (std::string_view line : {std::string_view(reply).substr(0, first),
                                std::string_view(reply).substr(first + 1, reply.size() - first - 2)}) {
    check(json::accept(line));
    check(json::parse(line)["id"] == id);
  }
}

// Parses `line` with `limits`; returns the verdict after checking that a
// reused Notification gives the same result as a fresh one.
Verdict parse_twice(std::string_view line, const us::AttrLimits& limits, us::Notification& fresh, std::string& error) {
  static us::Notification reused;
  static const std::string warm_up =
      R"({"type":"warm.up","id":"w","ack":"none","attrs":{"a":"1","b":"22","c":"333","d":"4444","e":"55555"}})";
  std::string ignored, error2;
  us::parse_notification(warm_up, reused, ignored, limits);
  bool ok = us::parse_notification(line, fresh, error, limits);
  bool ok2 = us::parse_notification(line, reused, error2, limits);
  check(ok == ok2 && error == error2 && same_result(fresh, reused));
  check(ok || !error.empty());
  check(json::accept(fresh.id_json));
  return verdict_of(ok, error);
}

// Everything nlohmann's view promises about `line` (no raw NUL in it).
void check_against_nlohmann(std::string_view line, const us::AttrLimits& limits) {
  us::Notification n;
  std::string error;
  const Verdict v = parse_twice(line, limits, n, error);
  check_replies(n, error);

  if (!json::accept(line)) {
    check(v == Verdict::invalid_json || v == Verdict::not_object);  // class 2 only for non-objects
    if (v == Verdict::not_object) {
      size_t first = line.find_first_not_of(" \t\r\n", starts_with(line, "\xEF\xBB\xBF") ? 3 : 0);
      check(first != std::string_view::npos && line[first] != '{');
    }
    return;
  }
  const json j = json::parse(line);
  if (!j.is_object()) {
    check(v == Verdict::not_object);
    return;
  }
  check(v == Verdict::ok || v == Verdict::refused);
  KeyRecorder keys;
  check(json::sax_parse(line, &keys));
  const Reference ref = reference_of(j, limits);

  if (v == Verdict::ok) {
    check(ref.ok);
    check(n.type == ref.type && n.ack == ref.ack);
    check(json::parse(n.id_json) == ref.id);
    check(n.n_attrs == ref.attrs.size() && n.n_attrs == keys.attr_order.size());
    for (size_t i = 0; i < n.n_attrs; i++) {
      check(n.attrs[i].first == keys.attr_order[i]);
      auto value = ref.attrs.find(n.attrs[i].first);
      check(value != ref.attrs.end() && *value == n.attrs[i].second);
    }
    return;
  }
  check(!ref.ok || keys.repeated);  // class 3
  if (!keys.repeated) check(json::parse(n.id_json) == ref.id);
}

const us::AttrLimits kLimits[] = {
    us::AttrLimits{},
    us::AttrLimits{3, 4, 8},                 // tight: each limit within reach of a short line
    us::AttrLimits{1 << 20, 1 << 20, 1 << 20},  // loose: thousands of attributes reach the dedupe
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  for (const us::AttrLimits& limits : kLimits) {
    if (size_t nul = line.find('\0'); nul != std::string_view::npos) {  // class 1
      us::Notification n;
      std::string error;
      check(parse_twice(line, limits, n, error) != Verdict::ok);
      const std::string_view before = line.substr(0, nul);
      check(json::accept(line) == json::accept(before));
      check_against_nlohmann(before, limits);
      continue;
    }
    check_against_nlohmann(line, limits);
  }
  return 0;
}
