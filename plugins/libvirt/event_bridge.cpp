// libvirt event-loop implementation on libuv (see event_bridge.hpp for the
// rules). Everything below the mutex is touched by any thread; uv handles are
// created, changed and closed only on the loop thread, with the mutex held.
#include "event_bridge.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
  Batch* batch = nullptr;  // set while a detach closes handles
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
    DoneList dones = std::move(batch->dones);
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

void on_async(uv_async_t*) {
  Bridge& b = bridge();
  std::unique_lock lk(b.mu);
  if (!b.loop) return;
  sync_all(b);
  run_frees(b, lk);
  DoneList dones;
  dones.swap(b.dones);
  lk.unlock();
  for (auto& [done, arg] : dones) done(arg);
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
  if (--b.refs > 0) {
    if (done) b.dones.emplace_back(done, arg);
    wake(b);
    return;
  }
  sync_all(b);
  run_frees(b, lk);
  // Detach: close every uv handle; records stay for libvirt. Callbacks of
  // earlier releases still waiting for the async go with this batch.
  auto* batch = new Batch;
  batch->dones.swap(b.dones);
  if (done) batch->dones.emplace_back(done, arg);
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
  b.async.reset();
  b.batch = nullptr;
  b.loop = nullptr;
  b.loop_thread = {};
  // batch->left >= 1 (the async handle): done runs from the last close callback.
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
}
