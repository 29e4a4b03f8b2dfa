// The liveness rule (plugin.h, "Liveness"): nothing calls into an instance
// after its destroy. An instance that waits on an action's answer or on a
// tracked event's completion is reloaded (v1 -> v2) or stopped before the
// answer comes: the answer is delivered to it once, as an error, just before
// its destroy, and the real answer that comes later goes to nobody. Under
// ASan the old behaviour (the answer delivered into the freed instance) ends
// the agent; in every build the log shows which version got which answer.
#include <catch2/catch.hpp>

#include <thread>

#include "harness.hpp"

using namespace reload_test;
using namespace std::chrono_literals;

namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

// s: a worker whose `work` is the slow answer; w: the waiting instance, on a
// file the test replaces. `s` comes first so that at shutdown (instances
// stop in reverse order) w is destroyed while s still works.
std::string config() {
  return "agent: {control_socket: \"@DIR@/control.sock\"}\n"
         "plugins:\n"
         "  - {name: s, plugin: \"" + fixture("worker_v1") + "\", max_inflight: 2}\n"
         "  - {name: w, plugin: \"@DIR@/w.so\"}\n"
         "rules:\n"
         "  - on: {source: w, type: slow.track}\n"
         "    do: s.work\n"
         "    with: {ms: \"800\"}\n";
}

struct Liveness {
  Liveness() {
    write_config(wa.agent, wa.dir, config());  // WorkerAgent puts w first
    REQUIRE(start(wa.agent));
  }
  void reload_to_v2() {
    install(fixture("worker_v2"), wa.so);
    Reload r = reload(wa.agent, "w");
    INFO(r.reply.dump());
    REQUIRE(r.ok());
    REQUIRE(version(wa.agent, "w") == "2");
  }
  WorkerAgent wa;
};

}  // namespace

TEST_CASE("liveness: an answer owed to a reloaded instance reaches it once, before its destroy, as an error",
          "[liveness]") {
  Liveness t;
  json r = ctl_json(t.wa.agent, {"call", "w.call_later", "action=s.work", "ms=800"});
  REQUIRE(r.value("ok", false));
  t.reload_to_v2();  // well before s.work answers
  const std::string gone = "v1 call_later s.work answered: instance 'w' is being destroyed";
  REQUIRE(hostlet::test::wait_until([&] { return count(t.wa.agent.log(), gone) == 1; }));
  // s.work answers (800 ms): the old instance is gone, nothing more for it.
  REQUIRE(hostlet::test::wait_until([&] { return lane_running(t.wa.agent, "s") == 0; }, 10s));
  std::this_thread::sleep_for(100ms);
  const std::string log = t.wa.agent.log();
  INFO(log);
  CHECK(count(log, "v1 call_later s.work answered:") == 1);
  CHECK(count(log, "call_later s.work answered: ok") == 0);
  CHECK(version(t.wa.agent, "w") == "2");
  CHECK(stops_cleanly(t.wa.agent));
}

TEST_CASE("liveness: a tracked event of a reloaded instance completes once, before its destroy, with no outcomes",
          "[liveness]") {
  Liveness t;
  json r = ctl_json(t.wa.agent, {"call", "w.track_later", "type=slow.track"});
  REQUIRE(r.value("ok", false));
  REQUIRE(hostlet::test::wait_until([&] { return lane_running(t.wa.agent, "s") == 1; }));  // the rule fired
  t.reload_to_v2();
  REQUIRE(hostlet::test::wait_until([&] { return lane_running(t.wa.agent, "s") == 0; }, 10s));
  std::this_thread::sleep_for(100ms);
  const std::string log = t.wa.agent.log();
  INFO(log);
  CHECK(count(log, "v1 track_later slow.track done: 0 outcome(s)") == 1);
  CHECK(count(log, "track_later slow.track done:") == 1);
  CHECK(stops_cleanly(t.wa.agent));
}

TEST_CASE("liveness: stopping the agent destroys an instance with an answer and a tracked event owed; exit 0",
          "[liveness]") {
  Liveness t;
  REQUIRE(ctl_json(t.wa.agent, {"call", "w.call_later", "action=s.work", "ms=800"}).value("ok", false));
  REQUIRE(ctl_json(t.wa.agent, {"call", "w.track_later", "type=slow.track"}).value("ok", false));
  REQUIRE(hostlet::test::wait_until([&] { return lane_running(t.wa.agent, "s") == 2; }));
  CHECK(stops_cleanly(t.wa.agent));  // w is destroyed first, while s still works
  const std::string log = t.wa.agent.log();
  INFO(log);
  CHECK(count(log, "v1 call_later s.work answered: instance 'w' is being destroyed") == 1);
  CHECK(count(log, "v1 track_later slow.track done: 0 outcome(s)") == 1);
  CHECK(count(log, "call_later s.work answered: ok") == 0);
}
