// Reconnect delays: exponential from `min` to `max`, each drawn uniformly
// from the upper half of the current step ("equal jitter"), so that a fleet
// that lost its broker at once does not come back at once, and a host never
// waits less than half the step nor more than `max`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>

namespace hostlet::mqtt {

class Backoff {
 public:
  Backoff(uint64_t min_ms, uint64_t max_ms, uint64_t seed)
      : min_(std::max<uint64_t>(min_ms, 1)), max_(std::max(max_ms, min_)), step_(min_), rng_(seed) {}

  // The delay before the next attempt; the step then doubles up to max.
  uint64_t next() {
    const uint64_t half = step_ / 2;
    std::uniform_int_distribution<uint64_t> jitter(0, step_ - half);
    const uint64_t d = half + jitter(rng_);
    step_ = std::min(max_, step_ * 2);
    return std::max<uint64_t>(d, 1);
  }
  // A connection succeeded: start again from min.
  void reset() { step_ = min_; }
  uint64_t step() const { return step_; }

 private:
  uint64_t min_, max_, step_;
  std::mt19937_64 rng_;
};

}  // namespace hostlet::mqtt
