// libvirt event-loop implementation on libuv (see event_bridge.hpp for the
// rules). Everything below the mutex is touched by any thread; uv handles are
// created, changed and closed only on the loop thread, with the mutex held.
#include "event_bridge.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <system_error>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace {

// The handles closed by one detach; its done callback runs when all are closed.
using DoneList = std::vector<std::pair<void (*)(void*), void*>>;
struct Batch {
  size_t left = 0;
  DoneList dones;
};

void close_uv(uv_handle_t* h);

// A uv handle owned by a record: destroying the pointer closes the handle and
// the close callback frees its memory. Loop thread only, mutex held.
template <class T> struct UvCloser {
  void operator()(T* h) const { close_uv(reinterpret_cast<uv_handle_t*>(h)); }
};
template <class T> using UvPtr = std::unique_ptr<T, UvCloser<T>>;

template <class T> T* alloc_uv() { return static_cast<T*>(std::calloc(1, sizeof(T))); }

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

constexpr int kNotApplied = INT_MIN;

struct HandleRec {
  int watch;
  int fd;        // libvirt's fd, passed back to its callback
  Fd dupfd;      // what uv polls; declared before `poll` so it is closed after it
  int events;    // VIR_EVENT_HANDLE_* that libvirt wants
  virEventHandleCallback cb;
  void* opaque;
  virFreeCallback ff;
  UvPtr<uv_poll_t> poll;
  int applied = 0;  // uv events the poll watches now
  bool poll_failed = false;

  HandleRec(int w, int f, int d, int ev, virEventHandleCallback c, void* o, virFreeCallback free_cb)
      : watch(w), fd(f), dupfd(d), events(ev), cb(c), opaque(o), ff(free_cb) {}
  bool has_uv() const { return poll != nullptr; }
};

struct TimeoutRec {
  int id;
  int interval;  // ms; 0: every iteration; -1: stopped
  virEventTimeoutCallback cb;
  void* opaque;
  virFreeCallback ff;
  UvPtr<uv_timer_t> timer;
  UvPtr<uv_idle_t> idle;
  int applied = kNotApplied;
  bool restart = false;  // libvirt restarts the period on every update

  TimeoutRec(int i, int iv, virEventTimeoutCallback c, void* o, virFreeCallback free_cb)
      : id(i), interval(iv), cb(c), opaque(o), ff(free_cb) {}
  bool has_uv() const { return timer || idle; }
};

using FreeList = std::vector<std::pair<virFreeCallback, void*>>;

}  // namespace

// Forwards libvirt's callbacks to a plugin until detached (see the header).
struct hostlet_virt_sink {
  std::mutex mu;
  std::condition_variable idle;
  hostlet_virt_sink_ops ops{};
  void* arg = nullptr;
  bool detached = false;
  int busy = 0;  // forwards running now
  // What to deregister; written by register, read by close (a later thread).
  std::vector<int> callback_ids;
  bool close_registered = false;
};

namespace {

using Sink = hostlet_virt_sink;

struct Bridge {
  std::mutex mu;
  bool registered = false;
  uv_loop_t* loop = nullptr;  // attached loop, or null
  std::thread::id loop_thread;
  UvPtr<uv_async_t> async;
  int refs = 0;
  int next_watch = 1;
  int next_timer = 1;
  std::map<int, std::unique_ptr<HandleRec>> handles;
  std::map<int, std::unique_ptr<TimeoutRec>> timeouts;
  // Records removed off the loop while they still own uv handles.
  std::vector<std::unique_ptr<HandleRec>> doomed_handles;
  std::vector<std::unique_ptr<TimeoutRec>> doomed_timeouts;
  FreeList frees;
  DoneList dones;  // release() callbacks to run on the loop
  // Closes running on threads of this library; the last release waits for them.
  size_t closes_running = 0;
  bool detach_waiting = false;   // the last release came while closes ran
  DoneList waiting_dones;        // its callbacks
  UvPtr<uv_timer_t> detach_timer;  // detaches anyway after kCloseWaitMs
  std::vector<Sink*> dead_sinks;  // deregistered; freed on the loop
  std::deque<virConnectPtr> unrefs;  // references dropped on the loop, for the unref worker
  bool unref_worker = false;
  size_t sinks = 0;
  Batch* batch = nullptr;  // set while a detach closes handles
  std::vector<Batch*> batches;  // detaches whose handles are still closing
  size_t open_uv = 0;
  unsigned long long dispatched = 0;

