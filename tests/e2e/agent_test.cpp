// End-to-end tests of the agent binary: the loader's good and bad cases, the
// config check, actions and rules through the control socket, offload
// limits seen from outside, the lag monitor, and shutdown with work running.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <sstream>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

Run check(TempDir& dir, const std::string& yaml) {
  std::string path = dir.write("check.yaml", yaml);
  return run({env_path("HOSTLET_BIN"), "--check", "-c", path});
}

}  // namespace

TEST_CASE("agent: --version and --help answer and exit 0; a bad argument exits 64") {
  Run v = run({env_path("HOSTLET_BIN"), "--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("plugin ABI 1.1") != std::string::npos);
  Run h = run({env_path("HOSTLET_BIN"), "--help"});
  CHECK(h.exit_code == 0);
  CHECK(h.out.find("--check") != std::string::npos);
  Run bad = run({env_path("HOSTLET_BIN"), "--frobnicate"});
  CHECK(bad.exit_code == 64);
  CHECK(bad.err.find("unknown argument '--frobnicate'") != std::string::npos);
  Run lvl = run({env_path("HOSTLET_BIN"), "--log-level", "loud"});
  CHECK(lvl.exit_code == 64);
}

TEST_CASE("agent: --check accepts a good config and prints a summary") {
  TempDir dir;
  Run r = check(dir, base_config("", "  - on: {type: go}\n    do: w.echo\n    with: {a: \"${x}\"}\n"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok (1 instance, 1 rule)") != std::string::npos);
}

TEST_CASE("agent: without -c the default config file is used when it exists, else the embedded demo") {
  TempDir dir;
  std::string file = dir.write("hostlet.yaml", "agent: {control_socket: \"" + dir / "control.sock" + "\"}\n");
  std::string hostlet = env_path("HOSTLET_BIN");
  Run found = run({hostlet, "--check"}, 60s, {{"HOSTLET_DEFAULT_CONFIG", file}});
  CHECK(found.exit_code == 0);
  CHECK(found.out == file + ": ok (0 instances, 0 rules)\n");
  Run missing = run({hostlet, "--check"}, 60s, {{"HOSTLET_DEFAULT_CONFIG", dir / "absent.yaml"}});
  CHECK(missing.exit_code == 0);
  CHECK(missing.out.rfind("<embedded hostlet.yaml>: ok (", 0) == 0);
  Run demo = run({hostlet, "--check", "--demo"}, 60s, {{"HOSTLET_DEFAULT_CONFIG", file}});
  CHECK(demo.exit_code == 0);
  CHECK(demo.out.rfind("<embedded hostlet.yaml>: ok (", 0) == 0);
  Run both = run({hostlet, "--demo", "-c", file});
  CHECK(both.exit_code == 64);
  CHECK(both.err == "hostlet: -c and --demo exclude each other\n");
  // The running agent says which file it reads, in its log and in status.
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n", {"--log-level", "info"});
  REQUIRE(a.start());
  CHECK(ctl_json(a, {"status"})["data"]["config"] == a.config_path());
  CHECK(a.log().find("(config " + a.config_path() + ",") != std::string::npos);
}

TEST_CASE("agent: --check reports every loader failure with file, line and column") {
  TempDir dir;
  std::string yaml = base_config(
      "  - {name: abi, plugin: " + fixture("bad_abi") + "}\n"            // line 4
      "  - {name: noentry, plugin: " + fixture("no_entry") + "}\n"       // line 5
      "  - name: initf\n"                                                 // line 6
      "    plugin: " + fixture("init_fails") + "\n"
      "  - {name: missing, plugin: /nonexistent/x.so}\n"                  // line 8
      "  - {name: byname, plugin: no_such_plugin_anywhere}\n"             // line 9
      "  - {name: newer, plugin: " + fixture("future_minor") + "}\n",     // line 10
      "  - on: {type: go}\n    do: w.ech\n");                             // lines 12..13
  Run r = check(dir, yaml);
  std::string f = dir / "check.yaml";
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(f + ":4:25: instance 'abi'") != std::string::npos);
  CHECK(r.err.find("built for plugin ABI 2.0, this agent speaks 1.1") != std::string::npos);
  CHECK(r.err.find(f + ":10:27: instance 'newer'") != std::string::npos);
  CHECK(r.err.find("built for plugin ABI 1.2, this agent speaks 1.1 (same major and a minor up to 1 are loadable)") !=
        std::string::npos);
  CHECK(r.err.find(f + ":5:29: instance 'noentry'") != std::string::npos);
  CHECK(r.err.find("no entry symbol 'hostlet_plugin_entry'") != std::string::npos);
  CHECK(r.err.find(f + ":6:5: instance 'initf': plugin 'init_fails' rejected its config") != std::string::npos);
  CHECK(r.err.find("refusing to start: always") != std::string::npos);  // the plugin's own words
  CHECK(r.err.find(f + ":8:29: instance 'missing': plugin file /nonexistent/x.so not found") != std::string::npos);
  CHECK(r.err.find(f + ":9:28: instance 'byname': plugin 'no_such_plugin_anywhere' not found") != std::string::npos);
  CHECK(r.err.find(f + ":13:9: rule: unknown action 'w.ech' (did you mean 'w.echo'?)") != std::string::npos);
}

TEST_CASE("agent: --check suggests the plugin a mistyped name meant, from the plugins where it looked") {
  TempDir dir;
  // HOSTLET_PLUGIN_DIR holds no unixsock.so; the build tree next to the binary does.
  Run r = check(dir, base_config("  - {name: u, plugin: unixsok}\n"));
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("instance 'u': plugin 'unixsok' not found (looked for") &&
                        Catch::EndsWith("; did you mean 'unixsock'?\n"));
  Run far = check(dir, base_config("  - {name: q, plugin: zzzzzzzz}\n"));
  CHECK_THAT(far.err, !Catch::Contains("did you mean"));
}

TEST_CASE("agent: a truncated or non-ELF .so is refused with a reason, not a crash") {
  TempDir dir;
  std::string whole = read_file(fixture("worker_v1"));
  REQUIRE(whole.size() > 3000);
  std::string cut = dir.write("cut.so", whole.substr(0, 3000));  // headers intact, segments missing
  std::string text = dir.write("text.so", "not a shared object\n");
  Run r = check(dir, base_config("  - {name: cut, plugin: " + cut + "}\n"      // line 4
                                 "  - {name: text, plugin: " + text + "}\n"));  // line 5
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("instance 'cut': " + cut + ": cannot load: truncated") != std::string::npos);
  CHECK(r.err.find("instance 'text': " + text + ": cannot load: not an ELF shared object") != std::string::npos);
}

TEST_CASE("agent: --check reports schema errors of a plugin's config section") {
  TempDir dir;
  std::string yaml =
      "plugins:\n"
      "  - name: w\n"
      "    plugin: " + fixture("worker_v1") + "\n"
      "    config:\n"
      "      default_mss: 5\n"          // line 5: unknown key with suggestion
      "      fail_start: perhaps\n";    // line 6: not a bool
  Run r = check(dir, yaml);
  std::string f = dir / "check.yaml";
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(f + ":5:7:") != std::string::npos);
  CHECK(r.err.find("default_ms") != std::string::npos);  // did you mean
  CHECK(r.err.find(f + ":6:19:") != std::string::npos);
}

