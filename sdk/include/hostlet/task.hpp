/*
 * hostlet coroutines (C++20, optional): an action handler, or any function
 * of the plugin, can be a coroutine returning hostlet::Task and await the
 * host's services. plugin.hpp stays C++17; this header adds C++20 on top.
 *
 * Example (a whole file):
 *
 *   #include <hostlet/task.hpp>
 *
 *   #include <fstream>
 *
 *   struct Load final : hostlet::Plugin {
 *     explicit Load(hostlet::Host& h) : Plugin(h) {
 *       h.action("load", [this](hostlet::Call call) -> hostlet::Task {
 *         auto read = [] {  // named, not written inside the co_await: see GCC 12 below
 *           std::string text;
 *           std::getline(std::ifstream("/proc/loadavg"), text);
 *           return text;
 *         };
 *         std::string load = co_await host().offload(read);  // a pool thread reads
 *         co_await host().sleep(std::chrono::milliseconds(250));
 *         hostlet::Attrs attrs{{"key", "value"}};
 *         hostlet::Result other = co_await host().call("other.verb", attrs);
 *         call.ok({{"load", load}, {"other", other.ok ? "ok" : other.error}});
 *       });
 *     }
 *   };
 *   const hostlet_config_key kConfig[] = {{nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
 *   HOSTLET_CPP_PLUGIN(Load, "load", "1.0", "reads the load", kConfig, nullptr, nullptr)
 *
 * - The handler takes the Call by value: the coroutine's frame owns it. An
 *   exception escaping the coroutine answers the call with its message (a
 *   coroutine without a Call parameter logs it as an error, or at debug
 *   level when it is the stop's -ESHUTDOWN, the usual end of a loop); a call not answered when
 *   the coroutine ends is answered "dropped" (~Call).
 * - `co_await host.offload(work)` runs work() on a pool thread through the
 *   instance's lane and returns its value on the loop thread, or throws
 *   hostlet::Error: a hostlet::Error thrown by work as it was, another
 *   exception as Error(-EIO, its what()), or the lane's status as
 *   Error(status, hostlet_strerror(status)): -EAGAIN (lane full), -ECANCELED,
 *   -ETIMEDOUT (the instance's offload_timeout passed), -ESHUTDOWN (the
 *   instance is stopping). A timed-out coroutine resumes once the work can
 *   no longer touch the frame (at once if it never started, else when it
 *   ends): the work's state lives in the frame, so nothing is allocated.
 * - `co_await host.call(action, attrs)` calls any action and returns its
 *   Result (ok, error text, attrs, data_json); a call that cannot be made
 *   returns ok = false with the reason. Never throws.
 * - `co_await host.sleep(d)` waits on a one-shot host timer; throws
 *   Error(-ESHUTDOWN) when the instance stops meanwhile (and at once if it
 *   is already stopping).
 * - Stop and destroy: a sleeping coroutine is resumed with -ESHUTDOWN when
 *   the instance stops, before Plugin::stop; an awaited offload or call is
 *   always answered by the host before destroy (queued work with -ESHUTDOWN,
 *   a call with "instance ... is being destroyed"), so the coroutine unwinds
 *   and its frame is freed before the plugin object. No coroutine is resumed
 *   after destroy. One exception: work still running on a pool thread after
 *   the stop deadline (the host then keeps the plugin loaded) leaves its
 *   coroutine's frame allocated and never resumed, as the pool thread may
 *   still write into it.
 * - Allocation: none per co_await. Each awaiter lives in the coroutine frame
 *   and is itself the offload's item, the timer's and the call's argument.
 *   (Host::call's attributes are converted on the stack up to 16 of them.)
 * - GCC 12 (Debian 12's g++) miscompiles a lambda with captures, or any
 *   brace-initialized temporary, written inside a co_await expression: the
 *   temporary's members are corrupted (AddressSanitizer reports a bad free;
 *   a braced attribute list fails to compile). Name it first:
 *     auto work = [path] { return read_file(path); };
 *     std::string text = co_await host().offload(std::move(work));
 *   clang 14 compiles the inline form correctly.
 * - Threads: a coroutine runs on the loop thread from start to end; only
 *   the offloaded function runs on a pool thread.
 */