  bool on_loop() const { return loop != nullptr && std::this_thread::get_id() == loop_thread; }
};

// Never destroyed: libvirt may call in from its own threads until the process ends.
Bridge& bridge() {
  static Bridge* b = new Bridge;
  return *b;
}

void on_closed(uv_handle_t* h) {
  auto* batch = static_cast<Batch*>(h->data);
  std::free(h);
  if (batch && --batch->left == 0) {
    DoneList dones;
    {
      Bridge& b = bridge();
      std::lock_guard lk(b.mu);
      dones = std::move(batch->dones);
      b.batches.erase(std::remove(b.batches.begin(), b.batches.end(), batch), b.batches.end());
    }
    delete batch;
    for (auto& [done, arg] : dones) done(arg);
  }
}

void close_uv(uv_handle_t* h) {
  Bridge& b = bridge();
  h->data = b.batch;
  if (b.batch) b.batch->left++;
  b.open_uv--;
  uv_close(h, on_closed);
}

void* id_ptr(int id) { return reinterpret_cast<void*>(static_cast<intptr_t>(id)); }
int ptr_id(void* p) { return static_cast<int>(reinterpret_cast<intptr_t>(p)); }

int to_uv_events(int vir) {
  int ev = 0;
  if (vir & VIR_EVENT_HANDLE_READABLE) ev |= UV_READABLE;
  if (vir & VIR_EVENT_HANDLE_WRITABLE) ev |= UV_WRITABLE;
  return ev;
}

// Wakes the loop to apply changes and run free callbacks. Mutex held.
void wake(Bridge& b) {
  if (b.async) uv_async_send(b.async.get());
}

void on_poll(uv_poll_t* p, int status, int events) {
  Bridge& b = bridge();
  const int id = ptr_id(p->data);
  std::unique_lock lk(b.mu);
  auto it = b.handles.find(id);
  if (it == b.handles.end()) return;
  HandleRec& r = *it->second;
  int vir = 0;
  if (status < 0) {
    vir = VIR_EVENT_HANDLE_ERROR;
    r.applied = 0;  // libuv stopped the poll; the next sync starts it again
  } else {
    if (events & UV_READABLE) vir |= VIR_EVENT_HANDLE_READABLE;
    if (events & UV_WRITABLE) vir |= VIR_EVENT_HANDLE_WRITABLE;
    if (events & UV_DISCONNECT) vir |= VIR_EVENT_HANDLE_HANGUP;
    vir &= r.events | VIR_EVENT_HANDLE_HANGUP;
  }
  if (vir == 0) return;  // changed by another thread since; its update is on its way
  const auto cb = r.cb;
  void* opaque = r.opaque;
  const int fd = r.fd;
  b.dispatched++;
  lk.unlock();
  // Free callbacks run only on this thread, after we return: opaque stays valid.
  cb(id, fd, vir, opaque);
}

void fire_timeout(int id) {
  Bridge& b = bridge();
  std::unique_lock lk(b.mu);
  auto it = b.timeouts.find(id);
  if (it == b.timeouts.end() || it->second->interval < 0) return;
  const auto cb = it->second->cb;
  void* opaque = it->second->opaque;
  b.dispatched++;
  lk.unlock();
  cb(id, opaque);
}

void on_timer(uv_timer_t* t) { fire_timeout(ptr_id(t->data)); }
void on_idle(uv_idle_t* i) { fire_timeout(ptr_id(i->data)); }

// Makes the uv side of a record match what libvirt asked for. Loop thread, mutex held.
void sync_handle(Bridge& b, HandleRec& r) {
  const int want = to_uv_events(r.events);
  if (!r.poll) {
    if (want == 0 || r.poll_failed) return;
    auto* p = alloc_uv<uv_poll_t>();
    if (!p) return;
    int e = uv_poll_init(b.loop, p, r.dupfd.fd);
    if (e != 0) {
      std::free(p);
      r.poll_failed = true;
      std::fprintf(stderr, "hostlet-virt-events: cannot poll libvirt fd %d: %s\n", r.fd, uv_strerror(e));
      return;
    }
    p->data = id_ptr(r.watch);
    r.poll.reset(p);
    b.open_uv++;
    r.applied = 0;
  }
  if (want == r.applied) return;
  if (want == 0) uv_poll_stop(r.poll.get());
  else uv_poll_start(r.poll.get(), want, on_poll);
  r.applied = want;
}

template <class T> T* ensure(Bridge& b, UvPtr<T>& ptr, int id, int (*init)(uv_loop_t*, T*)) {
  if (!ptr) {
    auto* h = alloc_uv<T>();
    if (!h) return nullptr;
    init(b.loop, h);  // uv_timer_init and uv_idle_init cannot fail
    h->data = id_ptr(id);
    ptr.reset(h);
    b.open_uv++;
  }
  return ptr.get();
}

void sync_timeout(Bridge& b, TimeoutRec& r) {
  if (r.applied == r.interval && !r.restart) return;
  if (r.interval < 0) {
    if (r.timer) uv_timer_stop(r.timer.get());
    if (r.idle) uv_idle_stop(r.idle.get());
  } else if (r.interval == 0) {
    if (r.timer) uv_timer_stop(r.timer.get());
    if (auto* i = ensure(b, r.idle, r.id, uv_idle_init)) uv_idle_start(i, on_idle);
  } else {
    if (r.idle) uv_idle_stop(r.idle.get());
    if (auto* t = ensure(b, r.timer, r.id, uv_timer_init))
      uv_timer_start(t, on_timer, static_cast<uint64_t>(r.interval), static_cast<uint64_t>(r.interval));
  }
  r.applied = r.interval;
  r.restart = false;
}

void sync_all(Bridge& b) {
  for (auto& [id, r] : b.handles) sync_handle(b, *r);
  for (auto& [id, r] : b.timeouts) sync_timeout(b, *r);
  b.doomed_handles.clear();
  b.doomed_timeouts.clear();
}

// Runs queued free callbacks with the mutex released. A free callback may
// remove more records, so repeat (bounded) until none is left.
void run_frees(Bridge& b, std::unique_lock<std::mutex>& lk) {
  for (int round = 0; round < 100 && !b.frees.empty(); round++) {
    FreeList list;
    list.swap(b.frees);
    lk.unlock();
    for (auto& [ff, opaque] : list) ff(opaque);
    lk.lock();
    sync_all(b);
  }
}

void detach(Bridge& b, std::unique_lock<std::mutex>& lk, DoneList dones);

// How long the last release waits for running closes before it detaches
// anyway. A close blocks until the daemon answers or keepalive gives up; with
// keepalive off and a hung daemon that is forever, and the agent's loop could
// not end.
constexpr uint64_t kCloseWaitMs = 2000;

void finish_waiting_detach(Bridge& b, std::unique_lock<std::mutex>& lk) {
  b.detach_waiting = false;
  DoneList waiting;
  waiting.swap(b.waiting_dones);
  detach(b, lk, std::move(waiting));
}

// Frees sinks whose callbacks are deregistered. On the loop, because libvirt
// dispatches domain events there: one being dispatched now has returned.
void free_dead_sinks(Bridge& b) {
  for (Sink* s : b.dead_sinks) delete s;
  b.sinks -= b.dead_sinks.size();
  b.dead_sinks.clear();
}

void on_async(uv_async_t*) {
  Bridge& b = bridge();
  std::unique_lock lk(b.mu);
  if (!b.loop) return;
  sync_all(b);
  run_frees(b, lk);
  free_dead_sinks(b);
  DoneList dones;
  dones.swap(b.dones);
  if (b.detach_waiting && b.refs > 0) {  // acquired again meanwhile: no detach after all
    b.detach_waiting = false;
    b.detach_timer.reset();
    dones.insert(dones.end(), b.waiting_dones.begin(), b.waiting_dones.end());
    b.waiting_dones.clear();
  } else if (b.detach_waiting && b.closes_running == 0) {
    finish_waiting_detach(b, lk);
  }
  lk.unlock();
  for (auto& [done, arg] : dones) done(arg);
}

// Runs fn on a thread of this library, counted in closes_running.
void run_close(std::function<void()> fn) {
  Bridge& b = bridge();
  {
    std::lock_guard lk(b.mu);
    b.closes_running++;
  }
  auto body = [fn = std::move(fn)] {
    fn();
    Bridge& br = bridge();
    std::lock_guard lk(br.mu);
    br.closes_running--;
    wake(br);
  };
  try {
    std::thread(body).detach();
  } catch (const std::system_error&) {
    body();  // no thread to be had: block here rather than leak the connection
  }
}

// ---- the six functions libvirt calls, from any thread ----

int add_handle(int fd, int events, virEventHandleCallback cb, void* opaque, virFreeCallback ff) {
  const int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0) return -1;
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  if (b.next_watch == INT_MAX) {
    ::close(dupfd);
    return -1;
  }
  const int id = b.next_watch++;
  auto rec = std::make_unique<HandleRec>(id, fd, dupfd, events, cb, opaque, ff);
  HandleRec& r = *rec;
  b.handles.emplace(id, std::move(rec));
  if (b.on_loop()) sync_handle(b, r);
  else wake(b);
  return id;
}