TEST_CASE("agent: --check reports YAML syntax errors and duplicate instance names") {
  TempDir dir;
  Run syntax = check(dir, "agent: {threadpool: 4\nplugins: []\n");
  CHECK(syntax.exit_code == 1);
  CHECK(syntax.err.find(dir / "check.yaml") != std::string::npos);
  std::string dup = "plugins:\n  - {name: w, plugin: " + fixture("worker_v1") + "}\n  - {name: w, plugin: " +
                    fixture("worker_v2") + "}\n";
  Run d = check(dir, dup);
  INFO(d.err);
  CHECK(d.exit_code == 1);
  CHECK(d.err.find(dir / "check.yaml" + ":3:") != std::string::npos);
  Run missing = run({env_path("HOSTLET_BIN"), "--check", "-c", dir / "nope.yaml"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("nope.yaml") != std::string::npos);
}

TEST_CASE("agent: optional instances that fail are reported and skipped while the others run") {
  TempDir dir;
  Agent a(dir, base_config("  - {name: abi, optional: true, plugin: " + fixture("bad_abi") + "}\n"
                           "  - {name: noentry, optional: true, plugin: " + fixture("no_entry") + "}\n"
                           "  - {name: initf, optional: true, plugin: " + fixture("init_fails") + "}\n"
                           "  - {name: nostart, optional: true, plugin: " + fixture("worker_v2") +
                           ", config: {fail_start: true}}\n"));
  REQUIRE(a.start());
  json st = ctl_json(a, {"status"});
  REQUIRE(st["ok"] == true);
  std::vector<std::string> names;
  wait_until([&] {
    st = ctl_json(a, {"status"});
    return st["data"]["instances"].size() == 1;
  });
  for (auto& i : st["data"]["instances"]) names.push_back(i["name"]);
  CHECK(names == std::vector<std::string>{"w"});
  std::string log = a.log();
  CHECK(log.find("[abi]") != std::string::npos);
  CHECK(log.find("[noentry]") != std::string::npos);
  CHECK(log.find("[initf] refusing to start: always") != std::string::npos);
  CHECK(log.find("[nostart] start failed") != std::string::npos);
  json r = ctl_json(a, {"call", "w.version"});
  CHECK(r["ok"] == true);
  CHECK(r["attrs"]["version"] == "1");
  auto st_code = a.stop();
  REQUIRE(st_code);
  CHECK(WIFEXITED(*st_code));
  CHECK(WEXITSTATUS(*st_code) == 0);
  CHECK(a.log().find("loop did not close cleanly") == std::string::npos);
}

namespace {

// Starts an agent on base_config(plugins) that must fail its start: exit 1,
// no "ready" line, each of `expected` in its log, and a clean loop close.
void check_start_fails(const std::string& plugins, const std::vector<std::string>& expected) {
  TempDir dir;
  Agent a(dir, base_config(plugins));
  CHECK_FALSE(a.start(5s));
  auto st = a.process().wait(10s);
  REQUIRE(st);
  REQUIRE(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 1);
  std::string log = a.log();
  INFO(log);
  for (const auto& line : expected) CHECK(log.find(line) != std::string::npos);
  CHECK(log.find("ready:") == std::string::npos);
  CHECK(log.find("loop did not close cleanly") == std::string::npos);
}

}  // namespace

TEST_CASE("agent: --check warns, and passes, when an optional instance's plugin is not installed") {
  TempDir dir;
  Run r = check(dir,
                "plugins:\n"
                "  - {name: virt, optional: true, plugin: no_such_plugin_anywhere}\n"   // line 2
                "  - {name: bad, optional: true, plugin: " + fixture("init_fails") + "}\n");  // line 3
  const std::string f = dir / "check.yaml";
  CHECK(r.exit_code == 1);  // the optional instance whose plugin exists and refuses its config: still an error
  CHECK(r.err.find(f + ":2:42: warning: optional instance 'virt': plugin 'no_such_plugin_anywhere' not found") !=
        std::string::npos);
  CHECK(r.err.find(f + ":3:") != std::string::npos);
  Run ok = check(dir, "plugins:\n  - {name: virt, optional: true, plugin: no_such_plugin_anywhere}\n");
  CHECK(ok.exit_code == 0);
  CHECK(ok.err.find("the agent runs without it") != std::string::npos);
  Run required = check(dir, "plugins:\n  - {name: virt, plugin: no_such_plugin_anywhere}\n");
  CHECK(required.exit_code == 1);
}

TEST_CASE("agent: a required instance that fails to load fails the start with exit 1, naming it") {
  check_start_fails("  - {name: opt, optional: true, plugin: " + fixture("no_entry") + "}\n"
                    "  - {name: initf, plugin: " + fixture("init_fails") + "}\n",
                    {"[opt]", "optional instance skipped",
                     "not starting: required instance(s) failed to load: initf ("});
}

TEST_CASE("agent: a required instance that fails to start stops the agent with exit 1, naming it") {
  check_start_fails("  - {name: nostart, plugin: " + fixture("worker_v2") + ", config: {fail_start: true}}\n",
                    {"[nostart] failed to start; a required instance: the agent stops",
                     "stopping: required instance(s) failed to start: nostart ("});
}

TEST_CASE("agent: actions answer ok, errors, throws, drops and invalid JSON with clear messages") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  json echo = ctl_json(a, {"call", "w.echo", "a=1", "b=two"});
  CHECK(echo["ok"] == true);
  CHECK(echo["attrs"] == json{{"a", "1"}, {"b", "two"}});
  CHECK(echo["data"] == json{{"n", 2}});
  json fail = ctl_json(a, {"call", "w.fail", "message=nope"});
  CHECK(fail["ok"] == false);
  CHECK(fail["error"] == "nope");
  CHECK(ctl_json(a, {"call", "w.throw"})["error"] == "thrown on purpose");
  CHECK(ctl_json(a, {"call", "w.drop"})["error"] == "the plugin dropped the call without an answer");
  CHECK(ctl_json(a, {"call", "w.bad_json"})["error"] == "the plugin answered with invalid JSON data");
  // multi-line data reaches the control client unchanged (on one line: the reply parses)
  json pretty = ctl_json(a, {"call", "w.pretty_json"});
  CHECK(pretty["ok"] == true);
  CHECK(pretty["data"] == json::parse(R"({"list": [1, 2], "text": "a\nb"})"));
  json unknown = ctl_json(a, {"call", "w.wrk"});
  CHECK(unknown["ok"] == false);
  CHECK(unknown["error"] == "no such action 'w.wrk' (did you mean 'w.work'?)");
  json badarg = ctl_json(a, {"call", "w.work", "ms=-5"});
  CHECK(badarg["ok"] == false);
  CHECK(badarg["error"] == "ms must be between 0 and 600000");
  // human-readable form and exit codes
  Run ok = a.ctl({"call", "w.echo", "a=1"});
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("a=1") != std::string::npos);
  Run err = a.ctl({"call", "w.fail"});
  CHECK(err.exit_code == 1);
  CHECK(err.err.find("error: failed on purpose") != std::string::npos);
  Run usage = a.ctl({"call", "w.echo", "novalue"});
  CHECK(usage.exit_code == 64);
}