#ifndef HOSTLET_TASK_HPP
#define HOSTLET_TASK_HPP

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "hostlet/task.hpp needs C++20 or later (-std=c++20); plugin.hpp alone needs C++17"
#endif

#include <hostlet/plugin.hpp>

#include <chrono>
#include <coroutine>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace hostlet {

/**
 * The return type of a hostlet coroutine. It starts at once (on the loop
 * thread, inside the call that creates it) and runs on its own: the Task
 * object itself may be discarded. It cannot be awaited.
 */
class Task {
 public:
  struct promise_type {
    promise_type() = default;
    // The coroutine's parameters (lvalues of the frame's copies): a Call
    // among them is the one an escaping exception answers.
    template <class... A> explicit promise_type(A&... args) { (bind(args), ...); }

    Task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {
      Error e = error_of(std::current_exception());
      if (call && !call->answered()) call->error(e.what());
      else if (host && e.code() == -ESHUTDOWN) host->debug("coroutine ended by the stop: %s", e.what());
      else if (host) host->error("coroutine threw: %s", e.what());
    }

    Call* call = nullptr;
    Host* host = nullptr;  // the host of the coroutine's last await (for the log)

   private:
    template <class X> void bind(X& x) {
      if constexpr (std::is_same_v<X, Call>) call = &x;
      else if constexpr (std::is_same_v<X, Host>) host = &x;
      else if constexpr (std::is_base_of_v<Plugin, X>) host = &x.host();  // a member coroutine's *this
    }
  };
};

namespace detail {

template <class P> void note_host(std::coroutine_handle<P> h, Host& host) {
  if constexpr (std::is_same_v<P, Task::promise_type>) h.promise().host = &host;
}

/** co_await host.offload(work): the awaiter is the lane's work item. */
template <class W> class OffloadAwaiter : Pending {
 public:
  using R = std::invoke_result_t<W&>;

  template <class W2> OffloadAwaiter(Host& host, W2&& work) : host_(host), work_(std::forward<W2>(work)) {
    on_destroy = &OffloadAwaiter::abandoned;
  }
  OffloadAwaiter(const OffloadAwaiter&) = delete;
  OffloadAwaiter& operator=(const OffloadAwaiter&) = delete;
  ~OffloadAwaiter() { host_.release(this); }

  bool await_ready() const noexcept { return false; }
  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    note_host(h, host_);
    waiting_ = h;
    hostlet_offload_opts opts{sizeof(hostlet_offload_opts), 0, &OffloadAwaiter::late};
    int r = host_.api()->offload(host_.c(), &opts, &OffloadAwaiter::run, &OffloadAwaiter::done, this, nullptr);
    if (r != 0) {
      status_ = r;
      return false;  // not queued: resume now and throw
    }
    host_.hold(this, false);
    return true;
  }
  R await_resume() {
    if (status_ != 0) throw Error(status_, hostlet_strerror(status_));
    if (error_) throw error_of(error_);
    if constexpr (!std::is_void_v<R>) return std::move(*value_);
  }

 private:
  static void run(void* p) noexcept {  // pool thread
    auto* self = static_cast<OffloadAwaiter*>(p);
    try {
      if constexpr (std::is_void_v<R>) self->work_();
      else self->value_.emplace(self->work_());
    } catch (...) {
      self->error_ = std::current_exception();
    }
  }
  static void done(void* p, int status) {  // loop thread
    auto* self = static_cast<OffloadAwaiter*>(p);
    self->status_ = status;
    if (status != -ETIMEDOUT) self->resume();
    // -ETIMEDOUT: late() runs once the work can no longer touch the frame.
  }
  static void late(void* p) { static_cast<OffloadAwaiter*>(p)->resume(); }
  static void abandoned(Pending* p) {
    // Destroy came while the work is still on a pool thread (the stop
    // deadline passed): the frame must stay, so it is left, unresumed.
    auto* self = static_cast<OffloadAwaiter*>(p);
    self->host_.error("a coroutine's offloaded work is still running at destroy; its frame is left allocated");
  }
  void resume() {
    host_.release(this);
    waiting_.resume();
  }

  Host& host_;
  W work_;
  std::coroutine_handle<> waiting_;
  int status_ = 0;
  std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value_;
  std::exception_ptr error_;
};

