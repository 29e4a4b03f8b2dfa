// One plugin instance (one `plugins:` entry): its lifecycle, its offload
// lane, and everything the plugin obtained through the host API (timers, fd
// watches, subscriptions, actions, calls and tracked events it waits on).
// The host API table itself is host_api.cpp.
//
// The liveness rule (stated for plugins in plugin.h): every path that calls
// back into a plugin -- an action's answer, a post, a tracked event's
// completion, a timer, a watch, an event -- holds an InstanceRef and checks
// Core::alive() (or goes through a handle the instance closes at stop) before
// the call. Nothing calls into an instance after its destroy.
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actions.hpp"
#include "bus.hpp"
#include "config.hpp"
#include "handle_list.hpp"
#include "library.hpp"
#include "offload.hpp"
#include "uv_ptr.hpp"

namespace hostlet {

class LagMonitor;
class FdStore;
class Instance;
class Scraper;

// Names one instance for a callback that may run after it is gone: the
// generation is unique per Instance object in the process.
struct InstanceRef {
  Instance* inst = nullptr;
  uint64_t generation = 0;
};

// The agent's health as agent_health (plugin.h) gives it.
struct AgentHealth {
  bool healthy = true;
  std::string json;
};

// What instances need from the agent.
struct Core {
  uv_loop_t* loop = nullptr;
  EventBus* bus = nullptr;
  ActionRegistry* actions = nullptr;
  LagMonitor* lag = nullptr;
  Scraper* scraper = nullptr;
  FdStore* fds = nullptr;  // keep_fd / take_fd; null: the calls answer -ENOSYS
  // The agent's health, given the largest loop lag that is still healthy (ms).
  std::function<AgentHealth(uint64_t max_lag_ms)> health;
  const AgentSection* agent = nullptr;

  // The instance `ref` names, or null once it has been destroyed (or never
  // existed). Loop thread.
  Instance* alive(const InstanceRef& ref) const {
    auto it = live.find(ref.generation);
    return it != live.end() && it->second == ref.inst ? ref.inst : nullptr;
  }
  // Instances created and not yet destroyed, by generation. Loop thread.
  std::unordered_map<uint64_t, Instance*> live;

  // Thread-safe hand-off to the loop (hostlet_host_api.post, and answers
  // that must not run before call_action returns).
  struct Posted {
    InstanceRef ref;
    hostlet_post_fn fn;
    void* arg;
  };
  void post(const InstanceRef& ref, hostlet_post_fn fn, void* arg);
  std::mutex post_mu;
  std::vector<Posted> posted;
  uv_async_t post_async{};
};

// Runs posted callbacks (Core::posted) of live instances on the loop; installed by the agent.
void run_posted(Core& core);

// The ABI's hostlet_host.
struct HostHandle;

class Instance final : public ActionOwner, private LaneObserver {
 public:
  enum class State { Loaded, Inited, Started, Stopping, Stopped, Destroyed, Failed };

  Instance(Core& core, InstanceSection cfg, std::shared_ptr<Library> lib, ConfigValues values,
           std::string config_file);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const std::string& name() const override { return cfg_.name; }
  const InstanceSection& section() const { return cfg_; }
  const std::shared_ptr<Library>& library() const { return lib_; }
  State state() const { return state_; }
  const char* state_name() const;
  Lane& lane() { return *lane_; }
  const ConfigValues& values() const { return values_; }
  const std::string& config_file() const { return config_file_; }
  bool accepting_calls() const override { return state_ == State::Started; }
  // Backpressure for the action registry: its calls wait while the lane is full.
  bool has_room() const override { return !lane_ || lane_->has_room(); }
  void want_room() override {
    if (lane_) lane_->want_room();
  }
  std::string limits_text() const override;
  uint64_t generation() const { return generation_; }
  InstanceRef ref() { return {this, generation_}; }
  Core& core() { return core_; }

