// Tests for core/glob.cpp: one check of fnmatch pattern syntax.
#include "glob.hpp"

#include <catch2/catch.hpp>

using namespace hostlet;

TEST_CASE("glob: glob_syntax_error follows fnmatch bracket rules") {
  for (const char* ok : {"", "*", "vm?", "vm[0-9]", "vm[!0-9]*", "[^a]", "[]]", "[!]]", "[]a-]",
                         "[[:alpha:]]*", "[[:digit:][:upper:]]", "a]b", "\\[literal", "[a\\]]",
                         "[[.a.]]", "[[=e=]]"}) {
    CAPTURE(ok);
    CHECK(glob_syntax_error(ok).empty());
  }
  CHECK(glob_syntax_error("vm[12") == "unbalanced '[' at position 3");
  CHECK(glob_syntax_error("[") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("[]") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("[!]") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("a[b]c[d") == "unbalanced '[' at position 6");
  CHECK(glob_syntax_error("[[:alfa:]]") == "unknown character class '[:alfa:]'");
  CHECK(glob_syntax_error("[[:alpha]") == "unterminated '[:' at position 2");
  CHECK(glob_syntax_error("abc\\") == "pattern ends with a lone '\\'");
}
