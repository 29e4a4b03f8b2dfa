// End-to-end: drop-in fragments in conf.d/ next to the config file: merged
// in name order, names unique across files (both places named), a broken
// fragment reported as FILE:LINE:COL with the others still checked, and a
// reload that picks up a fragment added meanwhile.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;

namespace {

Run check(const std::string& config) { return run({env_path("HOSTLET_BIN"), "--check", "-c", config}); }

std::string worker_item(const std::string& name) { return "  - {name: " + name + ", plugin: " + fixture("worker_v1") + "}\n"; }

}  // namespace

TEST_CASE("conf.d: fragments add instances and rules in name order; their rules are named by their file") {
  TempDir dir;
  mkdir((dir / "conf.d").c_str(), 0755);
  dir.write("conf.d/20-rules.yaml", "rules:\n  - {on: {type: vm.start}, do: x.echo, with: {a: \"${name}\"}}\n");
  dir.write("conf.d/10-x.yaml", "plugins:\n" + worker_item("x"));
  dir.write("conf.d/README", "not a fragment: ignored\n");
  dir.write("conf.d/.hidden.yaml", "plugins: [broken\n");  // dot files are ignored too
  Agent a(dir, base_config());
  REQUIRE(a.start());
  REQUIRE(wait_until([&] { return a.log().find("] ready:") != std::string::npos; }));
  CHECK(a.log().find(" + 2 fragments from " + (dir / "conf.d")) != std::string::npos);
  Run r = a.ctl({"--json", "notify", "vm.start", "name=vm1"});
  INFO(r.out << r.err);
  json j = json::parse(r.out);
  REQUIRE(j["results"].size() == 1);
  CHECK(j["results"][0]["action"] == "x.echo");
  CHECK(j["results"][0]["rule"] == (dir / "conf.d/20-rules.yaml") + ":2");
  json status = ctl_json(a, {"status"});
  CHECK(status["data"]["config_fragments"] ==
        json::array({dir / "conf.d/10-x.yaml", dir / "conf.d/20-rules.yaml"}));
  Run ok = check(a.config_path());
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == a.config_path() + ": ok (2 instances, 1 rule, with 2 conf.d fragments)\n");
}

TEST_CASE("conf.d: a name used twice is an error naming both files; a broken fragment does not hide the others") {
  TempDir dir;
  mkdir((dir / "conf.d").c_str(), 0755);
  std::string main = dir.write("hostlet.yaml", base_config());
  dir.write("conf.d/10-dup.yaml", "plugins:\n" + worker_item("w"));
  dir.write("conf.d/20-broken.yaml", "rules:\n  - {on: {type: a}, do: [w.echo}\n");
  dir.write("conf.d/30-agent.yaml", "agent: {log_level: debug}\nplugins:\n  - {name: z, plugin: nosuch}\n");
  Run r = check(main);
  INFO(r.out << r.err);
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains(dir / "conf.d/10-dup.yaml" + ":2:12: plugins: duplicate instance name 'w' (first at " +
                                    main + ":3)"));
  CHECK_THAT(r.err, Catch::Contains(dir / "conf.d/20-broken.yaml" + ":2:"));
  CHECK_THAT(r.err, Catch::Contains(dir / "conf.d/30-agent.yaml" + ":1:1: agent: belongs in " + main +
                                    ", not in a conf.d fragment"));
}

TEST_CASE("conf.d: a reload picks up a fragment added since the start") {
  TempDir dir;
  mkdir((dir / "conf.d").c_str(), 0755);
  Agent a(dir, base_config());
  REQUIRE(a.start());
  CHECK(a.ctl({"call", "y.version"}).exit_code != 0);
  dir.write("conf.d/50-y.yaml", "plugins:\n" + worker_item("y"));
  Run r = a.ctl({"reload"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  Run v = a.ctl({"call", "y.version"});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
}
