// The host API table (hostlet_host_api) that every plugin instance gets:
// argument checks at the C boundary, then the instance's records
// (instance.hpp), its lane (offload.hpp), the bus and the action registry.
#include <fcntl.h>

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdio>

#include "fd_store.hpp"
#include "instance.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "scrape.hpp"

struct hostlet_timer : hostlet::Instance::TimerRec {};
struct hostlet_watch : hostlet::Instance::WatchRec {};
struct hostlet_sub : hostlet::Instance::SubRec {};

namespace hostlet {
namespace {

Instance* inst_of(hostlet_host* h) { return Instance::from(h); }

// identity and logging ------------------------------------------------------
const char* instance_name(hostlet_host* h) { return h ? inst_of(h)->name().c_str() : ""; }

void logv(hostlet_host* h, hostlet_log_level level, const char* fmt, va_list ap) {
  if (!fmt) return;
  if (level < HOSTLET_LOG_ERROR || level > HOSTLET_LOG_DEBUG) level = HOSTLET_LOG_ERROR;
  hostlet::logv(static_cast<Level>(level), h ? inst_of(h)->name() : std::string_view("?"), fmt, ap);
}
void log(hostlet_host* h, hostlet_log_level level, const char* fmt, ...) HOSTLET_PRINTF(3, 4);
void log(hostlet_host* h, hostlet_log_level level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(h, level, fmt, ap);
  va_end(ap);
}
uint64_t now_ns(hostlet_host*) { return uv_hrtime(); }

// config ----------------------------------------------------------------
int lookup(hostlet_host* h, const char* key, std::initializer_list<hostlet_config_type> types,
                  const ConfigValue** out) {
  if (!h || !key) return -EINVAL;
  auto t = inst_of(h)->values().declared_type(key);
  if (!t) return -EINVAL;
  bool ok = false;
  for (auto ty : types) ok |= *t == ty;
  if (!ok) return -EINVAL;
  const ConfigValue* v = inst_of(h)->values().find(key);
  if (!v) return -ENOENT;
  *out = v;
  return 0;
}
int config_string(hostlet_host* h, const char* key, const char** out) {
  const ConfigValue* v;
  int r = lookup(h, key,
                 {HOSTLET_CONFIG_STRING, HOSTLET_CONFIG_INT, HOSTLET_CONFIG_BOOL, HOSTLET_CONFIG_DOUBLE,
                  HOSTLET_CONFIG_DURATION, HOSTLET_CONFIG_SIZE},
                 &v);
  if (r == 0 && out) *out = v->text.c_str();
  return r;
}
int config_int(hostlet_host* h, const char* key, int64_t* out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_INT, HOSTLET_CONFIG_DURATION, HOSTLET_CONFIG_SIZE}, &v);
  if (r == 0 && out) *out = v->i;
  return r;
}
int config_bool(hostlet_host* h, const char* key, int* out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_BOOL}, &v);
  if (r == 0 && out) *out = v->b ? 1 : 0;
  return r;
}
int config_double(hostlet_host* h, const char* key, double* out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_DOUBLE, HOSTLET_CONFIG_INT}, &v);
  if (r == 0 && out) *out = v->type == HOSTLET_CONFIG_INT ? static_cast<double>(v->i) : v->d;
  return r;
}
int config_list_size(hostlet_host* h, const char* key, size_t* out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_STRING_LIST, HOSTLET_CONFIG_INT_LIST, HOSTLET_CONFIG_MAP_LIST}, &v);
  if (r == -ENOENT) {
    if (out) *out = 0;
    return 0;
  }
  if (r == 0 && out) *out = v->list.size();
  return r;
}
int config_list_string(hostlet_host* h, const char* key, size_t i, const char** out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_STRING_LIST, HOSTLET_CONFIG_INT_LIST, HOSTLET_CONFIG_MAP_LIST}, &v);
  if (r != 0) return r == -ENOENT ? -ERANGE : r;
  if (i >= v->list.size()) return -ERANGE;
  if (out) *out = v->list[i].c_str();
  return 0;
}

