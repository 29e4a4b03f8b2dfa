// Offload lanes (see offload.hpp for the contract).
//
// An item lives in exactly one place at a time, and `state` says which:
//
//   Queued      the lane's FIFO (intrusive, doubly linked for O(1) cancel)
//   Ready       admitted (it holds an in-flight slot) while the check batch
//               runs; handed to uv_queue_work when the batch ends
//   InPool      handed to uv_queue_work, done not reported yet
//   Cancelling  uv_cancel took it back; after_work reports -ECANCELED
//   Due         the pending list: done(status) runs from the idle handle
//   Finished    the finished list (filed by after_work): done(status) runs
//               from the check handle, after this iteration's poll phase
//   LateDue     the finished list: its done(-ETIMEDOUT) was reported, its
//               work has ended, late runs from the check handle
//   Expired     a deadline callback's local list, reported before it
//               returns: ExpiredQueued never reached libuv, ExpiredInPool may
//               be running, ExpiredCancelled was taken back by uv_cancel
//   Late        done(-ETIMEDOUT) reported, work started: late at after_work
//   Orphan      done(-ETIMEDOUT) and late reported, uv_cancel took it back:
//               after_work only frees it
//   Free        the free list
//
// libuv holds the request (uv_queue_work called, after_work not run yet) in
// exactly the states InPool, Cancelling, ExpiredInPool, ExpiredCancelled,
// Late and Orphan: no flag repeats that. The atomic `phase` is the pool
// thread's side (not started, running, finished) and only items with a
// deadline keep it.
//
// Items with a deadline also sit in a min-heap (heap_pos != kNoPos) until
// they are reported; one uv_timer is armed for the heap's top. Removing the
// top does not re-arm: the timer may fire early, find nothing expired, and
// re-arm for the new top, which keeps the common path (completion) cheap.
//
// Callback timing (for the LaneObserver): the check handle runs the done and
// late callbacks of every item that finished in this iteration in one loop,
// so nothing but the lane runs between two of them and one clock read at the
// end of a callback is also the start of the next. A run of `window`
// consecutive callbacks is measured with one read; `window` doubles (up to
// kMaxWindow) while runs take under kWindowBudgetNs and drops back to 1 when a
// run takes longer. With lag_warn at least 1 ms (the config's minimum), a run
// can only exceed it through a callback much slower than the ones before it,
// and the run is named after this lane's instance either way. Callbacks run
// elsewhere (deadlines, cancels, shutdown: rare) are timed one by one.
//
// Hand-off after the batch: work that the batch's callbacks submit (typically
// the next request of the plugin whose request just finished) is admitted at
// once but handed to uv_queue_work only when the batch ends, in one tight
// loop. Handed one by one between callbacks, each item reached a pool that
// had just run dry: with short work the threads finish faster than the loop
// submits, go to sleep, and every uv_queue_work then paid a futex wake-up and
// contended for libuv's queue lock with the thread it woke, which made the
// loop slower still. Handed together, they keep the pool's queue ahead of its
// threads. The delay is the rest of the batch (callbacks that each take
// microseconds, or the batch is short); every item still is its own
// uv_work_t, so nothing that blocks is serialized.
#include "offload.hpp"

#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstddef>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "intrusive.hpp"
#include "log.hpp"

