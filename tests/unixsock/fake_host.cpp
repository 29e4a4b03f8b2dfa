#include "fake_host.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <future>

// The opaque handles of plugin.h, as this fake host defines them.
struct hostlet_call {
  unixsock_test::Attrs in;
  bool answered = false;
  bool ok = false;
  unixsock_test::Attrs out;
  std::string error;
};

namespace unixsock_test {
namespace {

FakeHost* F(hostlet_host* h) { return reinterpret_cast<FakeHost*>(h); }
hostlet_host* H(FakeHost* f) { return reinterpret_cast<hostlet_host*>(f); }

const hostlet_config_key* schema(FakeHost* f, const char* key) {
  for (const hostlet_config_key* k = f->plugin_->config; k && k->key; k++)
    if (std::strcmp(k->key, key) == 0) return k;
  return nullptr;
}

// The units the agent's config parser accepts (plugin.h): plain numbers are ms / bytes.
int64_t parse_scaled(const std::string& s, hostlet_config_type type) {
  size_t pos = 0;
  int64_t v = std::stoll(s, &pos);
  std::string unit = s.substr(pos);
  if (type == HOSTLET_CONFIG_DURATION) {
    if (unit.empty() || unit == "ms") return v;
    if (unit == "s") return v * 1000;
    if (unit == "m") return v * 60000;
    if (unit == "h") return v * 3600000;
  } else if (type == HOSTLET_CONFIG_SIZE) {
    if (unit.empty() || unit == "B") return v;
    if (unit == "KiB") return v << 10;
    if (unit == "MiB") return v << 20;
    if (unit == "GiB") return v << 30;
  } else if (unit.empty()) {
    return v;
  }
  throw std::invalid_argument("bad value " + s);
}

const char* instance_name(hostlet_host*) { return "notify"; }

void logv(hostlet_host* h, hostlet_log_level level, const char* fmt, va_list ap) {
  char buf[4096];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  std::string line = std::string(names[level]) + " [notify] " + buf;
  if (std::getenv("UNIXSOCK_TEST_VERBOSE")) std::fprintf(stderr, "%s\n", line.c_str());
  std::lock_guard<std::mutex> lk(F(h)->mu_);
  F(h)->logs_.push_back(line);
}

void log(hostlet_host* h, hostlet_log_level level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(h, level, fmt, ap);
  va_end(ap);
}

uint64_t now_ns(hostlet_host*) { return uv_hrtime(); }

int config_string(hostlet_host* h, const char* key, const char** out) {
  const hostlet_config_key* k = schema(F(h), key);
  if (!k || k->type != HOSTLET_CONFIG_STRING) return -EINVAL;
  auto it = F(h)->config_.find(key);
  if (it != F(h)->config_.end()) *out = it->second.c_str();
  else if (k->default_value) *out = k->default_value;
  else return -ENOENT;
  return 0;
}

int config_int(hostlet_host* h, const char* key, int64_t* out) {
  const hostlet_config_key* k = schema(F(h), key);
  if (!k || (k->type != HOSTLET_CONFIG_INT && k->type != HOSTLET_CONFIG_DURATION && k->type != HOSTLET_CONFIG_SIZE))
    return -EINVAL;
  auto it = F(h)->config_.find(key);
  std::string text;
  if (it != F(h)->config_.end()) text = it->second;
  else if (k->default_value) text = k->default_value;
  else return -ENOENT;
  *out = parse_scaled(text, k->type);
  return 0;
}

int config_bool(hostlet_host*, const char*, int*) { return -EINVAL; }
int config_double(hostlet_host*, const char*, double*) { return -EINVAL; }

int config_list_size(hostlet_host* h, const char* key, size_t* out) {
  const hostlet_config_key* k = schema(F(h), key);
  if (!k || (k->type != HOSTLET_CONFIG_INT_LIST && k->type != HOSTLET_CONFIG_STRING_LIST)) return -EINVAL;
  auto it = F(h)->lists_.find(key);
  *out = it == F(h)->lists_.end() ? 0 : it->second.size();
  return 0;
}

int config_list_string(hostlet_host* h, const char* key, size_t i, const char** out) {
  auto it = F(h)->lists_.find(key);
  if (it == F(h)->lists_.end() || i >= it->second.size()) return -ERANGE;
  *out = it->second[i].c_str();
  return 0;
}

int offload(hostlet_host*, const hostlet_offload_opts*, hostlet_work_fn, hostlet_done_fn, void*, hostlet_work**) {
  return -ENOTSUP;
}
int offload_cancel(hostlet_work*) { return -EBUSY; }
int timer_start(hostlet_host*, uint64_t, uint64_t, hostlet_timer_fn, void*, hostlet_timer**) { return -ENOTSUP; }
void timer_stop(hostlet_timer*) {}
int watch_fd(hostlet_host*, int, unsigned, hostlet_watch_fn, void*, hostlet_watch**) { return -ENOTSUP; }
int watch_update(hostlet_watch*, unsigned) { return -EINVAL; }
void watch_close(hostlet_watch*) {}
int post(hostlet_host*, hostlet_post_fn, void*) { return -ENOTSUP; }
int subscribe(hostlet_host*, const char*, hostlet_event_fn, void*, hostlet_sub**) { return -ENOTSUP; }
void unsubscribe(hostlet_sub*) {}

Published record(FakeHost* f, const char* type, const hostlet_attr* attrs, size_t n, bool tracked) {
  Published p;
  p.id = f->next_id_++;
  p.type = type;
  for (size_t i = 0; i < n; i++) p.attrs.emplace_back(attrs[i].key, attrs[i].value);
  p.tracked = tracked;
  return p;
}

bool queue_full(FakeHost* f) {
  size_t limit = f->queue_limit_;
  return limit && f->held_.size() >= limit;
}

int publish(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n) {
  FakeHost* f = F(h);
  std::lock_guard<std::mutex> lk(f->mu_);
  if (queue_full(f)) return -EAGAIN;
  f->events_.push_back(record(f, type, attrs, n, false));
  return 0;
}

// ABI 1.1 entries the plugin reaches: set_error is logged as an error line
// (tests look for the message there), publish_id is publish, health is ignored.
void set_error(hostlet_host* h, const char* fmt, ...) HOSTLET_PRINTF(2, 3);
void set_error(hostlet_host* h, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(h, HOSTLET_LOG_ERROR, fmt, ap);
  va_end(ap);
}
int publish_id(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n, uint64_t* id_out) {
  FakeHost* f = F(h);
  std::lock_guard<std::mutex> lk(f->mu_);
  if (queue_full(f)) return -EAGAIN;
  Published p = record(f, type, attrs, n, false);
  f->events_.push_back(p);
  if (id_out) *id_out = p.id;
  return 0;
}
int set_health(hostlet_host*, hostlet_health, const char*) { return 0; }

int publish_tracked(hostlet_host* h, const char* type, const hostlet_attr* attrs, size_t n, hostlet_event_done_fn done,
                    void* arg, uint64_t* id_out) {
  FakeHost* f = F(h);
  std::lock_guard<std::mutex> lk(f->mu_);
  if (queue_full(f)) return -EAGAIN;
  Published p = record(f, type, attrs, n, true);
  f->events_.push_back(p);
  if (id_out) *id_out = p.id;
  if (f->hold_) {
    f->held_.push_back({p, done, arg});
  } else {
    f->ready_.push_back({p, done, arg});
    f->schedule_completion();
  }
  return 0;
}

int register_action(hostlet_host* h, const char* verb, hostlet_action_fn fn, void* arg) {
  F(h)->actions_[verb] = {fn, arg};
  return 0;
}
const char* call_attr(hostlet_call* c, const char* key) {
  for (auto& kv : c->in)
    if (kv.first == key) return kv.second.c_str();
  return nullptr;
}
int call_reply_ok(hostlet_call* c, const hostlet_attr* attrs, size_t n, const char*) {
  c->answered = c->ok = true;
  for (size_t i = 0; i < n; i++) c->out.emplace_back(attrs[i].key, attrs[i].value);
  return 0;
}
int call_reply_error(hostlet_call* c, const char* message) {
  c->answered = true;
  c->error = message;
  return 0;
}
int call_action(hostlet_host*, const char*, const hostlet_attr*, size_t, hostlet_result_fn, void*) { return -ENOENT; }
void stopped(hostlet_host* h) { F(h)->stopped_ = true; }
void* uv_loop(hostlet_host* h) { return &F(h)->loop_; }

const hostlet_host_api kApi = {
    sizeof(hostlet_host_api), HOSTLET_ABI_MAJOR, HOSTLET_ABI_MINOR, instance_name, log, logv, now_ns, config_string,
    config_int, config_bool, config_double, config_list_size, config_list_string, offload, offload_cancel,
    timer_start, timer_stop, watch_fd, watch_update, watch_close, post, publish, publish_tracked, subscribe,
    unsubscribe, register_action, call_attr, call_reply_ok, call_reply_error, call_action, stopped, uv_loop,
    // since 1.1 (the metrics entries stay null: nothing scrapes a fake host;
    // no fd store: a plugin binds its own sockets; no config maps: unixsock has none)
    set_error, publish_id, set_health, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    nullptr, nullptr,
};

}  // namespace

FakeHost::FakeHost(std::map<std::string, std::string> config, std::map<std::string, std::vector<std::string>> lists)
    : config_(std::move(config)), lists_(std::move(lists)) {
  // As the agent does: libuv writes to sockets with write(2), and a client
  // that went away must cost an EPIPE, not the process.
  signal(SIGPIPE, SIG_IGN);
  REQUIRE(uv_loop_init(&loop_) == 0);
  uv_async_init(&loop_, &async_, &FakeHost::async_cb);
  async_.data = this;
  uv_timer_init(&loop_, &complete_timer_);
  complete_timer_.data = this;
  thread_ = std::thread([this] {
    uv_run(&loop_, UV_RUN_DEFAULT);
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
    cv_.notify_all();
  });
}

FakeHost::~FakeHost() {
  if (thread_.joinable()) shutdown();
}

void FakeHost::async_cb(uv_async_t* a) { static_cast<FakeHost*>(a->data)->run_commands(); }

void FakeHost::run_commands() {
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (commands_.empty()) return;
      fn = std::move(commands_.front());
      commands_.pop_front();
    }
    fn();
  }
}

