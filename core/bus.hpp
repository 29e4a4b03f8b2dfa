// The event bus and the action registry.
//
// Events are queued (bounded: full -> -EAGAIN, counted as dropped) and
// dispatched on the loop thread in batches of `batch` per loop iteration, from
// a uv_idle handle, so a flood cannot starve timers or I/O: between two
// batches the loop polls for I/O with a zero timeout.
//
// Actions are registered by full name "<instance>.<verb>" and called with
// string attributes; the answer (ok + attrs + optional JSON data, or an error)
// comes back through a callback, now or later, exactly once.
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
#include <utility>
#include <vector>

#include "glob.hpp"  // valid_glob, is_glob: patterns of subscribe() and of rules

namespace hostlet {

using Attrs = std::vector<std::pair<std::string, std::string>>;
const std::string* find_attr(const Attrs& attrs, std::string_view key);

struct ActionResult {
  bool ok = false;
  std::string error;
  Attrs attrs;
  std::string data_json;  // empty: no data
  static ActionResult failure(std::string msg) {
    ActionResult r;
    r.error = std::move(msg);
    return r;
  }
};

// Collects what the actions started for one event answered, and reports once
// all of them (and the dispatch itself) are over. Holders call hold() before
// starting something and release() when it is over.
class Tracker {
 public:
  struct Outcome {
    std::string action, rule;
    ActionResult result;
  };
  using DoneFn = std::function<void(uint64_t event_id, std::vector<Outcome>& outcomes)>;
  explicit Tracker(DoneFn done) : done_(std::move(done)) {}
  void hold() { ++holds_; }
  void release();
  void add(Outcome o) { outcomes_.push_back(std::move(o)); }
  void set_event_id(uint64_t id) { id_ = id; }

 private:
  DoneFn done_;
  std::vector<Outcome> outcomes_;
  uint64_t id_ = 0;
  int holds_ = 0;
};

struct Event {
  uint64_t id = 0;
  uint64_t timestamp_ns = 0;  // CLOCK_REALTIME
  std::string source, type;
  Attrs attrs;
  std::shared_ptr<Tracker> tracker;  // set for publish_tracked events
};

struct BusStats {
  uint64_t published = 0, dispatched = 0, dropped = 0;
  size_t depth = 0, max_depth = 0;
  size_t subscriptions = 0;
};

class EventBus {
 public:
  using Handler = std::function<void(const Event&)>;
  struct Sub;  // opaque subscription record

  EventBus(uv_loop_t* loop, size_t capacity, unsigned batch);
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // Stamps id and time and queues the event; *id_out (may be null) gets the id.
  // -EAGAIN: queue full (dropped, counted).
  int publish(Event&& ev, uint64_t* id_out = nullptr);
  // `owner` tags the subscription for unsubscribe_owner(); may be null.
  // `glob` is an exact type or an fnmatch pattern. Returns null on a bad pattern.
  Sub* subscribe(std::string glob, Handler handler, const void* owner = nullptr);
  void unsubscribe(Sub* sub);
  void unsubscribe_owner(const void* owner);

  // Reload support (see reload.cpp). park(owner): the owner's subscriptions,
  // present and future, deliver nothing until released. hold(owner): parks
  // the owner and keeps a copy of every event matching one of its
  // subscriptions as they are now (bounded by the queue capacity; beyond it
  // events are counted as dropped). release(from, to): ends the park/hold of
  // `from` (and of `to`), then hands the kept events, in order, to `to`'s
  // matching subscriptions (`to` may equal `from`, or be null to discard).
  // Returns how many events were kept.
  void park(const void* owner);
  void hold(const void* owner);
  size_t release(const void* from, const void* to);

  BusStats stats() const;
  void set_limits(size_t capacity, unsigned batch);
  // Dispatches everything still queued synchronously (used at shutdown).
  void flush();
  void close(std::function<void()> cb);

 private:
  static void on_idle(uv_idle_t* h);
  void dispatch_batch();
  void deliver(const Event& ev);
  void deliver_to(const void* owner, const Event& ev);
  void keep_held(const Event& ev);
  void sweep();
  static bool matches(const Sub& s, const std::string& type);

  struct Hold {
    bool holding = false;              // copying matching events into `events`
    std::vector<std::string> globs;    // the owner's subscriptions when the hold began
    std::deque<Event> events;
  };

  uv_loop_t* loop_;
  uv_idle_t idle_;
  bool idle_active_ = false;
  size_t capacity_;
  unsigned batch_;
  uint64_t next_id_ = 1;
  std::deque<Event> queue_;
  std::unordered_map<std::string, std::vector<Sub*>> exact_;
  std::vector<Sub*> globs_;
  std::list<std::unique_ptr<Sub>> all_;
  std::unordered_map<const void*, Hold> parked_;  // owners parked or held by a reload
  int dispatching_ = 0;
  bool dirty_ = false;
  BusStats stats_;
  std::function<void()> close_cb_;
};

class Instance;

// One pending call to an action. This is the ABI's hostlet_call.
struct PendingCall;

class ActionRegistry {
 public:
  using ResultFn = std::function<void(ActionResult&&)>;
  struct Entry {
    std::string name;
    Instance* owner = nullptr;
    hostlet_action_fn fn = nullptr;
    void* arg = nullptr;
  };

  explicit ActionRegistry(uv_loop_t* loop, uint64_t timeout_ms);
  ~ActionRegistry();

  int add_plugin(std::string name, Instance* owner, hostlet_action_fn fn, void* arg);
  void remove_owner(Instance* owner);
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
  void fail_owner_calls(Instance* owner, const std::string& why);
  void free_owner_calls(Instance* owner);
  size_t pending() const { return pending_.size(); }
  // Calls of `owner` whose caller still waits for the plugin's answer.
  size_t pending_for(const Instance* owner) const;
  void set_timeout(uint64_t ms) { timeout_ms_ = ms; }

  // Reload support (see reload.cpp).
  // stage(owner): the actions `owner` registers from now on are kept aside --
  // they may repeat the names of the instance it is to replace -- until
  // commit(owner) installs them (names taken by then are refused and
  // returned) or discard(owner) forgets them.
  void stage(Instance* owner);
  std::vector<std::string> commit(Instance* owner);
  void discard(Instance* owner);
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
  std::list<PendingCall*> pending_;  // caller waiting; in call order = deadline order
  std::list<PendingCall*> orphans_;  // caller already answered (timeout, stop); plugin has not
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
  std::unordered_map<Instance*, std::vector<Entry>> staged_;
  void arm_timer();
  std::function<void()> close_cb_;
};

}  // namespace hostlet