namespace hostlet {

namespace {
constexpr uint64_t kNsPerMs = 1000000;
constexpr size_t kNoPos = std::numeric_limits<size_t>::max();
constexpr size_t kFreeListMax = 4096;
// Latency sampling: a lane that sees at most this many submits per loop
// millisecond times every item; a busier one times every stride-th item,
// stride (a power of two) picked from the previous millisecond's count so
// that about this many per millisecond are timed. Each timed item costs three
// uv_hrtime calls (~50 ns each in a VM), which with trivial work and a full
// pool is most of the lane's overhead over raw uv_queue_work.
constexpr uint64_t kTimedPerMs = 64;
constexpr uint64_t kMaxStride = 1024;
// Callback timing runs (see the header comment).
constexpr uint64_t kWindowBudgetNs = 50000;
constexpr unsigned kMaxWindow = 64;
constexpr const char* kDoneWhat = "offload done callback";
constexpr const char* kLateWhat = "offload late callback";

// Written by the pool thread, read by the loop at a deadline or cancel.
constexpr uint8_t kNotStarted = 0;
constexpr uint8_t kRunning = 1;
constexpr uint8_t kFinished = 2;

#define LANE_HOT [[gnu::always_inline]] inline

enum class ItemState : uint8_t {
  Free, Queued, Ready, InPool, Cancelling, Due, Finished, LateDue,
  ExpiredQueued, ExpiredInPool, ExpiredCancelled, Late, Orphan
};

// Whole milliseconds from now until deadline, rounded up so the timer never
// fires before the deadline by our own rounding.
uint64_t ms_until(uint64_t deadline_ns, uint64_t now_ns) {
  if (deadline_ns <= now_ns) return 0;
  return (deadline_ns - now_ns + kNsPerMs - 1) / kNsPerMs;
}

// deadline in ns for a timeout in ms from now; 0 (none) when it would overflow.
uint64_t deadline_after(uint64_t now_ns, uint64_t timeout_ms) {
  if (timeout_ms == 0) return 0;
  if (timeout_ms > (std::numeric_limits<uint64_t>::max() - now_ns) / kNsPerMs) return 0;
  return now_ns + timeout_ms * kNsPerMs;
}
}  // namespace

// ---------------------------------------------------------------------------
// Histogram

void Histogram::record(uint64_t ns) {
  int b = ns < 2 ? 0 : static_cast<int>(std::bit_width(ns)) - 1;
  if (b >= kBuckets) b = kBuckets - 1;
  ++buckets_[static_cast<size_t>(b)];
  ++count_;
  sum_ += ns;
  if (ns > max_) max_ = ns;
}

uint64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  if (!(q > 0.0)) q = 0.0;  // also NaN
  if (q > 1.0) q = 1.0;
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank < 1) rank = 1;
  if (rank > count_) rank = count_;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[static_cast<size_t>(i)];
    if (seen >= rank) {
      if (i == kBuckets - 1) return max_;
      uint64_t upper = (uint64_t{1} << (i + 1)) - 1;
      return upper < max_ ? upper : max_;
    }
  }
  return max_;
}

void Histogram::reset() {
  buckets_.fill(0);
  count_ = sum_ = max_ = 0;
}

bool Histogram::since(const Histogram& earlier, Histogram* out) const {
  if (earlier.count_ > count_ || earlier.sum_ > sum_) return false;
  Histogram d;
  int top = -1;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (earlier.buckets_[i] > buckets_[i]) return false;
    d.buckets_[i] = buckets_[i] - earlier.buckets_[i];
    if (d.buckets_[i]) top = static_cast<int>(i);
  }
  d.count_ = count_ - earlier.count_;
  d.sum_ = sum_ - earlier.sum_;
  if (top >= 0) {
    uint64_t upper = top == kBuckets - 1 ? max_ : (uint64_t{1} << (top + 1)) - 1;
    d.max_ = upper < max_ ? upper : max_;
  }
  *out = d;
  return true;
}

// ---------------------------------------------------------------------------
// Items

// Laid out by who touches what per item, in 64-byte lines: the request (the
// two lines libuv writes on both threads), then one line with everything the
// pool thread reads and the loop's per-item path uses, then the fields only
// deadlines, timing and the FIFO need. An item without a deadline that is not
// timed costs the pool thread no write outside libuv's request.
struct alignas(64) WorkItem {
  uv_work_t req;  // first member: the item is found from the request (of_req)
  // --- hot: every item, both threads ---
  WorkFn work = nullptr;
  void* arg = nullptr;
  DoneFn done = nullptr;
  LateFn late = nullptr;
  WorkItem* next = nullptr;  // FIFO, pending, finished, expired and free lists
  Lane::Impl* lane = nullptr;
  int status = 0;            // Due: what done will get
  ItemState state = ItemState::Free;
  bool timed = false;        // record queue wait and run time (see kTimedPerMs)
  bool has_deadline = false; // deadline_ns is set: the pool thread keeps `phase`
  // Written by the pool thread only for items with a deadline (the only ones
  // whose phase anyone reads: a deadline must tell running from finished;
  // cancel() relies on uv_cancel, which refuses a started request itself).
  std::atomic<uint8_t> phase{kNotStarted};
  // --- cold: deadlines, latency timing, FIFO ---
  WorkItem* prev = nullptr;  // FIFO only
  uint64_t submit_ns = 0;    // loop thread, uv_hrtime; set when timed or with a deadline
  uint64_t start_ns = 0;     // pool thread; read by the loop after after_work
  uint64_t end_ns = 0;       // pool thread; read by the loop after after_work
  uint64_t deadline_ns = 0;  // valid when has_deadline
  size_t heap_pos = kNoPos;

  static WorkItem* of_req(uv_work_t* req) { return reinterpret_cast<WorkItem*>(req); }
};
static_assert(std::is_standard_layout_v<WorkItem> && offsetof(WorkItem, req) == 0,
              "of_req needs req first in a standard-layout WorkItem");
