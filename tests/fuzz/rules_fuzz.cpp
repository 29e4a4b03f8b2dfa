// Fuzz target: rule templates and patterns (core/rules.cpp's check_template
// and expand_template, core/glob.cpp). The input is a template on its first
// line, then the event's attributes, one "name=value" per line (a line
// without '=' is a name with an empty value).
//
// Checked against a reference reading of the syntax rules.hpp documents
// ("${name}" substitutes up to the first '}', "$$" is a literal '$', any other
// '$' is literal; "${" without '}' and "${}" are errors):
//   - check_template accepts exactly the templates the reference reads, and
//     says why when it refuses;
//   - expand_template of an accepted template gives the reference's text
//     (one pass: a value holding "${x}" is not expanded again), or fails
//     naming the first attribute the template needs that is absent;
//   - glob_syntax_error and valid_glob agree, and every line (the template
//     and each value, as a pattern) that valid_glob accepts and is_glob says
//     is not a glob matches, by fnmatch(3), exactly the text equal to it:
//     the bus and the rules compare such patterns with == instead.
#include <fnmatch.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "glob.hpp"
#include "rules.hpp"

namespace {

using hostlet::fuzz::check;

constexpr size_t kMaxPatterns = 16;

// A template read by the reference: literal text and attribute names, in order.
struct Piece {
  bool name = false;
  std::string text;
};

std::optional<std::vector<Piece>> reference_read(std::string_view t) {
  std::vector<Piece> pieces;
  auto literal = [&](std::string_view s) {
    if (pieces.empty() || pieces.back().name) pieces.push_back({});
    pieces.back().text.append(s);
  };
  while (!t.empty()) {
    if (t.substr(0, 2) == "$$") {
      literal("$");
      t.remove_prefix(2);
    } else if (t.substr(0, 2) == "${") {
      size_t close = t.find('}');
      if (close == std::string_view::npos || close == 2) return std::nullopt;
      pieces.push_back({true, std::string(t.substr(2, close - 2))});
      t.remove_prefix(close + 1);
    } else {
      literal(t.substr(0, 1));
      t.remove_prefix(1);
    }
  }
  return pieces;
}

const std::string* lookup(const hostlet::Attrs& attrs, const std::string& name) {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

void check_template_functions(const std::string& tmpl, const hostlet::Attrs& attrs) {
  std::string error;
  const bool valid = hostlet::check_template(tmpl, error);
  const auto pieces = reference_read(tmpl);
  check(valid == pieces.has_value());
  if (!valid) {
    check(!error.empty());
    return;
  }
  std::string expected;
  const std::string* first_missing = nullptr;
  for (const Piece& p : *pieces) {
    if (!p.name) {
      expected += p.text;
    } else if (const std::string* v = lookup(attrs, p.text)) {
      expected += *v;
    } else if (!first_missing) {
      first_missing = &p.text;
    }
  }
  std::string out, missing;
  const bool expanded = hostlet::expand_template(tmpl, attrs, out, missing);
  check(expanded == (first_missing == nullptr));
  if (expanded) check(out == expected);
  else check(missing == *first_missing);
}

void check_pattern(const std::string& pattern, const std::vector<std::string>& texts) {
  const bool valid = hostlet::valid_glob(pattern);
  check(valid == hostlet::glob_syntax_error(pattern).empty());
  if (!valid || hostlet::is_glob(pattern) || pattern.find('\0') != std::string::npos) return;
  check(fnmatch(pattern.c_str(), pattern.c_str(), 0) == 0);
  for (const std::string& s : texts)
    if (s.find('\0') == std::string::npos) check((fnmatch(pattern.c_str(), s.c_str(), 0) == 0) == (s == pattern));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t first_nl = input.find('\n');
  const std::string tmpl(input.substr(0, first_nl));
  hostlet::Attrs attrs;
  std::vector<std::string> lines = {tmpl};
  for (size_t pos = first_nl; pos != std::string_view::npos && pos < input.size();) {
    size_t next = input.find('\n', pos + 1);
    std::string_view line = input.substr(pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1);
    size_t eq = line.find('=');
    attrs.emplace_back(std::string(line.substr(0, eq)), eq == std::string_view::npos ? "" : std::string(line.substr(eq + 1)));
    lines.push_back(attrs.back().second);
    pos = next;
  }
  check_template_functions(tmpl, attrs);
  if (lines.size() > kMaxPatterns) lines.resize(kMaxPatterns);  // each is matched against each
  for (const std::string& p : lines) check_pattern(p, lines);
  return 0;
}
