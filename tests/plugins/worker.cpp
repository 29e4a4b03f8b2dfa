// Fixture: a C++ plugin (through plugin.hpp) that offloads configurable
// blocking work and registers actions. Built twice, with different
// FIXTURE_VERSION strings, for reload tests.
//
// Example configuration:
//   - name: w
//     plugin: /path/to/worker_v1.so
//     max_inflight: 4
//     config: {default_ms: 10, fail_start: false}
#include <hostlet/plugin.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#ifndef FIXTURE_VERSION
#define FIXTURE_VERSION "1"
#endif

namespace {

std::atomic<int> g_running{0};
std::atomic<int> g_max_running{0};

class Worker final : public hostlet::Plugin {
 public:
  explicit Worker(hostlet::Host& host) : Plugin(host), default_ms_(host.integer("default_ms")) {
    fail_start_ = host.boolean("fail_start");
    // work {ms, timeout_ms}: sleeps ms on a pool thread, answers {version, ms}
    host.action("work", [this](hostlet::Call& call) {
      int64_t ms = std::stoll(call.attr_or("ms", std::to_string(default_ms_)));
      uint64_t timeout = std::stoull(call.attr_or("timeout_ms", "0"));
      if (ms < 0 || ms > 600000) throw hostlet::Error(-EINVAL, "ms must be between 0 and 600000");
      auto reply = std::make_shared<hostlet::Call>(std::move(call));
      int r = this->host().offload(
          [ms] {
            int now = ++g_running;
            int prev = g_max_running.load();
            while (now > prev && !g_max_running.compare_exchange_weak(prev, now)) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
            --g_running;
          },
          [reply, ms](int status) {
            if (status != 0) return reply->error(std::string("work: ") + hostlet_strerror(status));
            reply->ok({{"version", FIXTURE_VERSION}, {"ms", std::to_string(ms)}});
          },
          timeout);
      if (r != 0) reply->error(std::string("work: ") + hostlet_strerror(r));  // e.g. a full lane
    });
    host.action("version", [](hostlet::Call& call) { call.ok({{"version", FIXTURE_VERSION}}); });
    // echo {...}: answers with the same attributes and data {"n": count}
    host.action("echo", [](hostlet::Call& call) {
      hostlet::Attrs a;
      for (const char* k : {"a", "b", "name"})
        if (const char* v = call.attr(k)) a.emplace_back(k, v);
      call.ok(a, "{\"n\": " + std::to_string(a.size()) + "}");
    });
    host.action("fail", [](hostlet::Call& call) { call.error(call.attr_or("message", "failed on purpose")); });
    host.action("max_running", [](hostlet::Call& call) {
      call.ok({{"max", std::to_string(g_max_running.load())}, {"running", std::to_string(g_running.load())}});
    });
    // publish {type, ...}: publishes an event from this instance
    host.action("publish", [this](hostlet::Call& call) {
      std::string type = call.require("type");
      int r = this->host().publish(type.c_str(), {{"from", "worker"}, {"version", FIXTURE_VERSION}});
      if (r != 0) return call.error(hostlet_strerror(r));
      call.ok();
    });
    // bad_json: answers with invalid JSON data (the host must refuse it)
    host.action("bad_json", [](hostlet::Call& call) { call.ok({}, "{not json"); });
    // pretty_json: answers with valid JSON data over several lines (LF and
    // CRLF), a line break inside a string escaped (the host must keep it)
    host.action("pretty_json", [](hostlet::Call& call) {
      call.ok({}, "{\n  \"list\": [1,\r\n    2],\n  \"text\": \"a\\nb\"\n}\n");
    });
    // drop: never answers (the Call destructor must answer for it)
    host.action("drop", [](hostlet::Call& call) { hostlet::Call gone = std::move(call); });
    // spin {ms}: busy-waits ON THE LOOP THREAD (what a plugin must never do),
    // so that tests can see the lag monitor name this instance
    host.action("spin", [](hostlet::Call& call) {
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoll(call.attr_or("ms", "100")));
      while (std::chrono::steady_clock::now() < until) {
      }
      call.ok();
    });
    // call_later {action, ...}: calls `action` with the other attributes and
    // answers at once; the answer, when it comes, is logged (liveness tests
    // reload or stop this instance before it comes).
    host.action("call_later", [this](hostlet::Call& call) {
      std::string action = call.require("action");
      hostlet::Attrs pass;
      for (const char* k : {"ms", "name"})
        if (const char* v = call.attr(k)) pass.emplace_back(k, v);
      int r = this->host().call(action.c_str(), pass, [this, action](const hostlet::Result& res) {
        this->host().log(HOSTLET_LOG_INFO, "v%s call_later %s answered: %s", FIXTURE_VERSION, action.c_str(),
                         res.ok ? "ok" : res.error.c_str());
      });
      if (r != 0) return call.error(hostlet_strerror(r));
      call.ok();
    });
    // track_later {type}: publishes a tracked event and answers at once; the
    // completion, when it comes, is logged with its number of outcomes.
    host.action("track_later", [this](hostlet::Call& call) {
      std::string type = call.require("type");
      int r = this->host().publish_tracked(type.c_str(), {{"from", "worker"}},
                                           [this, type](uint64_t, const hostlet_outcome*, size_t n) {
                                             this->host().log(HOSTLET_LOG_INFO, "v%s track_later %s done: %zu outcome(s)",
                                                              FIXTURE_VERSION, type.c_str(), n);
                                           });
      if (r != 0) return call.error(hostlet_strerror(r));
      call.ok();
    });
    // throw: the handler throws; the wrapper answers with the message
    host.action("throw", [](hostlet::Call&) -> void { throw std::runtime_error("thrown on purpose"); });
  }

  int start() override {
    if (fail_start_) return -EIO;
    sub_ = host().subscribe("worker.ping", [this](const hostlet::Event& ev) {
      host().publish("worker.pong", {{"id", std::to_string(ev.id())}, {"version", FIXTURE_VERSION}});
    });
    return 0;
  }

 private:
  int64_t default_ms_;
  bool fail_start_ = false;
  hostlet::Subscription sub_;
};

const hostlet_config_key kConfig[] = {
    {"default_ms", HOSTLET_CONFIG_DURATION, "0", "sleep of `work` when no ms is given", 0, 600000, 0},
    {"fail_start", HOSTLET_CONFIG_BOOL, "false", "make start() fail with EIO", 0, 0, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};
const hostlet_action_info kActions[] = {
    {"work", "ms, timeout_ms", "sleep ms on a pool thread"},
    {"version", "", "the fixture's version"},
    {"echo", "a, b, name", "echo attributes"},
    {"fail", "message", "always fails"},
    {"max_running", "", "highest number of concurrent work items seen"},
    {"publish", "type", "publish an event"},
    {"bad_json", "", "answers invalid JSON data"},
    {"pretty_json", "", "answers valid JSON data over several lines"},
    {"drop", "", "never answers"},
    {"throw", "", "throws from the handler"},
    {"spin", "ms", "busy-waits on the loop thread (to test the lag monitor)"},
    {"call_later", "action, ms, name", "calls an action, answers at once, logs its answer"},
    {"track_later", "type", "publishes a tracked event, answers at once, logs its completion"},
    {nullptr, nullptr, nullptr},
};
const hostlet_event_info kEvents[] = {
    {"worker.pong", "id, version", "answer to a worker.ping event"},
    {nullptr, nullptr, nullptr},
};

}  // namespace

HOSTLET_CPP_PLUGIN(Worker, "worker", FIXTURE_VERSION, "test fixture: offloads blocking work", kConfig, kActions,
                   kEvents)