void update_handle(int watch, int events) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  auto it = b.handles.find(watch);
  if (it == b.handles.end()) return;
  it->second->events = events;
  if (b.on_loop()) sync_handle(b, *it->second);
  else wake(b);
}

int remove_handle(int watch) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  auto it = b.handles.find(watch);
  if (it == b.handles.end()) return -1;
  std::unique_ptr<HandleRec> rec = std::move(it->second);
  b.handles.erase(it);
  if (rec->ff) b.frees.emplace_back(rec->ff, rec->opaque);
  if (rec->has_uv() && !b.on_loop()) b.doomed_handles.push_back(std::move(rec));
  rec.reset();  // closes the poll, then the duplicate fd
  wake(b);
  return 0;
}

int add_timeout(int interval, virEventTimeoutCallback cb, void* opaque, virFreeCallback ff) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  if (b.next_timer == INT_MAX) return -1;
  const int id = b.next_timer++;
  auto rec = std::make_unique<TimeoutRec>(id, interval, cb, opaque, ff);
  TimeoutRec& r = *rec;
  b.timeouts.emplace(id, std::move(rec));
  if (b.on_loop()) sync_timeout(b, r);
  else wake(b);
  return id;
}

void update_timeout(int timer, int interval) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  auto it = b.timeouts.find(timer);
  if (it == b.timeouts.end()) return;
  it->second->interval = interval;
  it->second->restart = true;
  if (b.on_loop()) sync_timeout(b, *it->second);
  else wake(b);
}

