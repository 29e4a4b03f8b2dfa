// A scrape of the agent's metrics (hostlet_host_api.metrics_scrape, and the
// control socket's `metrics`): ask every started instance with a refresh()
// entry to refresh, wait for those that started one up to the scrape's
// timeout, then render the core's own metrics and every started instance's
// collect() into one exposition (metrics.hpp).
//
// Overlapping scrapes share refreshes: an instance whose refresh is in flight
// is not asked again until it calls metrics_refreshed, and every scrape
// waiting for it goes on when it does. A refresh that never ends delays no
// scrape past its timeout: collect() then serves the data the plugin has.
// Completions run from a timer callback (the next loop iteration at the
// earliest), never inside scrape() or a plugin's metrics_refreshed().
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_set>

#include "uv_ptr.hpp"

namespace hostlet {

struct Core;
class Instance;
class MetricsWriter;

class Scraper {
 public:
  using Done = std::function<void(std::string text)>;
  using CoreMetrics = std::function<void(MetricsWriter&)>;

  explicit Scraper(Core& core);
  ~Scraper();
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  // The core's own metrics, written first in every exposition.
  void set_core_metrics(CoreMetrics fn) { core_metrics_ = std::move(fn); }

  // Starts a scrape; done(text) runs once, on the loop, after scrape() has
  // returned (at the latest when close() is called).
  void scrape(hostlet_metrics_format format, uint64_t timeout_ms, Done done);
  // api->metrics_refreshed(): the refresh `inst` started is over.
  void refreshed(Instance* inst);
  // The instance is being destroyed: no scrape waits for it any longer.
  void forget(Instance* inst);
  // Renders now, without asking anyone to refresh (tests, --check).
  std::string render(hostlet_metrics_format format);
  // Completes every pending scrape now and closes the timers (shutdown).
  void close();

  size_t pending() const { return pending_.size(); }
  uint64_t scrapes() const { return scrapes_; }
  uint64_t timed_out() const { return timed_out_; }

 private:
  struct Pending {
    Scraper* self = nullptr;
    hostlet_metrics_format format = HOSTLET_METRICS_TEXT;
    std::unordered_set<uint64_t> waiting;  // generations of instances refreshing for it
    Done done;
    UvPtr<uv_timer_t> timer;
    std::list<std::unique_ptr<Pending>>::iterator it;
    bool due = false;  // completes at the timer's next callback
  };
  static void on_timer(uv_timer_t* t);
  void complete(Pending* p);
  void make_due(Pending* p);

  Core& core_;
  CoreMetrics core_metrics_;
  std::list<std::unique_ptr<Pending>> pending_;
  std::unordered_set<uint64_t> refreshing_;  // generations with a refresh in flight
  uint64_t scrapes_ = 0, timed_out_ = 0;
};

}  // namespace hostlet