// A MAP value holds its names in `list`, in document order.
int config_map_size(hostlet_host* h, const char* key, size_t* out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_MAP}, &v);
  if (r == -ENOENT) {
    if (out) *out = 0;
    return 0;
  }
  if (r == 0 && out) *out = v->list.size();
  return r;
}
int config_map_key(hostlet_host* h, const char* key, size_t i, const char** out) {
  const ConfigValue* v;
  int r = lookup(h, key, {HOSTLET_CONFIG_MAP}, &v);
  if (r != 0) return r == -ENOENT ? -ERANGE : r;
  if (i >= v->list.size()) return -ERANGE;
  if (out) *out = v->list[i].c_str();
  return 0;
}

// offload ---------------------------------------------------------------
// The plugin's work, done, late and arg go straight into the lane's item
// (hostlet_work is that item): no context of our own per offload. The lane
// times done and late for the lag monitor (Instance::callbacks_ran) and
// keeps the library mapped while its items are on the pool (keep_alive).
int offload(hostlet_host* h, const hostlet_offload_opts* opts, hostlet_work_fn work, hostlet_done_fn done,
                   void* arg, hostlet_work** out) {
  if (!h || !work || !done) return -EINVAL;
  Instance* inst = inst_of(h);
  if (inst->state() == Instance::State::Stopped || inst->state() == Instance::State::Destroyed) return -ESHUTDOWN;
  uint64_t timeout = 0;
  hostlet_late_fn late = nullptr;
  if (opts) {
    if (opts->struct_size >= offsetof(hostlet_offload_opts, timeout_ms) + sizeof(opts->timeout_ms))
      timeout = opts->timeout_ms;
    if (opts->struct_size >= offsetof(hostlet_offload_opts, late) + sizeof(opts->late)) late = opts->late;
  }
  WorkItem* item = nullptr;
  int r = inst->lane().submit(work, done, arg, timeout, late, &item);
  if (r == 0 && out) *out = reinterpret_cast<hostlet_work*>(item);
  return r;
}
int offload_cancel(hostlet_work* w) {
  if (!w) return -EINVAL;
  auto* item = reinterpret_cast<WorkItem*>(w);
  Lane* lane = Lane::of(item);
  return lane ? lane->cancel(item) : -EBUSY;
}

// timers --------------------------------------------------------------------
int timer_start(hostlet_host* h, uint64_t timeout_ms, uint64_t repeat_ms, hostlet_timer_fn cb, void* arg,
                hostlet_timer** out) {
  if (!h || !cb || !out) return -EINVAL;
  Instance* inst = inst_of(h);
  if (!inst->can_open_handles()) return -ESHUTDOWN;
  auto rec = std::make_unique<hostlet_timer>();
  rec->inst = inst;
  rec->cb = cb;
  rec->arg = arg;
  uv_timer_init(inst->core().loop, &rec->h);
  hostlet_timer* t = static_cast<hostlet_timer*>(inst->timers().add(std::move(rec)));
  uv_timer_start(
      &t->h,
      [](uv_timer_t* th) {
        auto* r = static_cast<Instance::TimerRec*>(th->data);
        r->inst->run_callback("timer callback", [&] { r->cb(r->arg); });
      },
      timeout_ms, repeat_ms);
  *out = t;
  return 0;
}
void timer_stop(hostlet_timer* t) {
  if (t) t->inst->timers().release(t);
}

