/*
 * hostlet C++17 plugin wrapper: header-only, over plugin.h.
 *
 * It adds RAII handles, lambdas for offload, timers, watches, subscriptions
 * and actions, and catches every C++ exception at the ABI boundary (the C
 * side never sees one): a throwing callback is logged with the instance name,
 * a throwing action handler answers its call with the exception's message,
 * and a throwing constructor fails init.
 *
 * Example (a whole file):  tests/sdk/comment_examples.py compiles each
 * "Example (...)" block of the public headers under -Werror.
 *
 *   #include <hostlet/plugin.hpp>
 *
 *   #include <memory>
 *   #include <string>
 *
 *   class Hello final : public hostlet::Plugin {
 *    public:
 *     explicit Hello(hostlet::Host& h) : Plugin(h) {
 *       h.action("greet", [this](hostlet::Call& call) {
 *         std::string who = call.attr_or("name", "world");
 *         auto reply = std::make_shared<hostlet::Call>(std::move(call));
 *         int r = host().offload([who] { return "hello " + who; },
 *             [reply](int status, std::string text, const hostlet::Error& e) {
 *               if (status) return reply->error(e.what());  // the work's exception message, or the status
 *               reply->ok({{"text", text}});
 *             });
 *         if (r != 0) reply->error(hostlet_strerror(r));  // not queued (-EAGAIN: the lane is full)
 *       });
 *     }
 *   };
 *   const hostlet_config_key kConfig[] = {{nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
 *   HOSTLET_CPP_PLUGIN(Hello, "hello", "1.0", "says hello", kConfig, nullptr, nullptr)
 *
 * Threads: as in plugin.h. Everything here runs on the loop thread except the
 * work lambda given to offload() and Host::post() / Host::log(), which are
 * thread-safe.
 */
#ifndef HOSTLET_PLUGIN_HPP
#define HOSTLET_PLUGIN_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "hostlet/plugin.hpp needs C++17 or later (-std=c++17); C plugins include hostlet/plugin.h"
#endif

#include <hostlet/plugin.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace hostlet {

/** Attributes as the C++ side builds them. */
using Attrs = std::vector<std::pair<std::string, std::string>>;

/** Throw from a constructor or handler to fail with a specific errno and message. */
class Error : public std::runtime_error {
 public:
  /** `err` is a negative errno (a positive one is negated). */
  Error(int err, const std::string& what) : std::runtime_error(what), err_(err < 0 ? err : -err) {}
  int code() const noexcept { return err_; }

 private:
  int err_;
};

/**
 * What an exception caught from plugin code becomes: a hostlet::Error as it
 * is, another std::exception as Error(-EIO, its message).
 */
inline Error error_of(const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    return Error(-EIO, e.what());
  } catch (...) {
    return Error(-EIO, "non-standard exception");
  }
}

namespace detail {
inline std::vector<hostlet_attr> c_attrs(const Attrs& attrs) {
  std::vector<hostlet_attr> v;
  v.reserve(attrs.size());
  for (const auto& kv : attrs) v.push_back({kv.first.c_str(), kv.second.c_str()});
  return v;
}

/**
 * Something suspended that the Host must settle at the instance's stop or
 * destroy: a coroutine awaiting (hostlet/task.hpp's awaiters are one each,
 * linked while suspended). Intrusive, so that an await allocates nothing.
 * on_stop (may be null) runs when the instance stops, on_destroy just before
 * the plugin object is destroyed; the node is unlinked before either runs.
 */
struct Pending {
  Pending* prev = nullptr;
  Pending* next = nullptr;
  bool linked = false;
  void (*on_stop)(Pending*) = nullptr;
  void (*on_destroy)(Pending*) = nullptr;
};

// The C++20 awaiters of Host::offload(work), Host::call(action, attrs) and
// Host::sleep(duration), defined in hostlet/task.hpp.
template <class W> class OffloadAwaiter;
template <class Dummy> class CallAwaiter;
template <class Dummy> class SleepAwaiter;
}  // namespace detail

