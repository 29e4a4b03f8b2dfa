// Tests for core/offload.cpp: lanes in front of the libuv thread pool.
//
// Work items block on a Gate (mutex + condition variable) so that "running",
// "queued" and "waiting for a pool thread" are reached deterministically;
// nothing here asserts a duration, only generous timeouts.
#include <catch2/catch.hpp>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "offload.hpp"

using hostlet::Histogram;
using hostlet::Lane;
using hostlet::LaneLimits;
using hostlet::WorkItem;

namespace {

// libuv reads UV_THREADPOOL_SIZE once, at the first uv_queue_work: set it
// before main, so that "every pool thread is busy" is reachable.
constexpr int kPoolThreads = 8;
struct PoolSize {
  PoolSize() { setenv("UV_THREADPOOL_SIZE", "8", 1); }
} g_pool_size;

constexpr int kNotCalled = 1;  // no done status is positive

// Work items wait here until the test opens it.
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> l(m_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  void open() {
    std::lock_guard<std::mutex> l(m_);
    open_ = true;
    cv_.notify_all();
  }
  // Blocks the caller until n work items have arrived; false after 10 s.
  bool wait_arrived(int n) {
    std::unique_lock<std::mutex> l(m_);
    return cv_.wait_for(l, std::chrono::seconds(10), [&] { return arrived_ >= n; });
  }
  int arrived() {
    std::lock_guard<std::mutex> l(m_);
    return arrived_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

// Concurrency seen inside work functions.
struct Concurrency {
  std::atomic<int> now{0};
  std::atomic<int> max{0};
  void enter() {
    int n = ++now;
    int m = max.load();
    while (n > m && !max.compare_exchange_weak(m, n)) {
    }
  }
  void leave() { --now; }
};

struct Job {
  Gate* gate = nullptr;
  Concurrency* conc = nullptr;
  std::atomic<bool> ran{false};
  std::thread::id work_thread;
  std::thread::id done_thread;
  int status = kNotCalled;
  int done_calls = 0;
  int late_calls = 0;
  bool late_after_done = false;
  int order = 0;           // value of *seq when done ran
  int* seq = nullptr;      // shared sequence counter, may be null
  WorkItem* item = nullptr;
};

void job_work(void* p) {
  auto* j = static_cast<Job*>(p);
  j->work_thread = std::this_thread::get_id();
  j->ran = true;
  if (j->conc) j->conc->enter();
  if (j->gate) j->gate->wait();
  if (j->conc) {
    std::this_thread::yield();
    j->conc->leave();
  }
}

void job_done(void* p, int status) {
  auto* j = static_cast<Job*>(p);
  j->status = status;
  ++j->done_calls;
  j->done_thread = std::this_thread::get_id();
  if (j->seq) j->order = ++*j->seq;
}

void job_late(void* p) {
  auto* j = static_cast<Job*>(p);
  ++j->late_calls;
  j->late_after_done = j->done_calls == 1 && j->status == -ETIMEDOUT;
}

struct DrainResult {
  int calls = 0;
  bool all_finished = false;
  int order = 0;
};

// A private loop per test. The destructor opens every gate, closes every
// lane and handle, runs the loop until nothing is left, and requires
// uv_loop_close() == 0.
class LoopFixture {
 public:
  LoopFixture() {
    REQUIRE(uv_loop_init(&loop) == 0);
    uv_timer_init(&loop, &watchdog_);
  }

  ~LoopFixture() noexcept(false) {
    for (auto& g : gates_) g->open();
    for (auto& s : lanes_)
      if (s.lane && !s.close_called) s.lane->close([] {});
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    lanes_.clear();
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (std::uncaught_exceptions() > 0) CHECK(rc == 0);
    else REQUIRE(rc == 0);
  }

  Lane& lane(LaneLimits limits = {}) {
    lanes_.push_back({std::make_unique<Lane>(&loop, "test", limits), false});
    return *lanes_.back().lane;
  }
  // Closes a lane; the result's `calls` counts close callbacks, `order` is
  // the sequence number when it ran.
  std::shared_ptr<DrainResult> close(Lane& l) {
    for (auto& s : lanes_)
      if (s.lane.get() == &l) s.close_called = true;
    auto r = std::make_shared<DrainResult>();
    int* s = &seq;
    l.close([r, s] {
      ++r->calls;
      r->order = ++*s;
    });
    return r;
  }
  // Destroys a lane that close() has finished with (items may be outstanding).
  void destroy(Lane& l) {
    for (auto& s : lanes_)
      if (s.lane.get() == &l) s.lane.reset();
  }
  Gate& gate() {
    gates_.push_back(std::make_unique<Gate>());
    return *gates_.back();
  }
  Job& job(Gate* g = nullptr) {
    jobs_.push_back(std::make_unique<Job>());
    jobs_.back()->gate = g;
    jobs_.back()->seq = &seq;
    return *jobs_.back();
  }
  std::shared_ptr<DrainResult> drain(Lane& l, uint64_t deadline_ms) {
    auto r = std::make_shared<DrainResult>();
    int* s = &seq;
    l.drain(deadline_ms, [r, s](bool all) {
      ++r->calls;
      r->all_finished = all;
      r->order = ++*s;
    });
    return r;
  }
  int submit(Lane& l, Job& j, uint64_t timeout_ms = 0, bool with_late = false) {
    return l.submit(job_work, job_done, &j, timeout_ms, with_late ? job_late : nullptr, &j.item);
  }

  // Runs the loop until pred() holds; false after timeout_ms.
  bool run_until(const std::function<bool()>& pred, uint64_t timeout_ms = 10000) {
    bool fired = false;
    watchdog_.data = &fired;
    uv_timer_start(
        &watchdog_, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, timeout_ms, 0);
    while (!pred() && !fired) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&watchdog_);
    return pred();
  }

  uv_loop_t loop;
  int seq = 0;

 private:
  struct LaneSlot {
    std::unique_ptr<Lane> lane;
    bool close_called;
  };
  uv_timer_t watchdog_;
  std::vector<LaneSlot> lanes_;
  std::vector<std::unique_ptr<Gate>> gates_;
  std::vector<std::unique_ptr<Job>> jobs_;
};

LaneLimits limits(unsigned inflight, size_t queue, uint64_t timeout_ms = 0) {
  LaneLimits l;
  l.max_inflight = inflight;
  l.max_queue = queue;
  l.default_timeout_ms = timeout_ms;
  return l;
}

}  // namespace

TEST_CASE_METHOD(LoopFixture, "offload: work runs on a pool thread and done reports ok on the loop") {
  Lane& l = lane();
  Job& j = job();
  REQUIRE(submit(l, j) == 0);
  CHECK(j.done_calls == 0);  // never inside submit
  CHECK(l.outstanding() == 1);
  REQUIRE(run_until([&] { return j.done_calls > 0; }));
  CHECK(j.status == 0);
  CHECK(j.ran);
  CHECK(j.work_thread != std::this_thread::get_id());
  CHECK(j.done_thread == std::this_thread::get_id());
  CHECK(l.outstanding() == 0);
  CHECK(l.stats().submitted == 1);
  CHECK(l.stats().done == 1);
  CHECK(l.stats().running == 0);
  CHECK(l.stats().queued == 0);
}

TEST_CASE_METHOD(LoopFixture, "offload: done runs exactly once per item whatever the outcome") {
  Lane& l = lane(limits(2, 100));
  Gate& g = gate();
  std::vector<Job*> jobs;
  for (int i = 0; i < 2; ++i) jobs.push_back(&job(&g));
  for (auto* j : jobs) REQUIRE(submit(l, *j) == 0);
  // 40 more wait in the queue: some get cancelled, some time out there.
  std::vector<Job*> queued, cancelled, expiring;
  for (int i = 0; i < 40; ++i) {
    Job& j = job();
    uint64_t timeout = i % 5 == 0 ? 1 : 0;
    REQUIRE(submit(l, j, timeout, true) == 0);
    (timeout ? expiring : queued).push_back(&j);
  }
  for (size_t i = 0; i < queued.size(); i += 3) {
    REQUIRE(l.cancel(queued[i]->item) == 0);
    cancelled.push_back(queued[i]);
  }
  for (auto* j : cancelled) CHECK(j->done_calls == 0);
  REQUIRE(run_until([&] {
    for (auto* j : expiring)
      if (j->done_calls == 0) return false;
    return true;
  }));
  g.open();
  auto all_done = [&] {
    for (auto* j : jobs)
      if (j->done_calls == 0) return false;
    for (auto* j : queued)
      if (j->done_calls == 0) return false;
    return l.outstanding() == 0;
  };
  REQUIRE(run_until(all_done));
  uv_run(&loop, UV_RUN_NOWAIT);
  for (auto* j : jobs) CHECK((j->done_calls == 1 && j->status == 0));
  for (auto* j : expiring) {
    CHECK(j->done_calls == 1);
    CHECK(j->status == -ETIMEDOUT);
    CHECK(j->late_calls == 1);
    CHECK(!j->ran);
  }
  for (auto* j : queued) {
    CHECK(j->done_calls == 1);
    CHECK(j->late_calls == 0);
  }
  for (auto* j : cancelled) CHECK((j->status == -ECANCELED && !j->ran));
  const auto& s = l.stats();
  CHECK(s.submitted == 42);
  CHECK(s.cancelled == cancelled.size());
  CHECK(s.timed_out == expiring.size());
  CHECK(s.done == 2 + queued.size() - cancelled.size());
  CHECK(s.done + s.cancelled + s.timed_out + s.shutdown == s.submitted);
}

TEST_CASE_METHOD(LoopFixture, "offload: ten thousand items all complete") {
  constexpr int kItems = 10000;
  Lane& l = lane(limits(16, kItems));
  std::vector<Job*> jobs;
  for (int i = 0; i < kItems; ++i) {
    jobs.push_back(&job());
    REQUIRE(submit(l, *jobs.back()) == 0);
  }
  CHECK(l.outstanding() == 16);
  CHECK(l.stats().queued == kItems - 16);
  REQUIRE(run_until([&] { return l.stats().done == kItems; }, 60000));
  int once = 0;
  for (auto* j : jobs) once += j->done_calls == 1 && j->status == 0;
  CHECK(once == kItems);
  CHECK(l.outstanding() == 0);
  CHECK(l.stats().queue_wait.count() == kItems);
  CHECK(l.stats().run_time.count() == kItems);
}

TEST_CASE_METHOD(LoopFixture, "offload: max_inflight is never exceeded") {
  SECTION("one lane, held at its limit") {
    Lane& l = lane(limits(3, 100));
    Gate& g = gate();
    Concurrency c;
    std::vector<Job*> jobs;
    for (int i = 0; i < 30; ++i) {
      jobs.push_back(&job(&g));
      jobs.back()->conc = &c;
      REQUIRE(submit(l, *jobs.back()) == 0);
    }
    REQUIRE(g.wait_arrived(3));
    CHECK(l.outstanding() == 3);
    CHECK(l.stats().running == 3);
    CHECK(l.stats().queued == 27);
    g.open();
    REQUIRE(run_until([&] { return l.stats().done == 30; }));
    CHECK(c.max == 3);
    CHECK(g.arrived() == 30);
  }
  SECTION("two lanes sharing the pool") {
    Lane& a = lane(limits(2, 1000));
    Lane& b = lane(limits(3, 1000));
    Concurrency ca, cb;
    for (int i = 0; i < 300; ++i) {
      Job& ja = job();
      ja.conc = &ca;
      REQUIRE(submit(a, ja) == 0);
      Job& jb = job();
      jb.conc = &cb;
      REQUIRE(submit(b, jb) == 0);
      CHECK(a.outstanding() <= 2);
      CHECK(b.outstanding() <= 3);
    }
    REQUIRE(run_until([&] { return a.stats().done == 300 && b.stats().done == 300; }));
    CHECK(ca.max <= 2);
    CHECK(cb.max <= 3);
  }
}

TEST_CASE_METHOD(LoopFixture, "offload: a full queue refuses with EAGAIN and counts it") {
  SECTION("bounded queue") {
    Lane& l = lane(limits(1, 2));
    Gate& g = gate();
    Job& a = job(&g);
    Job& b = job();
    Job& c = job();
    Job& d = job();
    REQUIRE(submit(l, a) == 0);
    REQUIRE(submit(l, b) == 0);
    REQUIRE(submit(l, c) == 0);
    CHECK(submit(l, d) == -EAGAIN);
    CHECK(l.stats().rejected == 1);
    CHECK(l.stats().submitted == 3);
    CHECK(l.stats().queued == 2);
    g.open();
    REQUIRE(run_until([&] { return c.done_calls == 1; }));
    CHECK(d.done_calls == 0);
    CHECK(!d.ran);
    // Room again once the queue drained.
    REQUIRE(submit(l, d) == 0);
    REQUIRE(run_until([&] { return d.done_calls == 1; }));
    CHECK(d.status == 0);
  }
  SECTION("no queue at all") {
    Lane& l = lane(limits(1, 0));
    Gate& g = gate();
    Job& a = job(&g);
    Job& b = job();
    REQUIRE(submit(l, a) == 0);
    CHECK(submit(l, b) == -EAGAIN);
    CHECK(l.stats().rejected == 1);
    g.open();
    REQUIRE(run_until([&] { return a.done_calls == 1; }));
  }
}

TEST_CASE_METHOD(LoopFixture, "offload: cancelled before start reports cancelled") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  REQUIRE(submit(l, a) == 0);
  REQUIRE(submit(l, b, 0, true) == 0);
  REQUIRE(l.cancel(b.item) == 0);
  CHECK(b.done_calls == 0);  // reported from a later loop iteration, not inside cancel()
  CHECK(l.stats().queued == 0);
  CHECK(l.cancel(b.item) == -EBUSY);  // its done is already due
  REQUIRE(run_until([&] { return b.done_calls == 1; }));
  CHECK(b.status == -ECANCELED);
  CHECK(b.late_calls == 0);
  CHECK(l.stats().cancelled == 1);
  g.open();
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == 0);
  CHECK(!b.ran);
}

