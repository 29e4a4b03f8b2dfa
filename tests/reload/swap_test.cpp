// Reload of one instance while it is busy: notifications through the
// unixsock plugin with `ack: done` during a v1 -> v2 swap, events held during
// the swap, and reload requests coalesced while one runs.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "events.hpp"
#include "harness.hpp"

using namespace reload_test;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

// One unixsock client sending `job` notifications with `ack: done` at a
// paced rate (a batch every 10 ms) for `duration`, and reading the answers
// on a second thread. Tallies instead of asserting off the test's thread.
class PacedClient {
 public:
  PacedClient(const std::string& sock, int per_second, milliseconds duration) : c_(sock) {
    sender_ = std::thread([this, per_second, duration] { send_all(per_second, duration); });
    reader_ = std::thread([this] { read_all(); });
  }
  ~PacedClient() { join(); }
  void join() {
    if (sender_.joinable()) sender_.join();
    if (reader_.joinable()) reader_.join();
  }

  // After join().
  int sent() const { return sent_; }
  int answered() const { return static_cast<int>(seen_.size()); }
  int twice() const { return twice_; }
  int unknown() const { return unknown_; }
  int failed() const { return failed_; }
  bool send_failed() const { return send_failed_; }
  const std::map<std::string, int>& versions() const { return versions_; }
  const std::vector<std::string>& errors() const { return errors_; }
  int answers_so_far() const { return answers_; }

 private:
  void send_all(int per_second, milliseconds duration) {
    const int batch = std::max(1, per_second / 100);
    const auto t0 = steady_clock::now();
    int next = 0;
    for (int tick = 0; steady_clock::now() - t0 < duration; tick++) {
      std::this_thread::sleep_until(t0 + tick * 10ms);
      std::string lines;
      for (int i = 0; i < batch; i++)
        lines += R"({"type":"job","id":)" + std::to_string(++next) + R"(,"ack":"done"})" "\n";
      if (!c_.send(lines)) {
        send_failed_ = true;
        next -= batch;
        break;
      }
      sent_ = next;
    }
    sending_ = false;
  }

  void read_all() {
    for (;;) {
      if (!sending_ && static_cast<int>(seen_.size()) + unknown_ >= sent_) return;
      auto line = c_.recv_line(30s);  // answers wait at most for the reload
      if (!line) return;
      json r = json::parse(*line, nullptr, false);
      if (r.is_discarded() || !r.contains("id") || !r["id"].is_number_integer()) {
        unknown_++;
        note_error("unreadable or id-less answer: " + *line);
        continue;
      }
      if (!seen_.insert(r["id"].get<int>()).second) {
        twice_++;
        note_error("answered twice: " + *line);
        continue;
      }
      answers_++;
      const json& res = r.value("results", json::array());
      if (r.value("ok", false) && res.size() == 1 && res[0].value("ok", false)) {
        versions_[res[0]["attrs"].value("version", std::string("<absent>"))]++;
      } else {
        failed_++;
        note_error(*line);
      }
    }
  }

  void note_error(const std::string& e) {
    if (errors_.size() < 5) errors_.push_back(e);
  }

  LineClient c_;
  std::thread sender_, reader_;
  std::atomic<int> sent_{0};
  std::atomic<bool> sending_{true}, send_failed_{false};
  std::atomic<int> answers_{0};
  // the reader's own
  std::set<int> seen_;
  int twice_ = 0, unknown_ = 0, failed_ = 0;
  std::map<std::string, int> versions_;
  std::vector<std::string> errors_;
};

}  // namespace

