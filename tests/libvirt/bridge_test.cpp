// The event bridge (plugins/libvirt/event_bridge.cpp) alone: a uv loop on its
// own thread plays the agent, the test thread plays the pool, and real libvirt
// connections (in process and to a private libvirtd) use the bridge.
#include <catch2/catch.hpp>

#include "event_bridge.hpp"
#include "libvirtd.hpp"

#include <fcntl.h>
#include <libvirt/virterror.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace t = hostlet::test;
using namespace std::chrono;

namespace {

void quiet(void*, virErrorPtr) {}

// A uv loop on its own thread with the bridge attached, as in the agent.
class LoopThread {
 public:
  LoopThread() {
    REQUIRE(uv_loop_init(&loop_) == 0);
    REQUIRE(uv_async_init(&loop_, &wake_, &LoopThread::on_wake) == 0);
    wake_.data = this;
    std::promise<int> acquired;
    auto f = acquired.get_future();
    thread_ = std::thread([this, &acquired] {
      id_ = std::this_thread::get_id();
      acquired.set_value(hostlet_virt_events_acquire(&loop_));
      uv_run(&loop_, UV_RUN_DEFAULT);
    });
    REQUIRE(f.get() == 0);
    virSetErrorFunc(nullptr, quiet);
  }
  ~LoopThread() {
    if (thread_.joinable()) close();
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // Runs fn on the loop thread and waits for it.
  void run(std::function<void()> fn) {
    std::promise<void> done;
    auto f = done.get_future();
    {
      std::lock_guard lk(mu_);
      queue_.push_back([&] {
        fn();
        done.set_value();
      });
    }
    uv_async_send(&wake_);
    f.get();
  }

  // Releases the bridge, closes the fixture's own handle once the bridge's
  // are closed, ends the thread; returns uv_loop_close().
  int close() {
    run([this] {
      hostlet_virt_events_release(
          [](void* self) {
            auto* lt = static_cast<LoopThread*>(self);
            lt->released_ = true;
            uv_close(reinterpret_cast<uv_handle_t*>(&lt->wake_), nullptr);
          },
          this);
    });
    thread_.join();
    CHECK(released_);
    return uv_loop_close(&loop_);
  }

  std::thread::id id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }

 private:
  static void on_wake(uv_async_t* a) {
    auto* self = static_cast<LoopThread*>(a->data);
    std::deque<std::function<void()>> q;
    {
      std::lock_guard lk(self->mu_);
      q.swap(self->queue_);
    }
    for (auto& fn : q) fn();
  }

  uv_loop_t loop_{};
  uv_async_t wake_{};
  std::thread thread_;
  std::thread::id id_;
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
  bool released_ = false;
};

struct Seen {
  std::string kind;  // lifecycle | reboot | watchdog | closed
  std::string name;
  int a = 0, b = 0;
  std::thread::id thread;
};

// What a sink forwarded, with the thread it ran on.
class Recorder {
 public:
  static const hostlet_virt_sink_ops kOps;

