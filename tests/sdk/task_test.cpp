// End to end: coroutine action handlers (hostlet/task.hpp) in the real agent,
// through the fixture tests/plugins/coro.cpp (built with -std=c++20).
#include <sys/wait.h>

#include <csignal>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::env_path;
using hostlet::test::Process;
using hostlet::test::Run;
using hostlet::test::TempDir;
using hostlet::test::wait_until;

namespace {

std::string config(const std::string& instance_extra = "") {
  return "agent: {control_socket: \"@DIR@/control.sock\", threadpool: 2, log_level: debug}\n"
         "plugins:\n"
         "  - {name: co, plugin: " + env_path("HOSTLET_TEST_PLUGINS") + "/coro.so, max_inflight: 1" +
         instance_extra + "}\n";
}

bool start(Agent& a) {
  return a.start() && wait_until([&] { return a.log().find("] ready:") != std::string::npos; });
}

void stops_cleanly(Agent& agent) {
  auto st = agent.stop();
  INFO("agent log:\n" << agent.log());
  REQUIRE(st.has_value());
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
}

}  // namespace

TEST_CASE("task: co_await offload, call and sleep answer with the value, the work's message or the errno",
          "[sdk][task][e2e]") {
  TempDir tmp;
  Agent agent(tmp, config());
  {
    bool started = start(agent);
    INFO("agent log:\n" << agent.log());
    REQUIRE(started);
  }
  auto call = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "call");
    Run r = agent.ctl(args);
    UNSCOPED_INFO("hostlet-ctl call " << args[1] << ":\n" << r.out << r.err << "agent log:\n" << agent.log());
    return r;
  };
  SECTION("offload returns the work's value") {
    Run r = call({"co.value", "text=abc"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n  value=got abc\n");
  }
  SECTION("an exception thrown by the work reaches the caller with its message") {
    Run r = call({"co.throw", "message=disk on fire"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("disk on fire") != std::string::npos);
  }
  SECTION("a hostlet::Error thrown by the work keeps its errno") {
    Run r = call({"co.error_code"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n  code=" + std::to_string(-ENOENT) + "\n  message=no such thing\n");
  }
  SECTION("call awaits another action's answer") {
    Run r = call({"co.call", "text=inner"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n  value=got inner\n");
  }
  SECTION("sleep resumes after the host timer") {
    Run r = call({"co.sleep", "ms=30"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n  slept=30\n");
  }
  SECTION("the callback offload's done can take the work's Error") {
    Run r = call({"co.cb_throw"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(std::to_string(-EIO) + " callback work broke") != std::string::npos);
  }
  stops_cleanly(agent);
}

TEST_CASE("task: an offload past the instance's offload_timeout throws ETIMEDOUT once the work has ended",
          "[sdk][task][e2e]") {
  TempDir tmp;
  Agent agent(tmp, config(", offload_timeout: 50ms"));
  REQUIRE(start(agent));
  Run r = agent.ctl({"call", "co.value", "ms=300"});
  INFO("hostlet-ctl call co.value ms=300:\n" << r.out << r.err << "agent log:\n" << agent.log());
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("deadline passed") != std::string::npos);
  CHECK(agent.log().find("value interrupted: deadline passed (" + std::to_string(-ETIMEDOUT) + ")") !=
        std::string::npos);
  stops_cleanly(agent);
}

TEST_CASE("task: at stop a sleeping coroutine gets ESHUTDOWN, queued work ESHUTDOWN, running work its value",
          "[sdk][task][e2e]") {
  TempDir tmp;
  Agent agent(tmp, config());
  REQUIRE(start(agent));
  const std::string ctl = env_path("HOSTLET_CTL");
  // One long sleep, one offload running (max_inflight 1), one queued behind it.
  Process sleeper({ctl, "-s", agent.control_socket(), "call", "co.sleep", "ms=60000"});
  Process running({ctl, "-s", agent.control_socket(), "call", "co.value", "ms=400", "text=running"});
  auto submitted = [&](int n) {
    Run s;
    bool seen = wait_until(
        [&] {
          s = agent.ctl({"--json", "stats"});
          auto j = nlohmann::json::parse(s.out, nullptr, false);
          return j.is_object() && j["data"]["lanes"]["co"].value("submitted", 0) == n;
        },
        5s);
    UNSCOPED_INFO("stats:\n" << s.out << "agent log:\n" << agent.log());
    return seen;
  };
  REQUIRE(submitted(1));
  Process queued({ctl, "-s", agent.control_socket(), "call", "co.value", "text=queued"});
  REQUIRE(submitted(2));
  stops_cleanly(agent);
  const std::string log = agent.log();
  INFO("agent log:\n" << log);
  CHECK(log.find("sleep interrupted: sleep: instance is shutting down") != std::string::npos);
  CHECK(log.find("value interrupted: instance is shutting down (" + std::to_string(-ESHUTDOWN) + ")") !=
        std::string::npos);
  // The running work finished and its coroutine resumed with the value: no interruption for it.
  const std::string interrupted = "value interrupted: instance is shutting down";
  CHECK(log.find(interrupted, log.find(interrupted) + 1) == std::string::npos);
  for (Process* p : {&sleeper, &running, &queued}) {
    auto st = p->wait(10s);
    CHECK(st.has_value());
  }
}
