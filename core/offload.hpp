// Offload lanes: per-instance admission control in front of the libuv pool.
//
// A Lane belongs to one plugin instance. It passes at most `max_inflight` work
// items to uv_queue_work at a time and keeps at most `max_queue` more waiting
// in its own FIFO (full -> -EAGAIN, the caller sees backpressure). Every
// accepted item gets exactly one `done(arg, status)` on the loop thread with
// status 0, -ECANCELED, -ETIMEDOUT or -ESHUTDOWN (see hostlet_done_fn in
// sdk/include/hostlet/plugin.h, which this implements). The one exception is
// close(): work still in flight once the lane's handles are closed never gets
// its done or late (the plugin may be gone by then).
//
// "In flight" means handed to uv_queue_work and its after_work not yet run;
// that includes items waiting for a free pool thread, timed-out items still
// running, and items submitted by a completion batch's callbacks until the
// batch hands them over. A timed-out item keeps its slot until its work really ends,
// so a plugin stuck in hung calls can hold at most max_inflight pool threads.
//
// -ETIMEDOUT and `late`: an item whose deadline passes gets done(-ETIMEDOUT)
// at once. If its work never started (still in the FIFO, or uv_cancel took it
// back from libuv's queue), it never runs and late(arg) runs right after done
// returns. If it had started, late(arg) runs on the loop once work ends. So
// with a late, arg is last touched by late. An item whose work already
// finished when the deadline fires is reported 0, not timed out.
//
// Deadlines are measured with uv_hrtime from submit(); one uv_timer per lane
// is armed for the earliest deadline (an intrusive min-heap), so items
// without a deadline cost nothing extra.
//
// Completions: uv's after_work only files a finished item; the lane runs the
// done (or late) callbacks of everything that finished in one loop iteration
// together, from a uv_check handle right after that iteration's poll phase.
// That batch is what lets the lane time its callbacks cheaply for the lag
// monitor (see LaneObserver). Work that those callbacks submit is admitted at
// once (it counts as in flight) and handed to uv_queue_work when the batch
// ends, all together: the pool's threads then find a full queue instead of
// being woken one item at a time (see offload.cpp).
//
// Threads: every member function runs on the loop thread. Only the work
// function itself runs on a pool thread; the lane touches no shared state
// from there except the item's start/end timestamps and an atomic phase,
// read by the loop after uv's after_work (uv_queue_work gives the
// happens-before) or, for the phase, at a deadline or cancel.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace hostlet {

// Log2-bucketed latency histogram in nanoseconds: bucket i holds values in
// [2^i, 2^(i+1)) ns; bucket 0 also holds 0, the last bucket everything above
// (2^47 ns is about 39 hours). Cheap to record on the loop.
class Histogram {
 public:
  static constexpr int kBuckets = 48;
  void record(uint64_t ns);
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  uint64_t sum() const { return sum_; }
  uint64_t bucket(int i) const { return i >= 0 && i < kBuckets ? buckets_[i] : 0; }
  // Upper bound (2^(i+1) - 1, but never above max()) of the bucket holding
  // quantile q in [0,1]; q outside [0,1] is clamped; 0 when empty.
  uint64_t quantile(double q) const;
  void reset();
  // What was recorded after `earlier`, a copy of this histogram taken before
  // (core/recent.hpp): the bucket-by-bucket difference, whose max() is the
  // upper bound of the highest bucket that grew (never above max()). False,
  // *out untouched, when `earlier` is not an earlier state of this one (a
  // bucket is larger there: this one was reset, or it is another histogram).
  bool since(const Histogram& earlier, Histogram* out) const;

 private:
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0, sum_ = 0, max_ = 0;
};

struct LaneLimits {
  unsigned max_inflight = 4;     // >= 1
  size_t max_queue = 1024;       // items waiting beyond max_inflight; 0 = none may wait
  uint64_t default_timeout_ms = 0;  // used when submit() passes 0; 0 = no deadline
};

struct LaneStats {
  uint64_t submitted = 0;   // accepted by submit()
  uint64_t rejected = 0;    // refused with -EAGAIN
  uint64_t running = 0;     // now in flight: handed to the pool, after_work not run yet
                            // (== outstanding(); includes timed-out items still running)
  uint64_t queued = 0;      // now waiting in the lane's FIFO
  uint64_t done = 0;        // done() reported 0
  uint64_t cancelled = 0;   // done() reported -ECANCELED
  uint64_t timed_out = 0;   // done() reported -ETIMEDOUT
  uint64_t shutdown = 0;    // done() reported -ESHUTDOWN
  // Latencies of timed items that ran. A lane with at most 64 submits per
  // loop millisecond times every item; a busier one times an evenly spaced
  // sample of about 64 per millisecond (each timed item costs three clock
  // reads), so count() may be below done.
  Histogram queue_wait;     // submit -> start on the pool thread (uv_hrtime)
  Histogram run_time;       // start -> end of work() on the pool thread
};

