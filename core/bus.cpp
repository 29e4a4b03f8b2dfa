#include "bus.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cerrno>
#include <ctime>



namespace hostlet {

void Tracker::release() {
  if (--holds_ == 0 && done_) {
    auto done = std::move(done_);
    done_ = nullptr;
    done(id_, outcomes_);
  }
}

// ---------------------------------------------------------------- EventBus

struct EventBus::Sub {
  std::string glob;
  bool exact = false;
  Handler handler;
  const void* owner = nullptr;
  bool dead = false;
  bool parked = false;  // its owner is being reloaded: deliver nothing
};

bool EventBus::matches(const Sub& s, const std::string& type) {
  return s.exact ? s.glob == type : fnmatch(s.glob.c_str(), type.c_str(), 0) == 0;
}

namespace {
uint64_t realtime_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

EventBus::EventBus(uv_loop_t* loop, size_t capacity, unsigned batch)
    : loop_(loop), capacity_(capacity), batch_(batch ? batch : 1) {
  uv_idle_init(loop_, &idle_);
  idle_.data = this;
}

EventBus::~EventBus() = default;

int EventBus::publish(Event&& ev, uint64_t* id_out) {
  size_t used = queue_.size();
  if (backlog_ && ev.source != "hostlet") used += backlog_();
  SourceCounts& sc = source_counts(ev.source);
  if (used >= capacity_) {
    stats_.dropped++;
    sc.dropped++;
    return -EAGAIN;
  }
  sc.published++;
  ev.id = next_id_++;
  if (id_out) *id_out = ev.id;
  ev.timestamp_ns = realtime_ns();
  if (ev.tracker) {
    ev.tracker->set_event_id(ev.id);
    ev.tracker->hold();  // released after dispatch
  }
  queue_.push_back(std::move(ev));
  stats_.published++;
  if (queue_.size() > stats_.max_depth) stats_.max_depth = queue_.size();
  if (!idle_active_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&idle_))) {
    uv_idle_start(&idle_, &EventBus::on_idle);
    idle_active_ = true;
  }
  return 0;
}

EventBus::SourceCounts& EventBus::source_counts(const std::string& source) {
  auto it = by_source_.find(source);
  if (it != by_source_.end()) return it->second;
  // Sources are instance names and "hostlet"; a flood of names from outside
  // (control `publish`) is bounded: past kMaxSources they count as "other".
  if (by_source_.size() >= kMaxSources) return by_source_["other"];
  return by_source_[source];
}

void EventBus::on_idle(uv_idle_t* h) { static_cast<EventBus*>(h->data)->dispatch_batch(); }