static_assert(offsetof(WorkItem, work) % 64 == 0 && offsetof(WorkItem, phase) < offsetof(WorkItem, work) + 64,
              "the hot fields share one line, right after the request");

// ---------------------------------------------------------------------------
// Lane::Impl

struct Lane::Impl {
  Impl(Lane* owner, uv_loop_t* loop);
  ~Impl();

  // --- owner's data, or a private copy once the Lane is gone ---
  LaneStats* st;
  LaneLimits* lim;
  LaneStats spare_stats;
  LaneLimits spare_limits;

  uv_loop_t* loop;
  uv_timer_t deadline_timer;
  uv_timer_t drain_timer;
  uv_idle_t idle;  // reports the pending list from a later loop iteration
  uv_check_t check;  // reports the finished list after this iteration's poll
  int open_handles = 0;
  Lane* owner;     // null once detached
  LaneObserver* observer = nullptr;
  std::shared_ptr<const void> keep_alive;
  unsigned window = 1;  // callbacks per timed run (see the header comment)
  bool batching = false;          // deliver_finished runs: hand() defers to `ready`
  std::vector<WorkItem*> ready;   // Ready items (and cancelled ones, skipped), in submit order

  List<WorkItem, &WorkItem::next, &WorkItem::prev> fifo;  // Queued, in submit order
  Fifo<WorkItem, &WorkItem::next> pending;    // Due
  Fifo<WorkItem, &WorkItem::next> finished;   // Finished, LateDue
  Stack<WorkItem, &WorkItem::next> free_list; // Free, most recently used first
  std::vector<WorkItem*> heap;  // min-heap by deadline_ns
  uint64_t armed_ns = 0;        // deadline the timer is armed for; 0: not armed
  size_t inflight = 0;
  size_t free_cap = 0;          // items kept on the free list: what the limits can use at once
  uint64_t tick_ms = 0;         // uv_now() of the current sampling millisecond
  uint64_t tick_submits = 0;    // submits seen in it
  uint64_t stride = 1;          // time every stride-th item
  uint64_t sample_seq = 0;

  bool want_room = false;       // tell the observer when an item finished and there is room
  bool draining = false;        // intake closed
  bool closing = false;         // close() called
  bool handles_closing = false; // uv_close called on our handles
  bool closed = false;          // every handle closed
  bool detached = false;        // the Lane is gone

  std::vector<std::function<void(bool)>> drain_cbs;
  uint64_t drain_deadline_ns = 0;
  std::function<void()> close_cb;

  // Every offload passes through the functions marked LANE_HOT once or twice;
  // they are inlined into submit, after_work and the check batch.
  // items
  LANE_HOT WorkItem* alloc_item();
  LANE_HOT void free_item(WorkItem* it);
  void fifo_push(WorkItem* it);
  WorkItem* fifo_pop();
  void fifo_remove(WorkItem* it);
  void pending_push(WorkItem* it, int status);
  LANE_HOT void finished_push(WorkItem* it, ItemState state, int status);
  template <class F> void timed(const char* what, F&& fn);
  uint64_t end_run(const char* what, unsigned count, uint64_t start);
  LANE_HOT void count(int status);

  // deadlines
  void heap_push(WorkItem* it);
  void heap_remove(WorkItem* it);
  void heap_swap(size_t a, size_t b);
  void sift_up(size_t i);
  void sift_down(size_t i);
  LANE_HOT void forget_deadline(WorkItem* it);
  void arm(uint64_t deadline_ns, uint64_t now_ns);
  void expire_deadlines();
  void report_timeout(WorkItem* it);

  // flow
  LANE_HOT void hand(WorkItem* it);
  void queue_work(WorkItem* it);
  void hand_ready();
  void cancel_ready(WorkItem* it);
  void pump();
  void shut_queue();
  void deliver_pending();
  void deliver_finished();
  bool nothing_due() const { return pending.empty() && finished.empty(); }
  void maybe_finish_drain();
  void maybe_room();
  void finish_drain(bool all_finished);
  void close_handles();
  void detach();
  void apply_limits();
  LANE_HOT bool sample();

  static void on_work(uv_work_t* req);
  static void on_after_work(uv_work_t* req, int status);
  static void on_deadline(uv_timer_t* t);
  static void on_drain_deadline(uv_timer_t* t);
  static void on_idle(uv_idle_t* h);
  static void on_check(uv_check_t* h);
  static void on_closed(uv_handle_t* h);
};

