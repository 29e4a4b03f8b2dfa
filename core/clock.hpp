// Time, behind a small interface: the rules' debounce and rate limits read a
// Clock so that unit tests can move time instead of sleeping.
#pragma once

#include <uv.h>

#include <cstdint>
#include <ctime>

namespace hostlet {

class Clock {
 public:
  virtual uint64_t now_ns() const = 0;  // monotonic
 protected:
  ~Clock() = default;
};

// uv_hrtime(): the loop's own monotonic clock.
class MonotonicClock final : public Clock {
 public:
  uint64_t now_ns() const override { return uv_hrtime(); }
};
inline const Clock& monotonic_clock() {
  static const MonotonicClock clock;
  return clock;
}

// CLOCK_REALTIME in milliseconds (timestamps shown to users).
inline uint64_t realtime_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

}  // namespace hostlet
