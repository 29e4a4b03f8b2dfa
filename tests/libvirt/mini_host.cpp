#include "mini_host.hpp"

#include <dlfcn.h>
#include <signal.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

struct hostlet_host {
  virt_test::MiniHost* self;
};
struct hostlet_timer {
  uv_timer_t t;
  hostlet_timer_fn cb;
  void* arg;
};
struct hostlet_call {
  std::map<std::string, std::string> attrs;
  virt_test::Answer* answer;
};
struct hostlet_work {
  uv_work_t req;
  hostlet_work_fn work;
  hostlet_done_fn done;
  void* arg;
  virt_test::MiniHost* host;
};

namespace virt_test {

using namespace std::chrono;

namespace {
// "250ms", "5s", "2m", "1h" or a number of ms.
bool parse_duration(const std::string& s, int64_t* out) {
  size_t i = 0;
  while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) i++;
  if (i == 0) return false;
  int64_t n = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  if (unit.empty() || unit == "ms") *out = n;
  else if (unit == "s") *out = n * 1000;
  else if (unit == "m") *out = n * 60000;
  else if (unit == "h") *out = n * 3600000;
  else return false;
  return true;
}
}  // namespace

struct MiniHost::Impl {
  static MiniHost* H(hostlet_host* h) { return h->self; }
  static const hostlet_config_key* key_of(MiniHost* m, const char* key) {
    for (const hostlet_config_key* k = m->desc_->config; k && k->key; k++)
      if (std::string(k->key) == key) return k;
    return nullptr;
  }
  static const char* value_of(MiniHost* m, const char* key) {
    auto it = m->config_.find(key);
    if (it != m->config_.end()) return it->second.c_str();
    const hostlet_config_key* k = key_of(m, key);
    return k ? k->default_value : nullptr;
  }

  static const char* instance_name(hostlet_host* h) { return H(h)->name_.c_str(); }
  static void logv(hostlet_host* h, hostlet_log_level lvl, const char* fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    std::fprintf(stderr, "%s [%s] %s\n", names[lvl & 3], H(h)->name_.c_str(), buf);
    H(h)->logs_.push_back(buf);
  }
  static void log(hostlet_host* h, hostlet_log_level lvl, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    logv(h, lvl, fmt, ap);
    va_end(ap);
  }
  static uint64_t now_ns(hostlet_host*) { return uv_hrtime(); }

  static int config_string(hostlet_host* h, const char* key, const char** out) {
    if (!key_of(H(h), key)) return -EINVAL;
    const char* v = value_of(H(h), key);
    if (!v) return -ENOENT;
    *out = v;
    return 0;
  }
  static int config_int(hostlet_host* h, const char* key, int64_t* out) {
    const hostlet_config_key* k = key_of(H(h), key);
    if (!k) return -EINVAL;
    const char* v = value_of(H(h), key);
    if (!v) return -ENOENT;
    if (k->type == HOSTLET_CONFIG_DURATION) return parse_duration(v, out) ? 0 : -EINVAL;
    *out = std::stoll(v);
    return 0;
  }
  static int config_bool(hostlet_host* h, const char* key, int* out) {
    if (!key_of(H(h), key)) return -EINVAL;
    const char* v = value_of(H(h), key);
    if (!v) return -ENOENT;
    *out = std::string(v) == "true";
    return 0;
  }
  static int config_double(hostlet_host*, const char*, double*) { return -EINVAL; }
  static int config_list_size(hostlet_host* h, const char* key, size_t* out) {
    auto it = H(h)->lists_.find(key);
    *out = it == H(h)->lists_.end() ? 0 : it->second.size();
    return 0;
  }
  static int config_list_string(hostlet_host* h, const char* key, size_t i, const char** out) {
    auto it = H(h)->lists_.find(key);
    if (it == H(h)->lists_.end() || i >= it->second.size()) return -ERANGE;
    *out = it->second[i].c_str();
    return 0;
  }

  static int offload(hostlet_host* h, const hostlet_offload_opts*, hostlet_work_fn work, hostlet_done_fn done,
                     void* arg, hostlet_work** out) {
    MiniHost* m = H(h);
    if (m->stopped_) return -ESHUTDOWN;
    auto* w = new hostlet_work{{}, work, done, arg, m};
    w->req.data = w;
    int r = uv_queue_work(
        m->loop_, &w->req, [](uv_work_t* req) { static_cast<hostlet_work*>(req->data)->work(static_cast<hostlet_work*>(req->data)->arg); },
        [](uv_work_t* req, int status) {
          auto* wk = static_cast<hostlet_work*>(req->data);
          wk->host->works_--;
          wk->done(wk->arg, status == UV_ECANCELED ? -ECANCELED : 0);
          delete wk;
        });
    if (r != 0) {
      delete w;
      return -EINVAL;
    }
    m->works_++;
    if (out) *out = w;
    return 0;
  }
  static int offload_cancel(hostlet_work* w) {
    return uv_cancel(reinterpret_cast<uv_req_t*>(&w->req)) == 0 ? 0 : -EBUSY;
  }