Lane::Impl::Impl(Lane* lane, uv_loop_t* l)
    : st(&lane->stats_), lim(&lane->limits_), loop(l), owner(lane) {
  uv_timer_init(loop, &deadline_timer);
  uv_timer_init(loop, &drain_timer);
  uv_idle_init(loop, &idle);
  uv_check_init(loop, &check);
  deadline_timer.data = drain_timer.data = idle.data = check.data = this;
  open_handles = 4;
}

Lane::Impl::~Impl() {
  while (WorkItem* it = finished.pop_front()) delete it;  // finished while detached: nobody to tell
  while (WorkItem* it = free_list.pop()) delete it;
}

void Lane::Impl::apply_limits() {
  if (lim->max_inflight == 0) lim->max_inflight = 1;
  free_cap = kFreeListMax;
  if (lim->max_queue < kFreeListMax && lim->max_queue + lim->max_inflight < kFreeListMax)
    free_cap = lim->max_queue + lim->max_inflight;
  pump();
}

// Whether the item being submitted is timed (see kTimedPerMs). uv_now() is the
// loop's cached time: reading it costs no clock call.
bool Lane::Impl::sample() {
  uint64_t now_ms = uv_now(loop);
  if (now_ms != tick_ms) {
    uint64_t want = tick_submits / kTimedPerMs;
    stride = want <= 1 ? 1 : std::bit_ceil(want);
    if (stride > kMaxStride) stride = kMaxStride;
    tick_ms = now_ms;
    tick_submits = 0;
  }
  ++tick_submits;
  return (++sample_seq & (stride - 1)) == 0;
}

void Lane::Impl::detach() {
  spare_stats = *st;
  spare_limits = *lim;
  st = &spare_stats;
  lim = &spare_limits;
  owner = nullptr;
  observer = nullptr;
  detached = true;
}

WorkItem* Lane::Impl::alloc_item() {
  WorkItem* it = free_list.pop();
  if (!it) {
    it = new WorkItem;
    it->req.data = it;
    it->lane = this;
  }
  return it;
}

void Lane::Impl::free_item(WorkItem* it) {
  it->state = ItemState::Free;
  it->arg = nullptr;
  if (free_list.size() >= free_cap || detached) {
    delete it;
    return;
  }
  free_list.push(it);
}

void Lane::Impl::fifo_push(WorkItem* it) {
  it->state = ItemState::Queued;
  fifo.push_back(it);
  st->queued = fifo.size();
}

void Lane::Impl::fifo_remove(WorkItem* it) {
  fifo.remove(it);
  st->queued = fifo.size();
}

WorkItem* Lane::Impl::fifo_pop() {
  WorkItem* it = fifo.pop_front();
  if (it) st->queued = fifo.size();
  return it;
}

void Lane::Impl::pending_push(WorkItem* it, int status) {
  it->state = ItemState::Due;
  it->status = status;
  pending.push_back(it);
  uv_idle_start(&idle, on_idle);  // no-op when already active
}

void Lane::Impl::finished_push(WorkItem* it, ItemState state, int status) {
  it->state = state;
  it->status = status;
  // The first item starts the check handle; it stays started until the list is empty.
  if (finished.push_back(it) && !handles_closing) uv_check_start(&check, on_check);
}

// Runs one callback of the lane, timed on its own when someone is told.
template <class F> void Lane::Impl::timed(const char* what, F&& fn) {
  uint64_t t0 = observer ? uv_hrtime() : 0;
  fn();
  end_run(what, 1, t0);
}

// Reports `count` callbacks that ran since `start`; returns the time now (the
// start of the next run) and adapts the run length.
uint64_t Lane::Impl::end_run(const char* what, unsigned count, uint64_t start) {
  if (!observer) return 0;  // nobody is told: no clock read
  uint64_t now = uv_hrtime();
  uint64_t ns = now - start;
  if (ns >= kWindowBudgetNs) window = 1;
  else if (count == window && ns < kWindowBudgetNs / 2 && window < kMaxWindow) window *= 2;
  observer->callbacks_ran(what, count, ns);
  return now;
}

void Lane::Impl::count(int status) {
  switch (status) {
    case 0: ++st->done; break;
    case -ECANCELED: ++st->cancelled; break;
    case -ETIMEDOUT: ++st->timed_out; break;
    case -ESHUTDOWN: ++st->shutdown; break;
    default: break;
  }
}

// --- deadline heap ---

void Lane::Impl::heap_swap(size_t a, size_t b) {
  std::swap(heap[a], heap[b]);
  heap[a]->heap_pos = a;
  heap[b]->heap_pos = b;
}