TEST_CASE("agent: hostlet-ctl exits 2 when the agent cannot be reached") {
  Run r = run({env_path("HOSTLET_CTL"), "-s", "/nonexistent/control.sock", "status"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("cannot reach the agent") != std::string::npos);
}

TEST_CASE("agent: max_inflight is never exceeded; a full lane holds calls, or answers EAGAIN to those that may not wait") {
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", threadpool: 8}\n"
               "plugins:\n"
               "  - {name: w, plugin: " + fixture("worker_v1") + ", max_inflight: 2, max_queue: 4}\n");
  REQUIRE(a.start());
  // 6 fill the lane (2 running + 4 queued); then 4 that may not wait are
  // refused at once and 2 that may wait run when there is room.
  std::vector<std::unique_ptr<LineClient>> clients;
  auto send = [&](int i, bool nowait) {
    json req{{"id", i}, {"cmd", "call"}, {"action", "w.work"}, {"attrs", {{"ms", "300"}}}};
    if (nowait) req["wait_ms"] = 0;
    clients.push_back(std::make_unique<LineClient>(a.control_socket()));
    REQUIRE(clients.back()->send_line(req.dump()));
  };
  for (int i = 0; i < 6; i++) send(i, false);
  REQUIRE(wait_until([&] { return ctl_json(a, {"stats"})["data"]["lanes"]["w"]["queued"] == 4; }));
  for (int i = 6; i < 10; i++) send(i, true);
  for (int i = 10; i < 12; i++) send(i, false);
  int ok = 0, again = 0;
  for (auto& c : clients) {
    auto line = c->recv_line(20s);
    REQUIRE(line);
    json j = json::parse(*line);
    if (j["ok"] == true) ok++;
    else if (j.value("errno", "") == "EAGAIN" && j["id"].get<int>() >= 6 && j["id"].get<int>() < 10) again++;
    else FAIL("unexpected answer " << *line);
  }
  CHECK(ok == 8);
  CHECK(again == 4);
  json m = ctl_json(a, {"call", "w.max_running"});
  CHECK(std::stoi(m["attrs"]["max"].get<std::string>()) <= 2);
  json stats = ctl_json(a, {"stats"});
  CHECK(stats["data"]["lanes"]["w"]["rejected"] == 0);  // nothing reached a full lane
  CHECK(stats["data"]["lanes"]["w"]["done"] == 8);
  CHECK(stats["data"]["actions"]["wait_refused"] == 4);
  CHECK(stats["data"]["actions"]["waited"] == 2);
}