/** An event as seen by a subscriber; views are valid only during the callback. */
class Event {
 public:
  explicit Event(const hostlet_event* e) : e_(e) {}
  uint64_t id() const { return e_->id; }
  uint64_t timestamp_ns() const { return e_->timestamp_ns; }
  std::string_view source() const { return e_->source; }
  std::string_view type() const { return e_->type; }
  size_t size() const { return e_->n_attrs; }
  const hostlet_attr& operator[](size_t i) const { return e_->attrs[i]; }
  /** The attribute's value, or nullopt. */
  std::optional<std::string_view> attr(std::string_view key) const {
    for (size_t i = 0; i < e_->n_attrs; i++)
      if (key == e_->attrs[i].key) return std::string_view(e_->attrs[i].value);
    return std::nullopt;
  }
  Attrs attrs() const {
    Attrs a;
    for (size_t i = 0; i < e_->n_attrs; i++) a.emplace_back(e_->attrs[i].key, e_->attrs[i].value);
    return a;
  }
  const hostlet_event* c() const { return e_; }

 private:
  const hostlet_event* e_;
};

/** An action's answer, as seen by Host::call(). */
struct Result {
  bool ok = false;
  std::string error;
  Attrs attrs;
  std::string data_json;  // empty when the action returned no data
};

/**
 * A call to one of this plugin's actions. Move-only; answered exactly once:
 * by ok() or error(), or, if it is destroyed unanswered, by an error saying so.
 */
class Call {
 public:
  Call(const hostlet_host_api* api, hostlet_call* call) : api_(api), call_(call) {}
  Call(Call&& o) noexcept : api_(o.api_), call_(std::exchange(o.call_, nullptr)) {}
  Call& operator=(Call&& o) noexcept {
    if (this != &o) {
      drop();
      api_ = o.api_;
      call_ = std::exchange(o.call_, nullptr);
    }
    return *this;
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  ~Call() { drop(); }

  /** The attribute's value or NULL. Valid until the call is answered. */
  const char* attr(const char* key) const { return call_ ? api_->call_attr(call_, key) : nullptr; }
  std::string attr_or(const char* key, std::string fallback) const {
    const char* v = attr(key);
    return v ? std::string(v) : std::move(fallback);
  }
  /** The attribute's value; throws Error(-EINVAL, "missing attribute 'key'") when absent. */
  std::string require(const char* key) const {
    const char* v = attr(key);
    if (!v) throw Error(-EINVAL, std::string("missing attribute '") + key + "'");
    return v;
  }
  bool answered() const { return call_ == nullptr; }

  /** Answers ok. data_json, when not empty, must be a JSON text. */
  void ok(const Attrs& attrs = {}, const std::string& data_json = {}) {
    if (!call_) return;
    auto a = detail::c_attrs(attrs);
    api_->call_reply_ok(std::exchange(call_, nullptr), a.data(), a.size(),
                        data_json.empty() ? nullptr : data_json.c_str());
  }
  void error(const std::string& message) {
    if (!call_) return;
    api_->call_reply_error(std::exchange(call_, nullptr), message.c_str());
  }

 private:
  void drop() {
    if (call_) api_->call_reply_error(std::exchange(call_, nullptr), "the plugin dropped the call without an answer");
  }
  const hostlet_host_api* api_;
  hostlet_call* call_;
};

class Host;

/** A running timer; stopping is automatic on destruction. */
class Timer {
 public:
  Timer() = default;
  Timer(Timer&&) noexcept = default;
  Timer& operator=(Timer&& o) noexcept {
    stop();
    s_ = std::move(o.s_);
    return *this;
  }
  ~Timer() { stop(); }
  void stop() {
    if (s_ && s_->t) s_->api->timer_stop(std::exchange(s_->t, nullptr));
    s_.reset();
  }
  explicit operator bool() const { return s_ && s_->t; }

 private:
  friend class Host;
  struct State {
    const hostlet_host_api* api;
    hostlet_host* host;
    hostlet_timer* t = nullptr;
    std::function<void()> fn;
  };
  std::unique_ptr<State> s_;
};

/** A file-descriptor watch; closed on destruction (the fd itself stays the caller's). */
class Watch {
 public:
  Watch() = default;
  Watch(Watch&&) noexcept = default;
  Watch& operator=(Watch&& o) noexcept {
    close();
    s_ = std::move(o.s_);
    return *this;
  }
  ~Watch() { close(); }
  int update(unsigned events) { return s_ && s_->w ? s_->api->watch_update(s_->w, events) : -EINVAL; }
  void close() {
    if (s_ && s_->w) s_->api->watch_close(std::exchange(s_->w, nullptr));
    s_.reset();
  }
  explicit operator bool() const { return s_ && s_->w; }