void FakeHost::on_loop(const std::function<void()>& fn) {
  std::promise<void> done;
  {
    std::lock_guard<std::mutex> lk(mu_);
    commands_.push_back([&] {
      fn();
      done.set_value();
    });
  }
  uv_async_send(&async_);
  done.get_future().wait();
}

int FakeHost::start() {
  so_ = dlopen(UNIXSOCK_SO, RTLD_NOW | RTLD_LOCAL);
  INFO(dlerror());
  REQUIRE(so_);
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(so_, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  REQUIRE(entry);
  plugin_ = entry();
  REQUIRE(plugin_->abi_major == HOSTLET_ABI_MAJOR);
  int r = 0;
  on_loop([&] {
    r = plugin_->init(H(this), &kApi, &state_);
    if (r != 0) {
      state_ = nullptr;
      return;
    }
    started_ = true;
    r = plugin_->start(state_);
  });
  return r;
}

void FakeHost::begin_stop() {
  stop_called_ = true;
  on_loop([&] { plugin_->stop(state_); });
}

bool FakeHost::shutdown(std::chrono::milliseconds timeout) {
  if (!thread_.joinable()) return shutdown_ok_;  // already done
  bool ok = true;
  if (started_ && !destroyed_) {
    if (!stop_called_) begin_stop();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!stopped_ && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ok = stopped_;
    if (ok) {
      // The ABI promises every tracked event its done callback: a real host
      // completes them even after stop. Then the instance is destroyed.
      complete_held();
      on_loop([&] { plugin_->destroy(state_); });
      destroyed_ = true;
    }
  }
  on_loop([&] {
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&complete_timer_), nullptr);
  });
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return quit_; })) {
      thread_.detach();  // a handle was left open: the loop never ends
      return false;
    }
  }
  thread_.join();
  ok = uv_loop_close(&loop_) == 0 && ok;
  if (so_) dlclose(so_);
  so_ = nullptr;
  shutdown_ok_ = ok;
  return ok;
}

