// End-to-end: ABI 1.1 in the real agent -- metrics scrapes (hostlet-ctl
// metrics) with plugins' collect and refresh, health, set_error messages,
// publish_id -- and a plugin built against the frozen 1.0 header loading,
// working and reloading beside them.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string config(const std::string& m_config = "{}", const std::string& extra = "") {
  return "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
         "plugins:\n"
         "  - {name: m, plugin: " + fixture("metrics11") + ", config: " + m_config + "}\n"
         "  - {name: old, plugin: " + fixture("abi10") + ", config: {greeting: hi, tick: 20ms}}\n" +
         extra;
}

bool start(Agent& a) {
  return a.start() && wait_until([&] { return a.log().find("] ready:") != std::string::npos; });
}

std::string metrics(Agent& a, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args{"metrics"};
  args.insert(args.end(), extra.begin(), extra.end());
  Run r = a.ctl(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

json instance(Agent& a, const std::string& name) {
  json st = ctl_json(a, {"status"});
  for (const auto& i : st["data"]["instances"])
    if (i["name"] == name) return i;
  FAIL("no instance " << name);
  return {};
}

}  // namespace

TEST_CASE("a scrape has the agent's metrics and every instance's collect, in both formats") {
  TempDir dir;
  Agent a(dir, config("{value: 2.25}"));
  REQUIRE(start(a));
  std::string text = metrics(a);
  INFO(text);
  CHECK(text.find("hostlet_build_info{version=\"") != std::string::npos);
  CHECK(text.find(",abi=\"1.1\"} 1\n") != std::string::npos);
  CHECK(has_line(text, "# TYPE hostlet_lane_submitted_total counter"));
  CHECK(text.find("hostlet_lane_submitted_total{instance=\"m\"}") != std::string::npos);
  CHECK(text.find("hostlet_lane_submitted_total{instance=\"old\"}") != std::string::npos);
  CHECK(has_line(text, "hostlet_instance_health{instance=\"m\",health=\"ok\"} 1"));
  CHECK(has_line(text, "fixture_value{kind=\"config\"} 2.25"));
  CHECK(has_line(text, "# TYPE hostlet_loop_lag_seconds histogram"));
  CHECK(text.find("hostlet_loop_lag_seconds_bucket{le=\"+Inf\"}") != std::string::npos);
  CHECK(text.find("process_open_fds ") != std::string::npos);
  CHECK(text.find("# EOF") == std::string::npos);

  std::string om = metrics(a, {"--openmetrics"});
  CHECK(om.size() > 6);
  CHECK(om.substr(om.size() - 6) == "# EOF\n");
  CHECK(has_line(om, "# TYPE hostlet_lane_submitted counter"));
  CHECK(has_line(om, "# UNIT hostlet_loop_lag_seconds seconds"));
  CHECK(has_line(om, "fixture_refreshes_total 0"));
  a.stop();
}

TEST_CASE("a refresh is waited for, shared by overlapping scrapes, and bounded by the timeout") {
  TempDir dir;
  SECTION("fast refresh: each scrape sees it done") {
    Agent a(dir, config("{refresh: fast}"));
    REQUIRE(start(a));
    CHECK(has_line(metrics(a), "fixture_refreshes_total 1"));
    CHECK(has_line(metrics(a), "fixture_refreshes_total 2"));
    a.stop();
  }
  SECTION("a hanging refresh: the scrape answers at its timeout with the data there is") {
    Agent a(dir, config("{refresh: hang}"));
    REQUIRE(start(a));
    // Two scrapes overlap on one refresh: both answer at the control socket's
    // scrape timeout (5 s) with the data there is; the refresh was asked once.
    Run first, second;
    std::thread t([&] { first = a.ctl({"--json", "metrics"}); });
    json raw = json::parse(a.ctl({"--json", "metrics"}).out, nullptr, false);
    t.join();
    REQUIRE_FALSE(raw.is_discarded());
    json j1 = json::parse(first.out, nullptr, false);
    REQUIRE_FALSE(j1.is_discarded());
    for (const json* j : {&raw, &j1}) {
      std::string text = (*j)["data"]["text"];
      CHECK(has_line(text, "fixture_refreshing 1"));
      CHECK(has_line(text, "fixture_refreshes_total 0"));
    }
    // Released: the next scrape starts a new refresh, which hangs again.
    REQUIRE(a.ctl({"call", "m.release"}).exit_code == 0);
    std::string after = metrics(a);
    CHECK(has_line(after, "fixture_refreshes_total 1"));
    CHECK(has_line(after, "fixture_refreshing 1"));
    a.stop();
  }
}

TEST_CASE("a plugin's refused metrics are logged once and the rest of the scrape stands") {
  TempDir dir;
  Agent a(dir, config("{bad_metric: true}"));
  REQUIRE(start(a));
  std::string text = metrics(a);
  metrics(a);
  CHECK(text.find("fixture bad") == std::string::npos);
  CHECK(has_line(text, "fixture_refreshing 0"));
  std::string log = a.log();
  const std::string said = "[m] metrics: 2 refused in one scrape, the first: metric family 'fixture bad': not a valid";
  auto first = log.find(said);
  REQUIRE(first != std::string::npos);
  CHECK(log.find("refused in one scrape", first + said.size()) == std::string::npos);
  a.stop();
}

TEST_CASE("health: status, the metric and an instance.health event; agent_health's view") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(start(a));
  CHECK(instance(a, "m")["health"] == "ok");
  Process events(std::vector<std::string>{env_path("HOSTLET_CTL"), "-s", a.control_socket(), "events", "--type",
                                          "instance.health"});
  REQUIRE(wait_until([&] { return ctl_json(a, {"stats"})["data"]["bus"]["subscriptions"].get<int>() > 0; }));
  REQUIRE(a.ctl({"call", "m.health", "health=degraded", "reason=peer unreachable"}).exit_code == 0);
  json m = instance(a, "m");
  CHECK(m["health"] == "degraded");
  CHECK(m["health_reason"] == "peer unreachable");
  std::string text = metrics(a);
  CHECK(has_line(text, "hostlet_instance_health{instance=\"m\",health=\"degraded\"} 1"));
  CHECK(has_line(text, "hostlet_instance_health{instance=\"m\",health=\"ok\"} 0"));
  REQUIRE(wait_until([&] { return events.out().find("instance.health") != std::string::npos; }));
  std::string line = events.out();
  CHECK(line.find(" hostlet instance.health ") != std::string::npos);
  CHECK(line.find("instance=m") != std::string::npos);
  CHECK(line.find("health=degraded") != std::string::npos);
  CHECK(line.find("previous=ok") != std::string::npos);
  CHECK(line.find("reason=\"peer unreachable\"") != std::string::npos);
  Run table = a.ctl({"status"});
  CHECK(table.out.find("m: degraded: peer unreachable\n") != std::string::npos);
  // Only the reason changes: no second event.
  REQUIRE(a.ctl({"call", "m.health", "health=degraded", "reason=still down"}).exit_code == 0);
  CHECK(instance(a, "m")["health_reason"] == "still down");
  REQUIRE(a.ctl({"call", "m.health", "health=ok"}).exit_code == 0);
  REQUIRE(wait_until([&] { return events.out().find("previous=degraded") != std::string::npos; }));
  CHECK(events.out().find("reason=\"still down\"") == std::string::npos);
  events.stop(15);
  a.stop();
}

