// Fixture: a C++20 plugin whose action handlers are coroutines
// (hostlet/task.hpp), for tests/sdk/task_test.cpp.
//
// Example configuration:
//   - name: co
//     plugin: /path/to/coro.so
//     max_inflight: 1
//
// Actions (each answers through a coroutine):
//   value {text, ms}  offloads "got <text>" (sleeping ms first); answers value=...
//   throw {message}   offloaded work throws std::runtime_error(message): the
//                     escaping Error answers the call with the message
//   error_code {...}  offloaded work throws Error(-ENOENT, ...); the handler
//                     catches it and answers code=<errno> message=<what>
//   sleep {ms}        co_await host.sleep(ms); answers slept=ms
//   call {text}       co_await host.call("<instance>.value", {text}); answers the result
//   cb_throw          the callback offload whose done takes the Error
// Lambdas with captures are named before the co_await (see task.hpp: GCC 12).
// Shutdown: every coroutine interrupted by an Error logs "NAME interrupted: WHAT".
#include <hostlet/task.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;

class Coro final : public hostlet::Plugin {
 public:
  explicit Coro(hostlet::Host& h) : Plugin(h) {
    h.action("value", [this](hostlet::Call call) -> hostlet::Task {
      std::string text = call.attr_or("text", "x");
      int ms = std::stoi(call.attr_or("ms", "0"));
      try {
        auto work = [text, ms] {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          return "got " + text;
        };
        std::string v = co_await host().offload(std::move(work));
        call.ok({{"value", v}});
      } catch (const hostlet::Error& e) {
        host().info("value interrupted: %s (%d)", e.what(), e.code());
        throw;
      }
    });
    h.action("throw", [this](hostlet::Call call) -> hostlet::Task {
      std::string message = call.attr_or("message", "it broke");
      auto work = [message]() -> int { throw std::runtime_error(message); };
      co_await host().offload(std::move(work));
      call.ok();  // not reached
    });
    h.action("error_code", [this](hostlet::Call call) -> hostlet::Task {
      try {
        co_await host().offload([] { throw hostlet::Error(-ENOENT, "no such thing"); });
        call.ok();
      } catch (const hostlet::Error& e) {
        call.ok({{"code", std::to_string(e.code())}, {"message", e.what()}});
      }
    });
    h.action("sleep", [this](hostlet::Call call) -> hostlet::Task {
      int ms = std::stoi(call.attr_or("ms", "10"));
      try {
        co_await host().sleep(std::chrono::milliseconds(ms));
        call.ok({{"slept", std::to_string(ms)}});
      } catch (const hostlet::Error& e) {
        host().info("sleep interrupted: %s", e.what());
        throw;
      }
    });
    h.action("call", [this](hostlet::Call call) -> hostlet::Task {
      std::string action = std::string(host().name()) + ".value";
      // The attributes in a variable: GCC 12 refuses an initializer list
      // inside a co_await expression (see task.hpp).
      hostlet::Attrs attrs{{"text", call.attr_or("text", "y")}};
      hostlet::Result r = co_await host().call(action.c_str(), attrs);
      if (!r.ok) throw hostlet::Error(-EIO, "inner call: " + r.error);
      call.ok(r.attrs);
    });
    h.action("cb_throw", [this](hostlet::Call& call) {
      auto reply = std::make_shared<hostlet::Call>(std::move(call));
      int r = host().offload([]() -> std::string { throw std::runtime_error("callback work broke"); },
                             [reply](int status, std::string, const hostlet::Error& e) {
                               if (status != 0) return reply->error(std::to_string(status) + " " + e.what());
                               reply->ok();
                             });
      if (r != 0) reply->error(hostlet_strerror(r));
    });
  }
};

const hostlet_config_key kConfig[] = {{nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};

}  // namespace

HOSTLET_CPP_PLUGIN(Coro, "coro", "1", "coroutine fixture", kConfig, nullptr, nullptr)