void EventBus::dispatch_batch() {
  for (unsigned i = 0; i < batch_ && !queue_.empty(); i++) {
    Event ev = std::move(queue_.front());
    queue_.pop_front();
    deliver(ev);
  }
  if (queue_.empty() && idle_active_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
}

void EventBus::deliver(const Event& ev) {
  dispatching_++;
  if (!parked_.empty()) keep_held(ev);
  auto it = exact_.find(ev.type);
  if (it != exact_.end()) {
    // index loop: a handler may subscribe (push_back) while we iterate
    for (size_t i = 0; i < it->second.size(); i++) {
      Sub* s = it->second[i];
      if (!s->dead && !s->parked) s->handler(ev);
    }
  }
  for (size_t i = 0; i < globs_.size(); i++) {
    Sub* s = globs_[i];
    if (!s->dead && !s->parked && fnmatch(s->glob.c_str(), ev.type.c_str(), 0) == 0) s->handler(ev);
  }
  dispatching_--;
  stats_.dispatched++;
  if (ev.tracker) ev.tracker->release();
  if (dispatching_ == 0 && dirty_) sweep();
}

void EventBus::flush() {
  while (!queue_.empty()) {
    Event ev = std::move(queue_.front());
    queue_.pop_front();
    deliver(ev);
  }
}

EventBus::Sub* EventBus::subscribe(std::string glob, Handler handler, const void* owner) {
  if (glob.empty() || !valid_glob(glob)) return nullptr;
  auto sub = std::make_unique<Sub>();
  sub->exact = !is_glob(glob);
  sub->glob = std::move(glob);
  sub->handler = std::move(handler);
  sub->owner = owner;
  sub->parked = owner && parked_.count(owner) > 0;
  Sub* raw = sub.get();
  all_.push_back(std::move(sub));
  if (raw->exact) exact_[raw->glob].push_back(raw);
  else globs_.push_back(raw);
  stats_.subscriptions++;
  return raw;
}

void EventBus::unsubscribe(Sub* sub) {
  if (!sub || sub->dead) return;
  sub->dead = true;
  stats_.subscriptions--;
  dirty_ = true;
  if (dispatching_ == 0) sweep();
}

void EventBus::unsubscribe_owner(const void* owner) {
  for (auto& s : all_)
    if (s->owner == owner && !s->dead) {
      s->dead = true;
      stats_.subscriptions--;
      dirty_ = true;
    }
  if (dispatching_ == 0 && dirty_) sweep();
}

void EventBus::sweep() {
  dirty_ = false;
  auto dead = [](Sub* s) { return s->dead; };
  for (auto it = exact_.begin(); it != exact_.end();) {
    std::erase_if(it->second, dead);
    it = it->second.empty() ? exact_.erase(it) : std::next(it);
  }
  std::erase_if(globs_, dead);
  all_.remove_if([](const std::unique_ptr<Sub>& s) { return s->dead; });
}

// ------------------------------------------------------- reload: park/hold

void EventBus::park(const void* owner) {
  parked_[owner];
  for (auto& s : all_)
    if (s->owner == owner) s->parked = true;
}

void EventBus::hold(const void* owner) {
  Hold& h = parked_[owner];
  h.holding = true;
  for (auto& s : all_)
    if (s->owner == owner && !s->dead) {
      s->parked = true;
      if (std::find(h.globs.begin(), h.globs.end(), s->glob) == h.globs.end()) h.globs.push_back(s->glob);
    }
}

void EventBus::keep_held(const Event& ev) {
  for (auto& [owner, h] : parked_) {
    if (!h.holding) continue;
    bool match = false;
    for (const auto& g : h.globs)
      if (g == ev.type || (is_glob(g) && fnmatch(g.c_str(), ev.type.c_str(), 0) == 0)) {
        match = true;
        break;
      }
    if (!match) continue;
    if (h.events.size() >= capacity_) {
      stats_.dropped++;
      continue;
    }
    Event copy;
    copy.id = ev.id;
    copy.timestamp_ns = ev.timestamp_ns;
    copy.source = ev.source;
    copy.type = ev.type;
    copy.attrs = ev.attrs;  // the tracker stays with the original: a subscription never answers
    h.events.push_back(std::move(copy));
  }
}

size_t EventBus::release(const void* from, const void* to) {
  std::deque<Event> kept;
  if (auto it = parked_.find(from); it != parked_.end()) {
    kept.swap(it->second.events);
    parked_.erase(it);
  }
  if (to) parked_.erase(to);
  for (auto& s : all_)
    if (s->owner == from || (to && s->owner == to)) s->parked = false;
  size_t n = kept.size();
  if (to)
    for (const auto& ev : kept) deliver_to(to, ev);
  return n;
}

void EventBus::deliver_to(const void* owner, const Event& ev) {
  dispatching_++;
  // std::list: a handler may subscribe (push_back) while we iterate
  for (auto& s : all_)
    if (s->owner == owner && !s->dead && !s->parked && matches(*s, ev.type)) s->handler(ev);
  dispatching_--;
  if (dispatching_ == 0 && dirty_) sweep();
}

BusStats EventBus::stats() const {
  BusStats s = stats_;
  s.depth = queue_.size();
  s.backlog = backlog_ ? backlog_() : 0;
  return s;
}

void EventBus::set_limits(size_t capacity, unsigned batch) {
  capacity_ = capacity;
  batch_ = batch ? batch : 1;
}

void EventBus::close(std::function<void()> cb) {
  close_cb_ = std::move(cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), [](uv_handle_t* h) {
    auto* self = static_cast<EventBus*>(h->data);
    if (self->close_cb_) self->close_cb_();
  });
}

}  // namespace hostlet