  void add(Seen s) {
    std::lock_guard lk(mu_);
    seen_.push_back(std::move(s));
    cv_.notify_all();
  }
  bool wait(const std::function<bool(const std::vector<Seen>&)>& pred, milliseconds timeout = seconds(10)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return pred(seen_); });
  }
  size_t count(const std::string& kind) {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (auto& s : seen_) n += s.kind == kind;
    return n;
  }
  std::vector<Seen> all() {
    std::lock_guard lk(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
};

const hostlet_virt_sink_ops Recorder::kOps = {
    [](void* r, virDomainPtr d, int e, int det) {
      static_cast<Recorder*>(r)->add({"lifecycle", virDomainGetName(d), e, det, std::this_thread::get_id()});
    },
    [](void* r, virDomainPtr d) {
      static_cast<Recorder*>(r)->add({"reboot", virDomainGetName(d), 0, 0, std::this_thread::get_id()});
    },
    [](void* r, virDomainPtr d, int action) {
      static_cast<Recorder*>(r)->add({"watchdog", virDomainGetName(d), action, 0, std::this_thread::get_id()});
    },
    [](void* r, int reason) { static_cast<Recorder*>(r)->add({"closed", "", reason, 0, std::this_thread::get_id()}); },
};

// A connection with a recording sink; closed through the bridge on destruction.
class Watched {
 public:
  Watched(const std::string& uri, Recorder& rec, int keepalive_interval = 0) {
    conn_ = virConnectOpen(uri.c_str());
    REQUIRE(conn_ != nullptr);
    if (keepalive_interval > 0) REQUIRE(virConnectSetKeepAlive(conn_, keepalive_interval, 2) == 0);
    sink_ = hostlet_virt_sink_new(&Recorder::kOps, &rec);
    char err[512];
    registered_ = hostlet_virt_sink_register(sink_, conn_, 1, err, sizeof err);
    INFO(err);
    REQUIRE((registered_ & HOSTLET_VIRT_SINK_LIFECYCLE) != 0);
  }
  ~Watched() { hostlet_virt_sink_close(sink_, conn_); }
  Watched(const Watched&) = delete;
  Watched& operator=(const Watched&) = delete;
  virConnectPtr get() const { return conn_; }
  unsigned registered() const { return registered_; }

 private:
  virConnectPtr conn_ = nullptr;
  hostlet_virt_sink* sink_ = nullptr;
  unsigned registered_ = 0;
};

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using Conn = std::unique_ptr<virConnect, ConnClose>;

struct DomFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using Dom = std::unique_ptr<virDomain, DomFree>;

// define, start, destroy, undefine `name` on c: four lifecycle events.
void churn(virConnectPtr c, const std::string& name) {
  Dom d(virDomainDefineXML(c, virt_test::domain_xml(name).c_str()));
  REQUIRE(d);
  REQUIRE(virDomainCreate(d.get()) == 0);
  REQUIRE(virDomainDestroy(d.get()) == 0);
  REQUIRE(virDomainUndefine(d.get()) == 0);
}

bool lifecycle_of(const std::vector<Seen>& v, const std::string& name, size_t n) {
  size_t k = 0;
  for (auto& s : v) k += s.kind == "lifecycle" && s.name == name;
  return k >= n;
}

void check_churn_events(Recorder& rec, const std::string& name, std::thread::id loop_thread) {
  REQUIRE(rec.wait([&](auto& v) { return lifecycle_of(v, name, 4); }));
  std::vector<std::pair<int, int>> got;
  for (auto& s : rec.all())
    if (s.kind == "lifecycle" && s.name == name) {
      got.emplace_back(s.a, s.b);
      CHECK(s.thread == loop_thread);
    }
  std::vector<std::pair<int, int>> want = {
      {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED},
      {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED},
      {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED},
      {VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED},
  };
  CHECK(got == want);
}

hostlet_virt_events_info info() {
  hostlet_virt_events_info i{};
  hostlet_virt_events_get_info(&i);
  return i;
}

// After the previous test's closes: nothing left behind.
void wait_quiet() {
  CHECK(t::wait_until([] { return info().closes_running == 0; }, seconds(20)));
}

}  // namespace

TEST_CASE("bridge: registers once; another loop is refused while one is attached", "[bridge]") {
  LoopThread lt;
  auto i = info();
  CHECK(i.registered == 1);
  CHECK(i.attached == 1);
  CHECK(i.refs == 1);
  uv_loop_t other;
  REQUIRE(uv_loop_init(&other) == 0);
  CHECK(hostlet_virt_events_acquire(&other) == -EBUSY);
  CHECK(hostlet_virt_events_acquire(nullptr) == -EINVAL);
  CHECK(uv_loop_close(&other) == 0);
  // A second reference on the same loop is counted.
  lt.run([&] { CHECK(hostlet_virt_events_acquire(lt.loop()) == 0); });
  CHECK(info().refs == 2);
  std::atomic<bool> done{false};
  lt.run([&] { hostlet_virt_events_release([](void* d) { static_cast<std::atomic<bool>*>(d)->store(true); }, &done); });
  CHECK(t::wait_until([&] { return done.load(); }));
  CHECK(info().attached == 1);
  CHECK(lt.close() == 0);
  CHECK(info().attached == 0);
  CHECK(info().open_uv_handles == 0);
}

