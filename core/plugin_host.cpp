#include "plugin_host.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>  // ElfW, __ELF_NATIVE_CLASS
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>

#include "lag.hpp"
#include "log.hpp"

#ifndef HOSTLET_PLUGIN_DIR
#define HOSTLET_PLUGIN_DIR "/usr/local/lib/hostlet"
#endif

namespace fs = std::filesystem;

// The ABI's opaque instance handle.
struct hostlet_host {
  hostlet::Instance* inst;
};

namespace hostlet {

struct HostHandle : hostlet_host {};

namespace {
std::atomic<uint64_t> g_serial{0};
std::atomic<uint64_t> g_generation{0};
std::atomic<uint64_t> g_unmapped_failures{0};

// A private directory for the copies of plugin files that dlopen() maps.
const std::string& copy_dir() {
  static std::string dir = [] {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/hostlet-plugins-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) return std::string();
    return std::string(buf.data());
  }();
  return dir;
}

bool copy_file(const std::string& from, const std::string& to, std::string& err) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    err = std::string("cannot open: ") + strerror(errno);
    return false;
  }
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  if (out < 0) {
    err = std::string("cannot create private copy ") + to + ": " + strerror(errno);
    close(in);
    return false;
  }
  char buf[1 << 16];
  bool ok = true;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        ok = false;
        break;
      }
      off += w;
    }
    if (!ok) break;
  }
  if (!ok) err = std::string("cannot copy: ") + strerror(errno);
  close(in);
  if (close(out) != 0 && ok) {
    ok = false;
    err = std::string("cannot copy: ") + strerror(errno);
  }
  if (!ok) unlink(to.c_str());
  return ok;
}

// dlopen() maps a shared object's segments as its program headers say; a
// file cut short (a build still being written, a failed copy) then faults
// with SIGBUS when the loader touches a page past its end, killing the agent.
// So the headers are checked against the file's size before dlopen().
bool check_elf(const std::string& path, std::string& err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = std::string("cannot open: ") + strerror(errno);
    return false;
  }
  struct stat st;
  bool ok = fstat(fd, &st) == 0;
  uint64_t size = ok ? static_cast<uint64_t>(st.st_size) : 0;
  ElfW(Ehdr) eh{};
  auto read_at = [&](void* buf, size_t n, uint64_t off) {
    return pread(fd, buf, n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
  };
  auto fail = [&](const std::string& why) {
    err = why;
    close(fd);
    return false;
  };
  if (!ok || size < sizeof eh || !read_at(&eh, sizeof eh, 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return fail("not an ELF shared object (" + std::to_string(size) + " bytes)");
  if (eh.e_ident[EI_CLASS] != (__ELF_NATIVE_CLASS == 64 ? ELFCLASS64 : ELFCLASS32) || eh.e_type != ET_DYN ||
      eh.e_phentsize != sizeof(ElfW(Phdr)))
    return fail("not a shared object for this machine's word size");
  if (eh.e_phoff > size || static_cast<uint64_t>(eh.e_phnum) * sizeof(ElfW(Phdr)) > size - eh.e_phoff)
    return fail("truncated: program headers past the end of the file (" + std::to_string(size) + " bytes)");
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    ElfW(Phdr) ph{};
    if (!read_at(&ph, sizeof ph, eh.e_phoff + i * sizeof ph)) return fail("cannot read its program headers");
    if (ph.p_type == PT_LOAD && (ph.p_offset > size || ph.p_filesz > size - ph.p_offset))
      return fail("truncated: a loadable segment ends at byte " + std::to_string(ph.p_offset + ph.p_filesz) +
                  " of a " + std::to_string(size) + "-byte file (still being written?)");
  }
  close(fd);
  return true;
}

std::string exe_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}
}  // namespace

// ------------------------------------------------------------------ Library

std::string Library::resolve(const std::string& plugin, const std::string& plugin_dir,
                             const std::string& config_dir, std::string& err) {
  auto exists = [](const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  };
  if (plugin.find('/') != std::string::npos) {
    std::string p = plugin[0] == '/' || config_dir.empty() ? plugin : config_dir + "/" + plugin;
    if (exists(p)) return p;
    err = "plugin file " + p + " not found";
    return {};
  }
  std::vector<std::string> tried;
  auto candidate = [&](const std::string& p) {
    tried.push_back(p);
    return exists(p);
  };
  const std::string file = plugin + ".so";
  if (!plugin_dir.empty()) {
    if (candidate(plugin_dir + "/" + file)) return tried.back();
  } else {
    const char* env = getenv("HOSTLET_PLUGIN_DIR");
    if (env && *env && candidate(std::string(env) + "/" + file)) return tried.back();
    std::string here = exe_dir();
    if (!here.empty() && candidate(here + "/../plugins/" + plugin + "/" + file)) return tried.back();
    if (candidate(std::string(HOSTLET_PLUGIN_DIR) + "/" + file)) return tried.back();
  }
  err = "plugin '" + plugin + "' not found (looked for";
  for (size_t i = 0; i < tried.size(); i++) err += (i ? ", " : " ") + tried[i];
  err += ")";
  return {};
}