// fd watches ----------------------------------------------------------------
int to_uv(unsigned ev) {
  int e = 0;
  if (ev & HOSTLET_WATCH_READABLE) e |= UV_READABLE;
  if (ev & HOSTLET_WATCH_WRITABLE) e |= UV_WRITABLE;
  if (ev & HOSTLET_WATCH_PRIORITY) e |= UV_PRIORITIZED;
  return e;
}
void on_poll(uv_poll_t* ph, int status, int events) {
  auto* w = static_cast<Instance::WatchRec*>(ph->data);
  unsigned ev = 0;
  if (status < 0) ev |= HOSTLET_WATCH_ERROR;
  if (events & UV_READABLE) ev |= HOSTLET_WATCH_READABLE;
  if (events & UV_WRITABLE) ev |= HOSTLET_WATCH_WRITABLE;
  if (events & UV_PRIORITIZED) ev |= HOSTLET_WATCH_PRIORITY;
  Instance* inst = w->inst;
  inst->run_callback("watch callback", [&] { w->cb(w->arg, w->fd, ev); });
  // libuv stops a poll handle that reported an error; a watch stays armed
  // until the plugin changes or closes it (which it may have done above:
  // the record then stays until its close completes, so `w` is valid here).
  if (status < 0 && inst->watches().active(w) && w->uv_events) uv_poll_start(&w->h, w->uv_events, &on_poll);
}
int watch_fd(hostlet_host* h, int fd, unsigned events, hostlet_watch_fn cb, void* arg, hostlet_watch** out) {
  if (!h || !cb || !out) return -EINVAL;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return -EBADF;
  Instance* inst = inst_of(h);
  if (!inst->can_open_handles()) return -ESHUTDOWN;
  for (auto& w : inst->watches())
    if (w->fd == fd && inst->watches().active(w.get())) return -EEXIST;
  auto rec = std::make_unique<hostlet_watch>();
  int r = uv_poll_init(inst->core().loop, &rec->h, fd);
  if (r != 0) return r;  // never initialised: freed here; libuv errors are negative errno on Linux
  rec->inst = inst;
  rec->fd = fd;
  rec->cb = cb;
  rec->arg = arg;
  rec->uv_events = to_uv(events);
  hostlet_watch* w = static_cast<hostlet_watch*>(inst->watches().add(std::move(rec)));
  if (events) uv_poll_start(&w->h, w->uv_events, &on_poll);
  *out = w;
  return 0;
}
int watch_update(hostlet_watch* w, unsigned events) {
  if (!w || !w->inst->watches().active(w)) return -EINVAL;
  w->uv_events = to_uv(events);
  if (events == 0) return uv_poll_stop(&w->h);
  return uv_poll_start(&w->h, w->uv_events, &on_poll);
}
void watch_close(hostlet_watch* w) {
  if (w) w->inst->watches().release(w);
}

// post ----------------------------------------------------------------------
int post(hostlet_host* h, hostlet_post_fn cb, void* arg) {
  if (!h || !cb) return -EINVAL;
  Instance* inst = inst_of(h);
  inst->core().post(inst->ref(), cb, arg);
  return 0;
}

// events --------------------------------------------------------------------
int publish_common(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n,
                   std::shared_ptr<Tracker> tracker, uint64_t* id_out) {
  Instance* inst = inst_of(h);
  Event ev;
  ev.source = inst->name();
  ev.type = type;
  if (!copy_c_attrs(attrs, n, ev.attrs, /*nonempty_keys=*/true)) return -EINVAL;
  ev.tracker = std::move(tracker);
  int r = inst->core().bus->publish(std::move(ev), id_out);
  if (r == 0) inst->counters().published++;
  else inst->counters().publish_dropped++;
  return r;
}
int publish(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n) {
  if (!h || !hostlet_event_type_valid(type) || (n && !attrs)) return -EINVAL;
  return publish_common(h, type, attrs, n, nullptr, nullptr);
}
int publish_tracked(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n,
                    hostlet_event_done_fn done, void* arg, uint64_t* id_out) {
  if (!h || !hostlet_event_type_valid(type) || (n && !attrs) || !done) return -EINVAL;
  Instance* inst = inst_of(h);
  auto owned = std::make_unique<Instance::TrackedRec>();
  owned->done = done;
  owned->arg = arg;
  Instance::TrackedRec* rec = inst->add_tracked(std::move(owned));
  Core* core = &inst->core();
  InstanceRef ref = inst->ref();
  auto tracker = std::make_shared<Tracker>([core, ref, rec](uint64_t id, std::vector<Tracker::Outcome>& outs) {
    // Gone (destroyed, or replaced by a reload): its record went with it.
    if (Instance* live = core->alive(ref)) {
      rec->event_id = id;
      live->deliver_tracked(rec, outs);
    }
  });
  uint64_t id = 0;
  int r = publish_common(h, type, attrs, n, std::move(tracker), &id);
  if (r != 0) {
    inst->forget_tracked(rec);  // not queued: done will not run
    return r;
  }
  rec->event_id = id;
  if (id_out) *id_out = id;
  return 0;
}
int subscribe(hostlet_host* h, const char* glob, hostlet_event_fn cb, void* arg, hostlet_sub** out) {
  if (!h || !glob || !cb || !out) return -EINVAL;
  Instance* inst = inst_of(h);
  auto rec = std::make_unique<hostlet_sub>();
  rec->inst = inst;
  // The bus unsubscribes it when the instance stops (close_handles), so this
  // handler never runs for a stopped instance.
  rec->sub = inst->core().bus->subscribe(
      glob,
      [inst, cb, arg](const Event& ev) {
        std::vector<hostlet_attr> a = c_attrs(ev.attrs);
        hostlet_event ce{ev.id, ev.timestamp_ns, ev.source.c_str(), ev.type.c_str(), a.data(), a.size()};
        inst->run_callback("event callback", [&] { cb(arg, &ce); });
      },
      inst);
  if (!rec->sub) return -EINVAL;
  *out = static_cast<hostlet_sub*>(inst->add_sub(std::move(rec)));
  return 0;
}
void unsubscribe(hostlet_sub* s) {
  if (s) s->inst->remove_sub(s);
}

