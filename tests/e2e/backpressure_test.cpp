// End-to-end: backpressure from a full offload lane back to the client.
//
// A flood of `ack: done` notifications whose rule calls an action on a small
// lane (max_inflight 2, max_queue 8, 5 ms per call) is answered ok in full:
// the calls wait for room in the action registry instead of failing "queue
// full", the waiting calls count against the event bus bound, and the
// unixsock source pauses. Meanwhile a rule for another instance keeps firing.
// With a short action_wait the overflow gets the documented error instead;
// a control-socket call waits on a full lane, or answers EAGAIN with --no-wait.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Instances: `slow` (the small lane), `fast` (another worker), `notify`
// (unixsock on @DIR@/notify.sock). `flood` events run slow.work for ${ms};
// `other` events run fast.work at once.
std::string config(const std::string& agent_extra = "", const std::string& rule_extra = "") {
  const std::string worker = fixture("worker_v1");
  return "agent: {control_socket: \"@DIR@/control.sock\", threadpool: 4" + agent_extra + "}\n"
         "plugins:\n"
         "  - {name: slow, plugin: " + worker + ", max_inflight: 2, max_queue: 8}\n"
         "  - {name: fast, plugin: " + worker + "}\n"
         "  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"}}\n"
         "rules:\n"
         "  - {on: {source: notify, type: flood}, do: slow.work, with: {ms: \"${ms}\"}" + rule_extra + "}\n"
         "  - {on: {source: notify, type: other}, do: fast.work, with: {ms: \"0\"}}\n";
}

bool start(Agent& a) {
  return a.start() && wait_until([&] { return a.log().find("] ready:") != std::string::npos; });
}

std::string flood(int id, int ms, const std::string& ack = "done") {
  return json{{"type", "flood"}, {"attrs", {{"ms", std::to_string(ms)}}}, {"id", id}, {"ack", ack}}.dump();
}

struct Tally {
  std::atomic<int> ok{0}, lane_full{0}, other_error{0}, missing{0};
  std::atomic<int> samples{0};
  std::string first_error;  // written by one client only (under the first_error_taken flag)
  std::atomic<bool> first_error_taken{false};
};

// `clients` connections each pipeline `per_client` flood notifications and
// read every answer; counts them in t.
void run_flood(const std::string& sock, int clients, int per_client, int ms, Tally& t) {
  std::vector<std::thread> threads;
  for (int k = 0; k < clients; k++)
    threads.emplace_back([&, k] {
      LineClient c(sock);
      std::thread writer([&] {
        std::string batch;
        for (int i = 0; i < per_client; i++) batch += flood(k * per_client + i, ms) + "\n";
        c.send(batch);
      });
      std::set<int> seen;
      for (int i = 0; i < per_client; i++) {
        auto line = c.recv_line(60s);
        if (!line) break;
        json j = json::parse(*line, nullptr, false);
        if (j.is_discarded() || !j["id"].is_number()) {
          t.other_error++;
          continue;
        }
        seen.insert(j["id"].get<int>());
        if (j["ok"] == true) {
          t.ok++;
          continue;
        }
        std::string err = j["results"].empty() ? j.value("error", "") : j["results"][0].value("error", "");
        bool full = err.find("did not start: the offload lane of 'slow' (max_inflight 2, max_queue 8) was full for ") !=
                    std::string::npos;
        (full ? t.lane_full : t.other_error)++;
        if (!t.first_error_taken.exchange(true)) t.first_error = err;
      }
      writer.join();
      t.missing += per_client - static_cast<int>(seen.size());
    });
  for (auto& th : threads) th.join();
}

}  // namespace

