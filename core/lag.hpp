// Loop lag monitor: a repeating timer measures how late the loop wakes it
// (lateness histogram, p50/p99/max for `hostlet-ctl stats`), and every plugin
// callback is timed so that a stall is pinned on the instance whose callback
// ran long, in a warning naming it: by Instance::run_callback, except offload
// done and late callbacks, which the instance's lane times in runs (see
// LaneObserver in offload.hpp). Not timed: the core's own callbacks and the
// libuv callbacks of plugins that use the loop directly (uv_loop in plugin.h,
// e.g. unixsock's reads); a lag that no timed callback explains says so and
// names the instances that took the raw loop, as the suspects.
#pragma once

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

#include "offload.hpp"  // Histogram

namespace hostlet {

class LagMonitor {
 public:
  LagMonitor(uv_loop_t* loop, uint64_t warn_ms, uint64_t interval_ms = 100);
  void start();
  void close(std::function<void()> cb);
  void set_warn_ms(uint64_t ms) { warn_ns_ = ms * 1000000ull; }
  // Names the instances whose libuv callbacks run untimed (they took the raw
  // loop), "'a', 'b'", or "" for none: an unexplained lag names them.
  void set_untimed_instances(std::function<std::string()> fn) { untimed_ = std::move(fn); }

  // `count` consecutive plugin callbacks of `instance` (usually 1; more for a
  // run of fast offload completions timed together) took `ns`; warns when that
  // exceeds the threshold.
  void record_callback(const std::string& instance, const char* what, uint64_t ns, uint64_t count = 1);

  const Histogram& lateness() const { return lateness_; }
  // The largest lateness of the last 5 to 10 seconds (agent_health).
  uint64_t recent_max_ns() const { return std::max(window_max_ns_, prev_window_max_ns_); }
  uint64_t slow_callbacks() const { return slow_callbacks_; }
  const std::string& worst_instance() const { return worst_instance_; }
  uint64_t worst_callback_ns() const { return worst_ns_; }

 private:
  static void on_tick(uv_timer_t* t);
  uv_loop_t* loop_;
  uv_timer_t timer_{};
  uint64_t warn_ns_, interval_ms_;
  uint64_t expected_ns_ = 0;
  Histogram lateness_;
  static constexpr uint64_t kWindowNs = 5'000'000'000ull;
  uint64_t window_start_ns_ = 0, window_max_ns_ = 0, prev_window_max_ns_ = 0;
  uint64_t slow_callbacks_ = 0, worst_ns_ = 0;
  std::string worst_instance_;
  // the longest callback since the previous tick, to name in a lateness warning
  std::string tick_worst_instance_;
  const char* tick_worst_what_ = "";
  uint64_t tick_worst_ns_ = 0;
  std::function<void()> close_cb_;
  std::function<std::string()> untimed_;
};

}  // namespace hostlet