TEST_CASE_METHOD(LoopFixture, "offload: cancel of a running item returns EBUSY") {
  Lane& l = lane();
  Gate& g = gate();
  Job& a = job(&g);
  REQUIRE(submit(l, a) == 0);
  REQUIRE(g.wait_arrived(1));
  CHECK(l.cancel(a.item) == -EBUSY);
  g.open();
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == 0);
  CHECK(l.stats().cancelled == 0);
}

TEST_CASE_METHOD(LoopFixture, "offload: cancel of an item waiting for a pool thread reports cancelled") {
  // Every pool thread is held by another lane, so the item is in libuv's
  // queue, not the lane's: uv_cancel takes it back.
  Lane& blocker = lane(limits(kPoolThreads, 10));
  Gate& g = gate();
  for (int i = 0; i < kPoolThreads; ++i) REQUIRE(submit(blocker, job(&g)) == 0);
  REQUIRE(g.wait_arrived(kPoolThreads));
  Lane& l = lane();
  Job& b = job();
  REQUIRE(submit(l, b) == 0);
  CHECK(l.outstanding() == 1);
  REQUIRE(l.cancel(b.item) == 0);
  CHECK(b.done_calls == 0);
  REQUIRE(run_until([&] { return b.done_calls == 1; }));
  CHECK(b.status == -ECANCELED);
  CHECK(l.outstanding() == 0);
  CHECK(l.stats().cancelled == 1);
  CHECK(l.stats().queue_wait.count() == 0);
  g.open();
  REQUIRE(run_until([&] { return blocker.stats().done == kPoolThreads; }));
  CHECK(!b.ran);
}