 private:
  friend class Host;
  struct State {
    const hostlet_host_api* api;
    hostlet_host* host;
    hostlet_watch* w = nullptr;
    std::function<void(int fd, unsigned events)> fn;
  };
  std::unique_ptr<State> s_;
};

/** An event subscription; removed on destruction. */
class Subscription {
 public:
  Subscription() = default;
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&& o) noexcept {
    reset();
    s_ = std::move(o.s_);
    return *this;
  }
  ~Subscription() { reset(); }
  void reset() {
    if (s_ && s_->sub) s_->api->unsubscribe(std::exchange(s_->sub, nullptr));
    s_.reset();
  }

 private:
  friend class Host;
  struct State {
    const hostlet_host_api* api;
    hostlet_host* host;
    hostlet_sub* sub = nullptr;
    std::function<void(const Event&)> fn;
  };
  std::unique_ptr<State> s_;
};

/**
 * The metrics writer handed to Plugin::collect (ABI 1.1; see metric_family
 * in plugin.h for the naming rules the host enforces). Cheap: labels are
 * passed as C pairs, nothing is allocated per sample.
 *
 * Example (members of a Plugin):
 *
 *   void collect(hostlet::Metrics& m) override {
 *     m.gauge("myplugin_items", "Items held now.");
 *     m.sample(static_cast<double>(items_.size()));
 *     m.counter("myplugin_reads_total", "Reads done.");
 *     m.sample(static_cast<double>(reads_), {{"device", dev_.c_str()}});
 *   }
 *   std::vector<int> items_;
 *   uint64_t reads_ = 0;
 *   std::string dev_ = "sda";
 */
class Metrics {
 public:
  Metrics(hostlet_metrics* m, const hostlet_host_api* api) : m_(m), api_(api) {}
  using Labels = std::initializer_list<hostlet_attr>;

  /** Opens a family; returns 0 or the host's negative errno (the family's samples are then refused too). */
  int family(const char* name, hostlet_metric_type type, const char* help, const char* unit = nullptr) {
    return api_->metric_family(m_, name, type, help, unit);
  }
  int counter(const char* name, const char* help, const char* unit = nullptr) {
    return family(name, HOSTLET_METRIC_COUNTER, help, unit);
  }
  int gauge(const char* name, const char* help, const char* unit = nullptr) {
    return family(name, HOSTLET_METRIC_GAUGE, help, unit);
  }
  int sample(double value, Labels labels = {}) {
    return api_->metric_sample(m_, labels.begin(), labels.size(), value);
  }
  /** Labels built at run time (e.g. a vector of hostlet_attr). */
  int sample(double value, const hostlet_attr* labels, size_t n) { return api_->metric_sample(m_, labels, n, value); }
  hostlet_metrics* c() const { return m_; }
  const hostlet_host_api* api() const { return api_; }

 private:
  hostlet_metrics* m_;
  const hostlet_host_api* api_;
};

/** The plugin's view of its instance: every host service, C++-style. */
class Host {
 public:
  Host(hostlet_host* host, const hostlet_host_api* api) : host_(host), api_(api) {}
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  hostlet_host* c() const { return host_; }
  const hostlet_host_api* api() const { return api_; }
  const char* name() const { return api_->instance_name(host_); }
  uint64_t now_ns() const { return api_->now_ns(host_); }

  /* Logging, printf-style. Thread-safe. */
  template <class... A> void error(const char* fmt, A... a) const { log(HOSTLET_LOG_ERROR, fmt, a...); }
  template <class... A> void warn(const char* fmt, A... a) const { log(HOSTLET_LOG_WARN, fmt, a...); }
  template <class... A> void info(const char* fmt, A... a) const { log(HOSTLET_LOG_INFO, fmt, a...); }
  template <class... A> void debug(const char* fmt, A... a) const { log(HOSTLET_LOG_DEBUG, fmt, a...); }
  template <class... A> void log(hostlet_log_level lvl, const char* fmt, A... a) const {
    if constexpr (sizeof...(A) == 0) api_->log(host_, lvl, "%s", fmt);
    else api_->log(host_, lvl, fmt, a...);
  }

  /* Config, after defaults. A key without value and without default throws Error(-ENOENT). */
  std::string str(const char* key) const {
    const char* v = nullptr;
    check(api_->config_string(host_, key, &v), key);
    return v;
  }
  std::optional<std::string> opt_str(const char* key) const {
    const char* v = nullptr;
    int r = api_->config_string(host_, key, &v);
    if (r == -ENOENT) return std::nullopt;
    check(r, key);
    return std::string(v);
  }
  int64_t integer(const char* key) const {  // INT, DURATION (ms), SIZE (bytes)
    int64_t v = 0;
    check(api_->config_int(host_, key, &v), key);
    return v;
  }
  bool boolean(const char* key) const {
    int v = 0;
    check(api_->config_bool(host_, key, &v), key);
    return v != 0;
  }
  double number(const char* key) const {
    double v = 0;
    check(api_->config_double(host_, key, &v), key);
    return v;
  }
  std::vector<std::string> list(const char* key) const {
    size_t n = 0;
    check(api_->config_list_size(host_, key, &n), key);
    std::vector<std::string> out;
    for (size_t i = 0; i < n; i++) {
      const char* v = nullptr;
      check(api_->config_list_string(host_, key, i, &v), key);
      out.emplace_back(v);
    }
    return out;
  }

