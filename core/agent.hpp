// The agent: one loop, the instances from the config, the bus, the actions,
// the rules, the control socket, signals and an orderly shutdown.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bus.hpp"
#include "config.hpp"
#include "default_config.hpp"
#include "fd_store.hpp"
#include "instances.hpp"
#include "lag.hpp"
#include "log.hpp"
#include "recent.hpp"
#include "rules.hpp"
#include "sd_notify.hpp"
#include "uv_ptr.hpp"

namespace hostlet {

class ControlServer;
class Reloader;
class Scraper;

// The agent's exit statuses (README "Running"; main.cpp's usage text).
enum ExitStatus : int {
  kExitOk = 0,           // a clean stop
  kExitConfig = 1,       // a config or start-up error (and --check finding errors)
  kExitStuckWork = 2,    // the shutdown deadline passed with offloaded work still running
  kExitSignalled = 3,    // a second SIGINT/SIGTERM during shutdown: exited at once
  kExitUsage = 64,       // a bad command line (EX_USAGE)
};


struct AgentOptions {
  std::string config_path;         // empty: the embedded default
  bool check_only = false;         // --check
  std::optional<Level> log_level;  // --log-level overrides agent.log_level
};

class Agent {
 public:
  explicit Agent(AgentOptions opts);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs until SIGINT/SIGTERM; returns the process exit code.
  int run();
  // --check: validates config, plugins, their sections and the rules; 0 or 1.
  int check();

  // For the control socket.
  Core& core() { return core_; }
  const Config& config() const { return config_; }
  InstanceSet& instance_set() { return instances_; }
  const std::vector<std::unique_ptr<Instance>>& instances() const { return instances_.all(); }
  Instance* find_instance(std::string_view name) const { return instances_.find(name); }
  const InstanceInfo* info(const std::string& name) const { return instances_.info(name); }
  RuleEngine& rules() { return *rules_; }
  ControlServer* control() { return control_.get(); }
  Scraper& scraper() { return *scraper_; }
  const FdStore& fd_store() const { return fds_; }
  // Last-minute copies of the loop's and the lanes' histograms (keys: recent_key()).
  const RecentHistograms& recent() const { return recent_; }
  // "wait:NAME#GEN" / "run:NAME#GEN": a lane's histograms, by generation so
  // that a reload's new version starts its own window ("loop": the lag).
  static std::string recent_key(const char* what, const Instance& i) {
    return std::string(what) + ":" + i.name() + "#" + std::to_string(i.generation());
  }
  Reloader* reloader() { return reloader_.get(); }
  uint64_t start_time_ms() const { return start_ms_; }
  void request_shutdown();

 private:
  bool load_config(ConfigErrors& errs);
  // Loads, validates and inits every instance; failures are reported (as
  // errors in check mode, as log lines otherwise) and the instance skipped.
  bool create_instances(ConfigErrors& errs, bool strict);
  void start_instances();
  void shutdown();
  void stop_next_instance();
  void finish_shutdown();
  void close_core_handles();
  void setup_core();
  // The service manager (sd_notify): READY once every instance has started,
  // STATUS every kStatusMs, WATCHDOG at half its interval while the loop keeps time.
  void notify_ready();
  void start_service_timers();
  std::string status_line();
  int print_errors(const ConfigErrors& errs) const;

  AgentOptions opts_;
  Config config_;
  std::string config_dir_;
  uv_loop_t loop_{};
  bool loop_ready_ = false;
  Core core_;
  std::unique_ptr<EventBus> bus_;
  std::unique_ptr<ActionRegistry> actions_;
  std::unique_ptr<LagMonitor> lag_;
  RecentHistograms recent_;
  std::unique_ptr<RuleEngine> rules_;
  std::unique_ptr<Scraper> scraper_;
  FdStore fds_;  // keep_fd/take_fd and the activated sockets
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<Reloader> reloader_;
  InstanceSet instances_{core_};
  uv_signal_t sigint_{}, sigterm_{}, sighup_{};
  ServiceNotifier notifier_;
  UvPtr<uv_timer_t> watchdog_timer_, status_timer_;
  uint64_t watchdog_due_ns_ = 0;    // when the watchdog tick should run
  uint64_t status_events_ = 0;      // bus events published at the last STATUS
  uint64_t status_at_ns_ = 0;
  size_t failed_instances_ = 0;     // failed to load, init or start
  std::vector<std::string> required_failed_;  // of those, the ones without `optional: true`
  ConfigErrors check_warnings_;     // --check: optional instances whose plugin is not installed
  uv_work_t pool_warmup_{};
  bool shutting_down_ = false;
  bool shutdown_deferred_ = false;  // waiting for a reload in progress
  bool stuck_work_ = false;
  size_t stop_index_ = 0;
  uint64_t start_ms_ = 0;
  int exit_code_ = 0;
};

}  // namespace hostlet