// Told how long the done and late callbacks of a lane ran, for the loop-lag
// monitor (the Instance that owns the lane). Callbacks are timed in runs: a
// lane delivering many fast completions in a row reads the clock once per run
// of up to 64 of them instead of twice per callback, growing the run only
// while runs stay far below a millisecond and falling back to one callback per
// measurement as soon as one run is slower. `count` > 1 means `ns` is the time
// of `count` consecutive callbacks of this lane, none of them longer than `ns`.
// Called on the loop thread.
class LaneObserver {
 public:
  virtual void callbacks_ran(const char* what, uint64_t count, uint64_t ns) = 0;
  // After want_room(): the lane has room again (see Lane::want_room). Called
  // from the loop's check phase, never inside submit() or a done callback.
  virtual void room_available() {}

 protected:
  ~LaneObserver() = default;
};

using WorkFn = void (*)(void* arg);
using DoneFn = void (*)(void* arg, int status);
using LateFn = void (*)(void* arg);

struct WorkItem;  // opaque; the plugin ABI's hostlet_work is a WorkItem

class Lane {
 public:
  Lane(uv_loop_t* loop, std::string name, LaneLimits limits);
  ~Lane();  // requires closed() (see close())
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // Accepts work. timeout_ms == 0 uses limits.default_timeout_ms.
  // Returns 0 (done will run exactly once), -EAGAIN (queue full), -ESHUTDOWN
  // (lane draining or closed), -EINVAL (null work or done). *out may be null.
  int submit(WorkFn work, DoneFn done, void* arg, uint64_t timeout_ms, LateFn late,
             WorkItem** out);

  // Cancels an item that has not started: done(-ECANCELED) runs from a
  // later loop iteration (never inside cancel()). That covers items in the
  // lane's FIFO and items already handed to libuv that no pool thread has
  // picked up yet (uv_cancel). Returns 0, -EBUSY when it has already started
  // or finished (or its done is already due), -EINVAL for null or an item of
  // another lane. `item` must not be used once its done has returned.
  int cancel(WorkItem* item);

  // Stops intake (submit -> -ESHUTDOWN), reports every queued item with
  // -ESHUTDOWN, and waits for running items. `cb(true)` once nothing runs
  // any more (including timed-out items), or `cb(false)` when deadline_ms
  // passes first (0 = no deadline). cb runs once, on the loop, never inside
  // drain(). After cb(false) the lane keeps tracking the stragglers: outstanding()
  // tells whether any pool thread may still execute the plugin's code.
  // The queued items' done(-ESHUTDOWN) run from a later loop iteration, before
  // cb(true). A second drain() while one waits adds its cb (the earlier
  // deadline wins; both get the same answer). If close() comes first, cb runs
  // when the lane's handles are closed with outstanding() == 0.
  void drain(uint64_t deadline_ms, std::function<void(bool all_finished)> cb);

  // Re-opens intake after a drain (used when a reload is rolled back). A drain
  // still waiting keeps waiting: its cb still runs once, as described above.
  void resume();

  // True when submit() would accept one more item now (not draining, and a
  // free slot or room in the FIFO).
  bool has_room() const;
  // Asks to be told (LaneObserver::room_available, once) when an item of
  // this lane has finished and has_room() is true again. Used by the action
  // registry to hold calls while the lane is full (backpressure) instead of
  // refusing them. A lane that has nothing in flight never tells: the asker
  // has its own deadline.
  void want_room();

  // Number of items handed to uv_queue_work whose after_work has not yet run
  // (i.e. a pool thread may still run plugin code, or late() is pending).
  size_t outstanding() const;

  // Closes the lane's own libuv handles; `cb` runs when they are closed.
  // Intake stops at once. Items still queued, and dones already due, are
  // reported (queued ones with -ESHUTDOWN) from a later loop iteration,
  // before the handles close; no done or late runs after cb. Items still
  // outstanding then keep the loop alive until their after_work runs, and are
  // freed without calling done/late, so drain() first for a clean close.
  // The Lane may be destroyed from cb on, even with items outstanding.
  // Call close() once; drain() after the handles are closed is ignored.
  void close(std::function<void()> cb);
  // True once close()'s handles are closed (cb has run or is running).
  bool closed() const;
  // True between drain() and resume(), and after close().
  bool draining() const;

  // Who is told the callbacks' run times (may be null: nothing is timed).
  void set_observer(LaneObserver* obs);
  // Held until the lane's state is freed, which is after the last work item
  // has left the pool even when the Lane is destroyed before (the plugin's
  // code then stays mapped while a pool thread may still run it).
  void keep_alive(std::shared_ptr<const void> ref);
  // The lane an item belongs to; null once that Lane is destroyed.
  static Lane* of(const WorkItem* item);

  const LaneStats& stats() const { return stats_; }
  const LaneLimits& limits() const { return limits_; }
  // max_inflight 0 is taken as 1. A higher max_inflight hands queued items
  // to libuv at once; a lower max_queue refuses new items until the queue
  // shrinks below it (nothing already queued is dropped).
  void set_limits(const LaneLimits& l);
  const std::string& name() const { return name_; }

 private:
  struct Impl;
  friend struct WorkItem;  // names Impl
  std::string name_;
  LaneLimits limits_;
  LaneStats stats_;
  // pimpl so the header stays stable while the implementation evolves. Owned
  // by the Lane, except when the Lane is destroyed with items outstanding:
  // then the last of their after_work callbacks frees it.
  Impl* impl_;
};

}  // namespace hostlet