TEST_CASE_METHOD(LoopFixture, "offload: deadline while running reports timed out, then late after work ends") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  REQUIRE(submit(l, a, 30, true) == 0);
  REQUIRE(submit(l, b) == 0);
  REQUIRE(g.wait_arrived(1));
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == -ETIMEDOUT);
  CHECK(a.late_calls == 0);
  CHECK(l.outstanding() == 1);  // still on its pool thread, still holding the lane's slot
  CHECK(l.stats().running == 1);
  CHECK(l.stats().queued == 1);
  CHECK(l.stats().timed_out == 1);
  CHECK(l.cancel(a.item) == -EBUSY);
  g.open();
  REQUIRE(run_until([&] { return a.late_calls == 1 && b.done_calls == 1; }));
  CHECK(a.late_after_done);
  CHECK(a.done_calls == 1);
  CHECK(b.status == 0);
  CHECK(l.outstanding() == 0);
  CHECK(l.stats().done == 1);
  CHECK(l.stats().run_time.count() == 2);
}

TEST_CASE_METHOD(LoopFixture, "offload: deadline while queued reports timed out and work never runs") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  Job& c = job();
  REQUIRE(submit(l, a) == 0);
  REQUIRE(submit(l, b, 30, true) == 0);
  REQUIRE(submit(l, c, 30) == 0);  // no late: done is the last word
  REQUIRE(run_until([&] { return b.done_calls == 1 && c.done_calls == 1; }));
  CHECK(b.status == -ETIMEDOUT);
  CHECK(b.late_calls == 1);  // it never started, so late runs right after done
  CHECK(b.late_after_done);
  CHECK(c.status == -ETIMEDOUT);
  CHECK(l.stats().queued == 0);
  CHECK(l.stats().timed_out == 2);
  g.open();
  REQUIRE(run_until([&] { return a.done_calls == 1 && l.outstanding() == 0; }));
  CHECK(a.status == 0);
  CHECK(!b.ran);
  CHECK(!c.ran);
  CHECK(b.late_calls == 1);
}

