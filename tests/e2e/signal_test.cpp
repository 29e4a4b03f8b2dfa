// Exit statuses on signals (README "Running"): a second SIGTERM during a
// shutdown that waits for offloaded work exits at once with status 3, which
// is distinct from a config error (1) and a passed shutdown deadline (2).
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::LineClient;
using hostlet::test::TempDir;

TEST_CASE("signals: a second SIGTERM during shutdown exits at once with status 3") {
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", shutdown_timeout: 60s}\n"
               "plugins:\n"
               "  - {name: w, plugin: " + hostlet::test::env_path("HOSTLET_TEST_PLUGINS") + "/worker_v1.so}\n");
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  REQUIRE(c.send_line(R"({"id":1,"cmd":"call","action":"w.work","attrs":{"ms":"30000"}})"));
  REQUIRE(hostlet::test::wait_until([&] {  // the work is on the pool
    auto j = nlohmann::json::parse(a.ctl({"--json", "stats"}).out, nullptr, false);
    return j.is_object() && j["data"]["lanes"]["w"].value("running", 0) == 1;
  }));
  a.process().signal(SIGTERM);  // waits up to 60 s for w.work
  REQUIRE(hostlet::test::wait_until([&] { return a.log().find("shutting down") != std::string::npos; }));
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 3);
  CHECK(a.log().find("during shutdown: exiting now (status 3)") != std::string::npos);
}