TEST_CASE("reload: v1 -> v2 under 8 clients with ack done: every notification answered once and ok",
          "[reload][load]") {
  // Back-pressure as deployed: a connection is not read while 128 answers
  // are due (unixsock's max_pending), so at most 8 x 128 calls wait for w.
  WorkerAgent wa(", threadpool: 8", ", max_inflight: 64, max_queue: 4096",
                 "  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"}}\n"
                 "rules:\n"
                 "  - on: {source: notify, type: job}\n"
                 "    do: w.work\n"
                 "    with: {ms: \"0\"}\n");
  Agent& a = wa.agent;
  REQUIRE(start(a));

  // 8 x 2500/s is the issue's 20k/s; the rate reached is printed, not asserted.
  constexpr int kClients = 8, kPerSecond = 2500;
  std::vector<std::unique_ptr<PacedClient>> clients;
  const auto t0 = steady_clock::now();
  for (int i = 0; i < kClients; i++)
    clients.push_back(std::make_unique<PacedClient>(wa.dir / "notify.sock", kPerSecond, 3s));
  auto answers = [&] {
    int n = 0;
    for (auto& c : clients) n += c->answers_so_far();
    return n;
  };
  REQUIRE(hostlet::test::wait_until([&] { return answers() > 1000; }, 20s));
  std::this_thread::sleep_until(t0 + 1500ms);

  install(fixture("worker_v2"), wa.so);
  const int before_reload = answers();
  Reload r = reload(a, "w");
  INFO("reload reply: " << r.reply.dump() << "\nagent log tail:\n" << a.log().substr(a.log().size() > 4000 ? a.log().size() - 4000 : 0));
  CHECK(r.ok());
  json item = r.item("w");
  CHECK(item.value("action", std::string()) == "reloaded");
  CHECK(item.value("ok", false));
  CHECK(item.value("version", std::string()) == "2");
  CHECK(item.value("previous", std::string()) == "1");
  CHECK(item.value("held_calls", -1) >= 0);

  for (auto& c : clients) c->join();
  const double secs = duration<double>(steady_clock::now() - t0).count();
  int sent = 0, answered = 0;
  std::map<std::string, int> versions;
  for (size_t i = 0; i < clients.size(); i++) {
    const PacedClient& c = *clients[i];
    std::string errors;
    for (auto& e : c.errors()) errors += "\n  " + e;
    INFO("client " << i << ": sent " << c.sent() << ", answered " << c.answered() << ", first errors:" << errors);
    CHECK_FALSE(c.send_failed());
    CHECK(c.sent() > 0);
    CHECK(c.answered() == c.sent());  // none lost
    CHECK(c.twice() == 0);            // none answered twice
    CHECK(c.unknown() == 0);
    CHECK(c.failed() == 0);           // every answer ok
    sent += c.sent();
    answered += c.answered();
    for (auto& [v, n] : c.versions()) versions[v] += n;
  }
  std::printf("reload under load: %d notifications in %.1f s (%.0f/s), %d answered before the reload; versions:",
              sent, secs, sent / secs, before_reload);
  for (auto& [v, n] : versions) std::printf(" %s=%d", v.c_str(), n);
  std::printf("; held_calls %s\n", item.value("held_calls", json()).dump().c_str());
  CHECK(versions.size() == 2);
  CHECK(versions["1"] > 0);
  CHECK(versions["2"] > 0);

  CHECK(version(a, "w") == "2");
  CHECK(loads(a, "w") == 2);
  CHECK(last_result(a, "w") == "ok");
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: requests during a reload are coalesced: 5 requests, 2 loads, 5 answers ok",
          "[reload][coalesce]") {
  WorkerAgent wa(", log_level: debug, reload_timeout: 30s");
  Agent& a = wa.agent;
  REQUIRE(start(a));
  json status0 = reload_status(a);
  INFO("status data.reload at start: " << status0.dump());
  REQUIRE(status0.is_object());
  CHECK(status0.value("running", true) == false);
  const uint64_t done0 = status0.value("done", uint64_t{0});

  // Work in flight keeps the first reload waiting for its drain.
  LineClient work(a.control_socket());
  REQUIRE(work.send_line(R"({"id":1,"cmd":"call","action":"w.work","attrs":{"ms":"1500"}})"));
  REQUIRE(hostlet::test::wait_until([&] { return lane_running(a, "w") == 1; }));
  install(fixture("worker_v2"), wa.so);

  std::vector<LineClient> reqs;
  reqs.emplace_back(a.control_socket());
  REQUIRE(reqs[0].send_line(R"({"id":100,"cmd":"reload","name":"w"})"));
  REQUIRE(hostlet::test::wait_until([&] { return reload_status(a).value("running", false); }));
  for (int i = 1; i <= 4; i++) {
    reqs.emplace_back(a.control_socket());
    REQUIRE(reqs.back().send_line(json{{"id", 100 + i}, {"cmd", "reload"}, {"name", "w"}}.dump()));
  }
  json queued_status = reload_status(a);
  INFO("data.reload while the first runs: " << queued_status.dump());
  CHECK(queued_status.value("running", false));
  CHECK(queued_status.value("queued", 0) >= 1);

  std::vector<json> replies;
  for (auto& c : reqs) replies.push_back(next_reply(c));
  for (size_t i = 0; i < replies.size(); i++) {
    INFO("reply " << i << ": " << replies[i].dump());
    CHECK(replies[i]["id"] == 100 + static_cast<int>(i));
    CHECK(replies[i].value("ok", false));
  }
  // The four queued ones were one run: they carry the same answer.
  for (size_t i = 2; i < replies.size(); i++) CHECK(replies[i]["data"] == replies[1]["data"]);

  CHECK(answered_version(next_reply(work, 30s)) == "1");

  CHECK(loads(a, "w") == 3);
  json after = reload_status(a);
  INFO("data.reload after: " << after.dump());
  CHECK(after.value("running", true) == false);
  CHECK(after.value("queued", -1) == 0);
  CHECK(after.value("done", uint64_t{0}) == done0 + 2);
  CHECK(version(a, "w") == "2");
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: events for the instance during the swap are held and each gets exactly one answer",
          "[reload][events]") {
  WorkerAgent wa;
  Agent& a = wa.agent;
  REQUIRE(start(a));
  hostlet::test::EventStream pongs(a, "worker.pong");

  // worker.ping events from the control socket, one after the other; each
  // reply names the event id that the pong must carry.
  std::atomic<bool> stop{false};
  std::atomic<int> pinged{0};
  std::mutex mu;
  std::vector<int64_t> ping_ids;
  std::vector<std::string> ping_errors;
  std::thread pinger([&] {
    LineClient c;
    if (!c.connect(a.control_socket())) {
      std::lock_guard lk(mu);
      ping_errors.push_back("cannot connect");
      return;
    }
    for (int i = 1; !stop; i++) {
      c.send_line(json{{"id", i}, {"cmd", "notify"}, {"type", "worker.ping"}, {"ack", "accepted"}}.dump());
      auto line = c.recv_line(30s);
      json r = line ? json::parse(*line, nullptr, false) : json();
      std::lock_guard lk(mu);
      if (!r.is_object() || !r.value("ok", false) || !r["event"].is_number_integer()) {
        ping_errors.push_back(line ? *line : "no reply");
        return;
      }
      ping_ids.push_back(r["event"].get<int64_t>());
      pinged++;
      std::this_thread::sleep_for(1ms);
    }
  });

  REQUIRE(hostlet::test::wait_until([&] { return pinged > 200; }, 20s));
  install(fixture("worker_v2"), wa.so);
  Reload r = reload(a, "w");
  const int at_reload = pinged;
  INFO("reload reply: " << r.reply.dump());
  CHECK(r.ok());
  hostlet::test::wait_until([&] { return pinged > at_reload + 200; }, 20s);
  stop = true;
  pinger.join();
  {
    std::lock_guard lk(mu);
    INFO("first ping errors: " << (ping_errors.empty() ? "" : ping_errors[0]));
    REQUIRE(ping_errors.empty());
  }

  const size_t n = ping_ids.size();
  hostlet::test::wait_until([&] { return pongs.events().size() >= n; }, 20s);
  std::this_thread::sleep_for(300ms);  // any extra pong would show now
  std::map<int64_t, int> answers;
  std::map<std::string, int> versions;
  for (const auto& e : pongs.events()) {
    answers[std::stoll(e["attrs"].value("id", std::string("-1")))]++;
    versions[e["attrs"].value("version", std::string("<absent>"))]++;
  }
  int missing = 0, twice = 0;
  for (int64_t id : ping_ids) {
    auto it = answers.find(id);
    if (it == answers.end()) missing++;
    else if (it->second != 1) twice++;
  }
  INFO(n << " pings, " << answers.size() << " distinct pongs, versions: " << json(versions).dump()
         << ", held_events " << r.item("w").value("held_events", json()).dump());
  CHECK(missing == 0);
  CHECK(twice == 0);
  CHECK(answers.size() == n);  // no pong for anything that was not a ping
  CHECK(versions["1"] > 0);
  CHECK(versions["2"] > 0);
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: the new instance's lane counters start from zero (hostlet-ctl stats says so)", "[reload]") {
  WorkerAgent wa;
  Agent& a = wa.agent;
  REQUIRE(start(a));
  for (int i = 0; i < 3; i++) CHECK(ctl_json(a, {"call", "w.work", "ms=0"})["ok"] == true);
  CHECK(ctl_json(a, {"stats"})["data"]["lanes"]["w"]["submitted"] == 3);
  Reload r = reload(a, "w");
  INFO("reload reply: " << r.reply.dump() << "\nlog:\n" << a.log());
  REQUIRE(r.ok());
  json lane = ctl_json(a, {"stats"})["data"]["lanes"]["w"];
  CHECK(lane["submitted"] == 0);
  CHECK(lane["done"] == 0);
  CHECK(stops_cleanly(a));
}