TEST_CASE("agent: an offload past its deadline fails with a timeout and the agent keeps serving") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  json r = ctl_json(a, {"call", "w.work", "ms=800", "timeout_ms=100"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "work: deadline passed");
  CHECK(ctl_json(a, {"call", "w.version"})["ok"] == true);
  wait_until([&] { return ctl_json(a, {"stats"})["data"]["lanes"]["w"]["running"] == 0; }, 5s);
  CHECK(ctl_json(a, {"stats"})["data"]["lanes"]["w"]["timed_out"] == 1);
}

TEST_CASE("agent: an offload whose deadline passes while queued fails with a timeout, its late runs once") {
  // max_inflight 2: two long items hold the lane, the third waits in the
  // lane's queue and times out there (it never starts; late runs right after
  // done, exactly once, and the agent keeps serving).
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(R"({"id":1,"cmd":"call","action":"w.work","attrs":{"ms":"600"}})"));
  REQUIRE(c.send_line(R"({"id":2,"cmd":"call","action":"w.work","attrs":{"ms":"600"}})"));
  REQUIRE(wait_until([&] { return ctl_json(a, {"stats"})["data"]["lanes"]["w"]["running"] == 2; }, 5s));
  json r = ctl_json(a, {"call", "w.work", "ms=1", "timeout_ms=50"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "work: deadline passed");
  CHECK(wait_until([&] { return ctl_json(a, {"stats"})["data"]["lanes"]["w"]["done"] == 2; }, 5s));
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["lanes"]["w"]["timed_out"] == 1);
  CHECK(ctl_json(a, {"call", "w.version"})["ok"] == true);
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
}