TEST_CASE_METHOD(LoopFixture, "offload: queued items time out in deadline order") {
  Lane& l = lane(limits(1, 100));
  Gate& g = gate();
  REQUIRE(submit(l, job(&g)) == 0);
  // Deadlines 10, 13, ... ms submitted out of order; every fourth is cancelled
  // (taken out of the middle of the deadline heap), and some have none.
  constexpr int kItems = 24;
  int perm[kItems];
  for (int i = 0; i < kItems; ++i) perm[i] = (i * 7) % kItems;  // 7 is coprime with 24
  std::vector<Job*> timed(kItems), untimed;
  for (int i = 0; i < kItems; ++i) {
    timed[static_cast<size_t>(perm[i])] = &job();
    REQUIRE(submit(l, *timed[static_cast<size_t>(perm[i])], 10 + 3 * static_cast<uint64_t>(perm[i]), true) == 0);
    if (i % 3 == 0) {
      untimed.push_back(&job());
      REQUIRE(submit(l, *untimed.back()) == 0);
    }
  }
  for (int d = 0; d < kItems; d += 4) REQUIRE(l.cancel(timed[static_cast<size_t>(d)]->item) == 0);
  REQUIRE(run_until([&] {
    for (auto* j : timed)
      if (j->done_calls == 0) return false;
    return true;
  }));
  int last = 0;
  for (int d = 0; d < kItems; ++d) {
    Job& j = *timed[static_cast<size_t>(d)];
    CHECK(j.done_calls == 1);
    if (d % 4 == 0) {
      CHECK(j.status == -ECANCELED);
      continue;
    }
    CHECK(j.status == -ETIMEDOUT);
    CHECK(j.order > last);
    last = j.order;
  }
  for (auto* j : untimed) CHECK(j->done_calls == 0);  // still queued behind the gate
  g.open();
  REQUIRE(run_until([&] { return l.outstanding() == 0 && l.stats().queued == 0; }));
  for (auto* j : untimed) CHECK((j->done_calls == 1 && j->status == 0));
}

TEST_CASE_METHOD(LoopFixture, "offload: default timeout applies when submit passes none") {
  Lane& l = lane(limits(1, 10, 30));
  Gate& g = gate();
  Job& a = job(&g);
  REQUIRE(submit(l, a, 0, true) == 0);
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == -ETIMEDOUT);
  g.open();
  REQUIRE(run_until([&] { return a.late_calls == 1; }));
}

TEST_CASE_METHOD(LoopFixture, "offload: deadline while waiting for a pool thread reports timed out and work never runs") {
  Lane& blocker = lane(limits(kPoolThreads, 10));
  Gate& g = gate();
  for (int i = 0; i < kPoolThreads; ++i) REQUIRE(submit(blocker, job(&g)) == 0);
  REQUIRE(g.wait_arrived(kPoolThreads));
  Lane& l = lane();
  Job& b = job();
  REQUIRE(submit(l, b, 30, true) == 0);
  REQUIRE(run_until([&] { return b.done_calls == 1; }));
  CHECK(b.status == -ETIMEDOUT);
  CHECK(b.late_calls == 1);
  CHECK(b.late_after_done);
  REQUIRE(run_until([&] { return l.outstanding() == 0; }));
  g.open();
  REQUIRE(run_until([&] { return blocker.stats().done == kPoolThreads; }));
  CHECK(!b.ran);
  CHECK(b.done_calls == 1);
  CHECK(b.late_calls == 1);
}

TEST_CASE_METHOD(LoopFixture, "offload: drain reports queued items shutting down and waits for running ones") {
  Lane& l = lane(limits(2, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job(&g);
  REQUIRE(submit(l, a) == 0);
  REQUIRE(submit(l, b) == 0);
  std::vector<Job*> queued;
  for (int i = 0; i < 3; ++i) {
    queued.push_back(&job());
    REQUIRE(submit(l, *queued.back(), 0, true) == 0);
  }
  auto r = drain(l, 0);
  CHECK(r->calls == 0);  // never inside drain()
  for (auto* j : queued) CHECK(j->done_calls == 0);
  CHECK(l.draining());
  REQUIRE(run_until([&] {
    for (auto* j : queued)
      if (j->done_calls == 0) return false;
    return true;
  }));
  for (auto* j : queued) {
    CHECK(j->status == -ESHUTDOWN);
    CHECK(j->late_calls == 0);
    CHECK(!j->ran);
  }
  CHECK(r->calls == 0);  // two items still run
  CHECK(l.outstanding() == 2);
  g.open();
  REQUIRE(run_until([&] { return r->calls == 1; }));
  CHECK(r->all_finished);
  CHECK(a.status == 0);
  CHECK(b.status == 0);
  CHECK(r->order > a.order);
  CHECK(r->order > b.order);
  CHECK(l.outstanding() == 0);
  CHECK(l.stats().shutdown == 3);
  CHECK(l.stats().done == 2);
}

TEST_CASE_METHOD(LoopFixture, "offload: drain deadline with a blocked item reports false and keeps tracking it") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  SECTION("the blocked item has no deadline of its own") {
    REQUIRE(submit(l, a, 0, true) == 0);
    REQUIRE(g.wait_arrived(1));
    auto r = drain(l, 50);
    CHECK(r->calls == 0);
    REQUIRE(run_until([&] { return r->calls == 1; }));
    CHECK(!r->all_finished);
    CHECK(l.outstanding() == 1);
    CHECK(a.done_calls == 0);
    g.open();
    REQUIRE(run_until([&] { return l.outstanding() == 0; }));
    CHECK(a.done_calls == 1);  // the lane is still open: its done still arrives
    CHECK(a.status == 0);
    CHECK(a.late_calls == 0);
    CHECK(r->calls == 1);
  }
  SECTION("the blocked item times out before the drain gives up") {
    REQUIRE(submit(l, a, 20, true) == 0);
    REQUIRE(g.wait_arrived(1));
    auto r = drain(l, 200);
    REQUIRE(run_until([&] { return r->calls == 1; }));
    CHECK(!r->all_finished);
    CHECK(a.done_calls == 1);
    CHECK(a.status == -ETIMEDOUT);
    CHECK(a.late_calls == 0);
    CHECK(l.outstanding() == 1);
    g.open();
    REQUIRE(run_until([&] { return l.outstanding() == 0; }));
    CHECK(a.late_calls == 1);
    CHECK(a.late_after_done);
    CHECK(r->calls == 1);
  }
}

TEST_CASE_METHOD(LoopFixture, "offload: submit after drain is refused with ESHUTDOWN until resume") {
  Lane& l = lane();
  auto r = drain(l, 1000);
  CHECK(r->calls == 0);
  REQUIRE(run_until([&] { return r->calls == 1; }));
  CHECK(r->all_finished);
  Job& a = job();
  CHECK(submit(l, a) == -ESHUTDOWN);
  CHECK(l.stats().submitted == 0);
  l.resume();
  CHECK(!l.draining());
  REQUIRE(submit(l, a) == 0);
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == 0);
  // A second drain works the same way.
  auto r2 = drain(l, 0);
  REQUIRE(run_until([&] { return r2->calls == 1; }));
  CHECK(r2->all_finished);
  CHECK(r->calls == 1);
}