bool Library::stat_file(const std::string& path, FileId& out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  out.dev = st.st_dev;
  out.ino = st.st_ino;
  out.size = static_cast<uint64_t>(st.st_size);
  out.mtime_ns = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<uint64_t>(st.st_mtim.tv_nsec);
  return true;
}

std::shared_ptr<Library> Library::load(const std::string& path, std::string& err) {
  std::shared_ptr<Library> lib(new Library());
  lib->path_ = path;
  stat_file(path, lib->file_id_);  // before the copy: a later replacement compares unequal
  lib->serial_ = ++g_serial;
  const std::string& dir = copy_dir();
  if (dir.empty()) {
    err = path + ": cannot create a private directory for plugin copies";
    return nullptr;
  }
  // A fresh copy under a unique name: a file rebuilt at the same path is new
  // code to the dynamic loader, and the original can be replaced at any time.
  lib->load_path_ = dir + "/" + fs::path(path).stem().string() + "." + std::to_string(getpid()) + "." +
                    std::to_string(lib->serial_) + ".so";
  std::string cerr;
  if (!copy_file(path, lib->load_path_, cerr)) {
    err = path + ": " + cerr;
    return nullptr;
  }
  if (!check_elf(lib->load_path_, cerr)) {
    unlink(lib->load_path_.c_str());
    err = path + ": cannot load: " + cerr;
    return nullptr;
  }
  lib->handle_ = dlopen(lib->load_path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  unlink(lib->load_path_.c_str());  // the mapping stays; nothing to clean up later
  if (!lib->handle_) {
    const char* e = dlerror();
    err = path + ": cannot load: " + (e ? e : "unknown dlopen error");
    return nullptr;
  }
  dlerror();
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(lib->handle_, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  if (!entry) {
    err = path + ": no entry symbol '" HOSTLET_PLUGIN_ENTRY_SYMBOL "' (is it a hostlet plugin?)";
    return nullptr;
  }
  const hostlet_plugin* d = entry();
  if (!d) {
    err = path + ": the entry symbol returned no descriptor";
    return nullptr;
  }
  if (d->abi_major != HOSTLET_ABI_MAJOR || d->abi_minor > HOSTLET_ABI_MINOR) {
    err = path + ": built for plugin ABI " + std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor) +
          ", this agent speaks " + std::to_string(HOSTLET_ABI_MAJOR) + "." + std::to_string(HOSTLET_ABI_MINOR) +
          " (same major and a minor up to " + std::to_string(HOSTLET_ABI_MINOR) + " are loadable)";
    return nullptr;
  }
  if (d->struct_size < offsetof(hostlet_plugin, destroy) + sizeof(d->destroy)) {
    err = path + ": descriptor too small (" + std::to_string(d->struct_size) + " bytes)";
    return nullptr;
  }
  if (!d->name || !*d->name || !d->init || !d->start || !d->stop || !d->destroy) {
    err = path + ": descriptor lacks a name or one of init/start/stop/destroy";
    return nullptr;
  }
  lib->desc_ = d;
  return lib;
}

Library::~Library() {
  if (!handle_) return;
  desc_ = nullptr;
  if (dlclose(handle_) != 0) {
    const char* e = dlerror();
    log(Level::Warn, "hostlet", "dlclose %s: %s", path_.c_str(), e ? e : "failed");
  }
  // Did the image really go? A STB_GNU_UNIQUE symbol or a nodelete flag pins it.
  if (void* again = dlopen(load_path_.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
    dlclose(again);
    g_unmapped_failures++;
    log(Level::Warn, "hostlet",
        "plugin %s is still mapped after dlclose (built without -fno-gnu-unique, or marked nodelete); "
        "its old code stays in memory",
        path_.c_str());
  }
}

uint64_t Library::unmapped_failures() { return g_unmapped_failures.load(); }

// ----------------------------------------------------------------- records

struct Instance::TimerRec {
  uv_timer_t h;
  Instance* inst;
  hostlet_timer_fn cb;
  void* arg;
  std::list<TimerRec*>::iterator it;
  bool closing = false;   // uv_close called
  bool released = false;  // the plugin called timer_stop (or the instance is gone)
};

struct Instance::WatchRec {
  uv_poll_t h;
  Instance* inst;
  int fd;
  int uv_events = 0;  // what the plugin asked for, to re-arm after an error
  hostlet_watch_fn cb;
  void* arg;
  std::list<WatchRec*>::iterator it;
  bool closing = false;
  bool released = false;
};

struct Instance::SubRec {
  EventBus::Sub* sub;
  Instance* inst;
  std::list<SubRec*>::iterator it;
};

}  // namespace hostlet

struct hostlet_timer : hostlet::Instance::TimerRec {};
struct hostlet_watch : hostlet::Instance::WatchRec {};
struct hostlet_sub : hostlet::Instance::SubRec {};

namespace hostlet {

// ----------------------------------------------------------------- Instance

Instance::Instance(Core& core, InstanceSection cfg, std::shared_ptr<Library> lib, ConfigValues values,
                   std::string config_file)
    : core_(core),
      cfg_(std::move(cfg)),
      lib_(std::move(lib)),
      values_(std::move(values)),
      config_file_(std::move(config_file)),
      handle_(std::make_unique<HostHandle>()),
      generation_(++g_generation) {
  handle_->inst = this;
  LaneLimits limits;
  limits.max_inflight = cfg_.max_inflight;
  limits.max_queue = cfg_.max_queue;
  limits.default_timeout_ms = cfg_.offload_timeout_ms;
  lane_ = std::make_unique<Lane>(core_.loop, cfg_.name, limits);
  lane_->set_observer(this);
  // The lane's state outlives the Lane while work is still on the pool: it
  // keeps the plugin's code mapped until then.
  lane_->keep_alive(lib_);
  std::lock_guard<std::mutex> lk(core_.post_mu);
  core_.live.push_back(this);
}

Instance::~Instance() {
  {
    std::lock_guard<std::mutex> lk(core_.post_mu);
    std::erase(core_.live, this);
  }
  // Records the plugin never released: their handles are closed by now.
  for (auto* t : timers_) delete static_cast<hostlet_timer*>(t);
  for (auto* w : watches_) delete static_cast<hostlet_watch*>(w);
  for (auto* s : subs_) delete static_cast<hostlet_sub*>(s);
}

hostlet_host* Instance::c_handle() { return handle_.get(); }
Instance* Instance::from(hostlet_host* h) { return h ? h->inst : nullptr; }

const char* Instance::state_name() const {
  switch (state_) {
    case State::Loaded: return "loaded";
    case State::Inited: return "initialized";
    case State::Started: return "running";
    case State::Stopping: return "stopping";
    case State::Stopped: return "stopped";
    case State::Destroyed: return "destroyed";
    case State::Failed: return "failed";
  }
  return "?";
}

void Instance::log(hostlet_log_level level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(static_cast<Level>(level), cfg_.name, fmt, ap);
  va_end(ap);
}

template <class F> void Instance::run_callback(const char* what, F&& fn) {
  uint64_t t0 = uv_hrtime();
  fn();
  callbacks_ran(what, 1, uv_hrtime() - t0);
}

void Instance::callbacks_ran(const char* what, uint64_t count, uint64_t ns) {
  counters_.callbacks += count;
  if (ns > counters_.max_callback_ns) counters_.max_callback_ns = ns;
  if (core_.lag) core_.lag->record_callback(cfg_.name, what, ns, count);
}

int Instance::invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                            size_t n) {
  int r = 0;
  run_callback("action handler", [&] { r = fn(arg, call, attrs, n); });
  return r;
}

int Instance::init() {
  int r = 0;
  run_callback("init", [&] { r = lib_->desc()->init(c_handle(), api(), &state_ptr_); });
  if (r != 0) {
    state_ = State::Failed;
    if (r > 0) r = -r;
    log(HOSTLET_LOG_ERROR, "init failed: %s", hostlet_strerror(r));
    return r;
  }
  state_ = State::Inited;
  return 0;
}

int Instance::start() {
  int r = 0;
  start_called_ = true;
  state_ = State::Started;  // start may register and receive callbacks already
  run_callback("start", [&] { r = lib_->desc()->start(state_ptr_); });
  if (r != 0) {
    if (r > 0) r = -r;
    log(HOSTLET_LOG_ERROR, "start failed: %s", hostlet_strerror(r));
    state_ = State::Inited;
    return r;
  }
  return 0;
}

void Instance::stop(uint64_t deadline_ms, std::function<void(bool)> done) {
  stop_done_ = std::move(done);
  stop_deadline_ms_ = deadline_ms;
  stop_reported_ = false;
  bool was_started = start_called_ && (state_ == State::Started || state_ == State::Inited);
  state_ = State::Stopping;
  core_.actions->remove_owner(this);
  core_.actions->fail_owner_calls(this, "instance '" + cfg_.name + "' is stopping");
  if (!was_started || !state_ptr_) {
    after_plugin_stopped();
    return;
  }
  // The plugin reports through api->stopped(); a plugin that never does is
  // not allowed to hold up shutdown past the deadline.
  stop_timer_ = new uv_timer_t;
  uv_timer_init(core_.loop, stop_timer_);
  stop_timer_->data = this;
  uv_timer_start(
      stop_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Instance*>(t->data);
        self->log(HOSTLET_LOG_ERROR, "did not report stopped within %llu ms; closing its handles anyway",
                  static_cast<unsigned long long>(self->stop_deadline_ms_));
        self->on_stopped();
      },
      deadline_ms ? deadline_ms : 5000, 0);
  run_callback("stop", [&] { lib_->desc()->stop(state_ptr_); });
}

