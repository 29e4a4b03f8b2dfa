// Runtime reload: one instance (`hostlet-ctl reload NAME`), the whole config
// (`hostlet-ctl reload`, SIGHUP), or an instance whose .so file was replaced
// (`watch: true`). The contract is DESIGN.md's "Reload contract".
//
// One reload runs at a time. Requests that arrive meanwhile queue; a queued
// request identical to a new one (same instance, or both whole-config) takes
// the new requester's reply too: coalesced, never lost.
//
// Per instance, transactional:
//   prepare   (pool thread) re-read the config file, resolve the plugin,
//             copy the .so to a private memory file and dlopen() it (new code even
//             when rebuilt at the same path), check the ABI
//   validate  (loop) the instance's `config:` against the new schema
//   init      the new instance, its actions and subscriptions staged/parked
//   pause     calls to "<name>.*" are held (ActionRegistry::hold); events
//             matching the old instance's subscriptions are kept
//             (EventBus::hold)
//   quiesce   wait until the old instance has no call in progress and no
//             offload queued or running, up to agent.reload_timeout; past
//             it the reload is aborted: held calls and events go to the old
//             instance, which never stopped serving
//   stop      the old instance (plugin stop, handles closed, lane drained)
//   swap      the new instance's actions installed, it takes the old one's
//             place
//   start     the new instance; held events and calls are delivered to it
//   destroy   the old instance; its library is dlclose()d when no work
//             item of it remains (each holds a reference), and checked with
//             RTLD_NOLOAD
// Every failure before the swap leaves the old instance serving. A new
// instance that fails to start after the swap is stopped and the old version
// is started again from its still-loaded library (a fresh instance of it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "instances.hpp"
#include "rules.hpp"

namespace hostlet {

// What a reload works on: the agent's running state, passed narrowly.
struct ReloadTarget {
  Core& core;
  InstanceSet& instances;
  RuleEngine& rules;
  Config& config;            // the running config: sections are replaced as reloads apply them
  std::string config_path;   // the file to re-read; empty: the embedded default
  std::string config_dir;    // anchors relative plugin paths
  bool log_level_fixed;      // --log-level was given: agent.log_level does not apply
  // Told when a request starts (true) and when it has been applied (false):
  // the service manager hears RELOADING=1 ... READY=1.
  std::function<void(bool starting)> on_reload = {};
};

struct ReloadItem {
  std::string name;
  std::string action;  // "reloaded", "added", "removed", "failed"
  bool ok = false;
  std::string version;    // what serves now under this name
  std::string previous;   // what served before
  std::string attempted;  // the version of the file tried (reloads, when it loaded)
  std::string error;
  uint64_t ms = 0;
  size_t held_calls = 0, held_events = 0;
};

struct ReloadOutcome {
  bool ok = false;
  std::string summary;  // one line: what changed, or why nothing did
  std::vector<ReloadItem> items;
  std::optional<size_t> rules;  // whole-config reloads: the rules now active
};

using ReloadReply = std::function<void(const ReloadOutcome&)>;

class Reloader {
 public:
  explicit Reloader(ReloadTarget target);
  ~Reloader();
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // `name` empty: the whole config. `origin` names the trigger in logs.
  void request(const std::string& name, const std::string& origin, ReloadReply reply);

  bool busy() const { return current_ != nullptr; }
  size_t queued() const { return queue_.size(); }
  uint64_t done() const { return done_; }
  uint64_t succeeded() const { return succeeded_; }
  uint64_t failed() const { return done_ - succeeded_; }
  bool reloading(const std::string& instance) const { return current_instance_ == instance && busy(); }

  // Fails the queued requests; `then` runs once the reload in progress (if
  // any) has finished, or at once.
  void shutdown(std::function<void()> then);
  // Starts/stops the .so file watches to match the instances' `watch:`.
  void update_watches();
  // Closes the watches' handles (at shutdown).
  void close();

  struct Job;
  struct Op;
  struct Watch;

 private:
  void pump();
  static void prepare(uv_work_t* w);
  void prepared(Job* job);
  void next_op();
  Op& current_op();
  void op_add(Op& op);
  void op_reload(Op& op);
  void op_remove(Op& op);
  // Records the op's result and goes on with the next one: always the last
  // thing an op step does.
  void op_done(Op& op, bool ok, const std::string& error);
  void finish(ReloadOutcome out);
  // A failure before any instance was touched (config file, unknown name).
  void fail_request(const std::string& error);
  void quiesce_tick();
  void after_old_stopped(bool finished);
  void apply_agent_section(const AgentSection& fresh);
  void watch_fired(const std::string& name);

  ReloadTarget t_;
  struct Request {
    std::string name, origin;
    std::vector<ReloadReply> replies;
  };
  std::deque<Request> queue_;
  std::unique_ptr<Request> current_;
  std::unique_ptr<Job> job_;
  std::string current_instance_;
  uint64_t done_ = 0, succeeded_ = 0;
  bool stopping_ = false;
  std::function<void()> after_current_;
  UvPtr<uv_timer_t> kick_;  // next turn: free the finished job, start the next request

  // the instance reload in progress
  UvPtr<uv_timer_t> quiesce_timer_;
  uint64_t quiesce_deadline_ns_ = 0;

  std::map<std::string, std::unique_ptr<Watch>> watches_;
};

}  // namespace hostlet
