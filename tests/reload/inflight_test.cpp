// Reload while the instance's blocking offloads run on the pool: the old
// version's work finishes on the old code before its image goes, and a
// drain past reload_timeout aborts the reload instead of unloading code that
// still runs. Also run under ASan and TSan (suite 'tsan').
#include <map>
#include <thread>

#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace reload_test;
using namespace std::chrono_literals;
using hostlet::test::wait_until;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kWorkMs = 1200;  // 100 pool threads start slowly under a sanitizer
#else
constexpr int kWorkMs = 400;
#endif

json work_request(int id, int ms) {
  return json{{"id", id}, {"cmd", "call"}, {"action", "w.work"}, {"attrs", {{"ms", std::to_string(ms)}}}};
}

}  // namespace

TEST_CASE("reload: 100 blocking offloads in flight finish on v1, then v2 serves", "[reload][offload]") {
  WorkerAgent wa(", threadpool: 128, control_max_connections: 256, reload_timeout: 30s",
                 ", max_inflight: 128, max_queue: 1024");
  Agent& a = wa.agent;
  REQUIRE(start(a));

  constexpr int kCalls = 100;
  std::vector<LineClient> calls;
  for (int i = 0; i < kCalls; i++) {
    calls.emplace_back(a.control_socket());
    REQUIRE(calls.back().send_line(work_request(i, kWorkMs).dump()));
  }
  // All 100 are on pool threads before the reload starts.
  REQUIRE(wait_until([&] { return lane_running(a, "w") == kCalls; }, 30s));

  install(fixture("worker_v2"), wa.so);
  Reload r = reload(a, "w");
  INFO("reload reply: " << r.reply.dump() << "\nlog:\n" << a.log());
  CHECK(r.ok());
  CHECK(r.item("w").value("version", std::string()) == "2");
  CHECK(r.item("w").value("previous", std::string()) == "1");

  std::map<std::string, int> answers;  // version or error -> count
  for (int i = 0; i < kCalls; i++) {
    json j = next_reply(calls[i]);
    CHECK(j["id"] == i);
    answers[answered_version(j)]++;
  }
  CHECK(answers == std::map<std::string, int>{{"1", kCalls}});
  CHECK(version(a, "w") == "2");
  // A fresh image: v2's globals never counted v1's work.
  json mr = ctl_json(a, {"call", "w.max_running"});
  CHECK(mr["attrs"]["max"] == "0");
  CHECK(loads(a, "w") == 2);
  CHECK(ctl_json(a, {"stats"})["data"]["plugins_still_mapped_after_unload"] == 0);
  CHECK(stops_cleanly(a));
  CHECK(a.log().find("loop did not close") == std::string::npos);
}

TEST_CASE("reload: a drain past reload_timeout fails the reload and v1 keeps serving", "[reload][offload]") {
  WorkerAgent wa(", reload_timeout: 100ms");
  Agent& a = wa.agent;
  REQUIRE(start(a));

  LineClient work(a.control_socket());
  REQUIRE(work.send_line(work_request(1, 1500).dump()));
  REQUIRE(wait_until([&] { return lane_running(a, "w") == 1; }));
  install(fixture("worker_v2"), wa.so);

  // A call made while the reload waits is answered (by v1, after the rollback).
  LineClient during(a.control_socket());
  Run run;
  std::thread reloader([&] { run = a.ctl({"--json", "reload", "w"}); });
  std::this_thread::sleep_for(20ms);
  REQUIRE(during.send_line(R"({"id":2,"cmd":"call","action":"w.version"})"));
  reloader.join();
  Reload r = parse_reload(run);

  INFO("reload reply: " << r.reply.dump() << " stderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK_FALSE(r.reply.value("ok", true));
  const std::string e = r.error();
  CHECK((e.find("drain") != std::string::npos || e.find("reload_timeout") != std::string::npos));
  CHECK(e.find("old version keeps running") != std::string::npos);
  CHECK(r.item("w").value("action", std::string()) == "failed");

  CHECK(answered_version(next_reply(during, 30s)) == "1");

  CHECK(version(a, "w") == "1");
  CHECK(last_result(a, "w").rfind("failed", 0) == 0);
  CHECK(loads(a, "w") == 1);

  CHECK(answered_version(next_reply(work, 30s)) == "1");  // the work finished on v1

  // Nothing in flight now: the same reload goes through.
  Reload again = reload(a, "w");
  INFO("second reload: " << again.reply.dump());
  CHECK(again.ok());
  CHECK(version(a, "w") == "2");
  CHECK(loads(a, "w") == 2);
  CHECK(stops_cleanly(a));
}
