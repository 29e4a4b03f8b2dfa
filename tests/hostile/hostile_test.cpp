// The hostile-input suite (issue 14): what an attacker tried against the
// agent, each class as a test against the real binary over its real sockets.
// Every test asserts the agent's answer to the hostile input, that the agent
// stays up, that other clients stay served meanwhile (a Probe on each socket
// that must see every one of its requests answered) and that nothing accepted
// is lost. The classes tried elsewhere are listed in tests/hostile/README.md.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
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

// The worker fixture, a notification socket and a rule that calls w.echo.
std::string config(const std::string& agent_extra = "", const std::string& notify_extra = "") {
  return base_config("  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"" + notify_extra +
                         "}}\n",
                     "  - {on: {source: notify, type: vm.start}, do: w.echo, with: {a: \"${name}\"}}\n",
                     agent_extra);
}

bool ok_with_id(int id, const std::string& line) {
  json j = json::parse(line, nullptr, false);
  return j.is_object() && j["ok"] == true && j["id"] == id;
}

// Probes on both sockets: a status request on the control socket, an
// `ack: done` notification through the rule on the notification socket.
struct Probes {
  Probe control, notify;
  explicit Probes(TempDir& dir)
      : control(dir / "control.sock",
                [](int i) { return json{{"cmd", "status"}, {"id", i}}.dump(); }, ok_with_id),
        notify(dir / "notify.sock",
               [](int i) {
                 return json{{"type", "vm.start"}, {"attrs", {{"name", "probe"}}}, {"ack", "done"}, {"id", i}}.dump();
               },
               ok_with_id) {}
  // Both served throughout: every request answered ok, and a few answered at all.
  void check() {
    CHECK(wait_until([&] { return control.answered() >= 3 && notify.answered() >= 3; }));
    control.stop();
    notify.stop();
    INFO("slowest round trips: control " << control.max_ms() << " ms, notify " << notify.max_ms() << " ms");
    CHECK(control.failures() == 0);
    CHECK(notify.failures() == 0);
    CHECK(control.answered() > 0);
    CHECK(notify.answered() > 0);
  }
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

// Raises the soft fd limit as far as the hard one allows; returns it.
rlim_t raise_fd_limit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

}  // namespace

TEST_CASE("hostile: configs that hung or bloated the loader fail reload and SIGHUP with FILE:LINE:COL, "
          "and the next good reload works") {
  TempDir dir;
  const std::string good = config();
  Agent a(dir, good);
  REQUIRE(a.start());
  const std::string good_text = [&] {
    std::ifstream f(a.config_path());
    return std::string(std::istreambuf_iterator<char>(f), {});
  }();
  Probes probes(dir);

  // Billion laughs: nine levels of ten aliases each, 10^9 strings if expanded,
  // where the rule's `with` takes strings.
  std::string laughs = "a0: &a0 [lol]";
  for (int i = 1; i < 10; i++) {
    laughs += ", a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; k++) laughs += (k ? ", *a" : "*a") + std::to_string(i - 1);
    laughs += "]";
  }
  laughs = "rules:\n  - on: {source: a, type: b}\n    do: w.echo\n    with: {" + laughs + "}\n";
  const struct {
    const char* what;
    std::string text;
    std::string error;  // how the reload's error goes on after the file's path
  } cases[] = {
      {"the 55-byte config that made yaml-cpp's LoadAll loop", ",<: t: {condrol_socket.sock, mles:\n  - on*aeimit: 10/s:",
       ":1:1: did not find expected node content"},
      {"billion laughs", laughs, ":4:16: rules[0].with.a0: expected a string, got a sequence"},
      {"100 000 nested sequences", std::string(100000, '['), ":1:65: nested more than 64 sequences and mappings deep"},
      {"a 2 MiB file", "agent: {}\n# " + std::string(2 << 20, 'x') + "\n", ": more than 1MiB of text"},
      {"invalid UTF-8 in a key", "agent: {log\xff: debug}\n", ":1:12: invalid leading UTF-8 octet (0xFF)"},
  };
  LineClient c(a.control_socket());
  for (const auto& k : cases) {
    INFO(k.what);
    write_file(a.config_path(), k.text);
    REQUIRE(c.send_line(R"({"cmd":"reload","id":"r"})"));
    auto line = c.recv_line(10s);  // a generous bound: the loader gives up within a second
    REQUIRE(line);
    json r = json::parse(*line);
    CHECK(r["ok"] == false);
    std::string err = r.value("error", "");
    CHECK(err.rfind(a.config_path() + k.error, 0) == 0);
    CHECK(err.find("nothing changed") != std::string::npos);
    CHECK(err.find('\r') == std::string::npos);
    json st = ctl_json(a, {"status"});
    CHECK(st["data"]["reload"]["running"] == false);

    // The same file on SIGHUP: logged with its location, nothing left running.
    size_t logged = a.log().size();
    a.process().signal(SIGHUP);
    CHECK(wait_until([&] {
      return a.log().find("reload (SIGHUP): " + a.config_path() + k.error, logged) != std::string::npos;
    }));
    CHECK(ctl_json(a, {"status"})["data"]["reload"]["running"] == false);
  }
  write_file(a.config_path(), good_text);
  REQUIRE(c.send_line(R"({"cmd":"reload","id":"good"})"));
  auto line = c.recv_line(30s);
  REQUIRE(line);
  INFO(*line);
  CHECK(json::parse(*line)["ok"] == true);
  probes.check();
  CHECK(a.process().running());
}

