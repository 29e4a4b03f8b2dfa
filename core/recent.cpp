#include "recent.hpp"

#include <set>

namespace hostlet {

void RecentHistograms::sample(uint64_t now_ns, const Sampler& sampler) {
  std::set<std::string> shown;
  sampler([&](const std::string& key, const Histogram& h) {
    shown.insert(key);
    auto& list = copies_[key];
    list.push_back(Copy{now_ns, h});
    // Keep the newest copy at least a window old (the window's start) and
    // everything after it.
    while (list.size() > 1 && now_ns - list[1].at_ns >= kWindowNs) list.pop_front();
  });
  for (auto it = copies_.begin(); it != copies_.end();)
    it = shown.count(it->first) ? std::next(it) : copies_.erase(it);
}

RecentHistograms::Recent RecentHistograms::recent(const std::string& key, const Histogram& current,
                                                  uint64_t now_ns) const {
  Recent r{current, 0};
  auto it = copies_.find(key);
  if (it == copies_.end()) return r;
  // The oldest copy no older than the window; copies of a histogram that was
  // reset (or replaced under the same key) are not usable.
  for (const Copy& c : it->second) {
    if (now_ns - c.at_ns > kWindowNs) continue;
    Histogram d;
    if (current.since(c.h, &d)) {
      r.h = d;
      r.span_ns = now_ns - c.at_ns;
    }
    break;
  }
  return r;
}

void RecentHistograms::start(uv_loop_t* loop, Sampler sampler) {
  sampler_ = std::move(sampler);
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // never keeps the loop alive on its own
  timer_started_ = true;
  sample(uv_hrtime(), sampler_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<RecentHistograms*>(t->data);
        self->sample(uv_hrtime(), self->sampler_);
      },
      kSlotNs / 1000000, kSlotNs / 1000000);
}

void RecentHistograms::close() {
  if (timer_started_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

}  // namespace hostlet