void Lane::Impl::sift_up(size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap[parent]->deadline_ns <= heap[i]->deadline_ns) break;
    heap_swap(i, parent);
    i = parent;
  }
}

void Lane::Impl::sift_down(size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap.size() && heap[l]->deadline_ns < heap[m]->deadline_ns) m = l;
    if (r < heap.size() && heap[r]->deadline_ns < heap[m]->deadline_ns) m = r;
    if (m == i) return;
    heap_swap(i, m);
    i = m;
  }
}

void Lane::Impl::heap_push(WorkItem* it) {
  it->heap_pos = heap.size();
  heap.push_back(it);
  sift_up(it->heap_pos);
}

void Lane::Impl::heap_remove(WorkItem* it) {
  size_t i = it->heap_pos;
  if (i == kNoPos) return;
  it->heap_pos = kNoPos;
  size_t last = heap.size() - 1;
  if (i != last) {
    heap[i] = heap[last];
    heap[i]->heap_pos = i;
    heap.pop_back();
    sift_down(i);
    sift_up(i);
  } else {
    heap.pop_back();
  }
}

// Takes the item out of the deadline heap; stops the timer when nothing is
// left to time, so an idle lane never keeps the loop alive.
void Lane::Impl::forget_deadline(WorkItem* it) {
  if (!it->has_deadline || it->heap_pos == kNoPos) return;
  heap_remove(it);
  if (heap.empty() && armed_ns != 0) {
    uv_timer_stop(&deadline_timer);
    armed_ns = 0;
  }
}

void Lane::Impl::arm(uint64_t deadline_ns, uint64_t now_ns) {
  armed_ns = deadline_ns;
  uv_timer_start(&deadline_timer, on_deadline, ms_until(deadline_ns, now_ns), 0);
}

// Collects every expired item first, then reports them, so that done
// callbacks (which may submit, cancel, drain or close) never see the heap
// half-walked.
void Lane::Impl::expire_deadlines() {
  armed_ns = 0;
  uint64_t now = uv_hrtime();
  Fifo<WorkItem, &WorkItem::next> expired;
  while (!heap.empty() && heap[0]->deadline_ns <= now) {
    WorkItem* it = heap[0];
    heap_remove(it);
    if (it->state == ItemState::Queued) {
      fifo_remove(it);
      it->state = ItemState::ExpiredQueued;
    } else if (it->state == ItemState::InPool) {
      uint8_t phase = it->phase.load(std::memory_order_acquire);
      if (phase == kFinished) continue;  // after_work will report 0
      it->state = phase == kNotStarted && uv_cancel(reinterpret_cast<uv_req_t*>(&it->req)) == 0
                      ? ItemState::ExpiredCancelled
                      : ItemState::ExpiredInPool;
    } else {
      continue;
    }
    expired.push_back(it);
  }
  if (!heap.empty()) arm(heap[0]->deadline_ns, now);
  while (WorkItem* it = expired.pop_front()) report_timeout(it);
}

void Lane::Impl::report_timeout(WorkItem* it) {
  ++st->timed_out;
  timed(kDoneWhat, [&] { it->done(it->arg, -ETIMEDOUT); });
  if (it->state == ItemState::ExpiredInPool) {
    it->state = ItemState::Late;  // late runs once work has ended (see on_after_work)
    return;
  }
  if (it->late) timed(kLateWhat, [&] { it->late(it->arg); });  // never started, never will
  if (it->state == ItemState::ExpiredCancelled) it->state = ItemState::Orphan;  // libuv still holds the request
  else free_item(it);
}

// --- flow ---

// Gives the item an in-flight slot, and the pool its request now or, during
// the check batch, when the batch ends (see the header comment).
void Lane::Impl::hand(WorkItem* it) {
  if (it->has_deadline) it->phase.store(kNotStarted, std::memory_order_relaxed);
  st->running = ++inflight;
  if (batching) {
    it->state = ItemState::Ready;
    ready.push_back(it);
    return;
  }
  queue_work(it);
}

void Lane::Impl::queue_work(WorkItem* it) {
  it->state = ItemState::InPool;
  // uv_queue_work fails only for a null work callback.
  if (uv_queue_work(loop, &it->req, on_work, on_after_work) != 0) std::abort();
}

// Ends the batch: the pool gets every Ready item, back to back. If a callback
// of the batch closed the lane, they never reached libuv: like queued items,
// they are reported with -ESHUTDOWN (before the handles close) and never run.
void Lane::Impl::hand_ready() {
  batching = false;
  for (WorkItem* it : ready) {
    if (it->state != ItemState::Ready) continue;
    if (!closing) {
      queue_work(it);
      continue;
    }
    st->running = --inflight;
    forget_deadline(it);
    pending_push(it, -ESHUTDOWN);
  }
  ready.clear();
}

