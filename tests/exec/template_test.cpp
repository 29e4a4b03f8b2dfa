// Tests for plugins/exec/template.cpp: ${attr} templates of argv and env items.
#include "template.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>

using hostlet::exec::Template;

namespace {
// Expands `text` with `attrs`; "<missing NAME>" when an attribute is absent.
std::string expand(const std::string& text, const std::map<std::string, std::string>& attrs) {
  Template t;
  const std::string problem = Template::parse(text, t);
  REQUIRE(problem.empty());
  std::string out, missing;
  auto lookup = [&](const std::string& k) -> const char* {
    auto it = attrs.find(k);
    return it == attrs.end() ? nullptr : it->second.c_str();
  };
  if (!t.expand(lookup, &out, &missing)) return "<missing " + missing + ">";
  return out;
}
std::string problem(const std::string& text) {
  Template t;
  return Template::parse(text, t);
}
}  // namespace

TEST_CASE("exec template: attributes are substituted as text, never re-read") {
  CHECK(expand("--volume=${v}", {{"v", "vm1"}}) == "--volume=vm1");
  CHECK(expand("${a}${b}-${a}", {{"a", "x"}, {"b", "y"}}) == "xy-x");
  CHECK(expand("${v}", {{"v", "${w}"}, {"w", "no"}}) == "${w}");  // a value is not a template
  CHECK(expand("${v}", {{"v", "; rm -rf / $(id) `id`\n"}}) == "; rm -rf / $(id) `id`\n");
  CHECK(expand("${v}", {{"v", ""}}) == "");
  CHECK(expand("plain", {}) == "plain");
  CHECK(expand("", {}) == "");
}

TEST_CASE("exec template: '$' is literal except in ${name}; $${ is a literal ${") {
  CHECK(expand("echo $$ $1 $(id) $", {}) == "echo $$ $1 $(id) $");
  CHECK(expand("echo $${HOME} ${u}", {{"u", "me"}}) == "echo ${HOME} me");
  CHECK(expand("$${a}", {{"a", "no"}}) == "${a}");
}

TEST_CASE("exec template: an absent attribute is named") {
  CHECK(expand("a ${present} ${absent}", {{"present", "p"}}) == "<missing absent>");
}

TEST_CASE("exec template: malformed templates are refused with the offset") {
  CHECK(problem("x ${open") == "unterminated '${' at offset 2");
  CHECK(problem("${}") == "empty attribute name '${}' at offset 0");
  CHECK(problem("a${b c}") == "attribute name 'b c' at offset 1 may hold only letters, digits, '_', '.' and '-'");
  CHECK(problem("${name.with-dash_1}").empty());
  Template t;
  REQUIRE(Template::parse("${a}/${b}", t).empty());
  CHECK(t.attrs() == std::vector<std::string>{"a", "b"});
  CHECK(t.has_attrs());
  REQUIRE(Template::parse("/bin/true", t).empty());
  CHECK_FALSE(t.has_attrs());
}