  /**
   * The names of a MAP key's mapping, in document order (ABI 1.1; see
   * HOSTLET_CONFIG_MAP in plugin.h): names("commands"), then e.g.
   * list("commands." + name + ".argv"). Empty when the key is absent.
   */
  std::vector<std::string> names(const char* key) const {
    if (api_->struct_size < offsetof(hostlet_host_api, config_map_key) + sizeof(api_->config_map_key))
      throw Error(-ENOSYS, std::string(key) + ": this agent has no config maps (it predates them)");
    size_t n = 0;
    check(api_->config_map_size(host_, key, &n), key);
    std::vector<std::string> out;
    for (size_t i = 0; i < n; i++) {
      const char* v = nullptr;
      check(api_->config_map_key(host_, key, i, &v), key);
      out.emplace_back(v);
    }
    return out;
  }

  /**
   * Offloads `work` to a pool thread; `done` runs on the loop exactly once with
   * the status and, when work returns a value, that value (default-constructed
   * unless status is 0). The status is the lane's (0, -ECANCELED, -ETIMEDOUT,
   * -ESHUTDOWN; see hostlet_done_fn) or the work's own: when work throws, the
   * status is the code of a thrown hostlet::Error, else -EIO. `done` may take
   * a last `const hostlet::Error&` parameter: its what() is then the work's
   * exception message (or the status as text), so a done can pass on exactly
   * what went wrong, e.g. `[call](int st, std::string v, const hostlet::Error& e)
   * mutable { if (st) return call.error(e.what()); ... }`. Without that
   * parameter the message is logged.
   * As with the C entry (hostlet_host_api.offload), when the work cannot be
   * queued offload returns the error (-EAGAIN: the lane is full; -ESHUTDOWN;
   * -ENOMEM; -EINVAL) and `done` never runs: both lambdas are destroyed. A
   * Call moved into `done` then answers "dropped"; to answer with the reason,
   * hold it in a shared_ptr and answer it on that path too (sdk/examples/hello).
   * With a deadline (`timeout_ms`), captured state is kept alive until the
   * late work ends, then freed.
   */
  template <class W, class D>
  int offload(W&& work, D&& done, uint64_t timeout_ms = 0, hostlet_work** out = nullptr) {
    using R = std::invoke_result_t<W&>;
    using Item = OffloadItem<std::decay_t<W>, std::decay_t<D>, R>;
    auto* item = new (std::nothrow) Item(std::forward<W>(work), std::forward<D>(done), this);
    if (!item) return -ENOMEM;
    hostlet_offload_opts opts{sizeof(hostlet_offload_opts), timeout_ms, &Item::late};
    int r = api_->offload(host_, &opts, &Item::run, &Item::finish, item, out);
    if (r != 0) delete item;  // not queued: done does not run
    return r;
  }
  int cancel(hostlet_work* work) { return api_->offload_cancel(work); }

  /**
   * Timer: fires after timeout_ms, then every repeat_ms (0 = once). Throws
   * Error on failure. Keep the result: the timer stops when it is destroyed.
   */
  [[nodiscard]] Timer timer(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> fn) {
    Timer t;
    t.s_.reset(new Timer::State{api_, host_, nullptr, std::move(fn)});
    check(api_->timer_start(host_, timeout_ms, repeat_ms, &Host::timer_cb, t.s_.get(), &t.s_->t), "timer");
    return t;
  }

  /** Watches fd for HOSTLET_WATCH_* events. Throws Error on failure. */
  [[nodiscard]] Watch watch(int fd, unsigned events, std::function<void(int fd, unsigned events)> fn) {
    Watch w;
    w.s_.reset(new Watch::State{api_, host_, nullptr, std::move(fn)});
    check(api_->watch_fd(host_, fd, events, &Host::watch_cb, w.s_.get(), &w.s_->w), "watch");
    return w;
  }