void Instance::on_stopped() {
  if (stop_reported_) return;
  stop_reported_ = true;
  if (stop_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(stop_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    stop_timer_ = nullptr;
  }
  after_plugin_stopped();
}

void Instance::after_plugin_stopped() {
  stop_reported_ = true;
  close_handles();
  lane_->drain(stop_deadline_ms_, [this](bool all_finished) {
    state_ = State::Stopped;
    if (!all_finished)
      log(HOSTLET_LOG_ERROR, "%zu offloaded work item(s) still running after %llu ms; the plugin stays loaded",
          lane_->outstanding(), static_cast<unsigned long long>(stop_deadline_ms_));
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    if (done) done(all_finished);
  });
}

void Instance::close_handles() {
  for (auto* t : timers_)
    if (!t->closing) {
      t->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&t->h), nullptr);
    }
  for (auto* w : watches_)
    if (!w->closing) {
      w->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&w->h), nullptr);
    }
  for (auto* s : subs_)
    if (s->sub) {
      core_.bus->unsubscribe(s->sub);
      s->sub = nullptr;  // the record stays until the plugin unsubscribes or the instance goes
    }
  core_.bus->unsubscribe_owner(this);
}

void Instance::destroy() {
  if (state_ == State::Destroyed) return;
  if (state_ptr_) {
    void* s = state_ptr_;
    state_ptr_ = nullptr;
    run_callback("destroy", [&] { lib_->desc()->destroy(s); });
  }
  state_ = State::Destroyed;
  core_.actions->remove_owner(this);
  core_.actions->free_owner_calls(this);
  core_.bus->unsubscribe_owner(this);
}