  // Lifecycle. init/start return 0 or the plugin's negative errno (logged).
  int init();
  int start();
  // Asynchronous: plugin stop -> stopped() (or deadline) -> close the handles
  // the host handed out -> drain the lane (queued work reported -ESHUTDOWN,
  // running work waited for up to `deadline_ms`). done(all_work_finished).
  void stop(uint64_t deadline_ms, std::function<void(bool all_finished)> done);
  // Completes what the host still owes the plugin (answers to its calls and
  // tracked events, with an error), calls the plugin's destroy and frees the
  // instance's records; from here on Core::alive() is null for it. When work
  // of the plugin may still run (a drain deadline passed), the library stays
  // mapped: the lane holds a reference to it while work is on the pool.
  void destroy();
  bool work_outstanding() const { return lane_ && lane_->outstanding() > 0; }
  // Whether stop() has been reported by the plugin (or its deadline passed).
  bool stop_reported() const { return stop_reported_; }
  // The plugin took the raw loop (hostlet_host_api.uv_loop): its own libuv
  // callbacks run untimed, so an unexplained lag names it as a suspect.
  void note_uses_loop() { uses_loop_ = true; }
  bool uses_loop() const { return uses_loop_; }
  // api->stopped(): the plugin's asynchronous stop is over.
  void plugin_stopped();

  // Calls into the plugin, measured for the lag monitor. (The lane times the
  // offload done and late callbacks itself and reports through callbacks_ran.)
  int invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                    size_t n) override;
  // api->set_error() during the callback that is returning an error (init,
  // start, an action handler): the message that callback's caller reports.
  void set_error(std::string message) { error_ = std::move(message); }
  std::string take_error() override { return std::exchange(error_, {}); }
  // init's message (set_error) when init failed; "" when it set none.
  const std::string& init_error() const { return init_error_; }

  // Health (api->set_health): a change publishes "instance.health".
  int set_health(hostlet_health health, const char* reason);
  hostlet_health health() const { return health_; }
  const std::string& health_reason() const { return health_reason_; }
  static const char* health_name(hostlet_health h);

  // Metrics (ABI 1.1 descriptor entries; plugins built for 1.0 have neither).
  bool has_refresh() const { return lib_->refresh_entry() != nullptr; }
  // Asks the plugin to refresh; true when it started one (metrics_refreshed follows).
  bool call_refresh();
  void call_collect(hostlet_metrics* out);
  // The scrape's writer refused `count` of the plugin's calls, the first for `why`: logged once per instance.
  void note_metrics_refused(size_t count, const std::string& why);
  uint64_t metrics_refused() const { return metrics_refused_; }
  template <class F> void run_callback(const char* what, F&& fn) {
    uint64_t t0 = uv_hrtime();
    fn();
    callbacks_ran(what, 1, uv_hrtime() - t0);
  }