  /**
   * Publishes an event and calls `done` once every action that rules started
   * for it has answered (with their outcomes; empty when no rule matched).
   * Returns 0 (done will run) or -EAGAIN / -EINVAL (done will not run).
   */
  int publish_tracked(const char* type, const Attrs& attrs,
                      std::function<void(uint64_t id, const hostlet_outcome* outcomes, size_t n)> done,
                      uint64_t* id_out = nullptr) {
    auto a = detail::c_attrs(attrs);
    using Fn = std::function<void(uint64_t, const hostlet_outcome*, size_t)>;
    auto* box = new (std::nothrow) Boxed<Fn>{this, std::move(done)};
    if (!box) return -ENOMEM;
    int r = api_->publish_tracked(host_, type, a.data(), a.size(), &Host::tracked_cb, box, id_out);
    if (r != 0) delete box;
    return r;
  }

  /** The agent's uv_loop_t* (see plugin.h), or nullptr. */
  void* uv_loop() const { return api_->uv_loop(host_); }

  /** Subscribes to events whose type matches type_glob. Throws Error on failure. */
  [[nodiscard]] Subscription subscribe(const char* type_glob, std::function<void(const Event&)> fn) {
    Subscription s;
    s.s_.reset(new Subscription::State{api_, host_, nullptr, std::move(fn)});
    check(api_->subscribe(host_, type_glob, &Host::event_cb, s.s_.get(), &s.s_->sub), type_glob);
    return s;
  }

  /** Publishes an event from this instance. Returns 0, -EAGAIN (queue full) or -EINVAL. */
  int publish(const char* type, const Attrs& attrs = {}) {
    auto a = detail::c_attrs(attrs);
    return api_->publish(host_, type, a.data(), a.size());
  }
  /** publish() that gives the event's id in *id_out (ABI 1.1). */
  int publish(const char* type, const Attrs& attrs, uint64_t* id_out) {
    auto a = detail::c_attrs(attrs);
    return api_->publish_id(host_, type, a.data(), a.size(), id_out);
  }

  /**
   * Reports the instance's health (ABI 1.1): ok, degraded or failed, with a
   * short reason. Shown by `hostlet-ctl status`, the hostlet_instance_health
   * metric and the agent's /health; a change publishes "instance.health".
   */
  int set_health(hostlet_health health, const std::string& reason = {}) {
    return api_->set_health(host_, health, reason.c_str());
  }
  /** Ends the collection a Plugin::refresh() returning true started (ABI 1.1). */
  void metrics_refreshed() { api_->metrics_refreshed(host_); }

  /**
   * Registers "<instance>.<verb>". The handler answers the Call now, or moves
   * it away (into an offload's done lambda) to answer it later. An exception
   * thrown by the handler answers the call with its message; a call neither
   * answered nor moved is answered with an error when the handler returns.
   */
  void action(const char* verb, std::function<void(Call&)> fn) {
    actions_.push_back(std::make_unique<ActionState>(ActionState{this, std::move(fn)}));
    check(api_->register_action(host_, verb, &Host::action_cb, actions_.back().get()), verb);
  }
  /**
   * A handler taking the Call by value owns it: the way for a coroutine
   * handler (hostlet/task.hpp), whose frame then holds the call until it is
   * answered: `host.action("v", [this](hostlet::Call call) -> hostlet::Task {...})`.
   */
  template <class F, std::enable_if_t<!std::is_invocable_v<F&, Call&> && std::is_invocable_v<F&, Call&&>, int> = 0>
  void action(const char* verb, F fn) {
    action(verb, std::function<void(Call&)>([fn = std::move(fn)](Call& call) mutable { fn(std::move(call)); }));
  }

  /* Coroutines (C++20, #include <hostlet/task.hpp>; see there). Loop thread. */

  /** `co_await host.offload(work)`: work's value, or throws Error (see task.hpp). */
  template <class W> detail::OffloadAwaiter<std::decay_t<W>> offload(W&& work) {
    return detail::OffloadAwaiter<std::decay_t<W>>(*this, std::forward<W>(work));
  }
  /** `co_await host.call("inst.verb", {{"k", "v"}})`: the action's Result. */
  template <class Dummy = void> detail::CallAwaiter<Dummy> call(const char* action, const Attrs& attrs = {}) {
    return detail::CallAwaiter<Dummy>(*this, action, attrs);
  }
  /** `co_await host.sleep(250ms)`: a one-shot host timer; throws Error(-ESHUTDOWN) at the instance's stop. */
  template <class Rep, class Period, class Dummy = void>
  detail::SleepAwaiter<Dummy> sleep(std::chrono::duration<Rep, Period> d) {
    return detail::SleepAwaiter<Dummy>(*this, std::chrono::duration_cast<std::chrono::milliseconds>(d));
  }