// A Ready item never reached libuv: it gives its slot back at once and is
// reported cancelled from a later iteration. Its entry in `ready` stays and
// is skipped (the item is Due now, and is not freed before the batch ends).
void Lane::Impl::cancel_ready(WorkItem* it) {
  st->running = --inflight;
  forget_deadline(it);
  pending_push(it, -ECANCELED);
  pump();
}

void Lane::Impl::pump() {
  while (!fifo.empty() && inflight < lim->max_inflight && !closing) hand(fifo_pop());
}

// Every queued item becomes due with -ESHUTDOWN (reported from the idle handle).
void Lane::Impl::shut_queue() {
  while (WorkItem* it = fifo_pop()) {
    forget_deadline(it);
    pending_push(it, -ESHUTDOWN);
  }
}

// Reports the items that were due when it started; items made due by the
// done callbacks it runs wait for the next loop iteration.
void Lane::Impl::deliver_pending() {
  WorkItem* last = pending.back();
  while (WorkItem* it = pending.pop_front()) {
    bool was_last = it == last;
    count(it->status);
    timed(kDoneWhat, [&] { it->done(it->arg, it->status); });
    free_item(it);
    if (was_last) break;
  }
}

// Runs the callbacks of everything on the finished list, timing them in runs
// (see the header comment). A callback may submit, cancel, drain or close, but
// nothing it does adds to this list (only after_work does).
void Lane::Impl::deliver_finished() {
  WorkItem* it = finished.take_all();
  batching = true;
  uint64_t start = observer ? uv_hrtime() : 0;
  const char* what = kDoneWhat;
  unsigned in_run = 0;
  while (it) {
    WorkItem* next = it->next;
    // The list was filed a whole batch ago: fetch the next item while this
    // callback runs, and this item's request for the submit that will
    // reuse it (the free list is LIFO).
    if (next) __builtin_prefetch(&next->work);
    __builtin_prefetch(&it->req, 1);
    __builtin_prefetch(reinterpret_cast<char*>(&it->req) + 64, 1);
    bool late = it->state == ItemState::LateDue;  // filed only with a late
    if ((late ? kLateWhat : kDoneWhat) != what) {
      if (in_run) start = end_run(what, in_run, start);
      in_run = 0;
      what = late ? kLateWhat : kDoneWhat;
    }
    if (late) {
      it->late(it->arg);
    } else {
      count(it->status);
      it->done(it->arg, it->status);
    }
    free_item(it);
    if (++in_run >= window) {
      start = end_run(what, in_run, start);
      in_run = 0;
    }
    it = next;
  }
  if (in_run) end_run(what, in_run, start);
  hand_ready();
}

void Lane::Impl::maybe_finish_drain() {
  if (!drain_cbs.empty() && inflight == 0 && nothing_due()) finish_drain(true);
}

void Lane::Impl::finish_drain(bool all_finished) {
  if (!handles_closing) uv_timer_stop(&drain_timer);
  drain_deadline_ns = 0;
  auto cbs = std::move(drain_cbs);
  drain_cbs.clear();
  for (auto& cb : cbs)
    if (cb) cb(all_finished);
}

void Lane::Impl::close_handles() {
  handles_closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&check), on_closed);
}

// --- libuv callbacks ---

void Lane::Impl::on_work(uv_work_t* req) {
  WorkItem* it = WorkItem::of_req(req);
  bool timed = it->timed, tracked = it->has_deadline;
  if (timed) it->start_ns = uv_hrtime();
  if (tracked) it->phase.store(kRunning, std::memory_order_relaxed);
  it->work(it->arg);
  if (timed) it->end_ns = uv_hrtime();
  if (tracked) it->phase.store(kFinished, std::memory_order_release);
}