  static int timer_start(hostlet_host* h, uint64_t timeout, uint64_t repeat, hostlet_timer_fn cb, void* arg,
                         hostlet_timer** out) {
    auto* t = new hostlet_timer{{}, cb, arg};
    uv_timer_init(H(h)->loop_, &t->t);
    t->t.data = t;
    uv_timer_start(
        &t->t, [](uv_timer_t* ut) { static_cast<hostlet_timer*>(ut->data)->cb(static_cast<hostlet_timer*>(ut->data)->arg); },
        timeout, repeat);
    *out = t;
    return 0;
  }
  static void timer_stop(hostlet_timer* t) {
    uv_close(reinterpret_cast<uv_handle_t*>(&t->t), [](uv_handle_t* uh) { delete static_cast<hostlet_timer*>(uh->data); });
  }
  static int watch_fd(hostlet_host*, int, unsigned, hostlet_watch_fn, void*, hostlet_watch**) { return -ENOSYS; }
  static int watch_update(hostlet_watch*, unsigned) { return -ENOSYS; }
  static void watch_close(hostlet_watch*) {}
  static int post(hostlet_host* h, hostlet_post_fn cb, void* arg) {
    MiniHost* m = H(h);
    std::lock_guard lk(m->post_mu_);
    m->posted_.emplace_back(cb, arg);
    uv_async_send(m->post_async_);
    return 0;
  }
  static int publish(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n) {
    Published p{type, {}};
    for (size_t i = 0; i < n; i++) p.attrs.emplace_back(attrs[i].key, attrs[i].value);
    H(h)->events_.push_back(std::move(p));
    return 0;
  }
  // ABI 1.1: set_error is logged (tests read the log), publish_id is publish,
  // set_health is logged as "health NAME: REASON" too; nothing scrapes a
  // mini host, so its metrics entries stay null.
  static void set_error(hostlet_host* h, const char* fmt, ...) HOSTLET_PRINTF(2, 3) {
    va_list ap;
    va_start(ap, fmt);
    logv(h, HOSTLET_LOG_ERROR, fmt, ap);
    va_end(ap);
  }
  static int publish_id(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n, uint64_t* id) {
    if (id) *id = H(h)->events_.size() + 1;
    return publish(h, type, attrs, n);
  }
  static int set_health(hostlet_host* h, hostlet_health health, const char* reason) {
    static const char* const kNames[] = {"ok", "degraded", "failed"};
    if (health < HOSTLET_HEALTH_OK || health > HOSTLET_HEALTH_FAILED) return -EINVAL;
    log(h, HOSTLET_LOG_INFO, "health %s: %s", kNames[health], reason ? reason : "");
    return 0;
  }
  static int publish_tracked(hostlet_host*, const char*, const hostlet_attr*, size_t, hostlet_event_done_fn, void*,
                             uint64_t*) {
    return -ENOSYS;
  }
  static int subscribe(hostlet_host*, const char*, hostlet_event_fn, void*, hostlet_sub**) { return -ENOSYS; }
  static void unsubscribe(hostlet_sub*) {}
  static int register_action(hostlet_host* h, const char* verb, hostlet_action_fn fn, void* arg) {
    H(h)->actions_[verb] = {fn, arg};
    return 0;
  }
  static const char* call_attr(hostlet_call* c, const char* key) {
    auto it = c->attrs.find(key);
    return it == c->attrs.end() ? nullptr : it->second.c_str();
  }
  static int call_reply_ok(hostlet_call* c, const hostlet_attr* attrs, size_t n, const char* data) {
    c->answer->done = c->answer->ok = true;
    for (size_t i = 0; i < n; i++) c->answer->attrs.emplace_back(attrs[i].key, attrs[i].value);
    if (data) c->answer->data_json = data;
    delete c;
    return 0;
  }
  static int call_reply_error(hostlet_call* c, const char* msg) {
    c->answer->done = true;
    c->answer->error = msg;
    delete c;
    return 0;
  }
  static int call_action(hostlet_host*, const char*, const hostlet_attr*, size_t, hostlet_result_fn, void*) {
    return -ENOSYS;
  }
  static void stopped(hostlet_host* h) { H(h)->stopped_ = true; }
  static void* uv_loop(hostlet_host* h) { return H(h)->loop_; }

  static const hostlet_host_api api;
};