// ------------------------------------------------------------- the host API

struct HostApiImpl {
  static Instance* I(hostlet_host* h) { return Instance::from(h); }

  static const char* instance_name(hostlet_host* h) { return h ? I(h)->name().c_str() : ""; }

  static void logv(hostlet_host* h, hostlet_log_level level, const char* fmt, va_list ap) {
    if (!fmt) return;
    if (level < HOSTLET_LOG_ERROR || level > HOSTLET_LOG_DEBUG) level = HOSTLET_LOG_ERROR;
    hostlet::logv(static_cast<Level>(level), h ? I(h)->name() : std::string_view("?"), fmt, ap);
  }
  static void log(hostlet_host* h, hostlet_log_level level, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    logv(h, level, fmt, ap);
    va_end(ap);
  }
  static uint64_t now_ns(hostlet_host*) { return uv_hrtime(); }

  // config ----------------------------------------------------------------
  static int lookup(hostlet_host* h, const char* key, std::initializer_list<hostlet_config_type> types,
                    const ConfigValue** out) {
    if (!h || !key) return -EINVAL;
    auto t = I(h)->values().declared_type(key);
    if (!t) return -EINVAL;
    bool ok = false;
    for (auto ty : types) ok |= *t == ty;
    if (!ok) return -EINVAL;
    const ConfigValue* v = I(h)->values().find(key);
    if (!v) return -ENOENT;
    *out = v;
    return 0;
  }
  static int config_string(hostlet_host* h, const char* key, const char** out) {
    const ConfigValue* v;
    int r = lookup(h, key,
                   {HOSTLET_CONFIG_STRING, HOSTLET_CONFIG_INT, HOSTLET_CONFIG_BOOL, HOSTLET_CONFIG_DOUBLE,
                    HOSTLET_CONFIG_DURATION, HOSTLET_CONFIG_SIZE},
                   &v);
    if (r == 0 && out) *out = v->text.c_str();
    return r;
  }
  static int config_int(hostlet_host* h, const char* key, int64_t* out) {
    const ConfigValue* v;
    int r = lookup(h, key, {HOSTLET_CONFIG_INT, HOSTLET_CONFIG_DURATION, HOSTLET_CONFIG_SIZE}, &v);
    if (r == 0 && out) *out = v->i;
    return r;
  }
  static int config_bool(hostlet_host* h, const char* key, int* out) {
    const ConfigValue* v;
    int r = lookup(h, key, {HOSTLET_CONFIG_BOOL}, &v);
    if (r == 0 && out) *out = v->b ? 1 : 0;
    return r;
  }
  static int config_double(hostlet_host* h, const char* key, double* out) {
    const ConfigValue* v;
    int r = lookup(h, key, {HOSTLET_CONFIG_DOUBLE, HOSTLET_CONFIG_INT}, &v);
    if (r == 0 && out) *out = v->type == HOSTLET_CONFIG_INT ? static_cast<double>(v->i) : v->d;
    return r;
  }
  static int config_list_size(hostlet_host* h, const char* key, size_t* out) {
    const ConfigValue* v;
    int r = lookup(h, key, {HOSTLET_CONFIG_STRING_LIST, HOSTLET_CONFIG_INT_LIST}, &v);
    if (r == -ENOENT) {
      if (out) *out = 0;
      return 0;
    }
    if (r == 0 && out) *out = v->list.size();
    return r;
  }
  static int config_list_string(hostlet_host* h, const char* key, size_t i, const char** out) {
    const ConfigValue* v;
    int r = lookup(h, key, {HOSTLET_CONFIG_STRING_LIST, HOSTLET_CONFIG_INT_LIST}, &v);
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
  static int offload(hostlet_host* h, const hostlet_offload_opts* opts, hostlet_work_fn work, hostlet_done_fn done,
                     void* arg, hostlet_work** out) {
    if (!h || !work || !done) return -EINVAL;
    Instance* inst = I(h);
    if (inst->state_ == Instance::State::Stopped || inst->state_ == Instance::State::Destroyed) return -ESHUTDOWN;
    uint64_t timeout = 0;
    hostlet_late_fn late = nullptr;
    if (opts) {
      if (opts->struct_size >= offsetof(hostlet_offload_opts, timeout_ms) + sizeof(opts->timeout_ms))
        timeout = opts->timeout_ms;
      if (opts->struct_size >= offsetof(hostlet_offload_opts, late) + sizeof(opts->late)) late = opts->late;
    }
    WorkItem* item = nullptr;
    int r = inst->lane_->submit(work, done, arg, timeout, late, &item);
    if (r == 0 && out) *out = reinterpret_cast<hostlet_work*>(item);
    return r;
  }
  static int offload_cancel(hostlet_work* w) {
    if (!w) return -EINVAL;
    auto* item = reinterpret_cast<WorkItem*>(w);
    Lane* lane = Lane::of(item);
    return lane ? lane->cancel(item) : -EBUSY;
  }

  // timers ----------------------------------------------------------------
  static bool can_open(Instance* inst) {
    return inst->state_ == Instance::State::Inited || inst->state_ == Instance::State::Started;
  }
  static int timer_start(hostlet_host* h, uint64_t timeout_ms, uint64_t repeat_ms, hostlet_timer_fn cb, void* arg,
                         hostlet_timer** out) {
    if (!h || !cb || !out) return -EINVAL;
    Instance* inst = I(h);
    if (!can_open(inst)) return -ESHUTDOWN;
    auto* t = new (std::nothrow) hostlet_timer();
    if (!t) return -ENOMEM;
    t->inst = inst;
    t->cb = cb;
    t->arg = arg;
    uv_timer_init(inst->core_.loop, &t->h);
    t->h.data = t;
    inst->timers_.push_back(t);
    t->it = std::prev(inst->timers_.end());
    uv_timer_start(
        &t->h,
        [](uv_timer_t* th) {
          auto* rec = static_cast<hostlet_timer*>(th->data);
          rec->inst->run_callback("timer callback", [&] { rec->cb(rec->arg); });
        },
        timeout_ms, repeat_ms);
    *out = t;
    return 0;
  }
  static void timer_stop(hostlet_timer* t) {
    if (!t || t->released) return;
    t->released = true;
    t->inst->timers_.erase(t->it);
    if (t->closing) {  // the host closed it already (stop): free now
      delete t;
      return;
    }
    t->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&t->h), [](uv_handle_t* h) { delete static_cast<hostlet_timer*>(h->data); });
  }

  // fd watches ------------------------------------------------------------
  static int to_uv(unsigned ev) {
    int e = 0;
    if (ev & HOSTLET_WATCH_READABLE) e |= UV_READABLE;
    if (ev & HOSTLET_WATCH_WRITABLE) e |= UV_WRITABLE;
    if (ev & HOSTLET_WATCH_PRIORITY) e |= UV_PRIORITIZED;
    return e;
  }
  static void on_poll(uv_poll_t* ph, int status, int events) {
    auto* w = static_cast<hostlet_watch*>(ph->data);
    unsigned ev = 0;
    if (status < 0) ev |= HOSTLET_WATCH_ERROR;
    if (events & UV_READABLE) ev |= HOSTLET_WATCH_READABLE;
    if (events & UV_WRITABLE) ev |= HOSTLET_WATCH_WRITABLE;
    if (events & UV_PRIORITIZED) ev |= HOSTLET_WATCH_PRIORITY;
    Instance* inst = w->inst;
    auto& live = inst->watches_;
    inst->run_callback("watch callback", [&] { w->cb(w->arg, w->fd, ev); });
    // libuv stops a poll handle that reported an error; a watch stays armed
    // until the plugin changes or closes it (which it may have done above).
    if (status < 0 && std::find(live.begin(), live.end(), w) != live.end() && !w->closing && w->uv_events)
      uv_poll_start(&w->h, w->uv_events, &on_poll);
  }
  static int watch_fd(hostlet_host* h, int fd, unsigned events, hostlet_watch_fn cb, void* arg, hostlet_watch** out) {
    if (!h || !cb || !out) return -EINVAL;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) return -EBADF;
    Instance* inst = I(h);
    if (!can_open(inst)) return -ESHUTDOWN;
    for (auto* w : inst->watches_)
      if (w->fd == fd && !w->closing) return -EEXIST;
    auto* w = new (std::nothrow) hostlet_watch();
    if (!w) return -ENOMEM;
    int r = uv_poll_init(inst->core_.loop, &w->h, fd);
    if (r != 0) {
      delete w;
      return r;  // libuv errors are negative errno on Linux
    }
    w->inst = inst;
    w->fd = fd;
    w->cb = cb;
    w->arg = arg;
    w->h.data = w;
    inst->watches_.push_back(w);
    w->it = std::prev(inst->watches_.end());
    w->uv_events = to_uv(events);
    if (events) uv_poll_start(&w->h, w->uv_events, &on_poll);
    *out = w;
    return 0;
  }
  static int watch_update(hostlet_watch* w, unsigned events) {
    if (!w || w->closing) return -EINVAL;
    w->uv_events = to_uv(events);
    if (events == 0) return uv_poll_stop(&w->h);
    return uv_poll_start(&w->h, w->uv_events, &on_poll);
  }
  static void watch_close(hostlet_watch* w) {
    if (!w || w->released) return;
    w->released = true;
    w->inst->watches_.erase(w->it);
    if (w->closing) {
      delete w;
      return;
    }
    w->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->h), [](uv_handle_t* h) { delete static_cast<hostlet_watch*>(h->data); });
  }

  // post ------------------------------------------------------------------
  static int post(hostlet_host* h, hostlet_post_fn cb, void* arg) {
    if (!h || !cb) return -EINVAL;
    Instance* inst = I(h);
    Core& core = inst->core_;
    {
      std::lock_guard<std::mutex> lk(core.post_mu);
      core.posted.push_back({inst, inst->generation_, cb, arg});
    }
    uv_async_send(&core.post_async);
    return 0;
  }

  // events ----------------------------------------------------------------
  static int publish_common(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n,
                            std::shared_ptr<Tracker> tracker, uint64_t* id_out) {
    Instance* inst = I(h);
    Event ev;
    ev.source = inst->name();
    ev.type = type;
    ev.attrs.reserve(n);
    for (size_t i = 0; i < n; i++) {
      if (!attrs[i].key || !attrs[i].value || !*attrs[i].key) return -EINVAL;
      ev.attrs.emplace_back(attrs[i].key, attrs[i].value);
    }
    ev.tracker = std::move(tracker);
    int r = inst->core_.bus->publish(std::move(ev), id_out);
    if (r == 0) inst->counters_.published++;
    else inst->counters_.publish_dropped++;
    return r;
  }
  static int publish(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n) {
    if (!h || !hostlet_event_type_valid(type) || (n && !attrs)) return -EINVAL;
    return publish_common(h, type, attrs, n, nullptr, nullptr);
  }
  static int publish_tracked(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n,
                             hostlet_event_done_fn done, void* arg, uint64_t* id_out) {
    if (!h || !hostlet_event_type_valid(type) || (n && !attrs) || !done) return -EINVAL;
    Instance* inst = I(h);
    uint64_t gen = inst->generation_;
    Core* core = &inst->core_;
    auto tracker = std::make_shared<Tracker>([core, inst, gen, done, arg](uint64_t id, std::vector<Tracker::Outcome>& outs) {
      // The instance may be gone by the time the last action answers.
      if (std::find(core->live.begin(), core->live.end(), inst) == core->live.end() || inst->generation_ != gen) return;
      std::vector<hostlet_outcome> cos;
      std::vector<std::vector<hostlet_attr>> cattrs(outs.size());
      cos.reserve(outs.size());
      for (size_t i = 0; i < outs.size(); i++) {
        auto& o = outs[i];
        for (auto& kv : o.result.attrs) cattrs[i].push_back({kv.first.c_str(), kv.second.c_str()});
        hostlet_outcome co{};
        co.action = o.action.c_str();
        co.rule = o.rule.c_str();
        co.result.ok = o.result.ok ? 1 : 0;
        co.result.error = o.result.ok ? nullptr : o.result.error.c_str();
        co.result.attrs = cattrs[i].data();
        co.result.n_attrs = cattrs[i].size();
        co.result.data_json = o.result.data_json.empty() ? nullptr : o.result.data_json.c_str();
        cos.push_back(co);
      }
      inst->run_callback("tracked event callback", [&] { done(arg, id, cos.data(), cos.size()); });
    });
    return publish_common(h, type, attrs, n, std::move(tracker), id_out);
  }
  static int subscribe(hostlet_host* h, const char* glob, hostlet_event_fn cb, void* arg, hostlet_sub** out) {
    if (!h || !glob || !cb || !out) return -EINVAL;
    Instance* inst = I(h);
    auto* rec = new (std::nothrow) hostlet_sub();
    if (!rec) return -ENOMEM;
    rec->inst = inst;
    rec->sub = inst->core_.bus->subscribe(
        glob,
        [inst, cb, arg](const Event& ev) {
          std::vector<hostlet_attr> a;
          a.reserve(ev.attrs.size());
          for (auto& kv : ev.attrs) a.push_back({kv.first.c_str(), kv.second.c_str()});
          hostlet_event ce{ev.id, ev.timestamp_ns, ev.source.c_str(), ev.type.c_str(), a.data(), a.size()};
          inst->run_callback("event callback", [&] { cb(arg, &ce); });
        },
        inst);
    if (!rec->sub) {
      delete rec;
      return -EINVAL;
    }
    inst->subs_.push_back(rec);
    rec->it = std::prev(inst->subs_.end());
    *out = rec;
    return 0;
  }
  static void unsubscribe(hostlet_sub* s) {
    if (!s) return;
    if (s->sub) s->inst->core_.bus->unsubscribe(s->sub);
    s->inst->subs_.erase(s->it);
    delete s;
  }

  // actions ---------------------------------------------------------------
  static int register_action(hostlet_host* h, const char* verb, hostlet_action_fn fn, void* arg) {
    if (!h || !verb || !*verb || !fn) return -EINVAL;
    Instance* inst = I(h);
    return inst->core_.actions->add_plugin(inst->name() + "." + verb, inst, fn, arg);
  }
  static const char* call_attr(hostlet_call* c, const char* key) { return ActionRegistry::call_attr(c, key); }
  static int call_reply_ok(hostlet_call* c, const hostlet_attr* a, size_t n, const char* data) {
    return ActionRegistry::reply_ok(c, a, n, data);
  }
  static int call_reply_error(hostlet_call* c, const char* msg) { return ActionRegistry::reply_error(c, msg); }

  struct Deferred {
    hostlet_result_fn cb;
    void* arg;
    ActionResult result;
    bool returned = false;  // call_action has returned
    bool have = false;      // the answer is here
    Instance* inst;
  };
  static void deliver(Deferred* d) {
    std::vector<hostlet_attr> a;
    for (auto& kv : d->result.attrs) a.push_back({kv.first.c_str(), kv.second.c_str()});
    hostlet_result r{d->result.ok ? 1 : 0, d->result.ok ? nullptr : d->result.error.c_str(), a.data(), a.size(),
                     d->result.data_json.empty() ? nullptr : d->result.data_json.c_str()};
    d->inst->run_callback("call result callback", [&] { d->cb(d->arg, &r); });
    delete d;
  }
  static int call_action(hostlet_host* h, const char* action, const hostlet_attr* attrs, size_t n,
                         hostlet_result_fn cb, void* arg) {
    if (!h || !action || !cb || (n && !attrs)) return -EINVAL;
    Instance* inst = I(h);
    Attrs av;
    for (size_t i = 0; i < n; i++) {
      if (!attrs[i].key || !attrs[i].value) return -EINVAL;
      av.emplace_back(attrs[i].key, attrs[i].value);
    }
    auto* d = new Deferred{cb, arg, {}, false, false, inst};
    int r = inst->core_.actions->call(action, std::move(av), [d](ActionResult&& res) {
      d->result = std::move(res);
      d->have = true;
      if (d->returned) deliver(d);
    });
    if (r != 0) {
      delete d;
      return r;
    }
    d->returned = true;
    if (d->have) {
      // Answered synchronously: "never before call_action returns" -> next iteration.
      Core& core = inst->core_;
      {
        std::lock_guard<std::mutex> lk(core.post_mu);
        core.posted.push_back({inst, inst->generation_, [](void* p) { deliver(static_cast<Deferred*>(p)); }, d});
      }
      uv_async_send(&core.post_async);
    }
    return 0;
  }

  static void stopped(hostlet_host* h) {
    if (!h) return;
    Instance* inst = I(h);
    if (inst->state_ != Instance::State::Stopping || inst->stop_reported_) return;
    inst->on_stopped();
  }
  static void* uv_loop(hostlet_host* h) { return h ? I(h)->core_.loop : nullptr; }
};

