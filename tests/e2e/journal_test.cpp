// Logging as a service (README "Running as a service"): with stderr being the
// stream JOURNAL_STREAM names, lines carry syslog priority prefixes and no
// timestamp of their own; a flood of identical warnings is cut to the first
// few, then one line that counts the rest.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <string>

#include "support.hpp"

using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::env_path;
using hostlet::test::LineClient;
using hostlet::test::Process;
using hostlet::test::TempDir;
using hostlet::test::wait_until;

namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

std::string config(const std::string& rules = "") {
  return "agent: {control_socket: \"@DIR@/control.sock\"}\n"
         "plugins:\n"
         "  - {name: w, plugin: " + env_path("HOSTLET_TEST_PLUGINS") + "/worker_v1.so}\n" + rules;
}

}  // namespace

TEST_CASE("journal: with JOURNAL_STREAM naming stderr, lines are '<priority>[who] message' without a time") {
  TempDir dir;
  std::string cfg = config();
  for (size_t p; (p = cfg.find("@DIR@")) != std::string::npos;) cfg.replace(p, 5, dir.path());
  std::string file = dir.write("hostlet.yaml", cfg);
  // As systemd does: JOURNAL_STREAM is the device and inode of the stream on fd 2.
  Process agent({"/bin/sh", "-c",
                 "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" -c \"$1\"", env_path("HOSTLET_BIN"),
                 file});
  REQUIRE(wait_until([&] { return agent.err().find("] ready:") != std::string::npos; }, 20s));
  auto st = agent.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 0);
  std::istringstream lines(agent.err());
  size_t n = 0;
  for (std::string line; std::getline(lines, line); n++) {
    INFO(line);
    REQUIRE(line.size() > 4);
    CHECK(line[0] == '<');
    CHECK(std::string("3467").find(line[1]) != std::string::npos);
    CHECK(line.substr(2, 2) == ">[");
    CHECK(line.find("Z INFO") == std::string::npos);  // no timestamp, no level word
  }
  CHECK(n >= 3);
  CHECK(agent.err().find("<6>[hostlet] ready:") != std::string::npos);
  CHECK(agent.err().find("<6>[hostlet] stopped") != std::string::npos);
}

TEST_CASE("journal: without JOURNAL_STREAM (or with another stream's) lines keep the time and level") {
  TempDir dir;
  Agent a(dir, config(), {}, {{"JOURNAL_STREAM", "1:2"}});
  REQUIRE(a.start());
  REQUIRE(wait_until([&] { return a.log().find("] ready:") != std::string::npos; }));
  CHECK(a.log().find("Z INFO  [hostlet] ready:") != std::string::npos);
  CHECK(a.log().find("<6>") == std::string::npos);
}

TEST_CASE("journal: 200 identical warnings become 5 lines and one that counts the other 195") {
  TempDir dir;
  Agent a(dir, config("rules:\n  - {on: {type: boom}, do: w.fail}\n"));
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  for (int i = 1; i <= 200; i++)
    REQUIRE(c.send_line(R"({"id":)" + std::to_string(i) + R"(,"cmd":"notify","type":"boom","ack":"done"})"));
  for (int i = 1; i <= 200; i++) REQUIRE(c.recv_line(30s));
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 0);
  const std::string log = a.log();
  INFO(log);
  CHECK(count(log, "w.fail failed: failed on purpose") == 5 + 1);  // 5 lines, and the last in the summary
  CHECK(count(log, "... 195 more like this in 10s, the last: rule ") == 1);
}
