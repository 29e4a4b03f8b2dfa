// Percentiles over the last minute, for `hostlet-ctl stats` beside those
// since start. The Histograms (offload.hpp) stay cumulative and their record
// path untouched: every 10 s a timer copies each one it is shown (the loop's
// lateness, every lane's wait and run times), keyed by name, and the recent
// histogram is the current one minus the oldest copy at most a minute old
// (Histogram::since): it covers the last 50 to 60 s once the agent has run a
// minute, and everything since start before that. A key not shown in a round
// is forgotten (an instance gone, or the old version after a reload: lanes
// are keyed by generation, so a new version starts its own window).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

#include "offload.hpp"  // Histogram

namespace hostlet {

class RecentHistograms {
 public:
  static constexpr uint64_t kSlotNs = 10'000'000'000ull;    // one copy per 10 s
  static constexpr uint64_t kWindowNs = 60'000'000'000ull;  // kept for a minute

  // Shows the histograms to copy: calls add(key, histogram) for each.
  using Sampler = std::function<void(const std::function<void(const std::string&, const Histogram&)>& add)>;

  // One round at `now_ns`: copies each histogram the sampler shows, drops
  // copies older than the window and keys the sampler no longer shows.
  void sample(uint64_t now_ns, const Sampler& sampler);

  struct Recent {
    Histogram h;           // recorded within the window
    uint64_t span_ns = 0;  // how far back the window reaches (0: no copy yet)
  };
  // What `current` (shown under `key`) recorded since the oldest copy kept;
  // all of it, span 0, when there is no usable copy.
  Recent recent(const std::string& key, const Histogram& current, uint64_t now_ns) const;

  // Runs sample() every kSlotNs on `loop` (an unref'd timer), and once now.
  void start(uv_loop_t* loop, Sampler sampler);
  void close();  // closes the timer; the object must outlive the close callback's loop turn

 private:
  struct Copy {
    uint64_t at_ns;
    Histogram h;
  };
  std::map<std::string, std::deque<Copy>> copies_;
  Sampler sampler_;
  uv_timer_t timer_{};
  bool timer_started_ = false;
};

}  // namespace hostlet