TEST_CASE("agent: rules turn notifications into actions; ack done carries the results") {
  TempDir dir;
  Agent a(dir, base_config("",
                           "  - on: {type: go, attrs: {x: \"[0-9]*\"}}\n"
                           "    do: [w.echo, w.work]\n"
                           "    with: {a: \"${x}\", ms: \"1\"}\n"
                           "  - on: {type: chain}\n"
                           "    do: [w.fail, w.echo]\n"));
  REQUIRE(a.start());
  json done = ctl_json(a, {"notify", "go", "x=42"});
  INFO(done.dump());
  CHECK(done["ok"] == true);
  REQUIRE(done["results"].size() == 2);
  CHECK(done["results"][0]["action"] == "w.echo");
  CHECK(done["results"][0]["attrs"]["a"] == "42");
  CHECK(done["results"][0]["data"] == json{{"n", 1}});  // the action's data, spliced in as is
  CHECK(done["results"][1]["action"] == "w.work");
  CHECK(done["results"][1]["attrs"]["version"] == "1");
  // not matching the attribute glob: no actions
  json none = ctl_json(a, {"notify", "go", "x=abc"});
  CHECK(none["ok"] == true);
  CHECK(none["results"].empty());
  // a failing first action ends the chain
  json chain = ctl_json(a, {"notify", "chain"});
  CHECK(chain["ok"] == false);
  REQUIRE(chain["results"].size() == 1);
  CHECK(chain["results"][0]["error"] == "failed on purpose");
  // a missing template attribute is an error for that event only
  json missing = ctl_json(a, {"notify", "go"});
  CHECK(missing["results"].empty());  // attrs glob needs x: the rule does not match
  json accepted = ctl_json(a, {"notify", "--ack", "accepted", "go", "x=1"});
  CHECK(accepted["ok"] == true);
  CHECK(accepted["event"].is_number());
}