int remove_timeout(int timer) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  auto it = b.timeouts.find(timer);
  if (it == b.timeouts.end()) return -1;
  std::unique_ptr<TimeoutRec> rec = std::move(it->second);
  b.timeouts.erase(it);
  if (rec->ff) b.frees.emplace_back(rec->ff, rec->opaque);
  if (rec->has_uv() && !b.on_loop()) b.doomed_timeouts.push_back(std::move(rec));
  rec.reset();
  wake(b);
  return 0;
}

// libvirt prints every error to stderr unless a handler is set; hostlet
// reports them itself (call errors, log lines). Process-wide, hence here.
void ignore_error(void*, virErrorPtr) {}

}  // namespace

extern "C" int hostlet_virt_events_acquire(uv_loop_t* loop) {
  if (!loop) return -EINVAL;
  Bridge& b = bridge();
  bool register_now = false;
  {
    std::unique_lock lk(b.mu);
    if (b.loop && b.loop != loop) return -EBUSY;
    if (b.loop) {
      b.refs++;
      if (b.detach_waiting) wake(b);  // on_async cancels the pending detach
      return 0;
    }
    auto* a = alloc_uv<uv_async_t>();
    if (!a) return -ENOMEM;
    int e = uv_async_init(loop, a, on_async);
    if (e != 0) {
      std::free(a);
      return e;
    }
    b.async.reset(a);
    b.open_uv++;
    b.loop = loop;
    b.loop_thread = std::this_thread::get_id();
    b.refs = 1;
    register_now = !b.registered;
    b.registered = true;
    // Records kept while detached get their uv handles back now.
    for (auto& [id, r] : b.timeouts) r->restart = true;
    sync_all(b);
    if (!b.frees.empty()) wake(b);
  }
  if (register_now) {
    virSetErrorFunc(nullptr, ignore_error);
    virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout, update_timeout,
                         remove_timeout);
  }
  return 0;
}

extern "C" void hostlet_virt_events_release(void (*done)(void*), void* arg) {
  Bridge& b = bridge();
  std::unique_lock lk(b.mu);
  if (b.refs == 0) {  // not acquired: nothing to close
    lk.unlock();
    if (done) done(arg);
    return;
  }
  if (--b.refs > 0 || b.closes_running > 0) {
    // Not the last, or closes still run (they may remove records; their free
    // callbacks need the loop): on_async finishes.
    if (b.refs == 0) {
      b.detach_waiting = true;
      if (done) b.waiting_dones.emplace_back(done, arg);
      if (auto* t = ensure(b, b.detach_timer, 0, uv_timer_init))
        uv_timer_start(
            t,
            [](uv_timer_t*) {
              Bridge& br = bridge();
              std::unique_lock l(br.mu);
              if (br.detach_waiting && br.refs == 0) finish_waiting_detach(br, l);
            },
            kCloseWaitMs, 0);
    } else if (done) {
      b.dones.emplace_back(done, arg);
    }
    wake(b);
    return;
  }
  detach(b, lk, done ? DoneList{{done, arg}} : DoneList{});
}

