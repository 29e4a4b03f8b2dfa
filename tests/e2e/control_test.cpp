// End-to-end tests of the control socket against hostile input, through the
// real agent binary over its real socket: what each bad line is answered,
// and that the agent stays up and answers the next request.
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;

namespace {

// One request line sent, its one reply line parsed.
json ask(LineClient& c, const std::string& line) {
  REQUIRE(c.send_line(line));
  auto reply = c.recv_line();
  REQUIRE(reply);
  json j = json::parse(*reply, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

// The error a request is answered with (the test fails on an ok reply).
std::string error_of(LineClient& c, const std::string& line) {
  json r = ask(c, line);
  REQUIRE(r["ok"] == false);
  return r["error"].get<std::string>();
}

void still_serving(Agent& a, LineClient& c) {
  CHECK(a.process().running());
  CHECK(ask(c, R"({"id":"after","cmd":"status"})")["ok"] == true);
}

}  // namespace

TEST_CASE("control: a request nested 20000 deep is refused unparsed and the agent answers the next one") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  std::string deep = R"({"cmd":"status","id":)" + std::string(20000, '[') + std::string(20000, ']') + "}";
  json r = ask(c, deep);
  CHECK(r["ok"] == false);
  CHECK(r["id"].is_null());
  CHECK(r["error"] == "request nests deeper than 16 levels");
  still_serving(a, c);
  // 16 levels is the limit; brackets inside strings do not count
  std::string at_limit = R"({"cmd":"status","x":)" + std::string(15, '[') + std::string(15, ']') + "}";
  CHECK(ask(c, at_limit)["ok"] == true);
  std::string over = R"({"cmd":"status","x":)" + std::string(16, '[') + std::string(16, ']') + "}";
  CHECK(error_of(c, over) == "request nests deeper than 16 levels");
  CHECK(ask(c, R"({"cmd":"status","x":"[[[[[[[[[[[[[[[[[[[[\"[[[["})")["ok"] == true);
}

TEST_CASE("control: an id is a string or an integer and is echoed; any other id is refused") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  CHECK(ask(c, R"({"id":7,"cmd":"status"})")["id"] == 7);
  CHECK(ask(c, R"({"id":-7,"cmd":"status"})")["id"] == -7);
  CHECK(ask(c, R"({"id":18446744073709551615,"cmd":"status"})")["id"] == 18446744073709551615ull);
  CHECK(ask(c, R"({"id":"req-1","cmd":"status"})")["id"] == "req-1");
  json none = ask(c, R"({"id":null,"cmd":"status"})");
  CHECK(none["ok"] == true);
  CHECK(none["id"].is_null());
  for (const char* id : {"1.5", "true", "[1]", R"({"a":1})", "1e3"}) {
    INFO("id " << id);
    json r = ask(c, std::string(R"({"cmd":"status","id":)") + id + "}");
    CHECK(r["ok"] == false);
    CHECK(r["id"].is_null());
    CHECK(r["error"] == "'id' must be a string or an integer");
  }
  CHECK(error_of(c, R"({"cmd":"status","id":"a\u0000b"})") == "'id' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"status","id":1e999})") == "invalid JSON: a number is out of range");
  still_serving(a, c);
}

TEST_CASE("control: a string holding \\u0000 is refused, not cut at the NUL") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  // echo answers its attributes: before the check it answered name=d/value
  json cut = ask(c, R"({"id":1,"cmd":"call","action":"w.echo","attrs":{"name":"d/value\u0000/../../x"}})");
  CHECK(cut["ok"] == false);
  CHECK(cut["id"] == 1);
  CHECK(cut["error"] == "attribute 'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"na\u0000me":"x"}})") ==
        "an attribute name contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"":"x"}})") == "attribute names must not be empty");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo\u0000.x"})") == "'action' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"notify","type":"t","source":"c\u0000tl"})") ==
        "'source' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"notify","type":"t\u0000"})") == "'type' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"events","type":"*\u0000"})") == "'type' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"describe","name":"w\u0000"})") == "'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"reload","name":"w\u0000"})") == "'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":7})") == "'action' must be a string, not a number");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"a":null}})") ==
        "attribute 'a' must be a string, not null");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":["a"]})") ==
        "'attrs' must be an object of strings, not an array");
  // the same attribute without the NUL is answered
  json ok = ask(c, R"({"cmd":"call","action":"w.echo","attrs":{"name":"d/value/../../x"}})");
  CHECK(ok["attrs"]["name"] == "d/value/../../x");
}

TEST_CASE("control: a raw NUL byte or text after the request makes the line an error, nothing is run") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  using namespace std::string_literals;
  CHECK(error_of(c, "{\"cmd\":\"status\"}\0garbage"s) == "request contains a NUL byte at byte 17");
  CHECK(error_of(c, "{\"cmd\":\"sta\0tus\"}"s) == "request contains a NUL byte at byte 12");
  CHECK(error_of(c, R"({"cmd":"status"} garbage)") == "invalid JSON: text after the request object at byte 18");
  CHECK(error_of(c, R"({"cmd":"status"}{"cmd":"status"})") ==
        "invalid JSON: text after the request object at byte 17");
  // a notify with trailing text publishes nothing
  CHECK(error_of(c, R"({"cmd":"notify","type":"t.x","ack":"accepted"}])") ==
        "invalid JSON: text after the request object at byte 47");
  CHECK(error_of(c, "{not json") == "invalid JSON at byte 3");
  CHECK(error_of(c, "{\"cmd\":\"status\",\"x\":\"\xff\"}") == "invalid JSON: a string is not valid UTF-8 at byte 22");
  json stats = ask(c, R"({"cmd":"stats"})");
  CHECK(stats["data"]["bus"]["published"] == 0);
  still_serving(a, c);
}