TEST_CASE("bridge: raw handles and timeouts behave as libvirt expects, from any thread", "[bridge]") {
  LoopThread lt;
  struct Probe {
    std::atomic<int> fired{0};
    std::atomic<int> freed{0};
    std::atomic<bool> wrong_thread{false};
    std::atomic<int> last_events{0};
    std::atomic<int> last_fd{-1};
    std::thread::id loop;
  } p;
  p.loop = lt.id();

  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  auto on_fd = [](int, int fd, int events, void* arg) {
    auto* pr = static_cast<Probe*>(arg);
    if (std::this_thread::get_id() != pr->loop) pr->wrong_thread = true;
    char c;
    while (read(fd, &c, 1) == 1) {
    }
    pr->last_events = events;
    pr->last_fd = fd;
    pr->fired++;
  };
  auto on_free = [](void* arg) {
    auto* pr = static_cast<Probe*>(arg);
    if (std::this_thread::get_id() != pr->loop) pr->wrong_thread = true;
    pr->freed++;
  };

  // From this thread (not the loop): applied on the loop after a wake-up.
  int watch = virEventAddHandle(fds[0], VIR_EVENT_HANDLE_READABLE, on_fd, &p, on_free);
  REQUIRE(watch > 0);
  REQUIRE(write(fds[1], "x", 1) == 1);
  REQUIRE(t::wait_until([&] { return p.fired.load() == 1; }));
  CHECK(p.last_events == VIR_EVENT_HANDLE_READABLE);
  CHECK(p.last_fd == fds[0]);  // libvirt's fd, not the polled duplicate

  virEventUpdateHandle(watch, 0);
  lt.run([] {});  // the update is applied before this runs
  REQUIRE(write(fds[1], "x", 1) == 1);
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(p.fired == 1);
  virEventUpdateHandle(watch, VIR_EVENT_HANDLE_READABLE);
  REQUIRE(t::wait_until([&] { return p.fired.load() == 2; }));

  // Removed, then the fd closed at once (libvirt does that): the free
  // callback runs later, on the loop, never inside removeHandle.
  CHECK(virEventRemoveHandle(watch) == 0);
  CHECK(p.freed == 0);
  close(fds[0]);
  CHECK(virEventRemoveHandle(watch) == -1);
  REQUIRE(t::wait_until([&] { return p.freed.load() == 1; }));
  close(fds[1]);

  // Timeouts: >0 repeats, -1 stops, 0 runs every iteration.
  std::atomic<int> ticks{0};
  auto on_tick = [](int, void* arg) { static_cast<std::atomic<int>*>(arg)->fetch_add(1); };
  int timer = virEventAddTimeout(20, on_tick, &ticks, nullptr);
  REQUIRE(timer > 0);
  REQUIRE(t::wait_until([&] { return ticks.load() >= 3; }));
  virEventUpdateTimeout(timer, -1);
  lt.run([] {});
  int frozen = ticks;
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(ticks == frozen);
  virEventUpdateTimeout(timer, 0);
  REQUIRE(t::wait_until([&] { return ticks.load() >= frozen + 100; }));
  CHECK(virEventRemoveTimeout(timer) == 0);

  // On the loop thread, re-entrantly: a timeout that removes itself and adds another.
  struct Chain {
    std::atomic<int> second{0};
  } chain;
  lt.run([&] {
    virEventAddTimeout(
        0,
        [](int id, void* arg) {
          virEventRemoveTimeout(id);
          virEventAddTimeout(
              5,
              [](int id2, void* a2) {
                static_cast<Chain*>(a2)->second++;
                virEventRemoveTimeout(id2);
              },
              arg, nullptr);
        },
        &chain, nullptr);
  });
  REQUIRE(t::wait_until([&] { return chain.second.load() == 1; }));
  CHECK_FALSE(p.wrong_thread);
  CHECK(lt.close() == 0);
  CHECK(info().handles == 0);
  CHECK(info().timeouts == 0);
}

