// Helpers shared by the config units' tests: YAML text in raw strings, and
// parse results as the FILE:LINE:COLUMN lines `hostlet --check` prints.
#pragma once

#include "config.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace hostlet::test {

// YAML text written as a raw string starting on the line after R"( so that
// line numbers in the test read as they do in the source.
inline std::string yaml(const char* text) {
  std::string s = text;
  if (!s.empty() && s[0] == '\n') s.erase(0, 1);
  return s;
}

inline std::vector<std::string> lines(const ConfigErrors& errs) {
  std::vector<std::string> v;
  for (const ConfigError& e : errs) v.push_back(e.str());
  return v;
}

struct Parsed {
  Config cfg;
  ConfigErrors errs;
  bool ok = false;
  std::vector<std::string> lines() const { return test::lines(errs); }
};

inline Parsed parse(const std::string& text) {
  Parsed p;
  p.ok = parse_config(text, "test.yaml", p.cfg, p.errs);
  return p;
}

// Parses text that must produce exactly one error, and returns it as FILE:LINE:COLUMN: message.
inline std::string only_error(const std::string& text) {
  Parsed p = parse(text);
  CHECK_FALSE(p.ok);
  CAPTURE(p.lines());
  REQUIRE(p.errs.size() == 1);
  return p.errs[0].str();
}

}  // namespace hostlet::test