/** co_await host.call(action, attrs). */
template <class Dummy> class CallAwaiter : Pending {
 public:
  CallAwaiter(Host& host, const char* action, const Attrs& attrs) : host_(host), action_(action), attrs_(attrs) {
    on_destroy = &CallAwaiter::abandoned;
  }
  CallAwaiter(const CallAwaiter&) = delete;
  CallAwaiter& operator=(const CallAwaiter&) = delete;
  ~CallAwaiter() { host_.release(this); }

  bool await_ready() const noexcept { return false; }
  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    note_host(h, host_);
    waiting_ = h;
    // action_ and attrs_ live until the end of the co_await expression; the
    // host copies both before call_action returns.
    constexpr size_t kOnStack = 16;
    hostlet_attr on_stack[kOnStack];
    std::vector<hostlet_attr> on_heap;
    hostlet_attr* a = on_stack;
    if (attrs_.size() > kOnStack) {
      on_heap.resize(attrs_.size());
      a = on_heap.data();
    }
    for (size_t i = 0; i < attrs_.size(); i++) a[i] = {attrs_[i].first.c_str(), attrs_[i].second.c_str()};
    int r = host_.api()->call_action(host_.c(), action_, a, attrs_.size(), &CallAwaiter::answered, this);
    if (r != 0) {
      result_.ok = false;
      result_.error = std::string(action_ ? action_ : "(null)") + ": " + hostlet_strerror(r);
      return false;
    }
    host_.hold(this, false);
    return true;
  }
  Result await_resume() { return std::move(result_); }

 private:
  static void answered(void* p, const hostlet_result* r) {
    auto* self = static_cast<CallAwaiter*>(p);
    Result& res = self->result_;
    res.ok = r->ok != 0;
    if (r->error) res.error = r->error;
    for (size_t i = 0; i < r->n_attrs; i++) res.attrs.emplace_back(r->attrs[i].key, r->attrs[i].value);
    if (r->data_json) res.data_json = r->data_json;
    self->host_.release(self);
    self->waiting_.resume();
  }
  static void abandoned(Pending* p) {
    // The host answers every call before destroy; should one still be owed,
    // the frame goes without resuming (its answer, if it came, would be dropped).
    static_cast<CallAwaiter*>(p)->waiting_.destroy();
  }

  Host& host_;
  const char* action_;
  const Attrs& attrs_;
  std::coroutine_handle<> waiting_;
  Result result_;
};

/** co_await host.sleep(d): a one-shot host timer. */
template <class Dummy> class SleepAwaiter : Pending {
 public:
  SleepAwaiter(Host& host, std::chrono::milliseconds d) : host_(host), ms_(d.count() > 0 ? d.count() : 0) {
    on_stop = &SleepAwaiter::stopping;
    on_destroy = &SleepAwaiter::stopping;
  }
  SleepAwaiter(const SleepAwaiter&) = delete;
  SleepAwaiter& operator=(const SleepAwaiter&) = delete;
  ~SleepAwaiter() {
    host_.release(this);
    if (timer_) host_.api()->timer_stop(timer_);
  }

  bool await_ready() const noexcept { return false; }
  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    note_host(h, host_);
    waiting_ = h;
    int r = host_.api()->timer_start(host_.c(), static_cast<uint64_t>(ms_), 0, &SleepAwaiter::fired, this, &timer_);
    if (r != 0) {
      timer_ = nullptr;
      status_ = r;
      return false;
    }
    host_.hold(this, true);
    return true;
  }
  void await_resume() const {
    if (status_ != 0) throw Error(status_, std::string("sleep: ") + hostlet_strerror(status_));
  }

 private:
  static void fired(void* p) { static_cast<SleepAwaiter*>(p)->wake(0); }
  static void stopping(Pending* p) { static_cast<SleepAwaiter*>(p)->wake(-ESHUTDOWN); }
  void wake(int status) {
    host_.release(this);
    if (timer_) host_.api()->timer_stop(std::exchange(timer_, nullptr));
    status_ = status;
    waiting_.resume();
  }

  Host& host_;
  int64_t ms_;
  hostlet_timer* timer_ = nullptr;
  std::coroutine_handle<> waiting_;
  int status_ = 0;
};

}  // namespace detail
}  // namespace hostlet

#endif /* HOSTLET_TASK_HPP */