const hostlet_host_api MiniHost::Impl::api = {
    sizeof(hostlet_host_api), HOSTLET_ABI_MAJOR, HOSTLET_ABI_MINOR,
    &Impl::instance_name, &Impl::log, &Impl::logv, &Impl::now_ns,
    &Impl::config_string, &Impl::config_int, &Impl::config_bool, &Impl::config_double,
    &Impl::config_list_size, &Impl::config_list_string,
    &Impl::offload, &Impl::offload_cancel,
    &Impl::timer_start, &Impl::timer_stop, &Impl::watch_fd, &Impl::watch_update, &Impl::watch_close,
    &Impl::post,
    &Impl::publish, &Impl::publish_tracked, &Impl::subscribe, &Impl::unsubscribe,
    &Impl::register_action, &Impl::call_attr, &Impl::call_reply_ok, &Impl::call_reply_error,
    &Impl::call_action,
    &Impl::stopped,
    &Impl::uv_loop,
    &Impl::set_error, &Impl::publish_id, &Impl::set_health,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,  // metrics
    nullptr, nullptr,                                      // fd store
    nullptr, nullptr,                                      // config maps
};

MiniHost::MiniHost(uv_loop_t* loop) : loop_(loop), handle_(new hostlet_host{this}) {
  // As the agent does (plugin.h, "Signals"): libvirt writes its socket with
  // write(2), and a close that outlives a killed libvirtd would otherwise
  // kill the test with SIGPIPE instead of failing the write with EPIPE.
  signal(SIGPIPE, SIG_IGN);
  post_async_ = new uv_async_t;
  uv_async_init(loop_, post_async_, [](uv_async_t* a) {
    auto* m = static_cast<MiniHost*>(a->data);
    std::deque<std::pair<hostlet_post_fn, void*>> q;
    {
      std::lock_guard lk(m->post_mu_);
      q.swap(m->posted_);
    }
    for (auto& [cb, arg] : q) cb(arg);
  });
  post_async_->data = this;
}

MiniHost::~MiniHost() {
  if (state_) stop();
  unload();
  uv_close(reinterpret_cast<uv_handle_t*>(post_async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

int MiniHost::load(const std::string& so, const std::string& copy_path, const std::string& name,
                   std::map<std::string, std::string> config) {
  name_ = name;
  copy_ = copy_path;
  config_ = std::move(config);
  std::filesystem::copy_file(so, copy_, std::filesystem::copy_options::overwrite_existing);
  dl_ = dlopen(copy_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!dl_) throw std::runtime_error(dlerror());
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(dl_, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  if (!entry) throw std::runtime_error("no entry");
  desc_ = entry();
  stopped_ = stopping_ = false;
  return desc_->init(handle_.get(), &Impl::api, &state_);
}

int MiniHost::start() { return desc_->start(state_); }

bool MiniHost::stop(milliseconds timeout) {
  if (!state_) return true;
  stopping_ = true;
  desc_->stop(state_);
  bool ok = run_until([&] { return stopped_ && works_ == 0; }, timeout);
  stopped_ = true;
  desc_->destroy(state_);
  state_ = nullptr;
  actions_.clear();
  return ok;
}

bool MiniHost::unload() {
  if (!dl_) return true;
  dlclose(dl_);
  dl_ = nullptr;
  desc_ = nullptr;
  void* again = dlopen(copy_.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (again) dlclose(again);
  std::filesystem::remove(copy_);
  return again == nullptr;
}

Answer MiniHost::call(const std::string& verb, const Attrs& attrs, milliseconds timeout) {
  Answer a;
  auto it = actions_.find(verb);
  if (it == actions_.end()) {
    a.done = true;
    a.error = "no such action " + verb;
    return a;
  }
  auto* c = new hostlet_call{{}, &a};
  for (auto& [k, v] : attrs) c->attrs[k] = v;
  std::vector<hostlet_attr> raw;
  for (auto& [k, v] : c->attrs) raw.push_back({k.c_str(), v.c_str()});
  int r = it->second.first(it->second.second, c, raw.data(), raw.size());
  if (r != 0) {
    delete c;
    a.done = true;
    a.error = hostlet_strerror(r);
    return a;
  }
  run_until([&] { return a.done; }, timeout);
  return a;
}

bool MiniHost::run_until(const std::function<bool()>& pred, milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  // A short timer keeps uv_run(ONCE) from blocking past our deadline.
  uv_timer_t tick;
  uv_timer_init(loop_, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);
  bool ok = false;
  while (!(ok = pred()) && steady_clock::now() < deadline) uv_run(loop_, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop_, UV_RUN_NOWAIT);
  return ok;
}

bool MiniHost::saw(const std::string& type, const Attrs& attrs) {
  for (auto& e : events_) {
    if (e.type != type) continue;
    bool all = true;
    for (auto& [k, v] : attrs) all = all && e.attr(k) == v;
    if (all) return true;
  }
  return false;
}

}  // namespace virt_test