void FakeHost::schedule_completion() { uv_timer_start(&complete_timer_, [](uv_timer_t* t) {
    auto* f = static_cast<FakeHost*>(t->data);
    std::deque<Held> batch;
    {
      std::lock_guard<std::mutex> lk(f->mu_);
      batch.swap(f->ready_);
    }
    for (Held& h : batch) f->complete(h);
  }, 0, 0);
}

void FakeHost::complete(Held& h) {
  std::vector<Outcome> outs;
  if (outcomes_) outs = outcomes_(h.ev);
  std::vector<std::vector<hostlet_attr>> attrs(outs.size());
  std::vector<hostlet_outcome> c(outs.size());
  for (size_t i = 0; i < outs.size(); i++) {
    for (auto& kv : outs[i].attrs) attrs[i].push_back({kv.first.c_str(), kv.second.c_str()});
    c[i].action = outs[i].action.c_str();
    c[i].rule = outs[i].rule.c_str();
    c[i].result.ok = outs[i].ok;
    c[i].result.error = outs[i].ok ? nullptr : outs[i].error.c_str();
    c[i].result.attrs = attrs[i].data();
    c[i].result.n_attrs = attrs[i].size();
    c[i].result.data_json = outs[i].data_json.empty() ? nullptr : outs[i].data_json.c_str();
  }
  h.done(h.arg, h.ev.id, c.data(), c.size());
}