void Lane::Impl::on_after_work(uv_work_t* req, int status) {
  WorkItem* it = WorkItem::of_req(req);
  Impl* self = it->lane;
  self->st->running = --self->inflight;
  if (self->detached) {  // the Lane is gone: free quietly, and self with the last item
    delete it;
    if (self->closed && self->inflight == 0) delete self;
    return;
  }
  if (status != UV_ECANCELED && it->timed) {
    self->st->queue_wait.record(it->start_ns - it->submit_ns);
    self->st->run_time.record(it->end_ns - it->start_ns);
  }
  self->forget_deadline(it);
  if (!self->fifo.empty()) self->pump();  // the freed slot goes to the next queued item before any callback runs
  ItemState next = ItemState::Free;
  int result = 0;
  switch (it->state) {
    case ItemState::InPool: next = ItemState::Finished; break;
    case ItemState::Cancelling:
      next = ItemState::Finished;
      result = -ECANCELED;
      break;
    case ItemState::Late:
      if (it->late) next = ItemState::LateDue;
      break;
    default:  // Orphan: everything was reported at its deadline
      break;
  }
  if (next == ItemState::Free || self->closed) {  // no done/late once the lane's handles are closed
    self->free_item(it);
    self->maybe_finish_drain();
    // A slot freed with no callback to run: the check phase still tells a waiter.
    if (self->want_room && !self->handles_closing) uv_check_start(&self->check, on_check);
    return;
  }
  self->finished_push(it, next, result);
  // Closing handles: the check handle will not run again; report now.
  if (self->handles_closing) {
    self->deliver_finished();
    self->maybe_finish_drain();
  }
}

void Lane::Impl::on_deadline(uv_timer_t* t) {
  auto* self = static_cast<Impl*>(t->data);
  if (self->closing || self->detached) return;
  self->expire_deadlines();
}

void Lane::Impl::on_drain_deadline(uv_timer_t* t) {
  auto* self = static_cast<Impl*>(t->data);
  if (self->drain_cbs.empty() || self->detached) return;
  uint64_t now = uv_hrtime();
  if (now < self->drain_deadline_ns) {  // the loop's cached time ran behind
    uv_timer_start(t, on_drain_deadline, ms_until(self->drain_deadline_ns, now), 0);
    return;
  }
  self->deliver_pending();
  self->deliver_finished();
  self->finish_drain(self->inflight == 0 && self->nothing_due());
}

void Lane::Impl::on_idle(uv_idle_t* h) {
  auto* self = static_cast<Impl*>(h->data);
  if (self->detached) {  // destroyed without close(): nothing may be called any more
    uv_idle_stop(h);
    return;
  }
  self->deliver_pending();
  if (self->closing) self->deliver_finished();  // nothing may be left when the handles close
  self->maybe_finish_drain();
  self->maybe_room();
  if (!self->pending.empty()) return;  // made due by the callbacks above: the next iteration
  uv_idle_stop(h);
  if (self->closing && !self->handles_closing) self->close_handles();
}

void Lane::Impl::on_check(uv_check_t* h) {
  auto* self = static_cast<Impl*>(h->data);
  uv_check_stop(h);
  if (self->detached) {  // destroyed without close(): nothing may be called any more
    while (WorkItem* it = self->finished.pop_front()) delete it;
    return;
  }
  self->deliver_finished();
  self->maybe_finish_drain();
  self->maybe_room();
}

void Lane::Impl::maybe_room() {
  if (!want_room || !observer || detached || draining || closing || !owner->has_room()) return;
  want_room = false;
  observer->room_available();
}

void Lane::Impl::on_closed(uv_handle_t* h) {
  auto* self = static_cast<Impl*>(h->data);
  if (--self->open_handles > 0) return;
  self->closed = true;
  // Move everything out first: a callback may destroy the Lane (and so self).
  auto drains = std::move(self->drain_cbs);
  self->drain_cbs.clear();
  auto cb = std::move(self->close_cb);
  bool all_finished = self->inflight == 0;
  for (auto& d : drains)
    if (d) d(all_finished);
  if (cb) cb();
}

// ---------------------------------------------------------------------------
// Lane

Lane::Lane(uv_loop_t* loop, std::string name, LaneLimits limits)
    : name_(std::move(name)), limits_(limits), impl_(new Impl(this, loop)) {
  impl_->apply_limits();
}

Lane::~Lane() {
  if (!impl_->closed) {
    // Its handles are still linked into the loop: freeing them would corrupt
    // the loop, so the state is leaked and goes quiet.
    log(Level::Error, name_, "offload lane destroyed without close(); leaking its state");
    impl_->detach();
    return;
  }
  if (impl_->inflight == 0) {
    delete impl_;
  } else {
    impl_->detach();  // the last after_work frees it
  }
}

