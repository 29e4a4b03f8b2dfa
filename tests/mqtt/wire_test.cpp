// Tests for plugins/mqtt/wire.cpp (formats, matching, topics) and the
// reconnect backoff and rate limit headers.
#include "wire.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "backoff.hpp"
#include "rate.hpp"

using namespace hostlet::mqtt;
using json = nlohmann::json;

TEST_CASE("wire: broker addresses are HOST:PORT, [V6]:PORT or a socket path") {
  std::string err;
  auto a = parse_broker("127.0.0.1:1883", &err);
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 1883);
  auto b = parse_broker("[::1]:8883", &err);
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->port == 8883);
  auto c = parse_broker("/run/mosquitto/mqtt.sock", &err);
  REQUIRE(c);
  CHECK(c->unix_socket());
  auto d = parse_broker("broker.example:1883", &err);
  REQUIRE(d);
  CHECK(d->host == "broker.example");
  for (const char* bad : {"", "host", "host:", ":1883", "host:0", "host:65536", "host:12x", "::1:1883", "[::1]1883"}) {
    CAPTURE(bad);
    err.clear();
    CHECK_FALSE(parse_broker(bad, &err));
    CHECK_FALSE(err.empty());
  }
}

TEST_CASE("wire: publish entries match source and type as rules do") {
  std::string err;
  auto r = parse_publish_rule(R"({"source":"virt","type":"domain.*","qos":"0"})", &err);
  REQUIRE(r);
  CHECK(r->qos == 0);
  CHECK(r->matches("virt", "domain.lifecycle"));
  CHECK_FALSE(r->matches("virt2", "domain.lifecycle"));
  CHECK_FALSE(r->matches("virt", "node.info"));
  auto any = parse_publish_rule(R"({"type":"*"})", &err);
  REQUIRE(any);
  CHECK(any->qos == 1);  // the default
  CHECK(any->matches("notify", "x"));
  CHECK_FALSE(any->matches("hostlet", "instance.health"));  // the core's events only when named
  auto core = parse_publish_rule(R"({"source":"hostlet"})", &err);
  REQUIRE(core);
  CHECK(core->matches("hostlet", "instance.health"));
  CHECK_FALSE(parse_publish_rule(R"({"type":"[x"})", &err));
  CHECK(err.find("type:") == 0);
  CHECK_FALSE(parse_publish_rule(R"({"qos":"2"})", &err));
  CHECK(err == "qos: must be 0 or 1, got '2'");
  CHECK_FALSE(parse_publish_rule(R"({"sorce":"x"})", &err));
  CHECK(err.find("unknown key 'sorce'") == 0);
  auto retained = parse_publish_rule(R"({"retain":"true"})", &err);
  REQUIRE(retained);
  CHECK(retained->retain);
}

TEST_CASE("wire: an event is JSON with id, time, source, type and attrs") {
  const std::string text = event_json(42, 1700000000123456789ull, "notify", "vm.start", {{"name", "a\"b"}});
  json j = json::parse(text);
  CHECK(j["id"] == 42);
  CHECK(j["time"].get<double>() == Approx(1700000000.123456789));
  CHECK(j["source"] == "notify");
  CHECK(j["type"] == "vm.start");
  CHECK(j["attrs"]["name"] == "a\"b");
}

TEST_CASE("wire: a request carries attrs, an id and a reply_to") {
  std::string err, reply;
  auto r = parse_request(R"({"attrs":{"name":"vm1","count":3,"force":true},"id":"x-1","reply_to":"me/inbox"})", &err,
                         &reply);
  REQUIRE(r);
  REQUIRE(r->attrs.size() == 3);
  CHECK(r->attrs[0].key == "count");  // nlohmann orders keys
  CHECK(r->attrs[0].value == "3");
  CHECK(r->attrs[1].value == "true");
  CHECK(r->attrs[2].value == "vm1");
  CHECK(r->id_json == "\"x-1\"");
  CHECK(r->reply_to == "me/inbox");
  CHECK(reply == "me/inbox");
  auto empty = parse_request("", &err, &reply);
  REQUIRE(empty);
  CHECK(empty->attrs.empty());
}

TEST_CASE("wire: a malformed request says what is wrong and keeps its reply_to") {
  std::string err, reply;
  CHECK_FALSE(parse_request("{not json", &err, &reply));
  CHECK(err == "malformed request: not valid JSON");
  CHECK_FALSE(parse_request("[1]", &err, &reply));
  reply.clear();
  CHECK_FALSE(parse_request(R"({"reply_to":"r/1","attrs":{"a":[1]}})", &err, &reply));
  CHECK(err.find("attribute 'a'") != std::string::npos);
  CHECK(reply == "r/1");
  CHECK_FALSE(parse_request(R"({"attrs":{}, "extra":1})", &err, &reply));
  CHECK(err.find("unknown member 'extra'") != std::string::npos);
  // Nesting: 32 levels are read, deeper is refused before parsing (an id a
  // million deep would overflow the stack when the answer echoes it).
  auto nested = [](size_t n) { return R"({"id":)" + std::string(n - 1, '[') + std::string(n - 1, ']') + "}"; };
  err.clear();
  auto ok = parse_request(nested(32), &err, &reply);
  REQUIRE(ok);
  CHECK(ok->id_json == std::string(31, '[') + std::string(31, ']'));
  CHECK_FALSE(parse_request(nested(33), &err, &reply));
  CHECK(err == "malformed request: nests deeper than 32 levels");
  err.clear();
  CHECK_FALSE(parse_request(nested(1000000), &err, &reply));
  CHECK(err == "malformed request: nests deeper than 32 levels");
  // Brackets inside strings do not count.
  CHECK(parse_request(R"({"attrs":{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"[[["}})", &err, &reply));
}

TEST_CASE("wire: answers are the action's ok/attrs/data or error, with the request's id") {
  json ok = json::parse(answer_ok("7", "hostlet/h1", {{"state", "running"}}, "[1,2]"));
  CHECK(ok ==
        json{{"id", 7}, {"from", "hostlet/h1"}, {"ok", true}, {"attrs", {{"state", "running"}}}, {"data", {1, 2}}});
  json bare = json::parse(answer_ok("", "p", {}, ""));
  CHECK(bare == json{{"from", "p"}, {"ok", true}, {"attrs", json::object()}});
  json err = json::parse(answer_error("\"a\"", "p", "no such action"));
  CHECK(err == json{{"id", "a"}, {"from", "p"}, {"ok", false}, {"error", "no such action"}});
}

TEST_CASE("wire: topics") {
  CHECK(action_of_topic("hostlet/h1/call/virt.domain.start") == "virt.domain.start");
  CHECK(action_of_topic("hostlet/group/web/call/sys.read") == "sys.read");
  CHECK(topic_problem("a/b").empty());
  CHECK_FALSE(topic_problem("").empty());
  CHECK_FALSE(topic_problem("a/+").empty());
  CHECK_FALSE(topic_problem("a/#").empty());
  CHECK_FALSE(topic_problem(std::string("a\xff", 2)).empty());
  CHECK(valid_level("web"));
  CHECK_FALSE(valid_level("a/b"));
  CHECK_FALSE(valid_level(""));
}

TEST_CASE("backoff: doubles from min to max, each delay in the upper half of its step") {
  Backoff b(100, 1000, 1);
  const uint64_t steps[] = {100, 200, 400, 800, 1000, 1000};
  for (uint64_t step : steps) {
    const uint64_t d = b.next();
    CAPTURE(step, d);
    CHECK(d >= step / 2);
    CHECK(d <= step);
  }
  b.reset();
  CHECK(b.next() <= 100);
}

TEST_CASE("rate: a burst, then the rate, per origin") {
  RateLimit r(10, 3);
  const uint64_t t0 = 1'000'000'000;
  CHECK(r.take("a", t0));
  CHECK(r.take("a", t0));
  CHECK(r.take("a", t0));
  CHECK_FALSE(r.take("a", t0));
  CHECK(r.take("b", t0));                // another origin has its own bucket
  CHECK(r.take("a", t0 + 100'000'000));  // 0.1 s at 10/s: one more token
  CHECK_FALSE(r.take("a", t0 + 100'000'000));
}
