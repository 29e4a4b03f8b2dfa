// The action registry: actions are registered by full name
// "<instance>.<verb>" and called with string attributes; the answer (ok +
// attrs + optional JSON data, or an error) comes back through a callback, now
// or later, exactly once. Calls to an instance being reloaded are held and run
// on whatever owns the name after the swap.
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "attrs.hpp"

namespace hostlet {

// What the registry needs of whoever registered an action (an Instance).
class ActionOwner {
 public:
  virtual const std::string& name() const = 0;
  // False once the owner is stopping: calls are answered with an error.
  virtual bool accepting_calls() const = 0;
  // Runs the plugin's handler (measured for the lag monitor).
  virtual int invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                            size_t n) = 0;
  // Logs an error under the owner's name.
  virtual void log_error(const char* message) = 0;

 protected:
  ~ActionOwner() = default;
};

// One pending call to an action. This is the ABI's hostlet_call.
struct PendingCall;

class ActionRegistry {
 public:
  using ResultFn = std::function<void(ActionResult&&)>;
  struct Entry {
    std::string name;
    ActionOwner* owner = nullptr;
    hostlet_action_fn fn = nullptr;
    void* arg = nullptr;
  };

  explicit ActionRegistry(uv_loop_t* loop, uint64_t timeout_ms);
  ~ActionRegistry();

  int add_plugin(std::string name, ActionOwner* owner, hostlet_action_fn fn, void* arg);
  void remove_owner(ActionOwner* owner);
  bool exists(std::string_view name) const;
  const Entry* find(std::string_view name) const;
  std::vector<std::string> names() const;

  // Calls an action. -ENOENT when unknown; otherwise cb runs exactly once,
  // possibly before call() returns.
  int call(std::string_view name, Attrs attrs, ResultFn cb);

  // The plugin ABI side of a call.
  static const char* call_attr(hostlet_call* c, const char* key);
  static int reply_ok(hostlet_call* c, const hostlet_attr* attrs, size_t n, const char* data_json);
  static int reply_error(hostlet_call* c, const char* message);

  // Answers the owner's unanswered calls with `why` (the records stay until
  // the plugin answers them or free_owner_calls()).
  void fail_owner_calls(ActionOwner* owner, const std::string& why);
  void free_owner_calls(ActionOwner* owner);
  size_t pending() const { return pending_.size(); }
  // Calls of `owner` whose caller still waits for the plugin's answer.
  size_t pending_for(const ActionOwner* owner) const;
  void set_timeout(uint64_t ms) { timeout_ms_ = ms; }

  // Reload support (see reload.cpp).
  // stage(owner): the actions `owner` registers from now on are kept aside --
  // they may repeat the names of the instance it is to replace -- until
  // commit(owner) installs them (names taken by then are refused and
  // returned) or discard(owner) forgets them.
  void stage(ActionOwner* owner);
  std::vector<std::string> commit(ActionOwner* owner);
  void discard(ActionOwner* owner);
  // hold(instance, max): calls to "<instance>.*" wait, at most `max` of them
  // and each up to the action timeout, until release(instance) runs them in
  // order on whatever then owns the names. Returns how many were held.
  void hold(const std::string& instance, size_t max);
  size_t release(const std::string& instance);
  size_t held() const { return held_.size(); }
  void close(std::function<void()> cb);

 private:
  friend struct PendingCall;
  static void on_timer(uv_timer_t* t);
  void finish(PendingCall* c, ActionResult&& r);
  void release(PendingCall* c);

  uv_loop_t* loop_;
  uint64_t timeout_ms_;
  uv_timer_t timer_;
  std::unordered_map<std::string, Entry> entries_;
  // The calls' records (hostlet_call is a PendingCall), each in one list.
  std::list<std::unique_ptr<hostlet_call>> pending_;  // caller waiting; in call order = deadline order
  std::list<std::unique_ptr<hostlet_call>> orphans_;  // caller already answered (timeout, stop); plugin has not
  struct HeldCall {
    std::string name, instance;
    Attrs attrs;
    ResultFn cb;
    uint64_t deadline_ns;  // 0 = none
  };
  std::deque<HeldCall> held_;                         // in arrival order = deadline order
  struct Holding {
    size_t max = 0, count = 0;
  };
  std::unordered_map<std::string, Holding> holding_;  // instance -> its bound and held calls
  std::unordered_map<ActionOwner*, std::vector<Entry>> staged_;
  void arm_timer();
  std::function<void()> close_cb_;
};

}  // namespace hostlet
