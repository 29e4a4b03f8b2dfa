#include "actions.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "json_check.hpp"

namespace hostlet {

struct PendingCall {
  ActionRegistry* reg = nullptr;
  ActionOwner* owner = nullptr;
  Attrs attrs;
  ActionRegistry::ResultFn cb;  // empty once the caller has its answer
  uint64_t deadline_ns = 0;     // 0 = none
  uint64_t started_ns = 0;      // handed to the handler (uv_hrtime)
  std::list<std::unique_ptr<hostlet_call>>::iterator it;  // in pending_ or orphans_
  bool orphan = false;          // in orphans_ rather than pending_
};

}  // namespace hostlet

// The ABI's opaque call handle is a PendingCall.
struct hostlet_call : hostlet::PendingCall {};

namespace hostlet {

ActionRegistry::ActionRegistry(uv_loop_t* loop, uint64_t timeout_ms, uint64_t wait_ms, size_t max_waiting)
    : loop_(loop), timeout_ms_(timeout_ms), wait_ms_(wait_ms), max_waiting_(max_waiting) {
  for (uv_timer_t* t : {&timer_, &wait_timer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(t));
  }
}

ActionRegistry::~ActionRegistry() = default;

static bool valid_action_name(std::string_view name) {
  if (name.empty() || name.size() > 256 || name.front() == '.' || name.back() == '.') return false;
  for (char ch : name)
    if (!(isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-')) return false;
  return name.find("..") == std::string_view::npos;
}

int ActionRegistry::add_plugin(std::string name, ActionOwner* owner, hostlet_action_fn fn, void* arg) {
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

void ActionRegistry::remove_owner(ActionOwner* owner) {
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.owner == owner; });
  fail_waiting(owner, "instance '" + owner->name() + "' was removed");
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

int ActionRegistry::call(std::string_view name, Attrs attrs, ResultFn cb, const CallOptions& opts) {
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
  WaitingCall w{std::string(name), std::move(attrs), std::move(cb), 0, 0,
                opts.wait_ms == CallOptions::kDefaultWait ? wait_ms_ : opts.wait_ms};
  if (!e.owner) {
    start(e, std::move(w));
    return 0;
  }
  auto q = waiting_.find(e.owner);
  bool queue_empty = q == waiting_.end() || q->second.empty();
  if (queue_empty && e.owner->has_room()) {
    start(e, std::move(w));
    return 0;
  }
  // Full (or others wait already, and they go first): wait for room.
  uint64_t now = uv_hrtime();
  if (w.wait_ms == 0 || wait_stats_.waiting >= max_waiting_) {
    wait_stats_.refused++;
    w.cb(busy(e.owner, w, now, false));
    return 0;
  }
  w.since_ns = now;
  w.deadline_ns = now + w.wait_ms * 1000000ull;
  wait_stats_.waited++;
  enqueue(e.owner, std::move(w), false);
  e.owner->want_room();
  return 0;
}

bool ActionRegistry::start(const Entry& e, WaitingCall&& w) {
  pending_.push_back(std::make_unique<hostlet_call>());
  hostlet_call* c = pending_.back().get();
  c->it = std::prev(pending_.end());
  c->reg = this;
  c->owner = e.owner;
  c->attrs = std::move(w.attrs);
  c->cb = std::move(w.cb);
  c->started_ns = uv_hrtime();
  if (timeout_ms_ > 0) c->deadline_ns = c->started_ns + timeout_ms_ * 1000000ull;
  arm_timer();
  std::vector<hostlet_attr> cattrs = c_attrs(c->attrs);
  int r = e.owner->invoke_action(e.fn, e.arg, c, cattrs.data(), cattrs.size());
  if (r == 0) {
    e.owner->take_error();  // a message without an error is ignored
    return true;
  }
  // Not accepted: the plugin must not answer. -EAGAIN ("busy") with time
  // left to wait puts the call back first in line; otherwise we answer it.
  uint64_t now = uv_hrtime();
  if (r == -EAGAIN && w.wait_ms > 0 && (w.deadline_ns == 0 || now < w.deadline_ns) &&
      wait_stats_.waiting < max_waiting_) {
    w.attrs = std::move(c->attrs);
    w.cb = std::move(c->cb);
    release(c);
    if (w.deadline_ns == 0) {
      w.since_ns = now;
      w.deadline_ns = now + w.wait_ms * 1000000ull;
      wait_stats_.waited++;
    }
    enqueue(e.owner, std::move(w), true);
    e.owner->want_room();
    return false;
  }
  if (r == -EAGAIN) {
    w.cb = std::move(c->cb);
    release(c);
    if (w.deadline_ns) wait_stats_.expired++;
    else wait_stats_.refused++;
    w.cb(busy(e.owner, w, now, w.deadline_ns != 0));
    return true;
  }
  std::string why = e.owner->take_error();
  finish(c, ActionResult::failure(why.empty() ? std::string("action refused: ") + hostlet_strerror(r) : why));
  release(c);
  return true;
}

void ActionRegistry::enqueue(ActionOwner* owner, WaitingCall&& w, bool front) {
  // A timer armed for an earlier deadline already covers this call: no scan
  // of every waiting call on each enqueue of a flood.
  const bool covered = wait_armed_ns_ != 0 && wait_armed_ns_ <= w.deadline_ns;
  auto& q = waiting_[owner];
  if (front) q.push_front(std::move(w));
  else q.push_back(std::move(w));
  if (++wait_stats_.waiting > wait_stats_.max_waiting) wait_stats_.max_waiting = wait_stats_.waiting;
  if (!covered) arm_wait_timer();
}

void ActionRegistry::room_available(ActionOwner* owner) {
  auto q = waiting_.find(owner);
  if (q == waiting_.end()) return;
  // Each start may answer, and an answer may call() again (a rule's next
  // step) and so touch waiting_: look the queue up anew every round.
  while (q != waiting_.end() && !q->second.empty() && owner->accepting_calls() && owner->has_room()) {
    WaitingCall w = std::move(q->second.front());
    q->second.pop_front();
    wait_stats_.waiting--;
    auto e = entries_.find(w.name);
    if (e == entries_.end() || e->second.owner != owner) {
      // Not reached today: an owner's entries go only through remove_owner,
      // which answers its waiting calls, and a reload moves them to the held
      // calls first. Should it happen, the caller still gets its one answer.
      w.cb(ActionResult::failure("no such action '" + w.name + "' for the calls that waited for '" + owner->name() + "'"));
    } else if (!start(e->second, std::move(w))) {
      return;  // busy again: it asked for room
    }
    q = waiting_.find(owner);
  }
  if (q == waiting_.end()) return;
  if (q->second.empty()) waiting_.erase(q);
  else if (!owner->accepting_calls()) fail_waiting(owner, "instance '" + owner->name() + "' is not running");
  else owner->want_room();
}

ActionResult ActionRegistry::busy(const ActionOwner* owner, const WaitingCall& w, uint64_t now, bool expired) const {
  std::string limits = owner->limits_text();
  std::string lane = "the offload lane of '" + owner->name() + "'" + (limits.empty() ? "" : " (" + limits + ")");
  if (expired)
    return ActionResult::failure(w.name + " did not start: " + lane + " was full for " +
                                     std::to_string((now - w.since_ns) / 1000000) + " ms (wait " +
                                     std::to_string(w.wait_ms) + " ms, agent.action_wait or the rule's)",
                                 -EAGAIN);
  if (w.wait_ms == 0)
    return ActionResult::failure(w.name + " did not start: " + lane + " is full (EAGAIN; the call asked not to wait)",
                                 -EAGAIN);
  return ActionResult::failure(w.name + " did not start: " + lane + " is full and " +
                                   std::to_string(wait_stats_.waiting) + " calls already wait for lanes (EAGAIN)",
                               -EAGAIN);
}

void ActionRegistry::arm_wait_timer() {
  if (wait_stats_.waiting == 0) return;
  uint64_t first = UINT64_MAX, shortest_ms = UINT64_MAX;
  for (const auto& [owner, q] : waiting_)
    for (const auto& w : q) {
      first = std::min(first, w.deadline_ns);
      shortest_ms = std::min(shortest_ms, w.wait_ms);
    }
  if (first == UINT64_MAX) return;
  if (wait_armed_ns_ != 0 && wait_armed_ns_ <= first) return;
  uint64_t now = uv_hrtime();
  // Millisecond resolution, and not more often than every 1/8 of the
  // shortest wait, so a flood of calls with spread deadlines costs few scans
  // (a call is answered at most 1/8 of its wait late).
  uint64_t in_ms = first > now ? (first - now + 999999) / 1000000 : 0;
  in_ms = std::max(in_ms, shortest_ms / 8);
  wait_armed_ns_ = first;
  uv_timer_start(&wait_timer_, &ActionRegistry::on_wait_timer, in_ms, 0);
}

void ActionRegistry::on_wait_timer(uv_timer_t* t) {
  auto* self = static_cast<ActionRegistry*>(t->data);
  self->wait_armed_ns_ = 0;
  self->expire_waiting(uv_hrtime());
  self->arm_wait_timer();
}

void ActionRegistry::expire_waiting(uint64_t now) {
  std::vector<WaitingCall> expired;
  std::vector<const ActionOwner*> owners;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    auto& q = it->second;
    for (auto w = q.begin(); w != q.end();) {
      if (w->deadline_ns > now) {
        ++w;
        continue;
      }
      owners.push_back(it->first);
      expired.push_back(std::move(*w));
      w = q.erase(w);
      wait_stats_.waiting--;
      wait_stats_.expired++;
    }
    it = q.empty() ? waiting_.erase(it) : std::next(it);
  }
  // Answer after the scan and after every message is made: an answer may call() again.
  std::vector<ActionResult> results;
  for (size_t i = 0; i < expired.size(); i++) results.push_back(busy(owners[i], expired[i], now, true));
  for (size_t i = 0; i < expired.size(); i++) expired[i].cb(std::move(results[i]));
}

void ActionRegistry::fail_waiting(ActionOwner* owner, const std::string& why) {
  auto q = waiting_.find(owner);
  if (q == waiting_.end()) return;
  std::deque<WaitingCall> calls = std::move(q->second);
  waiting_.erase(q);
  wait_stats_.waiting -= calls.size();
  for (auto& w : calls) w.cb(ActionResult::failure(why));
}

size_t ActionRegistry::waiting_for(const ActionOwner* owner) const {
  auto q = waiting_.find(const_cast<ActionOwner*>(owner));
  return q == waiting_.end() ? 0 : q->second.size();
}

void ActionRegistry::finish(PendingCall* c, ActionResult&& r) {
  if (!c->cb) return;
  auto cb = std::move(c->cb);
  c->cb = nullptr;
  latency_.record(uv_hrtime() - c->started_ns);
  (r.ok ? answered_ok_ : answered_failed_)++;
  if (!c->orphan) {
    orphans_.splice(orphans_.end(), pending_, c->it);  // iterators stay valid
    c->orphan = true;
  }
  cb(std::move(r));
}

void ActionRegistry::release(PendingCall* c) {
  (c->orphan ? orphans_ : pending_).erase(c->it);  // frees c
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
      if (c->owner) c->owner->log_error("action answered with invalid JSON data");
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
    PendingCall* c = self->pending_.front().get();
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

size_t ActionRegistry::pending_for(const ActionOwner* owner) const {
  size_t n = 0;
  for (const auto& c : pending_) n += c->owner == owner;
  return n;
}

void ActionRegistry::stage(ActionOwner* owner) { staged_[owner]; }

std::vector<std::string> ActionRegistry::commit(ActionOwner* owner) {
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

void ActionRegistry::discard(ActionOwner* owner) { staged_.erase(owner); }

void ActionRegistry::hold(const std::string& instance, size_t max) {
  Holding& h = holding_[instance] = Holding{max ? max : 1, 0};
  // Calls waiting for the lane of the instance being reloaded are held with
  // the rest, ahead of them (they came first), and run on its successor.
  uint64_t deadline = timeout_ms_ > 0 ? uv_hrtime() + timeout_ms_ * 1000000ull : 0;
  std::deque<HeldCall> moved;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->first->name() != instance) {
      ++it;
      continue;
    }
    for (auto& w : it->second) moved.push_back(HeldCall{std::move(w.name), instance, std::move(w.attrs), std::move(w.cb), deadline});
    wait_stats_.waiting -= it->second.size();
    it = waiting_.erase(it);
  }
  // (Nothing of `instance` is held yet, and the new deadlines are the
  // latest: appending keeps held_ in deadline order.)
  h.count += moved.size();
  for (auto& c : moved) held_.push_back(std::move(c));
  if (!moved.empty()) arm_timer();
}

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

void ActionRegistry::fail_owner_calls(ActionOwner* owner, const std::string& why) {
  fail_waiting(owner, why);
  for (auto it = pending_.begin(); it != pending_.end();) {
    PendingCall* c = (it++)->get();
    if (c->owner == owner) finish(c, ActionResult::failure(why));
  }
}

void ActionRegistry::free_owner_calls(ActionOwner* owner) {
  fail_owner_calls(owner, "instance destroyed");
  for (auto it = orphans_.begin(); it != orphans_.end();) {
    PendingCall* c = (it++)->get();
    if (c->owner == owner) release(c);
  }
}

void ActionRegistry::close(std::function<void()> cb) {
  close_cb_ = std::move(cb);
  for (auto& [owner, q] : waiting_) wait_stats_.waiting -= q.size();
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& [owner, q] : waiting)
    for (auto& w : q) w.cb(ActionResult::failure(w.name + " did not start: the agent is stopping"));
  open_handles_ = 2;
  for (uv_timer_t* t : {&timer_, &wait_timer_})
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
      auto* self = static_cast<ActionRegistry*>(h->data);
      if (--self->open_handles_ == 0 && self->close_cb_) self->close_cb_();
    });
}

}  // namespace hostlet
