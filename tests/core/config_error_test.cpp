// Tests for core/config_error.cpp: how a config problem is printed.
#include "config_error.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace hostlet;

TEST_CASE("config_error: str formats FILE:LINE:COLUMN, or FILE alone without a mark") {
  CHECK(ConfigError{"a.yaml", {3, 5}, "boom"}.str() == "a.yaml:3:5: boom");
  CHECK(ConfigError{"a.yaml", {}, "boom"}.str() == "a.yaml: boom");
}

TEST_CASE("config_error: str makes the file name and the message printable") {
  CHECK(ConfigError{"a\rb.yaml", {1, 1}, "key 'x\ry'"}.str() == "a\\rb.yaml:1:1: key 'x\\ry'");
}

TEST_CASE("config_error: printable keeps ASCII and UTF-8 text as it is") {
  CHECK(printable("") == "");
  CHECK(printable("plain 'text' ~ with \\ backslash") == "plain 'text' ~ with \\ backslash");
  CHECK(printable("gr\xc3\xb6\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x90\xa7") == "gr\xc3\xb6\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x90\xa7");
}

TEST_CASE("config_error: printable escapes control characters") {
  CHECK(printable("a\rb\nc\td") == "a\\rb\\nc\\td");
  CHECK(printable(std::string("nul\0here", 8)) == "nul\\x00here");
  CHECK(printable("\x1b[2J\x07\x7f") == "\\x1b[2J\\x07\\x7f");
  CHECK(printable("\xc2\x9b" "2J") == "\\u009b2J");                  // C1 CSI
  CHECK(printable("\xc2\x85") == "\\u0085");                         // NEL
  CHECK(printable("a\xe2\x80\xa8" "b") == "a\\u2028b");              // line separator
  CHECK(printable("\xe2\x80\xae" "cba") == "\\u202ecba");            // right-to-left override
  CHECK(printable("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");  // isolates
  CHECK(printable("\xc2\xa0") == "\xc2\xa0");                        // no-break space is text
}

TEST_CASE("config_error: printable writes each byte that is not valid UTF-8 as \\xHH") {
  CHECK(printable("\xff") == "\\xff");
  CHECK(printable("a\x80z") == "a\\x80z");                       // a lone continuation byte
  CHECK(printable("\xc3") == "\\xc3");                           // cut short at the end
  CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");                  // overlong '/'
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");         // a surrogate
  CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80"); // above U+10FFFF
}