TEST_CASE("set_error: init's message reaches --check and the log, an action's the caller") {
  TempDir dir;
  SECTION("init") {
    std::string yaml = config("{fail_init: \"device /dev/x is not a tty\"}");
    yaml.replace(yaml.find("@DIR@"), 5, dir.path());
    std::string path = dir.write("bad.yaml", yaml);
    Run r = run({env_path("HOSTLET_BIN"), "-c", path, "--check"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("instance 'm': plugin 'metrics11' rejected its config: device /dev/x is not a tty") !=
          std::string::npos);
  }
  SECTION("action") {
    Agent a(dir, config());
    REQUIRE(start(a));
    Run r = a.ctl({"call", "m.refuse", "why=not today"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("refused: not today") != std::string::npos);
    CHECK(r.err.find("action refused") == std::string::npos);
    a.stop();
  }
}

TEST_CASE("publish_id gives the event's id") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(start(a));
  json first = ctl_json(a, {"call", "m.publish"});
  json second = ctl_json(a, {"call", "m.publish"});
  uint64_t id1 = std::stoull(first["attrs"]["id"].get<std::string>());
  uint64_t id2 = std::stoull(second["attrs"]["id"].get<std::string>());
  CHECK(id1 > 0);
  CHECK(id2 > id1);
  a.stop();
}

TEST_CASE("a plugin built against the frozen 1.0 header loads, works and reloads under the 1.1 host") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(start(a));
  json old = instance(a, "old");
  CHECK(old["state"] == "running");
  CHECK(old["health"] == "ok");
  json r = ctl_json(a, {"call", "old.greet", "name=bob"});
  CHECK(r["attrs"]["text"] == "hi, bob");
  CHECK(r["attrs"]["abi"] == "1.0");
  json plugins = ctl_json(a, {"plugins", "--describe", "abi10"});
  CHECK(plugins["data"]["abi"] == "1.0");
  // Its lane is in the scrape; the host never reads collect from its smaller descriptor.
  CHECK(metrics(a).find("hostlet_lane_done_total{instance=\"old\"} 1") != std::string::npos);
  REQUIRE(a.ctl({"reload", "old"}).exit_code == 0);
  json again = ctl_json(a, {"call", "old.greet"});
  CHECK(again["attrs"]["text"] == "hi, world");
  CHECK(instance(a, "old")["loads"] == 2);
  // its timer kept publishing after the reload
  Process events(std::vector<std::string>{env_path("HOSTLET_CTL"), "-s", a.control_socket(), "events", "--type",
                                          "abi10.tick"});
  CHECK(wait_until([&] { return events.out().find(" old abi10.tick count=") != std::string::npos; }));
  events.stop(15);
  a.stop();
}