extern "C" void hostlet_virt_events_cancel_done(void* arg) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  auto drop = [arg](DoneList& l) {
    l.erase(std::remove_if(l.begin(), l.end(), [arg](const auto& d) { return d.second == arg; }), l.end());
  };
  drop(b.dones);
  drop(b.waiting_dones);
  for (Batch* batch : b.batches) drop(batch->dones);
}

namespace {

// Closes every uv handle; records stay for libvirt. `dones` run once all are closed.
void detach(Bridge& b, std::unique_lock<std::mutex>& lk, DoneList dones) {
  sync_all(b);
  run_frees(b, lk);
  free_dead_sinks(b);
  auto* batch = new Batch;
  batch->dones = std::move(dones);
  batch->dones.insert(batch->dones.end(), b.dones.begin(), b.dones.end());
  b.dones.clear();
  b.batches.push_back(batch);
  b.batch = batch;
  for (auto& [id, r] : b.handles) {
    r->poll.reset();
    r->applied = 0;
  }
  for (auto& [id, r] : b.timeouts) {
    r->timer.reset();
    r->idle.reset();
    r->applied = kNotApplied;
  }
  b.doomed_handles.clear();
  b.doomed_timeouts.clear();
  b.detach_timer.reset();
  b.async.reset();
  b.batch = nullptr;
  b.loop = nullptr;
  b.loop_thread = {};
  // batch->left >= 1 (the async handle): its dones run from the last close callback.
}

// ---- sinks ----

thread_local const Sink* t_forwarding = nullptr;

template <class F> void forward(Sink* s, F&& call) {
  {
    std::lock_guard lk(s->mu);
    if (s->detached) return;
    s->busy++;
  }
  const Sink* outer = std::exchange(t_forwarding, s);
  call(s->ops, s->arg);
  t_forwarding = outer;
  std::lock_guard lk(s->mu);
  if (--s->busy == 0) s->idle.notify_all();
}

void close_tramp(virConnectPtr, int reason, void* opaque) {
  forward(static_cast<Sink*>(opaque), [&](const hostlet_virt_sink_ops& o, void* a) {
    if (o.closed) o.closed(a, reason);
  });
}
void lifecycle_tramp(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  forward(static_cast<Sink*>(opaque), [&](const hostlet_virt_sink_ops& o, void* a) {
    if (o.lifecycle) o.lifecycle(a, dom, event, detail);
  });
}
void reboot_tramp(virConnectPtr, virDomainPtr dom, void* opaque) {
  forward(static_cast<Sink*>(opaque), [&](const hostlet_virt_sink_ops& o, void* a) {
    if (o.reboot) o.reboot(a, dom);
  });
}
void watchdog_tramp(virConnectPtr, virDomainPtr dom, int action, void* opaque) {
  forward(static_cast<Sink*>(opaque), [&](const hostlet_virt_sink_ops& o, void* a) {
    if (o.watchdog) o.watchdog(a, dom, action);
  });
}

void append_error(char* err, size_t errlen, const char* what) {
  if (!err || errlen == 0) return;
  virErrorPtr e = virGetLastError();
  size_t used = std::strlen(err);
  if (used + 1 >= errlen) return;
  std::snprintf(err + used, errlen - used, "%s%s: %s", used ? "; " : "", what,
                e && e->message ? e->message : "unknown error");
  virResetLastError();
}

}  // namespace

extern "C" hostlet_virt_sink* hostlet_virt_sink_new(const hostlet_virt_sink_ops* ops, void* arg) {
  auto* s = new (std::nothrow) Sink;
  if (!s) return nullptr;
  {
    std::lock_guard lk(s->mu);
    if (ops) s->ops = *ops;
    s->arg = arg;
  }
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  b.sinks++;
  return s;
}

