// Tests for core/json_check.cpp: json_valid must accept exactly what
// nlohmann::json::accept accepts (the parser the control socket and the
// rules use later on the same text), checked on fixed cases and on 200k
// random mutations of valid documents.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "json_check.hpp"

using hostlet::json_valid;

TEST_CASE("json_valid: fixed cases") {
  for (const char* ok : {"0", "-0", "1.5e-3", "-12E+4", "true", "false", "null", "\"\"", " [ ] ", "{}",
                         "[1,[2,[3,{\"a\":[{}]}]]]", "{\"k\":\"\\u00e9\\n\\\"\",\"l\":[true,null]}",
                         "\"\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\t\r\n\"x\"\n", "1e308", "1e-400", "[0.5e307, 12345678901234567890123]"}) {
    INFO(ok);
    CHECK(json_valid(ok));
    CHECK(nlohmann::json::accept(ok));
  }
  for (const char* bad : {"", " ", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "[1,]", "{\"a\":1,}",
                          "{\"a\" 1}", "{a:1}", "[1 2]", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
                          "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\x01\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"",
                          "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "1 2", "[]]", "{}}", "[", "{",
                          "1e309", "[-1.8e308]", "{\"big\":1e99999999999}"}) {
    INFO(bad);
    CHECK_FALSE(json_valid(bad));
    CHECK_FALSE(nlohmann::json::accept(bad));
  }
  // Deep nesting: no recursion, so no stack to overflow.
  std::string deep(200000, '[');
  deep += std::string(200000, ']');
  CHECK(json_valid(deep));
  CHECK_FALSE(json_valid(deep.substr(1)));
}

// The string scan skips plain bytes 16 at a time: a byte it must stop at
// (quote, backslash, control, UTF-8) is seen at every offset of a long
// string, block boundaries and the scalar tail included.
TEST_CASE("json_valid: special bytes at every offset of a long string") {
  const std::vector<std::string> inserts = {"\"", "\\", "\\n", "\\u00e9", "\\q", "\x01", "\x1f", "\x7f",
                                            "\xc3\xa9", "\xc3", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff"};
  for (size_t len : {15u, 16u, 17u, 31u, 32u, 33u, 40u}) {
    for (size_t at = 0; at <= len; at++) {
      for (const std::string& ins : inserts) {
        std::string body(len, 'a');
        body.insert(at, ins);
        const std::string doc = "[\"" + body + "\",1]";
        INFO("length " << len << ", insert " << at);
        REQUIRE(json_valid(doc) == nlohmann::json::accept(doc));
      }
    }
  }
}

TEST_CASE("json_valid agrees with nlohmann::json::accept on mutated documents") {
  const std::vector<std::string> seeds = {
      R"({"domains":[{"name":"vm-1","uuid":"6695eb01-f6a4-8304-79aa-97f2502e193f","id":3,"state":"running"}],"n":1})",
      R"([1,-2.5e3,0.125,true,false,null,"a\"b\\c\u00e9\ud83d\ude00",{"k":[{}]}])",
      "{\"utf8\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"e\":1E+2,\"z\":-0}",
      R"({"a":{"b":{"c":[[],[[]],{"d":""}]}}})",
  };
  const std::string alphabet = "{}[]:,\"\\/ubfnrt0123456789+-.eEaDdc \t\n\x01\x7f\x80\xbf\xc0\xc3\xe2\xed\xf0\xf4\xff";
  std::mt19937 rng(20261125);
  int accepted = 0;
  for (int i = 0; i < 200000; i++) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !s.empty(); e++) {
      size_t at = rng() % s.size();
      char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0: s[at] = c; break;
        case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        default: s.erase(at, 1); break;
      }
    }
    bool theirs = nlohmann::json::accept(s);
    accepted += theirs;
    if (json_valid(s) != theirs) {
      std::string shown;
      for (unsigned char ch : s) {
        char hex[8];
        snprintf(hex, sizeof hex, "\\x%02x", ch);
        shown += ch >= 0x20 && ch < 0x7f ? std::string(1, static_cast<char>(ch)) : std::string(hex);
      }
      INFO("input: " << shown << " (nlohmann: " << (theirs ? "valid" : "invalid") << ")");
      REQUIRE(json_valid(s) == theirs);
    }
  }
  CHECK(accepted > 1000);  // the mutations do reach valid documents too
}