TEST_CASE("hostile: 2000 connections at once on each socket: the excess is refused with a line, "
          "the admitted are served, others stay served") {
  const rlim_t fds = raise_fd_limit();
  const int n = static_cast<int>(std::min<rlim_t>(2000, (fds - 200) / 2));
  INFO("fd limit " << fds << ", " << n << " connections per socket");
  REQUIRE(n >= 500);
  TempDir dir;
  Agent a(dir, config(", control_max_connections: 100", ", max_connections: 300"));
  REQUIRE(a.start());
  Probes probes(dir);  // 1 of each limit

  std::vector<std::unique_ptr<LineClient>> ctl, note;
  for (int i = 0; i < n; i++) {
    ctl.push_back(std::make_unique<LineClient>());
    note.push_back(std::make_unique<LineClient>());
    REQUIRE(ctl.back()->connect(a.control_socket()));
    REQUIRE(note.back()->connect(dir / "notify.sock"));
  }
  // Every connection asks once; the admitted ones get their answer, the others
  // one line naming the limit, then EOF.
  for (int i = 0; i < n; i++) {
    ctl[i]->send_line(json{{"cmd", "status"}, {"id", i}}.dump());
    note[i]->send_line(json{{"type", "vm.start"}, {"attrs", {{"name", "c"}}}, {"id", i}}.dump());
  }
  int ctl_ok = 0, ctl_refused = 0, note_ok = 0, note_refused = 0;
  for (int i = 0; i < n; i++) {
    for (auto [c, ok, refused, limit] :
         {std::tuple{ctl[i].get(), &ctl_ok, &ctl_refused, "too many control connections"},
          std::tuple{note[i].get(), &note_ok, &note_refused, "too many connections (max_connections 300)"}}) {
      auto line = c->recv_line(20s);
      if (!line) continue;
      json j = json::parse(*line, nullptr, false);
      if (j.is_object() && j["ok"] == true && j["id"] == i) ++*ok;
      else if (j.is_object() && j["ok"] == false && j.value("error", "").find(limit) != std::string::npos) ++*refused;
    }
  }
  // The probes hold one slot of each limit.
  CHECK(ctl_ok == 99);
  CHECK(ctl_refused == n - 99);
  CHECK(note_ok == 299);
  CHECK(note_refused == n - 299);
  ctl.clear();
  note.clear();
  probes.check();
  // Every slot is free again.
  std::vector<LineClient> again(50);
  for (auto& c : again) REQUIRE(c.connect(dir / "notify.sock"));
  for (int i = 0; i < 50; i++) again[i].send_line(json{{"type", "vm.start"}, {"id", i}}.dump());
  for (int i = 0; i < 50; i++) {
    auto line = again[i].recv_line();
    REQUIRE(line);
    CHECK(ok_with_id(i, *line));
  }
  CHECK(a.process().running());
}

TEST_CASE("hostile: slowloris on both sockets: 100 clients dripping a byte each 20 ms do not slow the others, "
          "and each drip-fed line is answered") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(a.start());
  Probes probes(dir);
  const std::string ctl_line = R"({"cmd":"status","id":7})" "\n";
  const std::string note_line = R"({"type":"vm.start","attrs":{"name":"slow"},"id":7})" "\n";
  std::vector<LineClient> ctl(50), note(50);
  for (auto& c : ctl) REQUIRE(c.connect(a.control_socket()));
  for (auto& c : note) REQUIRE(c.connect(dir / "notify.sock"));
  const size_t len = std::max(ctl_line.size(), note_line.size());
  for (size_t b = 0; b < len; b++) {
    for (auto& c : ctl)
      if (b < ctl_line.size()) REQUIRE(c.send(ctl_line.substr(b, 1)));
    for (auto& c : note)
      if (b < note_line.size()) REQUIRE(c.send(note_line.substr(b, 1)));
    std::this_thread::sleep_for(20ms);
  }
  for (auto* group : {&ctl, &note})
    for (auto& c : *group) {
      auto line = c.recv_line();
      REQUIRE(line);
      CHECK(ok_with_id(7, *line));
    }
  probes.check();
  CHECK(a.process().running());
}

TEST_CASE("hostile: a half-closed client on either socket gets every answer, then EOF") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(a.start());
  Probes probes(dir);
  LineClient ctl(a.control_socket()), note(dir / "notify.sock");
  std::string ctl_lines, note_lines;
  for (int i = 1; i <= 20; i++) {
    ctl_lines += json{{"cmd", "status"}, {"id", i}}.dump() + "\n";
    note_lines += json{{"type", "vm.start"}, {"attrs", {{"name", "h"}}}, {"ack", "done"}, {"id", i}}.dump() + "\n";
  }
  REQUIRE(ctl.send(ctl_lines));
  REQUIRE(note.send(note_lines));
  ::shutdown(ctl.fd(), SHUT_WR);
  ::shutdown(note.fd(), SHUT_WR);
  for (auto* c : {&ctl, &note}) {
    for (int i = 1; i <= 20; i++) {
      auto line = c->recv_line();
      REQUIRE(line);
      CHECK(ok_with_id(i, *line));
    }
    CHECK(c->wait_closed());
  }
  probes.check();
  CHECK(a.process().running());
}