TEST_CASE("agent: a missing template attribute fails that event with the rule's location") {
  TempDir dir;
  Agent a(dir, base_config("", "  - on: {type: go}\n    do: w.echo\n    with: {a: \"${x}\"}\n"));
  REQUIRE(a.start());
  json r = ctl_json(a, {"notify", "go", "y=1"});
  CHECK(r["ok"] == false);
  REQUIRE(r["results"].size() == 1);
  std::string err = r["results"][0]["error"];
  CHECK(err.find("has no attribute 'x'") != std::string::npos);
  CHECK(r["results"][0]["rule"] == a.config_path() + ":5");
  CHECK(a.log().find("rule " + a.config_path() + ":5: with.a") != std::string::npos);
  CHECK(ctl_json(a, {"notify", "go", "x=1"})["ok"] == true);  // the next event is fine
}

TEST_CASE("agent: hostlet-ctl events streams events, action results included") {
  TempDir dir;
  Agent a(dir, base_config("", "  - on: {type: go}\n    do: w.echo\n    with: {a: \"${x}\"}\n"));
  REQUIRE(a.start());
  LineClient stream(a.control_socket());
  REQUIRE(stream.send_line(R"({"id":1,"cmd":"events","type":"*"})"));
  auto first = stream.recv_line();
  REQUIRE(first);
  CHECK(json::parse(*first)["ok"] == true);
  REQUIRE(ctl_json(a, {"notify", "--ack", "done", "go", "x=5"})["ok"] == true);
  std::vector<json> seen;
  while (seen.size() < 2) {
    auto l = stream.recv_line(10s);
    REQUIRE(l);
    seen.push_back(json::parse(*l)["event"]);
  }
  CHECK(seen[0]["source"] == "ctl");
  CHECK(seen[0]["type"] == "go");
  CHECK(seen[0]["attrs"]["x"] == "5");
  CHECK(seen[1]["source"] == "hostlet");
  CHECK(seen[1]["type"] == "action.done");
  CHECK(seen[1]["attrs"]["action"] == "w.echo");
  CHECK(seen[1]["attrs"]["result.a"] == "5");
}

TEST_CASE("agent: the control socket answers bad requests with errors and keeps serving") {
  TempDir dir;
  Agent a(dir, base_config("", "", ", control_max_line: 1024"));
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  auto ask = [&](const std::string& line) {
    REQUIRE(c.send_line(line));
    auto r = c.recv_line();
    REQUIRE(r);
    return json::parse(*r);
  };
  CHECK(ask("{not json")["error"] == "invalid JSON at byte 3");
  CHECK(ask("[1,2]")["error"] == "a request must be a JSON object");
  CHECK(ask(R"({"id":7})")["error"] == "missing string 'cmd'");
  json unk = ask(R"({"id":8,"cmd":"dance"})");
  CHECK(unk["id"] == 8);
  CHECK(unk["error"] == "unknown command 'dance' (hello, status, plugins, describe, stats, call, notify, events, reload, metrics)");
  CHECK(ask(R"({"cmd":"call","action":"w.echo","attrs":{"a":1}})")["error"] == "attribute 'a' must be a string, not a number");
  CHECK(ask(R"({"cmd":"notify","type":"bad type!"})")["ok"] == false);
  CHECK(ask(R"({"cmd":"notify","type":"t","ack":"sometimes"})")["ok"] == false);
  CHECK(ask(R"({"cmd":"reload","name":""})")["error"] == "'name' must be an instance name");
  CHECK(ask(R"({"cmd":"reload","name":7})")["error"] == "'name' must be an instance name");
  json nosuch = ask(R"({"id":9,"cmd":"reload","name":"nosuch"})");
  CHECK(nosuch["id"] == 9);
  CHECK(nosuch["error"].get<std::string>().find("no instance named 'nosuch' in ") == 0);
  CHECK(ask("{\"cmd\":\"call\",\"action\":\"w.echo\",\"attrs\":{\"a\":\"\xff\xfe\"}}")["error"] ==
        "invalid JSON: a string is not valid UTF-8 at byte 47");
  CHECK(ask(R"({"cmd":"status"})")["ok"] == true);
  // an over-long line: an error, then the connection is closed; others are unaffected
  LineClient big(a.control_socket());
  REQUIRE(big.send(std::string(4096, 'x')));
  auto r = big.recv_line();
  REQUIRE(r);
  CHECK(json::parse(*r)["error"].get<std::string>().find("longer than agent.control_max_line") != std::string::npos);
  CHECK(big.wait_closed());
  CHECK(ask(R"({"cmd":"status"})")["ok"] == true);
}