  /**
   * For task.hpp's awaiters: links `p` while it is suspended, so that the
   * instance's stop (`for_stop`: on_stop runs then) or destroy settles it.
   */
  void hold(detail::Pending* p, bool for_stop) {
    detail::Pending*& head = for_stop ? stop_list_ : destroy_list_;
    p->prev = nullptr;
    p->next = head;
    if (head) head->prev = p;
    head = p;
    p->linked = true;
  }
  void release(detail::Pending* p) {
    if (!p->linked) return;
    if (p->prev) p->prev->next = p->next;
    else if (stop_list_ == p) stop_list_ = p->next;
    else destroy_list_ = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = nullptr;
    p->linked = false;
  }
  /** Called by the wrapper at the instance's stop, before Plugin::stop. */
  void settle_at_stop() {
    while (detail::Pending* p = stop_list_) {
      release(p);
      p->on_stop(p);  // may link or release others
    }
  }
  /** Called by the wrapper at destroy, before the plugin object goes. */
  void settle_at_destroy() {
    settle_at_stop();
    while (detail::Pending* p = destroy_list_) {
      release(p);
      if (p->on_destroy) p->on_destroy(p);
    }
  }

  /** Calls any action; `cb` receives the Result on the loop. Returns 0 or -ENOENT/-ESHUTDOWN. */
  int call(const char* action, const Attrs& attrs, std::function<void(const Result&)> cb) {
    auto a = detail::c_attrs(attrs);
    auto* box = new (std::nothrow) Boxed<std::function<void(const Result&)>>{this, std::move(cb)};
    if (!box) return -ENOMEM;
    int r = api_->call_action(host_, action, a.data(), a.size(), &Host::result_cb, box);
    if (r != 0) delete box;
    return r;
  }

  /** Runs fn on the loop thread soon. Thread-safe. Returns 0 or -ESHUTDOWN. */
  int post(std::function<void()> fn) {
    auto* box = new (std::nothrow) Boxed<std::function<void()>>{this, std::move(fn)};
    if (!box) return -ENOMEM;
    int r = api_->post(host_, &Host::post_cb, box);
    if (r != 0) delete box;
    return r;
  }

  /** Runs fn, turning an exception into a log line naming what threw. */
  template <class F> bool guard(const char* what, F&& fn) const noexcept {
    try {
      fn();
      return true;
    } catch (const std::exception& e) {
      api_->log(host_, HOSTLET_LOG_ERROR, "%s threw: %s", what, e.what());
    } catch (...) {
      api_->log(host_, HOSTLET_LOG_ERROR, "%s threw a non-standard exception", what);
    }
    return false;
  }

 private:
  void check(int r, const char* what) const {
    if (r != 0) throw Error(r, std::string(what) + ": " + hostlet_strerror(r));
  }

  template <class W, class D, class R>
  struct OffloadItem {
    template <class W2, class D2>
    OffloadItem(W2&& w, D2&& d, Host* h) : work(std::forward<W2>(w)), done(std::forward<D2>(d)), host(h) {}
    W work;
    D done;
    Host* host;
    using Value = std::conditional_t<std::is_void_v<R>, char, R>;
    Value value{};
    std::exception_ptr error;

    static void run(void* p) {  // pool thread
      auto* self = static_cast<OffloadItem*>(p);
      try {
        if constexpr (std::is_void_v<R>) self->work();
        else self->value = self->work();
      } catch (...) {
        self->error = std::current_exception();
      }
    }
    // Does done take the Error as well? Only asked when the usual form does
    // not fit (conjunction stops there), so that a generic lambda's body is
    // never instantiated with arguments it was not written for.
    static constexpr bool wants_error() {
      if constexpr (std::is_void_v<R>)
        return std::conjunction_v<std::negation<std::is_invocable<D&, int>>, std::is_invocable<D&, int, const Error&>>;
      else
        return std::conjunction_v<std::negation<std::is_invocable<D&, int, Value&&>>,
                                  std::is_invocable<D&, int, Value&&, const Error&>>;
    }
    static constexpr bool kWantsError = wants_error();
    static void finish(void* p, int status) {  // loop thread
      auto* self = static_cast<OffloadItem*>(p);
      std::optional<Error> err;
      if (status == 0 && self->error) {
        err = error_of(self->error);
        status = err->code();
        if constexpr (!kWantsError) self->host->error("offloaded work threw: %s", err->what());
      } else if (status != 0 && kWantsError) {
        err.emplace(status, hostlet_strerror(status));
      }
      self->host->guard("offload done callback", [&] {
        if constexpr (kWantsError) {
          static const Error kOk(0, "ok");
          const Error& e = err ? *err : kOk;
          if constexpr (std::is_void_v<R>) self->done(status, e);
          else self->done(status, status == 0 ? std::move(self->value) : Value{}, e);
        } else if constexpr (std::is_void_v<R>) {
          self->done(status);
        } else {
          self->done(status, status == 0 ? std::move(self->value) : Value{});
        }
      });
      if (status != -ETIMEDOUT) delete self;  // a timed-out item is freed by late()
    }
    static void late(void* p) { delete static_cast<OffloadItem*>(p); }
  };