TEST_CASE_METHOD(LoopFixture, "offload: close reports queued items and never calls done after it") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  REQUIRE(submit(l, a, 0, true) == 0);
  REQUIRE(submit(l, b) == 0);
  REQUIRE(g.wait_arrived(1));
  auto closed = close(l);
  CHECK(b.done_calls == 0);
  Job& c = job();
  CHECK(submit(l, c) == -ESHUTDOWN);
  REQUIRE(run_until([&] { return closed->calls == 1; }));
  CHECK(l.closed());
  CHECK(b.status == -ESHUTDOWN);
  CHECK(b.order < closed->order);
  CHECK(l.outstanding() == 1);
  g.open();
  REQUIRE(run_until([&] { return l.outstanding() == 0; }));
  CHECK(a.done_calls == 0);
  CHECK(a.late_calls == 0);
}

TEST_CASE_METHOD(LoopFixture, "offload: a lane destroyed while work still runs frees it when the work ends") {
  Lane& l = lane();
  Gate& g = gate();
  Job& a = job(&g);
  REQUIRE(submit(l, a, 20, true) == 0);
  REQUIRE(g.wait_arrived(1));
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  CHECK(a.status == -ETIMEDOUT);
  auto closed = close(l);
  REQUIRE(run_until([&] { return closed->calls == 1; }));
  destroy(l);
  g.open();
  uv_run(&loop, UV_RUN_DEFAULT);  // the pool's after_work frees the item and the lane's state
  CHECK(a.late_calls == 0);       // no late once the lane is closed
}

TEST_CASE_METHOD(LoopFixture, "offload: callbacks may submit and cancel re-entrantly") {
  struct Chain {
    Lane* lane;
    int left;
    int done = 0;
    int cancelled = 0;
  };
  Lane& l = lane(limits(1, 10));
  Chain chain{&l, 100};
  auto work = [](void*) {};
  struct Fns {
    static void done(void* p, int status) {
      auto* c = static_cast<Chain*>(p);
      if (status == -ECANCELED) {
        ++c->cancelled;
        return;
      }
      ++c->done;
      if (--c->left <= 0) return;
      // One more to run, and one to cancel right away.
      // CHECK, not REQUIRE: nothing may throw through libuv's frames.
      CHECK(c->lane->submit([](void*) {}, done, c, 0, nullptr, nullptr) == 0);
      WorkItem* victim = nullptr;
      CHECK(c->lane->submit([](void*) {}, done, c, 0, nullptr, &victim) == 0);
      CHECK(c->lane->cancel(victim) == 0);
    }
  };
  REQUIRE(l.submit(work, Fns::done, &chain, 0, nullptr, nullptr) == 0);
  REQUIRE(run_until([&] { return chain.left <= 0 && l.outstanding() == 0 && chain.cancelled == 99; }));
  CHECK(chain.done == 100);
  CHECK(l.stats().cancelled == 99);
}

// Two items whose work has ended before the loop looks: their after_work
// callbacks, and so their done callbacks, run in one batch.
struct BatchPair {
  std::atomic<int> finished{0};
  static void work(void* p) { ++static_cast<BatchPair*>(p)->finished; }