extern "C" unsigned hostlet_virt_sink_register(hostlet_virt_sink* s, virConnectPtr conn, int domain_events,
                                               char* err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!s || !conn) return 0;
  unsigned got = 0;
  if (virConnectRegisterCloseCallback(conn, close_tramp, s, nullptr) == 0) got |= HOSTLET_VIRT_SINK_CLOSE;
  else append_error(err, errlen, "close callback");
  std::vector<int> ids;
  if (domain_events) {
    struct {
      int id;
      virConnectDomainEventGenericCallback cb;
      unsigned bit;
      const char* what;
    } const wanted[] = {
        {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(lifecycle_tramp), HOSTLET_VIRT_SINK_LIFECYCLE,
         "lifecycle events"},
        {VIR_DOMAIN_EVENT_ID_REBOOT, VIR_DOMAIN_EVENT_CALLBACK(reboot_tramp), HOSTLET_VIRT_SINK_REBOOT,
         "reboot events"},
        {VIR_DOMAIN_EVENT_ID_WATCHDOG, VIR_DOMAIN_EVENT_CALLBACK(watchdog_tramp), HOSTLET_VIRT_SINK_WATCHDOG,
         "watchdog events"},
    };
    for (const auto& w : wanted) {
      int id = virConnectDomainEventRegisterAny(conn, nullptr, w.id, w.cb, s, nullptr);
      if (id >= 0) {
        ids.push_back(id);
        got |= w.bit;
      } else {
        append_error(err, errlen, w.what);
      }
    }
  }
  std::lock_guard lk(s->mu);
  s->close_registered = (got & HOSTLET_VIRT_SINK_CLOSE) != 0;
  s->callback_ids = std::move(ids);
  return got;
}

extern "C" void hostlet_virt_sink_detach(hostlet_virt_sink* s) {
  if (!s) return;
  std::unique_lock lk(s->mu);
  s->detached = true;
  const int self = t_forwarding == s ? 1 : 0;
  s->idle.wait(lk, [&] { return s->busy <= self; });
}

extern "C" void hostlet_virt_sink_close(hostlet_virt_sink* s, virConnectPtr conn) {
  if (!s) {
    if (conn) hostlet_virt_conn_unref(conn);
    return;
  }
  hostlet_virt_sink_detach(s);
  run_close([s, conn] {
    std::vector<int> ids;
    bool close_registered;
    {
      std::lock_guard lk(s->mu);
      ids = s->callback_ids;
      close_registered = s->close_registered;
    }
    if (conn) {
      // Local deregistration comes first; the daemon round trip may fail on a dead connection.
      for (int id : ids) virConnectDomainEventDeregisterAny(conn, id);
      if (close_registered) virConnectUnregisterCloseCallback(conn, close_tramp);
      virConnectClose(conn);
      virResetLastError();
    }
    Bridge& b = bridge();
    std::lock_guard lk(b.mu);
    if (b.loop) {
      b.dead_sinks.push_back(s);  // freed on the loop (wake comes from run_close)
    } else {
      delete s;  // no loop: nothing can be dispatching
      b.sinks--;
    }
  });
}

extern "C" void hostlet_virt_conn_unref(virConnectPtr conn) {
  if (!conn) return;
  Bridge& b = bridge();
  bool on_loop;
  {
    std::lock_guard lk(b.mu);
    on_loop = b.on_loop();
    if (on_loop) {
      // Usually not the last reference (cheap), but it may be: one worker
      // thread drains these, however many a stop cancels at once.
      b.unrefs.push_back(conn);
      if (b.unref_worker) return;
      b.unref_worker = true;
    }
  }
  if (!on_loop) {
    virConnectClose(conn);
    virResetLastError();
    return;
  }
  run_close([] {
    Bridge& br = bridge();
    std::unique_lock lk(br.mu);
    while (!br.unrefs.empty()) {
      virConnectPtr c = br.unrefs.front();
      br.unrefs.pop_front();
      lk.unlock();
      virConnectClose(c);
      virResetLastError();
      lk.lock();
    }
    br.unref_worker = false;
  });
}

extern "C" void hostlet_virt_events_get_info(hostlet_virt_events_info* out) {
  Bridge& b = bridge();
  std::lock_guard lk(b.mu);
  out->registered = b.registered;
  out->attached = b.loop != nullptr;
  out->refs = b.refs;
  out->handles = b.handles.size();
  out->timeouts = b.timeouts.size();
  out->pending_frees = b.frees.size();
  out->open_uv_handles = b.open_uv;
  out->dispatched = b.dispatched;
  out->closes_running = b.closes_running;
  out->sinks = b.sinks;
}
