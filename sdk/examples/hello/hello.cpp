// hello: an example hostlet plugin, built out of tree against the installed
// SDK (see README.md). It shows what most plugins need: a config schema, an
// action whose work runs on a pool thread, and a timer that publishes events.
//
// Example configuration:
//   plugins:
//     - name: hello
//       plugin: /path/to/hello.so      # or `hello` when hello.so is in agent.plugin_dir
//       config: {greeting: "hi", tick_interval: 5s}
//
// Then:
//   hostlet-ctl call hello.greet name=world     # ok, text=hi, world!
//   hostlet-ctl events --type tick              # ... hello tick n=1 (source hello, type tick)
#include <hostlet/plugin.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace {

class Hello final : public hostlet::Plugin {
 public:
  // The plugin's init (loop thread): read the config the host has already
  // validated against kConfig, register actions. Throwing fails init.
  explicit Hello(hostlet::Host& host)
      : Plugin(host), greeting_(host.str("greeting")), tick_ms_(host.integer("tick_interval")) {
    host.action("greet", [this](hostlet::Call& call) {
      std::string name = call.require("name");  // throws: the caller gets "missing attribute 'name'"
      // The call is answered from the done callback, or right here if the
      // offload is refused (e.g. -EAGAIN when the lane's queue is full).
      auto reply = std::make_shared<hostlet::Call>(std::move(call));
      int r = this->host().offload(
          // Pool thread: stands in for blocking work (a file in /sys, a libvirt
          // call). It touches only its own copies, never `this` or the host API.
          [greeting = greeting_, name] { return greeting + ", " + name + "!"; },
          // Loop thread, exactly once: status 0, or why the work did not run.
          [reply](int status, std::string text) {
            if (status != 0) return reply->error(hostlet_strerror(status));
            reply->ok({{"text", text}});
          });
      if (r != 0) reply->error(std::string("offload: ") + hostlet_strerror(r));
    });
  }

  int start() override {
    if (tick_ms_ > 0) {
      auto every = static_cast<uint64_t>(tick_ms_);
      tick_ = host().timer(every, every, [this] { host().publish("tick", {{"n", std::to_string(++ticks_)}}); });
    }
    return 0;
  }

  void stop(std::function<void()> stopped) override {
    tick_.stop();  // the host would close it too; stopping it here keeps ownership obvious
    stopped();
  }

 private:
  std::string greeting_;
  int64_t tick_ms_;
  uint64_t ticks_ = 0;
  hostlet::Timer tick_;
};

// The schema: the host checks the YAML against it before init, and
// `hostlet-ctl plugins --describe hello` prints it as documentation.
const hostlet_config_key kConfig[] = {
    {"greeting", HOSTLET_CONFIG_STRING, "hello", "what greet says before the name", 1, 64, 0},
    {"tick_interval", HOSTLET_CONFIG_DURATION, "0", "publish tick this often; 0: never", 0, 86400000, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};
const hostlet_action_info kActions[] = {
    {"greet", "name", "answers text=\"<greeting>, <name>!\", formatted on a pool thread"},
    {nullptr, nullptr, nullptr},
};
const hostlet_event_info kEvents[] = {
    {"tick", "n", "every tick_interval, when it is not 0"},
    {nullptr, nullptr, nullptr},
};

}  // namespace

HOSTLET_CPP_PLUGIN(Hello, "hello", "1.0", "example plugin: greets, on a pool thread", kConfig, kActions, kEvents)