  struct ActionState {
    Host* host;
    std::function<void(Call&)> fn;
  };
  template <class Fn> struct Boxed {
    Host* host;
    Fn fn;
  };

  static void timer_cb(void* p) {
    auto* s = static_cast<Timer::State*>(p);
    Host h(s->host, s->api);
    h.guard("timer callback", [&] { s->fn(); });
  }
  static void watch_cb(void* p, int fd, unsigned events) {
    auto* s = static_cast<Watch::State*>(p);
    Host h(s->host, s->api);
    h.guard("watch callback", [&] { s->fn(fd, events); });
  }
  static void event_cb(void* p, const hostlet_event* e) {
    auto* s = static_cast<Subscription::State*>(p);
    Host h(s->host, s->api);
    h.guard("event callback", [&] { s->fn(Event(e)); });
  }
  static int action_cb(void* p, hostlet_call* c, const hostlet_attr*, size_t) {
    auto* s = static_cast<ActionState*>(p);
    Call call(s->host->api_, c);
    try {
      s->fn(call);
    } catch (const std::exception& e) {
      if (!call.answered()) call.error(e.what());  // else the handler moved it away first
      else s->host->warn("action handler threw after passing its call on: %s", e.what());
    } catch (...) {
      if (!call.answered()) call.error("action handler threw a non-standard exception");
    }
    return 0;  // an unanswered, unmoved call is answered by ~Call
  }
  static void result_cb(void* p, const hostlet_result* r) {
    std::unique_ptr<Boxed<std::function<void(const Result&)>>> box(
        static_cast<Boxed<std::function<void(const Result&)>>*>(p));
    Result res;
    res.ok = r->ok != 0;
    if (r->error) res.error = r->error;
    for (size_t i = 0; i < r->n_attrs; i++) res.attrs.emplace_back(r->attrs[i].key, r->attrs[i].value);
    if (r->data_json) res.data_json = r->data_json;
    box->host->guard("call result callback", [&] { box->fn(res); });
  }
  static void tracked_cb(void* p, uint64_t id, const hostlet_outcome* o, size_t n) {
    using Fn = std::function<void(uint64_t, const hostlet_outcome*, size_t)>;
    std::unique_ptr<Boxed<Fn>> box(static_cast<Boxed<Fn>*>(p));
    box->host->guard("tracked event callback", [&] { box->fn(id, o, n); });
  }
  static void post_cb(void* p) {
    std::unique_ptr<Boxed<std::function<void()>>> box(static_cast<Boxed<std::function<void()>>*>(p));
    box->host->guard("posted callback", [&] { box->fn(); });
  }

  hostlet_host* host_;
  const hostlet_host_api* api_;
  std::vector<std::unique_ptr<ActionState>> actions_;
  detail::Pending* stop_list_ = nullptr;     // suspended until stop (sleeps)
  detail::Pending* destroy_list_ = nullptr;  // suspended until an answer the host owes (offloads, calls)
};

/**
 * Base class of a C++ plugin. The derived constructor takes Host& and does
 * what init does (validate, allocate, register actions); throwing fails init.
 */
class Plugin {
 public:
  explicit Plugin(Host& host) : host_(host) {}
  virtual ~Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  /** Opens sockets, subscribes, starts timers. Return a negative errno or throw to fail. */
  virtual int start() { return 0; }
  /**
   * Releases what start opened; call `stopped()` once everything the plugin
   * opened itself is closed (now or later). Timers, watches and subscriptions
   * obtained from Host are closed by the host anyway.
   */
  virtual void stop(std::function<void()> stopped) { stopped(); }

