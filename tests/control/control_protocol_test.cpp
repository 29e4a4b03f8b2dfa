// Unit tests of core/control_protocol.cpp: the checks a request line passes
// before it is parsed, and what parse_request accepts and refuses.
#include "control_protocol.hpp"

#include <string>

#include <catch2/catch.hpp>

using namespace hostlet::control;
using namespace std::string_literals;
using json = nlohmann::json;

namespace {

std::string refusal(std::string_view line) {
  Request req;
  std::string error;
  if (parse_request(line, req, error)) return "accepted";
  return error;
}

}  // namespace

TEST_CASE("control protocol: check_line counts nesting outside strings only") {
  CHECK(check_line("[[[]]]", 3).empty());
  CHECK(check_line("[[[[]]]]", 3) == "nests deeper than 3 levels");
  CHECK(check_line(R"({"a":"[[[[[[{{{{"})", 1).empty());
  CHECK(check_line(R"({"a":"\"[[[["})", 1).empty());       // an escaped quote does not end the string
  CHECK(check_line(R"({"a":"\\","b":[[[]]]})", 2) == "nests deeper than 2 levels");  // an escaped backslash does
  CHECK(check_line("]]]][[[", 3).empty());  // not JSON, but not deep either: the parser refuses it
  CHECK(check_line("{}\0x"s, 8) == "contains a NUL byte at byte 3");
  CHECK(check_line("\"a\0\""s, 8) == "contains a NUL byte at byte 3");
}

TEST_CASE("control protocol: a line nested half a million deep is refused without recursion") {
  std::string deep = R"({"cmd":"status","id":)" + std::string(500000, '[') + std::string(500000, ']') + "}";
  CHECK(refusal(deep) == "request nests deeper than 16 levels");
  std::string unclosed(1 << 20, '{');
  CHECK(refusal(unclosed) == "request nests deeper than 16 levels");
}

TEST_CASE("control protocol: a request is exactly one JSON object with a string cmd") {
  CHECK(refusal(R"({"cmd":"status"})") == "accepted");
  CHECK(refusal(R"(  {"cmd":"status"}  )") == "accepted");
  CHECK(refusal(R"({"cmd":"status"}x)") == "invalid JSON: text after the request object at byte 17");
  CHECK(refusal("{\"cmd\":\"status\"}\0x"s) == "request contains a NUL byte at byte 17");
  CHECK(refusal("") == "invalid JSON at byte 1");
  CHECK(refusal("[]") == "a request must be a JSON object");
  CHECK(refusal(R"("status")") == "a request must be a JSON object");
  CHECK(refusal(R"({"id":1})") == "missing string 'cmd'");
  CHECK(refusal(R"({"cmd":["status"]})") == "missing string 'cmd'");
  CHECK(refusal(R"({"cmd":"x","n":1e400})") == "invalid JSON: a number is out of range");
  CHECK(refusal("{\"cmd\":\"\xc3\x28\"}") == "invalid JSON: a string is not valid UTF-8 at byte 10");
}

TEST_CASE("control protocol: the id is kept for the error reply once it is known to be valid") {
  Request req;
  std::string error;
  CHECK_FALSE(parse_request(R"({"id":"q1","cmd":7})", req, error));
  CHECK(req.id == "q1");
  CHECK_FALSE(parse_request(R"({"id":2.5,"cmd":"status"})", req, error));
  CHECK(req.id.is_null());
  CHECK(error == "'id' must be a string or an integer");
  REQUIRE(parse_request(R"({"id":-9223372036854775808,"cmd":"status"})", req, error));
  CHECK(req.id == INT64_MIN);
  CHECK(req.cmd == "status");
}

TEST_CASE("control protocol: string arguments and attrs are typed and free of NUL") {
  Request req;
  std::string error;
  REQUIRE(parse_request(R"({"cmd":"call","action":"a.b","n":5,"z":null,"attrs":{"k":"v","e":""}})", req, error));
  std::string s = "unchanged";
  CHECK(req.string_arg("missing", s, error));
  CHECK(req.string_arg("z", s, error));
  CHECK(s == "unchanged");
  CHECK(req.string_arg("action", s, error));
  CHECK(s == "a.b");
  CHECK_FALSE(req.string_arg("n", s, error));
  CHECK(error == "'n' must be a string, not a number");
  Attrs attrs;
  REQUIRE(req.attrs_arg(attrs, error));
  CHECK(attrs == Attrs{{"e", ""}, {"k", "v"}});

  REQUIRE(parse_request(R"({"cmd":"call","attrs":{"k":"a\u0000b"}})", req, error));
  attrs.clear();
  CHECK_FALSE(req.attrs_arg(attrs, error));
  CHECK(error == "attribute 'k' contains a NUL character (\\u0000)");
  REQUIRE(parse_request(R"({"cmd":"call","attrs":{"k":{"x":"y"}}})", req, error));
  CHECK_FALSE(req.attrs_arg(attrs, error));
  CHECK(error == "attribute 'k' must be a string, not an object");
  REQUIRE(parse_request(R"({"cmd":"call","attrs":"k=v"})", req, error));
  CHECK_FALSE(req.attrs_arg(attrs, error));
  CHECK(error == "'attrs' must be an object of strings, not a string");
}