TEST_CASE("agent: plugins --describe prints a plugin's schema, actions and events") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  json d = ctl_json(a, {"plugins", "--describe", "w"});
  CHECK(d["data"]["plugin"] == "worker");
  CHECK(d["data"]["config"][0]["key"] == "default_ms");
  CHECK(d["data"]["config"][0]["type"] == "duration");
  CHECK(d["data"]["events"][0]["type"] == "worker.pong");
  Run human = a.ctl({"plugins", "--describe", "worker"});
  CHECK(human.exit_code == 0);
  CHECK(human.out.find("default_ms") != std::string::npos);
  Run bad = a.ctl({"plugins", "--describe", "wrker"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("did you mean 'worker'") != std::string::npos);
}

TEST_CASE("agent: the lag monitor names the instance whose callback blocked the loop") {
  TempDir dir;
  Agent a(dir, base_config("", "", ", lag_warn: 20ms"));
  REQUIRE(a.start());
  REQUIRE(ctl_json(a, {"call", "w.spin", "ms=150"})["ok"] == true);
  CHECK(wait_until([&] { return a.log().find("[w] action handler ran") != std::string::npos; }));
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["loop"]["slow_callbacks"].get<int>() >= 1);
  CHECK(s["data"]["loop"]["worst_instance"] == "w");
}

TEST_CASE("agent: SIGTERM waits for running work, then stops cleanly") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(R"({"id":1,"cmd":"call","action":"w.work","attrs":{"ms":"700"}})"));
  std::this_thread::sleep_for(150ms);  // let it start on a pool thread
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
  CHECK(a.log().find("stopped") != std::string::npos);
  CHECK(a.log().find("loop did not close cleanly") == std::string::npos);
}

TEST_CASE("agent: SIGTERM with work stuck past the shutdown deadline exits 2 and says why") {
  TempDir dir;
  Agent a(dir, base_config("", "", ", shutdown_timeout: 200ms"));
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(R"({"id":1,"cmd":"call","action":"w.work","attrs":{"ms":"30000"}})"));
  std::this_thread::sleep_for(150ms);
  auto t0 = std::chrono::steady_clock::now();
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 2);
  CHECK(a.log().find("still running after 200 ms") != std::string::npos);
}

TEST_CASE("agent: a second agent on a live control socket refuses to start; a stale socket is replaced") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  TempDir dir2;
  std::string cfg2 = "agent: {control_socket: \"" + a.control_socket() + "\"}\n";
  Agent b(dir2, cfg2);
  b.start(3s);
  auto st = b.process().wait(10s);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 1);
  CHECK(b.log().find("another agent is answering on it") != std::string::npos);
  // kill -9 leaves the socket file behind; the next agent replaces it
  a.process().signal(SIGKILL);
  a.process().wait(10s);
  Agent c(dir, base_config());
  REQUIRE(c.start());
  CHECK(ctl_json(c, {"status"})["ok"] == true);
}