const hostlet_host_api* Instance::api() {
  static const hostlet_host_api table = {
      sizeof(hostlet_host_api),
      HOSTLET_ABI_MAJOR,
      HOSTLET_ABI_MINOR,
      &HostApiImpl::instance_name,
      &HostApiImpl::log,
      &HostApiImpl::logv,
      &HostApiImpl::now_ns,
      &HostApiImpl::config_string,
      &HostApiImpl::config_int,
      &HostApiImpl::config_bool,
      &HostApiImpl::config_double,
      &HostApiImpl::config_list_size,
      &HostApiImpl::config_list_string,
      &HostApiImpl::offload,
      &HostApiImpl::offload_cancel,
      &HostApiImpl::timer_start,
      &HostApiImpl::timer_stop,
      &HostApiImpl::watch_fd,
      &HostApiImpl::watch_update,
      &HostApiImpl::watch_close,
      &HostApiImpl::post,
      &HostApiImpl::publish,
      &HostApiImpl::publish_tracked,
      &HostApiImpl::subscribe,
      &HostApiImpl::unsubscribe,
      &HostApiImpl::register_action,
      &HostApiImpl::call_attr,
      &HostApiImpl::call_reply_ok,
      &HostApiImpl::call_reply_error,
      &HostApiImpl::call_action,
      &HostApiImpl::stopped,
      &HostApiImpl::uv_loop,
  };
  return &table;
}

void run_posted(Core& core) {
  std::vector<Core::Posted> batch;
  {
    std::lock_guard<std::mutex> lk(core.post_mu);
    batch.swap(core.posted);
  }
  for (auto& p : batch) {
    bool alive = std::find(core.live.begin(), core.live.end(), p.inst) != core.live.end() &&
                 p.inst->generation() == p.generation && p.inst->state() != Instance::State::Destroyed;
    if (!alive) continue;  // the instance is gone: its callbacks must not run
    p.inst->run_callback("posted callback", [&] { p.fn(p.arg); });
  }
}

}  // namespace hostlet