int Lane::submit(WorkFn work, DoneFn done, void* arg, uint64_t timeout_ms, LateFn late,
                 WorkItem** out) {
  if (!work || !done) return -EINVAL;
  Impl& L = *impl_;
  if (L.draining || L.closing || L.detached) return -ESHUTDOWN;
  bool direct = L.fifo.empty() && L.inflight < limits_.max_inflight;
  if (!direct && L.fifo.size() >= limits_.max_queue) {
    ++stats_.rejected;
    return -EAGAIN;
  }
  WorkItem* it = L.alloc_item();
  it->work = work;
  it->done = done;
  it->late = late;
  it->arg = arg;
  it->timed = L.sample();
  uint64_t timeout = timeout_ms ? timeout_ms : limits_.default_timeout_ms;
  if (it->timed || timeout != 0) it->submit_ns = uv_hrtime();
  uint64_t deadline = timeout != 0 ? deadline_after(it->submit_ns, timeout) : 0;
  it->has_deadline = deadline != 0;
  if (it->has_deadline) {
    it->deadline_ns = deadline;
    L.heap_push(it);
    if (L.armed_ns == 0 || it->deadline_ns < L.armed_ns) L.arm(it->deadline_ns, it->submit_ns);
  }
  ++stats_.submitted;
  if (direct) L.hand(it);
  else L.fifo_push(it);
  if (out) *out = it;
  return 0;
}

void Lane::set_observer(LaneObserver* obs) { impl_->observer = obs; }

void Lane::keep_alive(std::shared_ptr<const void> ref) { impl_->keep_alive = std::move(ref); }

Lane* Lane::of(const WorkItem* item) { return item && item->lane ? item->lane->owner : nullptr; }

int Lane::cancel(WorkItem* it) {
  if (!it || it->lane != impl_) return -EINVAL;
  Impl& L = *impl_;
  switch (it->state) {
    case ItemState::Queued:
      L.fifo_remove(it);
      L.forget_deadline(it);
      L.pending_push(it, -ECANCELED);
      return 0;
    case ItemState::Ready:
      L.cancel_ready(it);
      return 0;
    case ItemState::InPool:
      // Handed to libuv: it can still be taken back if no pool thread has
      // picked it up (uv_cancel refuses a started or finished request);
      // after_work then reports -ECANCELED.
      if (it->has_deadline && it->phase.load(std::memory_order_acquire) != kNotStarted) return -EBUSY;
      if (uv_cancel(reinterpret_cast<uv_req_t*>(&it->req)) != 0) return -EBUSY;
      L.forget_deadline(it);
      it->state = ItemState::Cancelling;
      return 0;
    default:
      return -EBUSY;
  }
}

void Lane::drain(uint64_t deadline_ms, std::function<void(bool)> cb) {
  Impl& L = *impl_;
  if (L.closed || L.detached) {
    log(Level::Error, name_, "drain() on a closed lane ignored");
    return;
  }
  L.draining = true;
  L.shut_queue();
  L.drain_cbs.push_back(std::move(cb));
  if (L.closing) return;  // the close completes the drain
  uint64_t dl = deadline_after(uv_hrtime(), deadline_ms);
  if (dl != 0 && (L.drain_deadline_ns == 0 || dl < L.drain_deadline_ns)) {
    L.drain_deadline_ns = dl;
    uv_timer_start(&L.drain_timer, Impl::on_drain_deadline, deadline_ms, 0);
  }
  uv_idle_start(&L.idle, Impl::on_idle);  // reports, or finishes, from the next iteration
}

void Lane::resume() {
  if (impl_->closing) return;
  impl_->draining = false;
}

size_t Lane::outstanding() const { return impl_->inflight; }

bool Lane::closed() const { return impl_->closed; }

bool Lane::draining() const { return impl_->draining || impl_->closing; }

bool Lane::has_room() const {
  const Impl& L = *impl_;
  if (L.draining || L.closing || L.detached) return false;
  return (L.fifo.empty() && L.inflight < limits_.max_inflight) || L.fifo.size() < limits_.max_queue;
}

void Lane::want_room() { impl_->want_room = true; }

void Lane::close(std::function<void()> cb) {
  Impl& L = *impl_;
  if (L.closing) {
    log(Level::Error, name_, "close() called twice; ignored");
    return;
  }
  L.closing = true;
  L.draining = true;
  L.close_cb = std::move(cb);
  L.shut_queue();
  // No timeouts from here on: what is in the pool reports 0 if it ends
  // before the handles close, and nothing after.
  for (WorkItem* it : L.heap) it->heap_pos = kNoPos;
  L.heap.clear();
  uv_timer_stop(&L.deadline_timer);
  L.armed_ns = 0;
  uv_idle_start(&L.idle, Impl::on_idle);  // delivers what is due, then closes the handles
}

void Lane::set_limits(const LaneLimits& l) {
  limits_ = l;
  impl_->apply_limits();
}

}  // namespace hostlet