  void log(hostlet_log_level level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  void log_error(const char* message) override;

  // Counters for `hostlet-ctl stats`.
  struct Counters {
    uint64_t published = 0, publish_dropped = 0, callbacks = 0, slow_callbacks = 0;
    uint64_t max_callback_ns = 0;
  };
  const Counters& counters() const { return counters_; }
  Counters& counters() { return counters_; }

  hostlet_host* c_handle();
  static Instance* from(hostlet_host* h);
  static const hostlet_host_api* api();  // host_api.cpp

  // Records of what the plugin obtained through the host API. hostlet_timer,
  // hostlet_watch and hostlet_sub are these (host_api.cpp).
  struct TimerRec : HandleRecBase<TimerRec> {
    uv_timer_t h{};
    Instance* inst = nullptr;
    hostlet_timer_fn cb = nullptr;
    void* arg = nullptr;
  };
  struct WatchRec : HandleRecBase<WatchRec> {
    uv_poll_t h{};
    Instance* inst = nullptr;
    int fd = -1;
    int uv_events = 0;  // what the plugin asked for, to re-arm after an error
    hostlet_watch_fn cb = nullptr;
    void* arg = nullptr;
  };
  struct SubRec {
    EventBus::Sub* sub = nullptr;  // null once the host unsubscribed it (stop)
    Instance* inst = nullptr;
    std::list<std::unique_ptr<SubRec>>::iterator it;
  };
  // A call_action() of the plugin awaiting its answer.
  struct CallRec {
    Instance* inst = nullptr;
    hostlet_result_fn cb = nullptr;
    void* arg = nullptr;
    ActionResult result;
    bool returned = false;  // call_action has returned
    bool have = false;      // the answer is here
    std::list<std::unique_ptr<CallRec>>::iterator it;
  };
  // A publish_tracked() event of the plugin whose consequences are not over.
  struct TrackedRec {
    hostlet_event_done_fn done = nullptr;
    void* arg = nullptr;
    uint64_t event_id = 0;
    std::list<std::unique_ptr<TrackedRec>>::iterator it;
  };

  HandleList<TimerRec>& timers() { return timers_; }
  HandleList<WatchRec>& watches() { return watches_; }
  SubRec* add_sub(std::unique_ptr<SubRec> rec);
  void remove_sub(SubRec* rec);
  CallRec* add_call(std::unique_ptr<CallRec> rec);
  void forget_call(CallRec* rec) { calls_.erase(rec->it); }
  // Hands the answer to the plugin (once) and frees the record.
  void deliver_call(CallRec* rec);
  // A metrics_scrape() of the plugin whose exposition is not delivered yet.
  struct ScrapeRec {
    hostlet_scrape_fn cb = nullptr;
    void* arg = nullptr;
    std::list<std::unique_ptr<ScrapeRec>>::iterator it;
  };
  ScrapeRec* add_scrape(std::unique_ptr<ScrapeRec> rec);
  // Hands the text to the plugin (once) and frees the record.
  void deliver_scrape(ScrapeRec* rec, const std::string& text);
  TrackedRec* add_tracked(std::unique_ptr<TrackedRec> rec);
  void forget_tracked(TrackedRec* rec) { tracked_.erase(rec->it); }
  void deliver_tracked(TrackedRec* rec, std::vector<Tracker::Outcome>& outcomes);
  bool can_open_handles() const { return state_ == State::Inited || state_ == State::Started; }

 private:
  // LaneObserver: `count` callbacks of this instance ran `ns` in a row.
  void callbacks_ran(const char* what, uint64_t count, uint64_t ns) override;
  void room_available() override;
  void after_plugin_stopped();
  void close_handles();
  void abandon_owed();

  Core& core_;
  InstanceSection cfg_;
  std::shared_ptr<Library> lib_;
  ConfigValues values_;
  std::string config_file_;
  std::unique_ptr<HostHandle> handle_;
  std::unique_ptr<Lane> lane_;
  void* state_ptr_ = nullptr;
  State state_ = State::Loaded;
  const uint64_t generation_;
  Counters counters_;

  HandleList<TimerRec> timers_;
  HandleList<WatchRec> watches_;
  std::list<std::unique_ptr<SubRec>> subs_;
  std::list<std::unique_ptr<CallRec>> calls_;
  std::list<std::unique_ptr<TrackedRec>> tracked_;
  std::list<std::unique_ptr<ScrapeRec>> scrapes_;

  std::string error_, init_error_;
  hostlet_health health_ = HOSTLET_HEALTH_OK;
  std::string health_reason_;
  uint64_t metrics_refused_ = 0;
  bool metrics_refusal_logged_ = false;

  // stop bookkeeping
  UvPtr<uv_timer_t> stop_timer_;
  bool stop_reported_ = false;
  bool uses_loop_ = false;
  bool start_called_ = false;  // stop() reaches the plugin only after start was tried
  uint64_t stop_deadline_ms_ = 0;
  std::function<void(bool)> stop_done_;
};

}  // namespace hostlet