  /**
   * Writes the instance's metrics from data it already has (ABI 1.1): it must
   * not block. Called on the loop for every scrape while the instance runs.
   */
  virtual void collect(Metrics&) {}
  /**
   * Before a scrape: false when the data collect() writes is fresh enough;
   * true when the plugin has started to collect fresher data and will call
   * host().metrics_refreshed() once it has (ABI 1.1).
   */
  virtual bool refresh() { return false; }

  Host& host() const { return host_; }

 private:
  Host& host_;
};

namespace detail {
template <class T> struct Instance {
  Host host;
  std::unique_ptr<T> plugin;
  Instance(hostlet_host* h, const hostlet_host_api* a) : host(h, a) {}
};

template <class T> int init(hostlet_host* h, const hostlet_host_api* api, void** state) {
  auto inst = std::make_unique<Instance<T>>(h, api);
  try {
    inst->plugin = std::make_unique<T>(inst->host);
  } catch (const Error& e) {
    api->set_error(h, "%s", e.what());  // --check, the reload reply and status show it
    return e.code();
  } catch (const std::exception& e) {
    api->set_error(h, "%s", e.what());
    return -EINVAL;
  } catch (...) {
    api->set_error(h, "init failed: non-standard exception");
    return -EINVAL;
  }
  *state = inst.release();
  return 0;
}
template <class T> int start(void* state) {
  auto* inst = static_cast<Instance<T>*>(state);
  try {
    return inst->plugin->start();
  } catch (const Error& e) {
    inst->host.api()->set_error(inst->host.c(), "%s", e.what());  // the host logs it as the start failure
    return e.code();
  } catch (const std::exception& e) {
    inst->host.api()->set_error(inst->host.c(), "%s", e.what());
    return -EIO;
  } catch (...) {
    inst->host.api()->set_error(inst->host.c(), "start failed: non-standard exception");
    return -EIO;
  }
}
template <class T> void stop(void* state) {
  auto* inst = static_cast<Instance<T>*>(state);
  hostlet_host* h = inst->host.c();
  const hostlet_host_api* api = inst->host.api();
  inst->host.guard("stop", [&] { inst->host.settle_at_stop(); });  // sleeping coroutines get -ESHUTDOWN
  bool ok = inst->host.guard("stop", [&] { inst->plugin->stop([h, api] { api->stopped(h); }); });
  if (!ok) api->stopped(h);  // a throwing stop must not hang the host
}
template <class T> void collect(void* state, hostlet_metrics* out) {
  auto* inst = static_cast<Instance<T>*>(state);
  Metrics m(out, inst->host.api());
  inst->host.guard("collect", [&] { inst->plugin->collect(m); });
}
template <class T> int refresh(void* state) {
  auto* inst = static_cast<Instance<T>*>(state);
  bool started = false;
  inst->host.guard("refresh", [&] { started = inst->plugin->refresh(); });
  return started ? 1 : 0;
}
template <class T> void destroy(void* state) {
  auto* inst = static_cast<Instance<T>*>(state);
  inst->host.guard("destroy", [&] { inst->host.settle_at_destroy(); });
  inst->host.guard("destructor", [&] { inst->plugin.reset(); });
  delete inst;
}
}  // namespace detail

}  // namespace hostlet

/**
 * Defines the plugin's entry symbol for C++ plugin class T.
 * CONFIG, ACTIONS, EVENTS are the tables of plugin.h (or nullptr).
 */
#define HOSTLET_CPP_PLUGIN(T, NAME, VERSION, DESCRIPTION, CONFIG, ACTIONS, EVENTS) \
  static const hostlet_plugin hostlet__cpp_plugin_descriptor = {                 \
      HOSTLET_ABI_MAJOR,                                                          \
      HOSTLET_ABI_MINOR,                                                          \
      sizeof(hostlet_plugin),                                                     \
      NAME,                                                                       \
      VERSION,                                                                    \
      DESCRIPTION,                                                                \
      CONFIG,                                                                     \
      ACTIONS,                                                                    \
      EVENTS,                                                                     \
      &hostlet::detail::init<T>,                                                  \
      &hostlet::detail::start<T>,                                                 \
      &hostlet::detail::stop<T>,                                                  \
      &hostlet::detail::destroy<T>,                                               \
      &hostlet::detail::collect<T>,                                               \
      &hostlet::detail::refresh<T>,                                               \
  };                                                                              \
  extern "C" HOSTLET_PLUGIN_ENTRY { return &hostlet__cpp_plugin_descriptor; }

#endif /* HOSTLET_PLUGIN_HPP */