TEST_CASE("bridge: test:///default events from a second connection arrive on the loop thread", "[bridge]") {
  wait_quiet();
  Recorder rec;
  {
    LoopThread lt;
    {
      Watched w("test:///default", rec);
      Conn other(virConnectOpen("test:///default"));
      REQUIRE(other);
      churn(other.get(), "bridge-inproc");
      check_churn_events(rec, "bridge-inproc", lt.id());
    }
    wait_quiet();
    CHECK(lt.close() == 0);
  }
  auto i = info();
  CHECK(i.sinks == 0);
  CHECK(i.open_uv_handles == 0);
  CHECK(i.pending_frees == 0);
}

TEST_CASE("bridge: private libvirtd: events, keepalive and dispatch on the loop", "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  LoopThread lt;
  {
    Watched w(d.uri(), rec, 1);
    CHECK(w.registered() == (HOSTLET_VIRT_SINK_CLOSE | HOSTLET_VIRT_SINK_LIFECYCLE | HOSTLET_VIRT_SINK_REBOOT |
                             HOSTLET_VIRT_SINK_WATCHDOG));
    const auto before = info().dispatched;
    Conn other(virConnectOpen(d.uri().c_str()));
    REQUIRE(other);
    churn(other.get(), "bridge-daemon");
    check_churn_events(rec, "bridge-daemon", lt.id());
    CHECK(info().dispatched > before);

    // (The test driver emits no reboot or watchdog events: their registration is checked above.)

    // Idle for three keepalive intervals: probes answered on the loop, still alive.
    std::this_thread::sleep_for(milliseconds(3500));
    CHECK(virConnectIsAlive(w.get()) == 1);
    unsigned long v = 0;
    CHECK(virConnectGetLibVersion(w.get(), &v) == 0);
    CHECK(rec.count("closed") == 0);
  }
  wait_quiet();
  CHECK(lt.close() == 0);
}

TEST_CASE("bridge: SIGSTOPped daemon: keepalive fails a blocked call within its window", "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  LoopThread lt;
  {
    Watched w(d.uri(), rec, 1);  // interval 1 s, count 2: dead after ~3 s
    d.pause();
    auto t0 = steady_clock::now();
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(w.get(), &doms, 0);
    auto took = duration<double>(steady_clock::now() - t0).count();
    CHECK(n == -1);
    virErrorPtr e = virGetLastError();
    REQUIRE(e);
    INFO("error: " << (e->message ? e->message : "") << " after " << took << " s");
    CHECK(took >= 1.0);
    CHECK(took <= 8.0);
    REQUIRE(rec.wait([](auto& v) {
      for (auto& s : v)
        if (s.kind == "closed") return true;
      return false;
    }));
    for (auto& s : rec.all())
      if (s.kind == "closed") CHECK(s.a == VIR_CONNECT_CLOSE_REASON_KEEPALIVE);
    CHECK(virConnectIsAlive(w.get()) == 0);
    d.resume();
  }
  wait_quiet();
  CHECK(lt.close() == 0);
}

TEST_CASE("bridge: kill -9 the daemon: close callback, failing calls, a restarted daemon serves again",
          "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  LoopThread lt;
  {
    Watched w(d.uri(), rec, 1);
    d.kill9();
    REQUIRE(rec.wait([](auto& v) {
      for (auto& s : v)
        if (s.kind == "closed") return true;
      return false;
    }));
    for (auto& s : rec.all())
      if (s.kind == "closed") {
        CHECK((s.a == VIR_CONNECT_CLOSE_REASON_EOF || s.a == VIR_CONNECT_CLOSE_REASON_ERROR));
        CHECK(s.thread == lt.id());
      }
    auto t0 = steady_clock::now();
    unsigned long v = 0;
    CHECK(virConnectGetLibVersion(w.get(), &v) == -1);  // fails at once on a closed connection
    CHECK(steady_clock::now() - t0 < seconds(1));

    REQUIRE(d.start());
    Recorder rec2;
    Watched w2(d.uri(), rec2, 1);
    Conn other(virConnectOpen(d.uri().c_str()));
    REQUIRE(other);
    churn(other.get(), "bridge-restarted");
    check_churn_events(rec2, "bridge-restarted", lt.id());
  }
  wait_quiet();
  CHECK(lt.close() == 0);
}

