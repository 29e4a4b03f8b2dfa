#include "lag.hpp"

#include "log.hpp"

namespace hostlet {

LagMonitor::LagMonitor(uv_loop_t* loop, uint64_t warn_ms, uint64_t interval_ms)
    : loop_(loop), warn_ns_(warn_ms * 1000000ull), interval_ms_(interval_ms ? interval_ms : 100) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // never keeps the loop alive on its own
}

void LagMonitor::start() {
  expected_ns_ = uv_hrtime() + interval_ms_ * 1000000ull;
  uv_timer_start(&timer_, &LagMonitor::on_tick, interval_ms_, interval_ms_);
}

void LagMonitor::on_tick(uv_timer_t* t) {
  auto* self = static_cast<LagMonitor*>(t->data);
  uint64_t now = uv_hrtime();
  uint64_t late = now > self->expected_ns_ ? now - self->expected_ns_ : 0;
  self->lateness_.record(late);
  if (now - self->window_start_ns_ >= kWindowNs) {  // the recent maximum covers 5 to 10 s
    self->prev_window_max_ns_ = self->window_max_ns_;
    self->window_max_ns_ = 0;
    self->window_start_ns_ = now;
  }
  if (late > self->window_max_ns_) self->window_max_ns_ = late;
  if (self->warn_ns_ > 0 && late > self->warn_ns_) {
    // A timed callback is named only when it explains the lag: the loop also
    // runs the core's callbacks and the libuv callbacks of plugins that use
    // the loop directly (hostlet_host_api.uv_loop), which nobody times.
    if (!self->tick_worst_instance_.empty() && self->tick_worst_ns_ * 2 >= late)
      log(Level::Warn, "hostlet", "loop lag %.1f ms; longest callback: %s of instance '%s' (%.1f ms)",
          static_cast<double>(late) / 1e6, self->tick_worst_what_, self->tick_worst_instance_.c_str(),
          static_cast<double>(self->tick_worst_ns_) / 1e6);
    else if (std::string untimed = self->untimed_ ? self->untimed_() : std::string(); !untimed.empty())
      log(Level::Warn, "hostlet",
          "loop lag %.1f ms; no timed plugin callback explains it (longest: %.1f ms): the untimed libuv callbacks "
          "of %s (it uses the loop directly), the core, or the machine",
          static_cast<double>(late) / 1e6, static_cast<double>(self->tick_worst_ns_) / 1e6, untimed.c_str());
    else
      log(Level::Warn, "hostlet",
          "loop lag %.1f ms; no timed plugin callback explains it (longest: %.1f ms): the core or the machine",
          static_cast<double>(late) / 1e6, static_cast<double>(self->tick_worst_ns_) / 1e6);
  }
  self->tick_worst_instance_.clear();
  self->tick_worst_ns_ = 0;
  self->expected_ns_ = now + self->interval_ms_ * 1000000ull;
}

void LagMonitor::record_callback(const std::string& instance, const char* what, uint64_t ns, uint64_t count) {
  if (ns > tick_worst_ns_) {
    tick_worst_ns_ = ns;
    tick_worst_instance_ = instance;
    tick_worst_what_ = what;
  }
  if (ns > worst_ns_) {
    worst_ns_ = ns;
    worst_instance_ = instance;
  }
  if (warn_ns_ > 0 && ns > warn_ns_) {
    slow_callbacks_++;
    if (count > 1)  // a run of fast ones timed together, see LaneObserver
      log(Level::Warn, instance,
          "%llu %ss in a row ran %.1f ms on the loop thread (threshold %.0f ms; timed together): they block "
          "every other instance",
          static_cast<unsigned long long>(count), what, static_cast<double>(ns) / 1e6,
          static_cast<double>(warn_ns_) / 1e6);
    else
      log(Level::Warn, instance, "%s ran %.1f ms on the loop thread (threshold %.0f ms): it blocks every other instance",
          what, static_cast<double>(ns) / 1e6, static_cast<double>(warn_ns_) / 1e6);
  }
}

void LagMonitor::close(std::function<void()> cb) {
  close_cb_ = std::move(cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* self = static_cast<LagMonitor*>(h->data);
    if (self->close_cb_) self->close_cb_();
  });
}

}  // namespace hostlet
