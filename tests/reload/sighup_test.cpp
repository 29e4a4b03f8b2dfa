// Full reload (SIGHUP, or `reload` without a name): the config file is read
// again and the difference applied: instances added, removed, changed
// (section or .so file), unchanged ones untouched, rules replaced. A file
// that does not parse changes nothing.
#include <signal.h>

#include <algorithm>

#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace reload_test;
using namespace std::chrono_literals;
using hostlet::test::wait_until;

namespace {

std::vector<std::string> names(Agent& a) {
  std::vector<std::string> v;
  const json st = ctl_json(a, {"status"});
  for (const auto& i : st["data"]["instances"]) v.push_back(i["name"]);
  std::sort(v.begin(), v.end());
  return v;
}

bool has_action(Agent& a, const std::string& prefix) {
  const json st = ctl_json(a, {"status"});
  for (const auto& n : st["data"]["actions"])
    if (n.get<std::string>().rfind(prefix, 0) == 0) return true;
  return false;
}

// `notify go`: the actions the rules ran, as "action=version".
std::vector<std::string> go(Agent& a) {
  json r = ctl_json(a, {"notify", "go"});
  INFO(r.dump());
  CHECK(r.value("ok", false));
  std::vector<std::string> v;
  for (const auto& x : r.value("results", json::array()))
    v.push_back(x.value("action", std::string()) + "=" +
                x.value("attrs", json::object()).value("version", std::string(x.value("ok", false) ? "" : "failed")));
  return v;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; p += what.size()) n++;
  return n;
}

}  // namespace

TEST_CASE("reload: SIGHUP applies an added, a removed and a changed instance and new rules", "[reload][sighup]") {
  TempDir dir;
  const std::string v1 = fixture("worker_v1"), v2 = fixture("worker_v2");
  install(v1, dir / "e.so");
  Agent a(dir,
          "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug, threadpool: 4}\n"
          "plugins:\n"
          "  - {name: a, plugin: " + v1 + "}\n"
          "  - {name: b, plugin: " + v1 + "}\n"
          "  - {name: d, plugin: " + v1 + "}\n"
          "  - {name: e, plugin: \"@DIR@/e.so\"}\n"
          "rules:\n"
          "  - on: {type: go}\n"
          "    do: a.version\n");
  REQUIRE(start(a));
  REQUIRE(names(a) == std::vector<std::string>{"a", "b", "d", "e"});
  REQUIRE(go(a) == std::vector<std::string>{"a.version=1"});

  install(v2, dir / "e.so");  // e: same section, new file
  write_config(a, dir,
               "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug, threadpool: 8}\n"
               "plugins:\n"
               "  - {name: a, plugin: " + v1 + ", config: {default_ms: 7}}\n"  // changed section
               "  - {name: d, plugin: " + v1 + "}\n"                            // unchanged
               "  - {name: e, plugin: \"@DIR@/e.so\"}\n"                        // changed file
               "  - {name: c, plugin: " + v2 + "}\n"                            // added; b removed
               "rules:\n"
               "  - on: {type: go}\n"
               "    do: c.version\n");
  const size_t log_before = a.log().size();
  a.process().signal(SIGHUP);
  REQUIRE(wait_until([&] { return a.log().find("reload (SIGHUP):") != std::string::npos; }, 30s));
  INFO("agent log:\n" << a.log());
  json rs = reload_status(a);
  CHECK(rs.value("running", true) == false);
  CHECK(rs.value("done", 0) == 1);

  CHECK(names(a) == std::vector<std::string>{"a", "c", "d", "e"});
  CHECK_FALSE(has_action(a, "b."));
  CHECK(has_action(a, "c."));
  json gone = ctl_json(a, {"call", "b.version"});
  CHECK_FALSE(gone.value("ok", true));
  CHECK(gone.value("error", std::string()).find("no such action") != std::string::npos);

  CHECK(loads(a, "a") == 2);
  CHECK(ctl_json(a, {"call", "a.work"})["attrs"]["ms"] == "7");  // the new default_ms
  CHECK(version(a, "a") == "1");
  CHECK(loads(a, "d") == 1);  // untouched
  CHECK(loads(a, "e") == 2);
  CHECK(version(a, "e") == "2");
  CHECK(loads(a, "c") == 1);
  CHECK(version(a, "c") == "2");
  CHECK(go(a) == std::vector<std::string>{"c.version=2"});  // r2, not r1

  // threadpool cannot change at run time: the old value stays, with a warning.
  CHECK(ctl_json(a, {"status"})["data"]["threadpool"] == 4);
  CHECK(a.log().substr(log_before).find("threadpool") != std::string::npos);

  SECTION("then a file that does not parse changes nothing") {
    const std::string before = a.log();
    write_config(a, dir, "plugins: [ {name: a, plugin: \n  rules: ]]\n");
    a.process().signal(SIGHUP);
    REQUIRE(wait_until([&] { return count(a.log(), "reload (SIGHUP):") >= 2; }, 30s));
    const std::string tail = a.log().substr(before.size());
    INFO("log after the second SIGHUP:\n" << tail);
    CHECK(tail.find(a.config_path() + ":") != std::string::npos);  // FILE:LINE:COL of the error
    CHECK(a.process().running());
    CHECK(names(a) == std::vector<std::string>{"a", "c", "d", "e"});
    CHECK(loads(a, "a") == 2);
    CHECK(loads(a, "c") == 1);
    CHECK(loads(a, "d") == 1);
    CHECK(loads(a, "e") == 2);
    CHECK(go(a) == std::vector<std::string>{"c.version=2"});
  }
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: without a name, an unchanged file touches nothing; new rules alone replace the rules",
          "[reload][sighup]") {
  TempDir dir;
  const std::string v1 = fixture("worker_v1");
  const std::string head =
      "agent: {control_socket: \"@DIR@/control.sock\"}\n"
      "plugins:\n"
      "  - {name: a, plugin: " + v1 + "}\n"
      "  - {name: b, plugin: " + v1 + "}\n"
      "rules:\n";
  Agent a(dir, head + "  - on: {type: go}\n    do: a.version\n");
  REQUIRE(start(a));

  Reload same = reload(a);
  INFO("reload reply: " << same.reply.dump());
  CHECK(same.ok());
  CHECK(same.reply["data"].value("rules", -1) == 1);
  for (const auto& i : same.reply["data"].value("instances", json::array()))
    CHECK(i.value("action", std::string()) != "reloaded");
  CHECK(loads(a, "a") == 1);
  CHECK(loads(a, "b") == 1);

  write_config(a, dir, head + "  - on: {type: go}\n    do: b.version\n  - on: {type: go}\n    do: a.echo\n");
  Reload rules = reload(a);
  INFO("reload reply: " << rules.reply.dump());
  CHECK(rules.ok());
  CHECK(rules.reply["data"].value("rules", -1) == 2);
  CHECK(loads(a, "a") == 1);
  CHECK(loads(a, "b") == 1);
  CHECK(go(a) == std::vector<std::string>{"b.version=1", "a.echo="});
  CHECK(ctl_json(a, {"status"})["data"]["rules"] == 2);

  // A rule that does not compile (its template, line 8): the rules stay as they were.
  write_config(a, dir, head + "  - on: {type: go}\n    do: a.version\n    with: {a: \"${x\"}\n");
  Reload bad = reload(a);
  INFO("reload reply: " << bad.reply.dump());
  CHECK(bad.exit_code == 1);
  CHECK(bad.error().find(a.config_path() + ":8:") != std::string::npos);
  CHECK(go(a) == std::vector<std::string>{"b.version=1", "a.echo="});
  CHECK(stops_cleanly(a));
}