TEST_CASE("the README's list of the agent's families is the list a scrape has") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(start(a));
  std::string text = metrics(a);
  CHECK(a.log().find("[hostlet] metrics:") == std::string::npos);  // the core's own families are all accepted
  a.stop();
  std::set<std::string> scraped;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    std::string name = line.substr(7, line.find(' ', 7) - 7);
    if (name.rfind("hostlet_", 0) == 0 || name.rfind("process_", 0) == 0) scraped.insert(name);
  }
  std::ifstream readme(env_path("HOSTLET_SOURCE_ROOT") + "/README.md");
  REQUIRE(readme);
  std::set<std::string> listed;
  bool in_section = false;
  for (std::string line; std::getline(readme, line);) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Metrics and health";
    if (!in_section || line.rfind("| `", 0) != 0) continue;
    listed.insert(line.substr(3, line.find('`', 3) - 3));
  }
  CHECK(listed == scraped);
}

TEST_CASE("two unixsock instances add their connection counters to one family each") {
  TempDir dir;
  Agent a(dir, config("{}", "  - {name: n1, plugin: unixsock, config: {socket: \"@DIR@/n1.sock\"}}\n"
                            "  - {name: n2, plugin: unixsock, config: {socket: \"@DIR@/n2.sock\"}}\n"));
  REQUIRE(start(a));
  LineClient c(dir.path() + "/n1.sock");
  REQUIRE(c.send_line(R"({"type":"t.x","ack":"accepted"})"));
  REQUIRE(c.recv_line());
  std::string text = metrics(a);
  INFO(text);
  CHECK(has_line(text, "hostlet_unixsock_open_connections{instance=\"n1\"} 1"));
  CHECK(has_line(text, "hostlet_unixsock_open_connections{instance=\"n2\"} 0"));
  CHECK(has_line(text, "hostlet_unixsock_notifications_total{instance=\"n1\",result=\"accepted\"} 1"));
  size_t first = text.find("# TYPE hostlet_unixsock_open_connections gauge");
  REQUIRE(first != std::string::npos);
  CHECK(text.find("# TYPE hostlet_unixsock_open_connections gauge", first + 1) == std::string::npos);
  CHECK(a.log().find("metrics:") == std::string::npos);  // nothing refused
  c.close();
  a.stop();
}