TEST_CASE("agent: debounce and rate_limit suppress firings and count them") {
  TempDir dir;
  Agent a(dir, base_config("",
                           "  - on: {type: bounce}\n"
                           "    do: w.echo\n"
                           "    debounce: 1h\n"
                           "  - on: {type: limited}\n"
                           "    do: w.echo\n"
                           "    rate_limit: 2/m\n"));
  REQUIRE(a.start());
  // debounce: the first event fires, the next ones inside the window do not
  CHECK(ctl_json(a, {"notify", "bounce"})["results"].size() == 1);
  CHECK(ctl_json(a, {"notify", "bounce"})["results"].empty());
  CHECK(ctl_json(a, {"notify", "bounce"})["results"].empty());
  // rate_limit 2 per minute: the bucket holds one firing, refills every 30 s
  CHECK(ctl_json(a, {"notify", "limited"})["results"].size() == 1);
  CHECK(ctl_json(a, {"notify", "limited"})["results"].empty());
  CHECK(ctl_json(a, {"notify", "limited"})["results"].empty());
  json rules = ctl_json(a, {"stats"})["data"]["rules"];
  REQUIRE(rules.size() == 2);
  CHECK(rules[0]["fired"] == 1);
  CHECK(rules[0]["debounced"] == 2);
  CHECK(rules[1]["fired"] == 1);
  CHECK(rules[1]["rate_limited"] == 2);
}

TEST_CASE("agent: --check reports bad templates and globs in rules with line and column") {
  TempDir dir;
  Run r = check(dir, base_config("",
                                 "  - on: {type: \"go[\"}\n"             // line 5: unbalanced bracket
                                 "    do: w.echo\n"
                                 "  - on: {type: go}\n"                  // line 7
                                 "    do: w.echo\n"
                                 "    with: {a: \"${x\"}\n"));            // line 9: unterminated template
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(dir / "check.yaml" + ":5:") != std::string::npos);
  CHECK(r.err.find(dir / "check.yaml" + ":9:") != std::string::npos);
}

TEST_CASE("agent: hostlet-ctl status prints each instance's version, loads, last load time and result") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  Run r = a.ctl({"status"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("INSTANCE  PLUGIN  VERSION  STATE    HEALTH  LOADS  LAST_LOAD_UTC        LAST_RESULT") != std::string::npos);
  CHECK_THAT(r.out.substr(0, r.out.find('\n')), Catch::Matches("hostlet \\S+  pid \\d+  up \\d+s  config .*"));
  size_t at = r.out.find("\nw ");
  REQUIRE(at != std::string::npos);
  std::istringstream row(r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1));
  std::vector<std::string> cells;
  for (std::string w; row >> w;) cells.push_back(w);
  REQUIRE(cells.size() == 9);  // name plugin version state health loads date time result
  CHECK(cells[0] == "w");
  CHECK(cells[1] == "worker");
  CHECK(cells[2] == "1");
  CHECK(cells[3] == "running");
  CHECK(cells[4] == "ok");
  CHECK(cells[5] == "1");
  CHECK((cells[6].size() == 10 && cells[6][4] == '-' && cells[6][7] == '-'));  // YYYY-MM-DD
  CHECK((cells[7].size() == 8 && cells[7][2] == ':' && cells[7][5] == ':'));   // HH:MM:SS
  CHECK(cells[8] == "ok");
}

TEST_CASE("agent: SIGHUP re-reads an unchanged config, changes nothing and keeps serving") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  a.process().signal(SIGHUP);
  CHECK(wait_until([&] { return a.log().find("reload (SIGHUP): no instance changed") != std::string::npos; }));
  CHECK(a.process().running());
  auto status = ctl_json(a, {"status"});
  for (const auto& inst : status["data"]["instances"]) CHECK(inst["loads"] == 1);
  CHECK(ctl_json(a, {"status"})["ok"] == true);
  auto st = a.stop();
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 0);
}
