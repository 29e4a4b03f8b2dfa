// The event bus.
//
// Events are queued (bounded: full -> -EAGAIN, counted as dropped) and
// dispatched on the loop thread in batches of `batch` per loop iteration, from
// a uv_idle handle, so a flood cannot starve timers or I/O: between two
// batches the loop polls for I/O with a zero timeout.
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

#include "attrs.hpp"
#include "glob.hpp"  // valid_glob, is_glob: patterns of subscribe() and of rules

namespace hostlet {

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
  size_t backlog = 0;  // calls waiting downstream (set_backlog), counted against the capacity
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
  // -EAGAIN: queue full (dropped, counted). "Full" counts the backlog too
  // (set_backlog), except for the core's own events (source "hostlet": the
  // results of actions, which are what drains that backlog).
  int publish(Event&& ev, uint64_t* id_out = nullptr);
  // Work the events already dispatched still hold downstream -- calls
  // waiting for a full lane (ActionRegistry::waiting) -- counted against
  // the capacity, so a source flooding one slow lane is pushed back as by a
  // full queue. The function is called on every publish: keep it O(1).
  void set_backlog(std::function<size_t()> backlog) { backlog_ = std::move(backlog); }
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
  // Events published and dropped, by source (at most kMaxSources, then "other").
  struct SourceCounts {
    uint64_t published = 0, dropped = 0;
  };
  static constexpr size_t kMaxSources = 256;
  const std::unordered_map<std::string, SourceCounts>& by_source() const { return by_source_; }
  void set_limits(size_t capacity, unsigned batch);
  // Dispatches everything still queued synchronously (used at shutdown).
  void flush();
  void close(std::function<void()> cb);

 private:
  static void on_idle(uv_idle_t* h);
  SourceCounts& source_counts(const std::string& source);
  std::unordered_map<std::string, SourceCounts> by_source_;
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
  std::function<size_t()> backlog_;
  std::function<void()> close_cb_;
};

}  // namespace hostlet