  // Submits the pair with `done` and waits (without running the loop) until
  // both works have ended and the pool threads have had time to post them
  // (microseconds after work() returns): the loop's next batch has both.
  bool submit_and_finish(Lane& l, hostlet::DoneFn done) {
    if (l.submit(work, done, this, 0, nullptr, nullptr) != 0 || l.submit(work, done, this, 0, nullptr, nullptr) != 0)
      return false;
    for (int i = 0; i < 10000 && finished.load() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return finished.load() == 2;
  }
};

TEST_CASE_METHOD(LoopFixture, "offload: work submitted by a done callback is in flight at once and runs") {
  struct Chain {
    Lane* lane;
    int left = 1000;
    int done = 0;
    bool counted = true;  // every submit showed up in outstanding() at once
  };
  Lane& l = lane(limits(4, 10));
  Chain chain{&l};
  struct Fns {
    static void done(void* p, int status) {
      auto* c = static_cast<Chain*>(p);
      CHECK(status == 0);
      ++c->done;
      if (--c->left < 4) return;
      size_t before = c->lane->outstanding();
      CHECK(c->lane->submit([](void*) {}, done, c, 0, nullptr, nullptr) == 0);
      if (c->lane->outstanding() != before + 1 || c->lane->stats().running != before + 1) c->counted = false;
    }
  };
  for (int i = 0; i < 4; ++i) REQUIRE(l.submit([](void*) {}, Fns::done, &chain, 0, nullptr, nullptr) == 0);
  REQUIRE(run_until([&] { return l.outstanding() == 0 && chain.left < 4; }));
  CHECK(chain.done == 1000);
  CHECK(chain.counted);
  CHECK(l.stats().done == 1000);
  CHECK(l.stats().submitted == 1000);
}

TEST_CASE_METHOD(LoopFixture, "offload: an item submitted earlier in the same batch can be cancelled and never runs") {
  struct Ctx {
    Lane* lane;
    int dones = 0;
    WorkItem* victim = nullptr;
    int cancel_rc = kNotCalled;
    int victim_status = kNotCalled;
    std::atomic<bool> victim_ran{false};
  };
  Lane& l = lane(limits(4, 10));
  BatchPair pair;
  Ctx ctx{&l};
  static Ctx* g_ctx;
  g_ctx = &ctx;
  struct Fns {
    static void victim_work(void*) { g_ctx->victim_ran = true; }
    static void victim_done(void*, int status) { g_ctx->victim_status = status; }
    static void done(void*, int status) {
      CHECK(status == 0);
      Ctx* c = g_ctx;
      if (++c->dones == 1) {
        CHECK(c->lane->submit(victim_work, victim_done, nullptr, 0, nullptr, &c->victim) == 0);
      } else {
        c->cancel_rc = c->lane->cancel(c->victim);
      }
    }
  };
  REQUIRE(pair.submit_and_finish(l, Fns::done));
  REQUIRE(run_until([&] { return ctx.victim_status != kNotCalled && l.outstanding() == 0; }));
  CHECK(ctx.dones == 2);
  // Both dones ran in one batch, so the victim was still waiting for the
  // batch to end: cancel succeeds. (Were they in two batches, the victim
  // may already run; then only EBUSY is allowed, with status 0.)
  if (ctx.cancel_rc == 0) {
    CHECK(ctx.victim_status == -ECANCELED);
    CHECK_FALSE(ctx.victim_ran);
    CHECK(l.stats().cancelled == 1);
  } else {
    CHECK(ctx.cancel_rc == -EBUSY);
    CHECK(ctx.victim_status == 0);
  }
  CHECK(l.stats().running == 0);
}

// Two dones finish in one completion batch: the first submits a follow-up
// item (Ready until the batch ends), the second runs `then` on the lane.
struct FollowUpInBatch {
  std::function<std::shared_ptr<DrainResult>(Lane&)> then;
  Lane* lane = nullptr;
  int dones = 0;
  int status = kNotCalled;  // the follow-up's done
  std::atomic<bool> ran{false};
  std::shared_ptr<DrainResult> result{};  // what `then` returned

  bool run(BatchPair& pair, Lane& l) {
    lane = &l;
    current = this;
    struct Fns {
      static void work(void*) { current->ran = true; }
      static void follow_done(void*, int st) { current->status = st; }
      static void done(void*, int st) {
        CHECK(st == 0);
        FollowUpInBatch* f = current;
        if (++f->dones == 1) CHECK(f->lane->submit(work, follow_done, nullptr, 0, nullptr, nullptr) == 0);
        else f->result = f->then(*f->lane);
      }
    };
    return pair.submit_and_finish(l, Fns::done);
  }
  static inline FollowUpInBatch* current = nullptr;
};

TEST_CASE_METHOD(LoopFixture, "offload: drain from a done callback waits for work submitted in the same batch") {
  Lane& l = lane(limits(4, 10));
  BatchPair pair;
  FollowUpInBatch f{[this](Lane& ln) { return drain(ln, 0); }};
  REQUIRE(f.run(pair, l));
  REQUIRE(run_until([&] { return f.result && f.result->calls > 0; }));
  CHECK(f.result->all_finished);
  CHECK(f.status == 0);  // accepted before the drain: it ran, it was not shut down
  CHECK(f.ran);
  CHECK(l.outstanding() == 0);
}

TEST_CASE_METHOD(LoopFixture, "offload: close from a done callback shuts down work submitted in the same batch") {
  Lane& l = lane(limits(4, 10));
  BatchPair pair;
  FollowUpInBatch f{[this](Lane& ln) { return close(ln); }};
  REQUIRE(f.run(pair, l));
  REQUIRE(run_until([&] { return f.result && f.result->calls == 1 && l.outstanding() == 0; }));
  CHECK(f.dones == 2);
  CHECK(f.status == -ESHUTDOWN);  // reported, before the close callback
  CHECK_FALSE(f.ran);             // and it never reached the pool
  CHECK(l.stats().shutdown == 1);
  CHECK(l.stats().running == 0);
}

TEST_CASE_METHOD(LoopFixture, "offload: raising max_inflight hands queued work to the pool") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job(&g);
  REQUIRE(submit(l, a) == 0);
  REQUIRE(submit(l, b) == 0);
  CHECK(l.stats().queued == 1);
  l.set_limits(limits(2, 10));
  CHECK(l.outstanding() == 2);
  CHECK(l.stats().queued == 0);
  REQUIRE(g.wait_arrived(2));
  g.open();
  REQUIRE(run_until([&] { return l.stats().done == 2; }));
  l.set_limits(limits(0, 10));
  CHECK(l.limits().max_inflight == 1);
}

