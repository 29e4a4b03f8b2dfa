// The action registry: actions are registered by full name
// "<instance>.<verb>" and called with string attributes; the answer (ok +
// attrs + optional JSON data, or an error) comes back through a callback, now
// or later, exactly once. Calls to an instance being reloaded are held and run
// on whatever owns the name after the swap.
//
// Backpressure: a call to an instance whose offload lane is full (its owner
// says !has_room()), or behind other calls already waiting for it, waits in
// that instance's FIFO instead of failing, up to its wait (CallOptions;
// `agent.action_wait` by default), and starts when the lane tells that an
// item finished and there is room. A handler that returns -EAGAIN ("busy")
// puts its call back at the head of that FIFO. Only when the wait passes is
// the caller answered, with an error naming the instance, its limits and how
// long the call waited. Calls waiting for one instance never delay calls to
// another. The waiting calls count against the event bus bound
// (EventBus::set_backlog), so a source that floods one slow lane is paused
// the way a full bus pauses it.
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
#include "offload.hpp"  // Histogram

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
  // The message the handler that just returned non-zero gave for it (set_error), or "".
  virtual std::string take_error() { return {}; }
  // Backpressure (see the top of this file): false while a call's work could
  // not be queued now; want_room() then asks for one room_available(owner)
  // once an item of the owner has finished and there is room again.
  virtual bool has_room() const { return true; }
  virtual void want_room() {}
  // "max_inflight 8, max_queue 64", for the error of a call that waited too long.
  virtual std::string limits_text() const { return {}; }

 protected:
  ~ActionOwner() = default;
};

// One pending call to an action. This is the ABI's hostlet_call.
struct PendingCall;

// How one call may wait for a full lane.
struct CallOptions {
  static constexpr uint64_t kDefaultWait = UINT64_MAX;
  // How long the call may wait for room: kDefaultWait = the registry's
  // (agent.action_wait); 0 = not at all, answer at once with code -EAGAIN.
  uint64_t wait_ms = kDefaultWait;
};

struct ActionWaitStats {
  uint64_t waited = 0;    // calls that found their instance's lane full and waited
  uint64_t expired = 0;   // of them, answered with an error when their wait passed
  uint64_t refused = 0;   // answered -EAGAIN at once (wait 0, or too many waiting)
  size_t waiting = 0, max_waiting = 0;
};

class ActionRegistry {
 public:
  using ResultFn = std::function<void(ActionResult&&)>;
  struct Entry {
    std::string name;
    ActionOwner* owner = nullptr;
    hostlet_action_fn fn = nullptr;
    void* arg = nullptr;
  };

  // `wait_ms`: CallOptions' default wait; `max_waiting`: bound on calls
  // waiting for lanes at once (beyond it they are refused with -EAGAIN).
  ActionRegistry(uv_loop_t* loop, uint64_t timeout_ms, uint64_t wait_ms = 10000, size_t max_waiting = 65536);
  ~ActionRegistry();

  int add_plugin(std::string name, ActionOwner* owner, hostlet_action_fn fn, void* arg);
  void remove_owner(ActionOwner* owner);
  bool exists(std::string_view name) const;
  const Entry* find(std::string_view name) const;
  std::vector<std::string> names() const;

  // Calls an action. -ENOENT when unknown; otherwise cb runs exactly once,
  // possibly before call() returns. A call that finds the instance's lane
  // full waits as `opts` allow (see the top of this file).
  int call(std::string_view name, Attrs attrs, ResultFn cb, const CallOptions& opts = {});
  // From an owner, after want_room(): starts its waiting calls while it has room.
  void room_available(ActionOwner* owner);

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
  void set_wait(uint64_t wait_ms, size_t max_waiting) {
    wait_ms_ = wait_ms;
    max_waiting_ = max_waiting;
  }
  // Calls waiting for a full lane: all, and those of one owner.
  size_t waiting() const { return wait_stats_.waiting; }
  size_t waiting_for(const ActionOwner* owner) const;
  ActionWaitStats wait_stats() const { return wait_stats_; }
  // Calls a handler accepted, handler to answer (an answer of a call that
  // never reached its handler is not timed), and the answers by outcome.
  const Histogram& latency() const { return latency_; }
  uint64_t answered_ok() const { return answered_ok_; }
  uint64_t answered_failed() const { return answered_failed_; }

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
  static void on_wait_timer(uv_timer_t* t);
  void finish(PendingCall* c, ActionResult&& r);
  void release(PendingCall* c);

  // A call waiting for room in its owner's lane.
  struct WaitingCall {
    std::string name;
    Attrs attrs;
    ResultFn cb;
    uint64_t since_ns = 0, deadline_ns = 0;
    uint64_t wait_ms = 0;
  };
  // Runs the plugin's handler; false when it answered -EAGAIN and `w` was
  // put back at the head of the owner's FIFO.
  bool start(const Entry& e, WaitingCall&& w);
  void enqueue(ActionOwner* owner, WaitingCall&& w, bool front);
  void arm_wait_timer();
  void expire_waiting(uint64_t now);
  ActionResult busy(const ActionOwner* owner, const WaitingCall& w, uint64_t now, bool expired) const;
  void fail_waiting(ActionOwner* owner, const std::string& why);

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
  std::unordered_map<ActionOwner*, std::deque<WaitingCall>> waiting_;  // per owner, in arrival order
  uint64_t wait_ms_;
  size_t max_waiting_;
  ActionWaitStats wait_stats_;
  Histogram latency_;
  uint64_t answered_ok_ = 0, answered_failed_ = 0;
  uv_timer_t wait_timer_;
  uint64_t wait_armed_ns_ = 0;  // deadline wait_timer_ is armed for; 0: not armed
  int open_handles_ = 0;
  void arm_timer();
  std::function<void()> close_cb_;
};

}  // namespace hostlet