TEST_CASE("bridge: detached, then attached to a new loop, a live connection keeps working", "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  std::unique_ptr<Watched> w;
  {
    LoopThread first;
    w = std::make_unique<Watched>(d.uri(), rec, 1);
    CHECK(first.close() == 0);  // records stay for libvirt, uv handles are gone
  }
  auto i = info();
  CHECK(i.attached == 0);
  CHECK(i.handles >= 1);
  CHECK(i.timeouts >= 1);
  CHECK(i.open_uv_handles == 0);

  LoopThread second;
  Conn other(virConnectOpen(d.uri().c_str()));
  REQUIRE(other);
  churn(other.get(), "bridge-reattached");
  check_churn_events(rec, "bridge-reattached", second.id());
  std::this_thread::sleep_for(milliseconds(3500));  // keepalive runs on the new loop
  CHECK(virConnectIsAlive(w->get()) == 1);
  CHECK(rec.count("closed") == 0);
  w.reset();
  wait_quiet();
  CHECK(second.close() == 0);
}

TEST_CASE("bridge: a reference dropped on the loop thread is closed on a bridge thread", "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  LoopThread lt;
  virConnectPtr c = virConnectOpen(d.uri().c_str());
  REQUIRE(c);
  d.pause();  // the close would block on a stopped daemon: the loop must not
  auto t0 = steady_clock::now();
  lt.run([&] { hostlet_virt_conn_unref(c); });
  CHECK(steady_clock::now() - t0 < milliseconds(500));
  CHECK(info().closes_running == 1);
  d.resume();
  wait_quiet();

  // A burst (a stop cancelling a full lane): one worker thread, not one each.
  virConnectPtr c2 = virConnectOpen(d.uri().c_str());
  REQUIRE(c2);
  for (int i = 0; i < 200; i++) virConnectRef(c2);
  size_t most = 0;
  lt.run([&] {
    for (int i = 0; i < 201; i++) {
      hostlet_virt_conn_unref(c2);
      most = std::max(most, info().closes_running);
    }
  });
  CHECK(most == 1);
  wait_quiet();
  CHECK(lt.close() == 0);
}

TEST_CASE("bridge: the last release waits for a running close, but not forever", "[bridge][daemon]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  auto lt = std::make_unique<LoopThread>();
  auto w = std::make_unique<Watched>(d.uri(), rec);  // no keepalive: a close to a stopped daemon blocks
  d.pause();
  w.reset();  // the close runs on a bridge thread and hangs there
  CHECK(info().closes_running == 1);
  auto t0 = steady_clock::now();
  CHECK(lt->close() == 0);  // released after the 2 s grace, handles closed
  const double took = duration<double>(steady_clock::now() - t0).count();
  CHECK(took >= 1.5);
  CHECK(took < 5.0);
  CHECK(info().attached == 0);
  lt.reset();
  d.resume();  // the close completes; its free callbacks wait for the next attach
  wait_quiet();
  LoopThread next;  // which runs them
  CHECK(t::wait_until([] { return info().pending_frees == 0; }));
  CHECK(next.close() == 0);
}

TEST_CASE("bridge: eight threads of calls on one connection while events stream", "[bridge][daemon][stress]") {
  wait_quiet();
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Recorder rec;
  LoopThread lt;
  {
    Watched w(d.uri(), rec, 1);
    std::atomic<int> failures{0};
    std::vector<std::thread> callers;
    for (int k = 0; k < 8; k++)
      callers.emplace_back([&] {
        for (int i = 0; i < 100; i++) {
          virDomainPtr* doms = nullptr;
          int n = virConnectListAllDomains(w.get(), &doms, 0);
          if (n < 0) {
            failures++;
            continue;
          }
          for (int j = 0; j < n; j++) virDomainFree(doms[j]);
          free(doms);
        }
      });
    Conn other(virConnectOpen(d.uri().c_str()));
    REQUIRE(other);
    for (int i = 0; i < 25; i++) churn(other.get(), "stress-" + std::to_string(i));
    for (auto& th : callers) th.join();
    CHECK(failures == 0);
    CHECK(rec.wait([](auto& v) {
      size_t n = 0;
      for (auto& s : v) n += s.kind == "lifecycle";
      return n >= 100;
    }));
    CHECK(rec.count("lifecycle") == 100);
  }
  wait_quiet();
  CHECK(lt.close() == 0);
}