TEST_CASE_METHOD(LoopFixture, "offload: histograms count queue wait and run time of items that ran") {
  Lane& l = lane(limits(2, 100));
  for (int i = 0; i < 50; ++i) REQUIRE(submit(l, job()) == 0);
  REQUIRE(run_until([&] { return l.stats().done == 50; }));
  const auto& s = l.stats();
  CHECK(s.queue_wait.count() == 50);
  CHECK(s.run_time.count() == 50);
  CHECK(s.queue_wait.sum() > 0);
  CHECK(s.queue_wait.quantile(0.5) <= s.queue_wait.quantile(0.99));
  CHECK(s.queue_wait.quantile(0.99) <= s.queue_wait.max());
  CHECK(s.queue_wait.quantile(1.0) == s.queue_wait.max());
}

TEST_CASE_METHOD(LoopFixture, "offload: a busy lane samples latencies and a quiet one times every item") {
  Lane& l = lane(limits(16, 5000));
  auto submit_n = [&](int n) {
    for (int i = 0; i < n; ++i) REQUIRE(submit(l, job()) == 0);
    REQUIRE(run_until([&] { return l.outstanding() == 0 && l.stats().queued == 0; }));
  };
  // Lets the loop's clock move on by a few milliseconds.
  auto next_ms = [&] {
    uv_timer_t t;
    bool fired = false;
    uv_timer_init(&loop, &t);
    t.data = &fired;
    uv_timer_start(&t, [](uv_timer_t* h) { *static_cast<bool*>(h->data) = true; }, 2, 0);
    bool ok = run_until([&] { return fired; });
    uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);  // finishes the close before t goes out of scope
    REQUIRE(ok);
  };
  next_ms();
  submit_n(1000);  // the first millisecond: every item is timed
  CHECK(l.stats().run_time.count() == 1000);
  next_ms();
  submit_n(1000);  // after 1000 submits in one millisecond: every 16th
  uint64_t sampled = l.stats().run_time.count() - 1000;
  CHECK(sampled >= 60);
  CHECK(sampled <= 64);
  CHECK(l.stats().queue_wait.count() == l.stats().run_time.count());
  next_ms();
  submit_n(10);
  next_ms();
  uint64_t before = l.stats().run_time.count();
  submit_n(10);  // quiet again: every item
  CHECK(l.stats().run_time.count() == before + 10);
  CHECK(l.stats().done == 2020);
}

TEST_CASE("offload: histogram buckets are powers of two") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.quantile(0.5) == 0);
  h.record(0);
  h.record(1);
  CHECK(h.quantile(1.0) == 1);
  h.record(1000);  // bucket [512, 1024)
  CHECK(h.count() == 3);
  CHECK(h.sum() == 1001);
  CHECK(h.max() == 1000);
  CHECK(h.quantile(0.5) == 1);
  CHECK(h.quantile(1.0) == 1000);  // capped at max
  for (int i = 0; i < 97; ++i) h.record(3000);  // bucket [2048, 4096)
  CHECK(h.quantile(0.5) == 3000);
  CHECK(h.quantile(0.015) == 1);     // rank 2
  CHECK(h.quantile(0.025) == 1023);  // rank 3: bucket [512, 1024), below max
  CHECK(h.quantile(-1) == 1);
  CHECK(h.quantile(7) == 3000);
  h.record(~uint64_t{0});  // the last bucket holds everything above
  CHECK(h.quantile(1.0) == ~uint64_t{0});
  h.reset();
  CHECK(h.count() == 0);
  CHECK(h.max() == 0);
  CHECK(h.quantile(1.0) == 0);
}

TEST_CASE("offload: a histogram minus an earlier copy of itself is what was recorded since") {
  Histogram h;
  for (int i = 0; i < 10; ++i) h.record(100);  // bucket [64, 128)
  h.record(1'000'000);                           // bucket [2^19, 2^20)
  Histogram earlier = h;
  for (int i = 0; i < 4; ++i) h.record(3000);  // bucket [2048, 4096)
  h.record(5000);                              // bucket [4096, 8192)
  Histogram d;
  REQUIRE(h.since(earlier, &d));
  CHECK(d.count() == 5);
  CHECK(d.sum() == 17000);
  CHECK(d.bucket(6) == 0);
  CHECK(d.bucket(11) == 4);
  CHECK(d.bucket(12) == 1);
  CHECK(d.max() == 8191);  // the top bucket that grew, not the old 1'000'000
  CHECK(d.quantile(0.5) == 4095);  // rank 3 of 5: bucket [2048, 4096)
  CHECK(d.quantile(1.0) == 8191);
  // Nothing since: empty.
  REQUIRE(h.since(h, &d));
  CHECK(d.count() == 0);
  CHECK(d.max() == 0);
  CHECK(d.quantile(0.99) == 0);
  // Never above the real max.
  Histogram one = Histogram();
  Histogram two = one;
  two.record(70);
  REQUIRE(two.since(one, &d));
  CHECK(d.max() == 70);
  // Not an earlier state: refused, *out untouched.
  Histogram other;
  other.record(50);
  other.record(50);
  d = Histogram();
  d.record(1);
  CHECK_FALSE(earlier.since(h, &d));  // h is later than earlier, not before it
  CHECK_FALSE(h.since(other, &d));    // bucket 5 is 2 there, 0 here
  CHECK(d.count() == 1);
  h.reset();
  CHECK_FALSE(h.since(earlier, &d));
}

TEST_CASE_METHOD(LoopFixture, "offload: bad arguments are rejected with EINVAL") {
  Lane& l = lane();
  Lane& other = lane(limits(1, 10));
  Job& a = job();
  CHECK(l.submit(nullptr, job_done, &a, 0, nullptr, nullptr) == -EINVAL);
  CHECK(l.submit(job_work, nullptr, &a, 0, nullptr, nullptr) == -EINVAL);
  CHECK(l.cancel(nullptr) == -EINVAL);
  CHECK(l.stats().submitted == 0);
  CHECK(l.stats().rejected == 0);
  Gate& g = gate();
  Job& b = job(&g);
  Job& c = job();
  REQUIRE(submit(other, b) == 0);
  REQUIRE(submit(other, c) == 0);
  CHECK(l.cancel(c.item) == -EINVAL);  // not this lane's item
  g.open();
  REQUIRE(run_until([&] { return c.done_calls == 1; }));
  CHECK(c.status == 0);
}

