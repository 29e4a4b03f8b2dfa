#include "bus.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include <nlohmann/json.hpp>

#include "json_check.hpp"
#include "plugin_host.hpp"

namespace hostlet {

const std::string* find_attr(const Attrs& attrs, std::string_view key) {
  for (const auto& kv : attrs)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

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
  if (queue_.size() >= capacity_) {
    stats_.dropped++;
    return -EAGAIN;
  }
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

// ---------------------------------------------------------- ActionRegistry

struct PendingCall {
  ActionRegistry* reg = nullptr;
  Instance* owner = nullptr;
  Attrs attrs;
  ActionRegistry::ResultFn cb;  // empty once the caller has its answer
  uint64_t deadline_ns = 0;     // 0 = none
  std::list<PendingCall*>::iterator it;
  bool orphan = false;          // in orphans_ rather than pending_
};

}  // namespace hostlet

// The ABI's opaque call handle is a PendingCall.
struct hostlet_call : hostlet::PendingCall {};

namespace hostlet {

ActionRegistry::ActionRegistry(uv_loop_t* loop, uint64_t timeout_ms) : loop_(loop), timeout_ms_(timeout_ms) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
}

ActionRegistry::~ActionRegistry() {
  for (auto* c : pending_) delete static_cast<hostlet_call*>(c);
  for (auto* c : orphans_) delete static_cast<hostlet_call*>(c);
}

static bool valid_action_name(std::string_view name) {
  if (name.empty() || name.size() > 256 || name.front() == '.' || name.back() == '.') return false;
  for (char ch : name)
    if (!(isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-')) return false;
  return name.find("..") == std::string_view::npos;
}

int ActionRegistry::add_plugin(std::string name, Instance* owner, hostlet_action_fn fn, void* arg) {
  if (!fn || !valid_action_name(name)) return -EINVAL;
  if (auto st = staged_.find(owner); st != staged_.end()) {
    for (const auto& e : st->second)
      if (e.name == name) return -EEXIST;
    st->second.push_back(Entry{std::move(name), owner, fn, arg});
    return 0;
  }
  if (entries_.count(name)) return -EEXIST;
  Entry e{name, owner, fn, arg};
  entries_.emplace(std::move(name), std::move(e));
  return 0;
}

void ActionRegistry::remove_owner(Instance* owner) {
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.owner == owner; });
}

bool ActionRegistry::exists(std::string_view name) const { return find(name) != nullptr; }

const ActionRegistry::Entry* ActionRegistry::find(std::string_view name) const {
  auto it = entries_.find(std::string(name));
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::string> ActionRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& kv : entries_) v.push_back(kv.first);
  std::sort(v.begin(), v.end());
  return v;
}

void ActionRegistry::arm_timer() {
  if (timeout_ms_ > 0 && !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) {
    uint64_t tick = timeout_ms_ < 400 ? timeout_ms_ / 4 + 1 : 100;
    uv_timer_start(&timer_, &ActionRegistry::on_timer, tick, tick);
  }
}

int ActionRegistry::call(std::string_view name, Attrs attrs, ResultFn cb) {
  if (!holding_.empty()) {
    auto h = holding_.find(std::string(name.substr(0, name.find('.'))));
    if (h != holding_.end() && name.find('.') != std::string_view::npos) {
      if (h->second.count >= h->second.max) {
        cb(ActionResult::failure("instance '" + h->first + "' is reloading and already holds " +
                                 std::to_string(h->second.count) + " calls; try again"));
        return 0;
      }
      h->second.count++;
      uint64_t deadline = timeout_ms_ > 0 ? uv_hrtime() + timeout_ms_ * 1000000ull : 0;
      held_.push_back(HeldCall{std::string(name), h->first, std::move(attrs), std::move(cb), deadline});
      arm_timer();
      return 0;
    }
  }
  auto it = entries_.find(std::string(name));
  if (it == entries_.end()) return -ENOENT;
  Entry& e = it->second;
  if (e.owner && !e.owner->accepting_calls()) {
    cb(ActionResult::failure("instance '" + e.owner->name() + "' is not running"));
    return 0;
  }
  auto* c = new hostlet_call();
  c->reg = this;
  c->owner = e.owner;
  c->attrs = std::move(attrs);
  c->cb = std::move(cb);
  if (timeout_ms_ > 0) c->deadline_ns = uv_hrtime() + timeout_ms_ * 1000000ull;
  pending_.push_back(c);
  c->it = std::prev(pending_.end());
  arm_timer();
  std::vector<hostlet_attr> cattrs;
  cattrs.reserve(c->attrs.size());
  for (auto& kv : c->attrs) cattrs.push_back({kv.first.c_str(), kv.second.c_str()});
  Instance* owner = e.owner;
  int r = owner->invoke_action(e.fn, e.arg, c, cattrs.data(), cattrs.size());
  if (r != 0) {
    // not accepted: the plugin must not answer; we do, and free the record
    finish(c, ActionResult::failure(std::string("action refused: ") + hostlet_strerror(r)));
    release(c);
  }
  return 0;
}

void ActionRegistry::finish(PendingCall* c, ActionResult&& r) {
  if (!c->cb) return;
  auto cb = std::move(c->cb);
  c->cb = nullptr;
  if (!c->orphan) {
    pending_.erase(c->it);
    orphans_.push_back(c);
    c->it = std::prev(orphans_.end());
    c->orphan = true;
  }
  cb(std::move(r));
}