void FakeHost::set_outcomes(std::function<std::vector<Outcome>(const Published&)> fn) {
  on_loop([&] { outcomes_ = std::move(fn); });
}

size_t FakeHost::held() {
  std::lock_guard<std::mutex> lk(mu_);
  return held_.size();
}

void FakeHost::complete_held() {
  on_loop([&] {
    std::deque<Held> batch;
    {
      std::lock_guard<std::mutex> lk(mu_);
      batch.swap(held_);
    }
    for (Held& h : batch) complete(h);
  });
}

std::vector<Published> FakeHost::events() {
  std::lock_guard<std::mutex> lk(mu_);
  return events_;
}

bool FakeHost::wait_published(size_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (published() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return published() >= n;
}

Attrs FakeHost::call(const std::string& verb) {
  hostlet_call c;
  on_loop([&] {
    auto it = actions_.find(verb);
    REQUIRE(it != actions_.end());
    int r = it->second.fn(it->second.arg, &c, nullptr, 0);
    REQUIRE(r == 0);
  });
  REQUIRE(c.answered);
  REQUIRE(c.ok);
  return c.out;
}

std::string FakeHost::stat(const std::string& key) {
  for (auto& kv : call("stats"))
    if (kv.first == key) return kv.second;
  FAIL("no stat " << key);
  return {};
}

std::vector<std::string> FakeHost::logs() {
  std::lock_guard<std::mutex> lk(mu_);
  return logs_;
}

bool FakeHost::logged(const std::string& needle) {
  for (auto& l : logs())
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

// ---------------------------------------------------------------------------

Client::Client(const std::string& path) { REQUIRE(connect(path)); }

Client::~Client() { close(); }

bool Client::connect(const std::string& path) {
  close();
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close();
    return false;
  }
  return true;
}

bool Client::send(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<std::string> Client::recv_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool Client::silent(std::chrono::milliseconds quiet) {
  if (buf_.find('\n') != std::string::npos) return false;
  pollfd p{fd_, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(quiet.count())) == 0;
}

bool Client::wait_closed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) eof_ = true;
  }
  return true;
}

void Client::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
  eof_ = false;
}

Dir::Dir() {
  char tmpl[] = "/tmp/unixsock-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  path_ = tmpl;
  chmod(path_.c_str(), 0755);
}

Dir::~Dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace unixsock_test