// actions -------------------------------------------------------------------
int register_action(hostlet_host* h, const char* verb, hostlet_action_fn fn, void* arg) {
  if (!h || !verb || !*verb || !fn) return -EINVAL;
  Instance* inst = inst_of(h);
  return inst->core().actions->add_plugin(inst->name() + "." + verb, inst, fn, arg);
}
const char* call_attr(hostlet_call* c, const char* key) { return ActionRegistry::call_attr(c, key); }
int call_reply_ok(hostlet_call* c, const hostlet_attr* a, size_t n, const char* data) {
  return ActionRegistry::reply_ok(c, a, n, data);
}
int call_reply_error(hostlet_call* c, const char* msg) { return ActionRegistry::reply_error(c, msg); }

int call_action(hostlet_host* h, const char* action, const hostlet_attr* attrs, size_t n, hostlet_result_fn cb,
                void* arg) {
  if (!h || !action || !cb) return -EINVAL;
  Instance* inst = inst_of(h);
  Attrs av;
  if (!copy_c_attrs(attrs, n, av)) return -EINVAL;
  auto owned = std::make_unique<Instance::CallRec>();
  owned->inst = inst;
  owned->cb = cb;
  owned->arg = arg;
  Instance::CallRec* rec = inst->add_call(std::move(owned));
  Core* core = &inst->core();
  InstanceRef ref = inst->ref();
  int r = core->actions->call(action, std::move(av), [core, ref, rec](ActionResult&& res) {
    Instance* live = core->alive(ref);
    if (!live) return;  // the caller is gone: its record went with it
    rec->result = std::move(res);
    rec->have = true;
    if (rec->returned) live->deliver_call(rec);
  });
  if (r != 0) {
    inst->forget_call(rec);  // cb will not run
    return r;
  }
  rec->returned = true;
  // Answered synchronously: "never before call_action returns" -> next
  // iteration (run only while the instance lives, as every post).
  if (rec->have)
    core->post(ref, [](void* p) {
      auto* c = static_cast<Instance::CallRec*>(p);
      c->inst->deliver_call(c);
    }, rec);
  return 0;
}

// since 1.1: error messages, event ids ---------------------------------------
void set_error(hostlet_host* h, const char* fmt, ...) HOSTLET_PRINTF(2, 3);
void set_error(hostlet_host* h, const char* fmt, ...) {
  if (!h || !fmt) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  std::string msg(buf);
  for (char& c : msg)
    if (c == '\n' || c == '\r') c = ' ';  // one line: it goes into replies and status
  inst_of(h)->set_error(std::move(msg));
}
int publish_id(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n, uint64_t* id_out) {
  if (!h || !hostlet_event_type_valid(type) || (n && !attrs)) return -EINVAL;
  return publish_common(h, type, attrs, n, nullptr, id_out);
}