void ActionRegistry::release(PendingCall* c) {
  if (c->orphan) orphans_.erase(c->it);
  else pending_.erase(c->it);
  delete static_cast<hostlet_call*>(c);
}

const char* ActionRegistry::call_attr(hostlet_call* c, const char* key) {
  if (!c || !key) return nullptr;
  const std::string* v = find_attr(c->attrs, key);
  return v ? v->c_str() : nullptr;
}

int ActionRegistry::reply_ok(hostlet_call* c, const hostlet_attr* attrs, size_t n, const char* data_json) {
  if (!c) return -EINVAL;
  ActionResult r;
  r.ok = true;
  int ret = 0;
  for (size_t i = 0; i < n; i++)
    if (attrs[i].key && attrs[i].value) r.attrs.emplace_back(attrs[i].key, attrs[i].value);
  if (data_json) {
    const std::string_view text(data_json);  // one strlen for the check and the copy
    if (!json_valid(text)) {
      r = ActionResult::failure("the plugin answered with invalid JSON data");
      if (c->owner) c->owner->log(HOSTLET_LOG_ERROR, "action answered with invalid JSON data");
      ret = -EINVAL;
    } else {
      // On one line, as hostlet_result promises: valid JSON holds raw line
      // breaks only as whitespace between tokens, so blanking them keeps the
      // value and lets line-based consumers (unixsock replies) copy it as is.
      r.data_json.assign(text);
      for (char brk : {'\n', '\r'})
        for (size_t at = r.data_json.find(brk); at != std::string::npos; at = r.data_json.find(brk, at + 1))
          r.data_json[at] = ' ';
    }
  }
  c->reg->finish(c, std::move(r));
  c->reg->release(c);
  return ret;
}

int ActionRegistry::reply_error(hostlet_call* c, const char* message) {
  if (!c) return -EINVAL;
  c->reg->finish(c, ActionResult::failure(message && *message ? message : "unspecified error"));
  c->reg->release(c);
  return 0;
}

void ActionRegistry::on_timer(uv_timer_t* t) {
  auto* self = static_cast<ActionRegistry*>(t->data);
  uint64_t now = uv_hrtime();
  while (!self->pending_.empty()) {
    PendingCall* c = self->pending_.front();
    if (c->deadline_ns == 0 || c->deadline_ns > now) break;
    std::string who = c->owner ? c->owner->name() : "hostlet";
    self->finish(c, ActionResult::failure("action timed out after " + std::to_string(self->timeout_ms_) +
                                          " ms without an answer from '" + who + "'"));
  }
  while (!self->held_.empty() && self->held_.front().deadline_ns && self->held_.front().deadline_ns <= now) {
    HeldCall c = std::move(self->held_.front());
    self->held_.pop_front();
    if (auto h = self->holding_.find(c.instance); h != self->holding_.end()) h->second.count--;
    c.cb(ActionResult::failure("action timed out after " + std::to_string(self->timeout_ms_) + " ms while '" +
                               c.instance + "' was reloading"));
  }
  if (self->pending_.empty() && self->held_.empty()) uv_timer_stop(&self->timer_);
}

size_t ActionRegistry::pending_for(const Instance* owner) const {
  size_t n = 0;
  for (const auto* c : pending_) n += c->owner == owner;
  return n;
}

void ActionRegistry::stage(Instance* owner) { staged_[owner]; }

std::vector<std::string> ActionRegistry::commit(Instance* owner) {
  std::vector<std::string> refused;
  auto st = staged_.find(owner);
  if (st == staged_.end()) return refused;
  std::vector<Entry> entries = std::move(st->second);
  staged_.erase(st);
  for (auto& e : entries) {
    if (entries_.count(e.name)) {
      refused.push_back(e.name);
      continue;
    }
    std::string key = e.name;
    entries_.emplace(std::move(key), std::move(e));
  }
  return refused;
}

void ActionRegistry::discard(Instance* owner) { staged_.erase(owner); }

void ActionRegistry::hold(const std::string& instance, size_t max) { holding_[instance] = Holding{max ? max : 1, 0}; }

size_t ActionRegistry::release(const std::string& instance) {
  holding_.erase(instance);
  std::vector<HeldCall> mine;
  std::deque<HeldCall> rest;
  for (auto& c : held_) (c.instance == instance ? mine.emplace_back(std::move(c)) : rest.emplace_back(std::move(c)));
  held_.swap(rest);
  for (auto& c : mine) {
    auto cb = c.cb;  // call() consumes its copy only when the action exists
    if (call(c.name, std::move(c.attrs), std::move(c.cb)) == -ENOENT)
      cb(ActionResult::failure("no such action '" + c.name + "' (after the reload of '" + instance + "')"));
  }
  return mine.size();
}

void ActionRegistry::fail_owner_calls(Instance* owner, const std::string& why) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    PendingCall* c = *it++;
    if (c->owner == owner) finish(c, ActionResult::failure(why));
  }
}

void ActionRegistry::free_owner_calls(Instance* owner) {
  fail_owner_calls(owner, "instance destroyed");
  for (auto it = orphans_.begin(); it != orphans_.end();) {
    PendingCall* c = *it++;
    if (c->owner == owner) release(c);
  }
}

void ActionRegistry::close(std::function<void()> cb) {
  close_cb_ = std::move(cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* self = static_cast<ActionRegistry*>(h->data);
    if (self->close_cb_) self->close_cb_();
  });
}

}  // namespace hostlet