TEST_CASE("backpressure: a flood on a small lane is answered ok in full while another instance's rules fire",
          "[e2e][backpressure]") {
  TempDir dir;
  // event_queue 1024: above what the flood can hold (4 connections x
  // unixsock's max_pending 128), so the probe's events find room.
  Agent a(dir, config(", event_queue: 1024"));
  REQUIRE(start(a));
  // The other instance's rule is served throughout: one `other` every 50 ms.
  Probe other(dir / "notify.sock",
              [](int i) { return json{{"type", "other"}, {"id", i}, {"ack", "done"}}.dump(); },
              [](int i, const std::string& line) {
                json j = json::parse(line, nullptr, false);
                return !j.is_discarded() && j["id"] == i && j["ok"] == true && j["results"].size() == 1;
              });
  Tally t;
  run_flood(dir / "notify.sock", 4, 500, 5, t);
  int answered_during_flood = other.answered();
  other.stop();
  INFO("first error: " << t.first_error);
  CHECK(t.ok == 2000);
  CHECK(t.lane_full == 0);
  CHECK(t.other_error == 0);
  CHECK(t.missing == 0);
  // 2000 calls of 5 ms two at a time take 5 s: the 50 ms probe got answers all along.
  CHECK(answered_during_flood >= 10);
  CHECK(other.failures() == 0);

  json s = ctl_json(a, {"stats"});
  REQUIRE(s["ok"] == true);
  json d = s["data"];
  INFO(d.dump());
  CHECK(d["lanes"]["slow"]["rejected"] == 0);        // the lane never had to refuse
  CHECK(d["actions"]["waited"].get<int>() > 0);       // calls did wait for it
  CHECK(d["actions"]["wait_expired"] == 0);
  CHECK(d["actions"]["waiting"] == 0);
  // Each connection paused at max_pending (128) answers outstanding: that bounds the waiting calls.
  CHECK(d["actions"]["max_waiting"].get<int>() <= 4 * 128);
  CHECK(d["bus"]["max_depth"].get<int>() <= 1024);
  // (bus.dropped counts refused publishes; unixsock keeps and retries those lines: nothing was lost, see above)
  for (const auto& r : d["rules"]) CHECK(r["actions_failed"] == 0);
  CHECK(a.log().find("queue full") == std::string::npos);
}

TEST_CASE("backpressure: with action_wait 50ms the overflow is answered with the lane's error, none lost",
          "[e2e][backpressure]") {
  TempDir dir;
  Agent a(dir, config(", action_wait: 50ms"));
  REQUIRE(start(a));
  Tally t;
  run_flood(dir / "notify.sock", 4, 100, 20, t);
  INFO("first error: " << t.first_error);
  CHECK(t.ok + t.lane_full == 400);
  CHECK(t.lane_full > 0);  // 400 calls of 20 ms, two at a time, cannot all start within 50 ms
  CHECK(t.ok >= 10);       // the lane and its queue were filled
  CHECK(t.other_error == 0);
  CHECK(t.missing == 0);
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["actions"]["wait_expired"] == t.lane_full.load());
}

TEST_CASE("backpressure: a rule's own action_wait overrides the agent's", "[e2e][backpressure]") {
  TempDir dir;
  Agent a(dir, config(", action_wait: 1h", ", action_wait: 0s"));
  REQUIRE(start(a));
  Tally t;
  run_flood(dir / "notify.sock", 1, 40, 50, t);
  INFO("first error: " << t.first_error);
  CHECK(t.ok + t.lane_full + t.other_error == 40);
  CHECK(t.ok >= 10);  // what fit in the lane and its queue
  CHECK(t.lane_full == 0);
  CHECK(t.other_error > 0);  // refused at once, not after a wait
  CHECK_THAT(t.first_error, Catch::Contains("is full (EAGAIN; the call asked not to wait)"));
}

TEST_CASE("backpressure: a control-socket call on a full lane waits and answers; --no-wait answers EAGAIN",
          "[e2e][backpressure]") {
  TempDir dir;
  Agent a(dir, config());
  REQUIRE(start(a));
  // Fill the lane: 2 running and 8 queued calls of 300 ms (ack none: nobody waits for them).
  LineClient c(dir / "notify.sock");
  for (int i = 0; i < 10; i++) c.send_line(flood(i, 300, "none"));
  REQUIRE(wait_until([&] {
    json s = ctl_json(a, {"stats"});
    return s["data"]["lanes"]["slow"]["queued"] == 8;
  }));
  Run busy = a.ctl({"--json", "call", "--no-wait", "slow.work", "ms=0"});
  CHECK(busy.exit_code == 1);
  INFO(busy.out << busy.err);
  json b = json::parse(busy.out, nullptr, false);
  REQUIRE_FALSE(b.is_discarded());
  CHECK(b["ok"] == false);
  CHECK(b["errno"] == "EAGAIN");
  CHECK(b["error"] ==
        "slow.work did not start: the offload lane of 'slow' (max_inflight 2, max_queue 8) is full (EAGAIN; the call "
        "asked not to wait)");
  Run plain = a.ctl({"call", "--no-wait", "slow.work", "ms=0"});
  CHECK(plain.exit_code == 1);
  CHECK_THAT(plain.err, Catch::Contains("EAGAIN"));
  // Without --no-wait the call waits for room and runs.
  Run waited = a.ctl({"--json", "call", "slow.work", "ms=0"});
  INFO(waited.out << waited.err);
  CHECK(waited.exit_code == 0);
  json w = json::parse(waited.out, nullptr, false);
  REQUIRE_FALSE(w.is_discarded());
  CHECK(w["ok"] == true);
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["actions"]["waited"].get<int>() >= 1);
  CHECK(s["data"]["actions"]["wait_refused"].get<int>() == 2);
  CHECK(s["data"]["lanes"]["slow"]["rejected"] == 0);
}