// since 1.1: health and metrics ---------------------------------------------
int set_health(hostlet_host* h, hostlet_health health, const char* reason) {
  if (!h) return -EINVAL;
  return inst_of(h)->set_health(health, reason);
}
int metric_family(hostlet_metrics* m, const char* name, hostlet_metric_type type, const char* help,
                  const char* unit) {
  if (!m || !name) return -EINVAL;
  return m->family(name, type, help ? help : "", unit ? unit : "");
}
int metric_sample(hostlet_metrics* m, const hostlet_attr* labels, size_t n, double value) {
  if (!m) return -EINVAL;
  return m->sample(labels, n, value);
}
int metric_histogram(hostlet_metrics* m, const hostlet_attr* labels, size_t n, const double* bounds,
                     const uint64_t* cumulative, size_t n_buckets, double sum, uint64_t count) {
  if (!m) return -EINVAL;
  return m->histogram(labels, n, bounds, cumulative, n_buckets, sum, count);
}
void metrics_refreshed(hostlet_host* h) {
  if (h && inst_of(h)->core().scraper) inst_of(h)->core().scraper->refreshed(inst_of(h));
}
int metrics_scrape(hostlet_host* h, const hostlet_scrape_opts* opts, hostlet_scrape_fn cb, void* arg) {
  if (!h || !cb) return -EINVAL;
  Instance* inst = inst_of(h);
  Core* core = &inst->core();
  if (!core->scraper) return -EINVAL;
  hostlet_metrics_format format = HOSTLET_METRICS_TEXT;
  uint64_t timeout_ms = 0;
  if (opts) {
    if (opts->struct_size >= offsetof(hostlet_scrape_opts, format) + sizeof(opts->format)) format = opts->format;
    if (opts->struct_size >= offsetof(hostlet_scrape_opts, timeout_ms) + sizeof(opts->timeout_ms))
      timeout_ms = opts->timeout_ms;
  }
  if (format != HOSTLET_METRICS_TEXT && format != HOSTLET_METRICS_OPENMETRICS) return -EINVAL;
  auto owned = std::make_unique<Instance::ScrapeRec>();
  owned->cb = cb;
  owned->arg = arg;
  Instance::ScrapeRec* rec = inst->add_scrape(std::move(owned));
  InstanceRef ref = inst->ref();
  core->scraper->scrape(format, timeout_ms, [core, ref, rec](std::string text) {
    if (Instance* live = core->alive(ref)) live->deliver_scrape(rec, text);  // gone: its record went with it
  });
  return 0;
}
int agent_health(hostlet_host* h, uint64_t max_lag_ms, hostlet_health_fn cb, void* arg) {
  if (!h || !cb) return -EINVAL;
  Core& core = inst_of(h)->core();
  if (!core.health) return -EINVAL;
  AgentHealth ah = core.health(max_lag_ms);
  cb(arg, ah.healthy ? 1 : 0, ah.json.c_str());
  return 0;
}

// since 1.1: the fd store ----------------------------------------------------
int keep_fd(hostlet_host* h, const char* name, int fd, const void* state, size_t len) {
  if (!h || !name) return -EINVAL;
  Instance* inst = inst_of(h);
  if (!inst->core().fds) return -ENOSYS;
  int r = inst->core().fds->keep(inst->name(), name, fd, state, len);
  if (r == 0) log(Level::Debug, inst->name(), "fd store: kept '%s' (fd %d, %zu bytes of state)", name, fd, len);
  return r;
}
int take_fd(hostlet_host* h, const char* name, void* buf, size_t cap, size_t* len_out) {
  if (!h || !name) return -EINVAL;
  Instance* inst = inst_of(h);
  if (!inst->core().fds) return -ENOSYS;
  int r = inst->core().fds->take(inst->name(), name, buf, cap, len_out);
  if (r >= 0) log(Level::Debug, inst->name(), "fd store: took '%s' (fd %d)", name, r);
  return r;
}

// lifecycle and loop --------------------------------------------------------
void stopped(hostlet_host* h) {
  if (h) inst_of(h)->plugin_stopped();
}
void* uv_loop(hostlet_host* h) {
  if (!h) return nullptr;
  inst_of(h)->note_uses_loop();  // so that the lag monitor can name it
  return inst_of(h)->core().loop;
}

const hostlet_host_api kHostApi = {
    sizeof(hostlet_host_api),
    HOSTLET_ABI_MAJOR,
    HOSTLET_ABI_MINOR,
    &instance_name,
    &log,
    &logv,
    &now_ns,
    &config_string,
    &config_int,
    &config_bool,
    &config_double,
    &config_list_size,
    &config_list_string,
    &offload,
    &offload_cancel,
    &timer_start,
    &timer_stop,
    &watch_fd,
    &watch_update,
    &watch_close,
    &post,
    &publish,
    &publish_tracked,
    &subscribe,
    &unsubscribe,
    &register_action,
    &call_attr,
    &call_reply_ok,
    &call_reply_error,
    &call_action,
    &stopped,
    &uv_loop,
    // since 1.1
    &set_error,
    &publish_id,
    &set_health,
    &metric_family,
    &metric_sample,
    &metric_histogram,
    &metrics_refreshed,
    &metrics_scrape,
    &agent_health,
    &keep_fd,
    &take_fd,
    &config_map_size,
    &config_map_key,
};

}  // namespace

const hostlet_host_api* Instance::api() { return &kHostApi; }

}  // namespace hostlet
