// End-to-end tests of hostlet-ctl's command line: what it refuses before it
// connects (exit 64), what it says when the agent is not there (exit 2), and
// the commands whose exit status depends on how the agent answers.
#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;

namespace {

// hostlet-ctl with `args` against a socket path where nothing listens.
Run ctl_unreachable(std::vector<std::string> args) {
  args.insert(args.begin(), {env_path("HOSTLET_CTL"), "-s", "/nonexistent/control.sock"});
  return run(args);
}

}  // namespace

TEST_CASE("ctl: --timeout takes a whole number of seconds; anything else is a usage error") {
  for (const std::string bad : {"5x", "abc", "-1", "", " 5", "1.5", "99999999999999999999"}) {
    INFO("--timeout '" << bad << "'");
    Run r = ctl_unreachable({"--timeout", bad, "status"});
    CHECK(r.exit_code == 64);
    CHECK(r.err.rfind("hostlet-ctl: --timeout: '" + bad + "' is not a whole number of seconds\n", 0) == 0);
  }
  // a good value is read and the command goes on to connect
  for (const std::string good : {"0", "5", "3600"}) {
    Run r = ctl_unreachable({"--timeout", good, "status"});
    CHECK(r.exit_code == 2);
    CHECK(r.err == "hostlet-ctl: cannot reach the agent at /nonexistent/control.sock: No such file or directory\n");
  }
}

TEST_CASE("ctl: a command with wrong arguments is a usage error naming the command") {
  Run extra = ctl_unreachable({"status", "now"});
  CHECK(extra.exit_code == 64);
  CHECK(extra.err.rfind("hostlet-ctl: status: takes no arguments, got 'now' (usage: status)\n", 0) == 0);
  Run call = ctl_unreachable({"call"});
  CHECK(call.exit_code == 64);
  CHECK(call.err.rfind("hostlet-ctl: call: needs an ACTION (usage: call [--no-wait] ACTION [KEY=VALUE...])\n", 0) == 0);
  Run kv = ctl_unreachable({"call", "w.echo", "novalue"});
  CHECK(kv.exit_code == 64);
  CHECK(kv.err.rfind("hostlet-ctl: call: expected KEY=VALUE, got 'novalue'", 0) == 0);
  Run opt = ctl_unreachable({"call", "--wait", "w.echo"});
  CHECK(opt.exit_code == 64);
  CHECK(opt.err.rfind("hostlet-ctl: call: unknown option '--wait' (call takes --no-wait)", 0) == 0);
  Run unknown = ctl_unreachable({"dance"});
  CHECK(unknown.exit_code == 64);
  CHECK(unknown.err.rfind("hostlet-ctl: unknown command 'dance'\n", 0) == 0);
}

TEST_CASE("ctl: --help lists every command") {
  Run h = run({env_path("HOSTLET_CTL"), "--help"});
  CHECK(h.exit_code == 0);
  for (const char* usage : {"\n  status ", "\n  plugins [--describe NAME] ", "\n  stats ", "\n  reload [NAME] ",
                            "\n  call [--no-wait] ACTION [KEY=VALUE...]", "\n  notify [--source S]", "\n  events [--type GLOB] "})
    CHECK(h.out.find(usage) != std::string::npos);
}

TEST_CASE("ctl: notify --ack none returns 0 once the agent has taken the event; a refused one exits 1") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient stream(a.control_socket());
  REQUIRE(stream.send_line(R"({"id":1,"cmd":"events","type":"vm.*"})"));
  REQUIRE(stream.recv_line());  // {"streaming":...}
  // Well inside the default 60 s timeout, which it used to wait out before exiting 2.
  Run r = a.ctl({"notify", "--ack", "none", "vm.quiet", "n=1"}, std::chrono::seconds(20));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  auto ev = stream.recv_line();
  REQUIRE(ev);
  CHECK(ev->find("\"vm.quiet\"") != std::string::npos);
  Run bad = a.ctl({"notify", "--ack", "none", "vm quiet"}, std::chrono::seconds(20));
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("error: missing or invalid 'type'") != std::string::npos);
}

TEST_CASE("ctl: options go before or after the command, as --opt VALUE or --opt=VALUE; a usage error is short") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  const std::string ctl = env_path("HOSTLET_CTL");
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{ctl, "--socket=" + a.control_socket(), "--json", "status"},
        std::vector<std::string>{ctl, "status", "--json", "-s", a.control_socket()},
        std::vector<std::string>{ctl, "status", "--socket=" + a.control_socket(), "--json", "--timeout=5"}}) {
    Run r = run(argv);
    INFO(argv[1] << " " << argv[2] << ": " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.rfind("{\"data\":", 0) == 0);
  }
  Run none = run({ctl, "-s", a.control_socket(), "notify", "--ack=none", "--source=hook", "vm.x"});
  CHECK(none.exit_code == 0);
  Run bad = run({ctl, "-s", a.control_socket(), "notify", "--bogus=1", "vm.x"});
  CHECK(bad.exit_code == 64);
  CHECK(bad.err == "hostlet-ctl: notify: unknown option '--bogus' (usage: notify [--source S] [--ack "
                   "none|accepted|done] TYPE [KEY=VALUE...])\n(hostlet-ctl --help lists the commands and options)\n");
}

TEST_CASE("ctl: pointed at the notification socket it says so, and the socket gets no request") {
  TempDir dir;
  Agent a(dir, base_config("  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"}}\n",
                           "  - {on: {source: notify}, do: w.echo}\n"));
  REQUIRE(a.start());
  Run r = run({env_path("HOSTLET_CTL"), "-s", dir / "notify.sock", "notify", "vm.start"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "hostlet-ctl: " + (dir / "notify.sock") +
                     " is not a hostlet control socket (it answered: {\"id\":0,\"ok\":false,\"error\":\"missing "
                     "\\\"type\\\"\"})\n");
  // Nothing reached the rules: the notify command was never sent there.
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["rules"][0]["matched"] == 0);
  // The control socket says who it is.
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(R"({"id":0,"cmd":"hello"})"));
  auto line = c.recv_line();
  REQUIRE(line);
  json h = json::parse(*line);
  CHECK(h["server"] == "hostlet");
  CHECK(h["protocol"] == 1);
  CHECK(h["access"] == "admin");
}

TEST_CASE("ctl: stats show the last minute's percentiles beside those since start") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  for (int i = 0; i < 5; ++i) REQUIRE(ctl_json(a, {"call", "w.work", "ms=2"})["ok"] == true);
  json d = ctl_json(a, {"stats"})["data"];
  const json& loop = d["loop"];
  INFO(d.dump());
  // Within the agent's first minute the window reaches back to its start, so
  // it holds what since start holds.
  REQUIRE(loop.contains("window_s"));
  CHECK(loop["window_s"].get<double>() > 0);
  CHECK(loop["window_s"].get<double>() < 60);
  CHECK(loop["lag_p99_1m_ms"] == loop["lag_p99_ms"]);
  const json& w = d["lanes"]["w"];
  CHECK(w["run_time_us_1m"]["p50"].get<double>() >= 2000);  // each work sleeps 2 ms
  CHECK(w["run_time_us_1m"] == w["run_time_us"]);
  CHECK(w["queue_wait_us_1m"] == w["queue_wait_us"]);
  Run text = a.ctl({"stats"});
  INFO(text.out << text.err);
  CHECK(text.out.find("loop lag p50/p99/max, last ") != std::string::npos);
  CHECK(text.out.find("\nlane latency, last ") != std::string::npos);
  CHECK(text.out.find("\nlane latency, since start:\n") != std::string::npos);
}