namespace {
// Collects what a lane reports about its callbacks' run times.
struct Recorder final : hostlet::LaneObserver {
  struct Report {
    std::string what;
    uint64_t count, ns;
  };
  std::vector<Report> reports;
  void callbacks_ran(const char* what, uint64_t count, uint64_t ns) override { reports.push_back({what, count, ns}); }
  uint64_t total(const std::string& what) const {
    uint64_t n = 0;
    for (const auto& r : reports)
      if (r.what == what) n += r.count;
    return n;
  }
};

void spin_ms(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
  }
}
}  // namespace

TEST_CASE_METHOD(LoopFixture, "offload: the observer is told every done callback, in runs of at most 64") {
  Lane& l = lane(limits(8, 5000));
  Recorder rec;
  l.set_observer(&rec);
  for (int i = 0; i < 2000; ++i) REQUIRE(submit(l, job()) == 0);
  REQUIRE(run_until([&] { return l.stats().done == 2000; }));
  CHECK(rec.total("offload done callback") == 2000);
  for (const auto& r : rec.reports) {
    CHECK(r.count >= 1);
    CHECK(r.count <= 64);
  }
}

TEST_CASE_METHOD(LoopFixture, "offload: a full lane tells one waiter once an item finished and there is room") {
  struct Waiter final : hostlet::LaneObserver {
    Lane* lane = nullptr;
    int told = 0;
    bool room_when_told = false;
    void callbacks_ran(const char*, uint64_t, uint64_t) override {}
    void room_available() override {
      told++;
      room_when_told = lane->has_room();
    }
  } waiter;
  Lane& l = lane(limits(1, 1));
  waiter.lane = &l;
  l.set_observer(&waiter);
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  CHECK(l.has_room());
  REQUIRE(submit(l, a) == 0);
  CHECK(l.has_room());  // the FIFO still has a place
  REQUIRE(submit(l, b) == 0);
  CHECK_FALSE(l.has_room());
  l.want_room();
  REQUIRE(g.wait_arrived(1));
  CHECK(waiter.told == 0);  // nothing finished yet
  g.open();
  REQUIRE(run_until([&] { return waiter.told == 1; }));
  CHECK(waiter.room_when_told);
  REQUIRE(run_until([&] { return b.done_calls == 1; }));
  CHECK(waiter.told == 1);  // once per want_room()
  // Without want_room() nobody is told; a draining lane has no room.
  REQUIRE(submit(l, job()) == 0);
  REQUIRE(run_until([&] { return l.stats().done == 3; }));
  CHECK(waiter.told == 1);
  bool drained = false;
  l.drain(0, [&](bool) { drained = true; });
  CHECK_FALSE(l.has_room());
  REQUIRE(run_until([&] { return drained; }));
  l.set_observer(nullptr);
}

TEST_CASE_METHOD(LoopFixture, "offload: a slow done callback is reported with at least its own run time") {
  Lane& l = lane(limits(4, 100));
  Recorder rec;
  l.set_observer(&rec);
  struct Fns {
    static void slow(void*, int) { spin_ms(5); }
  };
  // Fast ones first (runs grow), then one slow among them.
  for (int i = 0; i < 40; ++i) REQUIRE(submit(l, job()) == 0);
  REQUIRE(run_until([&] { return l.stats().done == 40; }));
  REQUIRE(l.submit([](void*) {}, Fns::slow, nullptr, 0, nullptr, nullptr) == 0);
  for (int i = 0; i < 10; ++i) REQUIRE(submit(l, job()) == 0);
  REQUIRE(run_until([&] { return l.stats().done == 51; }));
  int slow_reports = 0;
  for (const auto& r : rec.reports) slow_reports += r.ns >= 5000000;
  CHECK(slow_reports >= 1);  // more only if the machine preempted the loop thread for as long
  CHECK(rec.total("offload done callback") == 51);
}

TEST_CASE_METHOD(LoopFixture, "offload: late callbacks are reported as such, and nothing once the observer is gone") {
  Lane& l = lane(limits(1, 10));
  Recorder rec;
  l.set_observer(&rec);
  Gate& g = gate();
  Job& a = job(&g);
  REQUIRE(submit(l, a, 20, true) == 0);
  REQUIRE(run_until([&] { return a.done_calls == 1; }));
  g.open();
  REQUIRE(run_until([&] { return a.late_calls == 1; }));
  CHECK(rec.total("offload done callback") == 1);
  CHECK(rec.total("offload late callback") == 1);
  l.set_observer(nullptr);
  Job& b = job();
  REQUIRE(submit(l, b) == 0);
  REQUIRE(run_until([&] { return b.done_calls == 1; }));
  CHECK(rec.reports.size() == 2);
}

TEST_CASE_METHOD(LoopFixture, "offload: Lane::of finds an item's lane") {
  Lane& l = lane(limits(1, 10));
  Gate& g = gate();
  Job& a = job(&g);
  Job& b = job();
  REQUIRE(submit(l, a) == 0);
  REQUIRE(submit(l, b) == 0);
  CHECK(Lane::of(b.item) == &l);
  CHECK(Lane::of(nullptr) == nullptr);
  REQUIRE(Lane::of(b.item)->cancel(b.item) == 0);
  g.open();
  REQUIRE(run_until([&] { return a.done_calls == 1 && b.done_calls == 1; }));
  CHECK(b.status == -ECANCELED);
}
