#include "instance.hpp"

#include <atomic>
#include <cstdarg>

#include "lag.hpp"
#include "metrics.hpp"
#include "scrape.hpp"
#include "log.hpp"

// The ABI's opaque instance handle.
struct hostlet_host {
  hostlet::Instance* inst;
};

namespace hostlet {

struct HostHandle : hostlet_host {};

namespace {
std::atomic<uint64_t> g_generation{0};
}  // namespace

// --------------------------------------------------------------------- Core

void Core::post(const InstanceRef& ref, hostlet_post_fn fn, void* arg) {
  {
    std::lock_guard<std::mutex> lk(post_mu);
    posted.push_back({ref, fn, arg});
  }
  uv_async_send(&post_async);
}

void run_posted(Core& core) {
  std::vector<Core::Posted> batch;
  {
    std::lock_guard<std::mutex> lk(core.post_mu);
    batch.swap(core.posted);
  }
  for (auto& p : batch)
    if (Instance* inst = core.alive(p.ref)) inst->run_callback("posted callback", [&] { p.fn(p.arg); });
}

// ----------------------------------------------------------------- Instance

Instance::Instance(Core& core, InstanceSection cfg, std::shared_ptr<Library> lib, ConfigValues values,
                   std::string config_file)
    : core_(core),
      cfg_(std::move(cfg)),
      lib_(std::move(lib)),
      values_(std::move(values)),
      config_file_(std::move(config_file)),
      handle_(std::make_unique<HostHandle>()),
      generation_(++g_generation) {
  handle_->inst = this;
  LaneLimits limits;
  limits.max_inflight = cfg_.max_inflight;
  limits.max_queue = cfg_.max_queue;
  limits.default_timeout_ms = cfg_.offload_timeout_ms;
  lane_ = std::make_unique<Lane>(core_.loop, cfg_.name, limits);
  lane_->set_observer(this);
  // The lane's state outlives the Lane while work is still on the pool: it
  // keeps the plugin's code mapped until then.
  lane_->keep_alive(lib_);
  core_.live.emplace(generation_, this);
}

Instance::~Instance() { core_.live.erase(generation_); }

hostlet_host* Instance::c_handle() { return handle_.get(); }
Instance* Instance::from(hostlet_host* h) { return h ? h->inst : nullptr; }

const char* Instance::state_name() const {
  switch (state_) {
    case State::Loaded: return "loaded";
    case State::Inited: return "initialized";
    case State::Started: return "running";
    case State::Stopping: return "stopping";
    case State::Stopped: return "stopped";
    case State::Destroyed: return "destroyed";
    case State::Failed: return "failed";
  }
  return "?";
}

void Instance::log(hostlet_log_level level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(static_cast<Level>(level), cfg_.name, fmt, ap);
  va_end(ap);
}

void Instance::log_error(const char* message) { log(HOSTLET_LOG_ERROR, "%s", message); }

void Instance::callbacks_ran(const char* what, uint64_t count, uint64_t ns) {
  counters_.callbacks += count;
  if (ns > counters_.max_callback_ns) counters_.max_callback_ns = ns;
  if (core_.lag) core_.lag->record_callback(cfg_.name, what, ns, count);
}

void Instance::room_available() {
  if (core_.actions) core_.actions->room_available(this);
}

std::string Instance::limits_text() const {
  if (!lane_) return {};
  const LaneLimits& l = lane_->limits();
  return "max_inflight " + std::to_string(l.max_inflight) + ", max_queue " + std::to_string(l.max_queue);
}

int Instance::invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs,
                            size_t n) {
  int r = 0;
  error_.clear();
  run_callback("action handler", [&] { r = fn(arg, call, attrs, n); });
  return r;
}

// ------------------------------------------------------------ lifecycle

int Instance::init() {
  int r = 0;
  error_.clear();
  run_callback("init", [&] { r = lib_->desc()->init(c_handle(), api(), &state_ptr_); });
  init_error_ = take_error();
  if (r != 0) {
    state_ = State::Failed;
    if (r > 0) r = -r;
    if (init_error_.empty()) log(HOSTLET_LOG_ERROR, "init failed: %s", hostlet_strerror(r));
    else log(HOSTLET_LOG_ERROR, "init failed: %s", init_error_.c_str());
    return r;
  }
  init_error_.clear();
  state_ = State::Inited;
  return 0;
}

int Instance::start() {
  int r = 0;
  start_called_ = true;
  state_ = State::Started;  // start may register and receive callbacks already
  error_.clear();
  run_callback("start", [&] { r = lib_->desc()->start(state_ptr_); });
  std::string why = take_error();
  if (r != 0) {
    if (r > 0) r = -r;
    log(HOSTLET_LOG_ERROR, "start failed: %s", why.empty() ? hostlet_strerror(r) : why.c_str());
    state_ = State::Inited;
    return r;
  }
  return 0;
}

void Instance::stop(uint64_t deadline_ms, std::function<void(bool)> done) {
  stop_done_ = std::move(done);
  stop_deadline_ms_ = deadline_ms;
  stop_reported_ = false;
  bool was_started = start_called_ && (state_ == State::Started || state_ == State::Inited);
  state_ = State::Stopping;
  core_.actions->remove_owner(this);
  core_.actions->fail_owner_calls(this, "instance '" + cfg_.name + "' is stopping");
  if (!was_started || !state_ptr_) {
    after_plugin_stopped();
    return;
  }
  // The plugin reports through api->stopped(); a plugin that never does is
  // not allowed to hold up shutdown past the deadline.
  stop_timer_ = make_uv<uv_timer_t>(core_.loop, this, uv_timer_init);
  uv_timer_start(
      stop_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Instance*>(t->data);
        self->log(HOSTLET_LOG_ERROR, "did not report stopped within %llu ms; closing its handles anyway",
                  static_cast<unsigned long long>(self->stop_deadline_ms_));
        self->plugin_stopped();
      },
      deadline_ms ? deadline_ms : 5000, 0);
  run_callback("stop", [&] { lib_->desc()->stop(state_ptr_); });
}

void Instance::plugin_stopped() {
  if (state_ != State::Stopping || stop_reported_) return;
  stop_timer_.reset();
  after_plugin_stopped();
}

void Instance::after_plugin_stopped() {
  stop_reported_ = true;
  close_handles();
  lane_->drain(stop_deadline_ms_, [this](bool all_finished) {
    state_ = State::Stopped;
    if (!all_finished)
      log(HOSTLET_LOG_ERROR, "%zu offloaded work item(s) still running after %llu ms; the plugin stays loaded",
          lane_->outstanding(), static_cast<unsigned long long>(stop_deadline_ms_));
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    if (done) done(all_finished);
  });
}

void Instance::close_handles() {
  timers_.close_all();
  watches_.close_all();
  for (auto& s : subs_)
    if (s->sub) {
      core_.bus->unsubscribe(s->sub);
      s->sub = nullptr;  // the record stays until the plugin unsubscribes or the instance goes
    }
  core_.bus->unsubscribe_owner(this);
}

// Answers the plugin is still owed, completed before its destroy so that the
// plugin can free what it attached to them; the real answers, should they
// come later, find the instance gone and are dropped.
void Instance::abandon_owed() {
  ActionResult gone = ActionResult::failure("instance '" + cfg_.name + "' is being destroyed");
  CResult cgone(gone);
  while (!calls_.empty()) {
    std::unique_ptr<CallRec> rec = std::move(calls_.front());
    calls_.pop_front();
    run_callback("call result callback", [&] { rec->cb(rec->arg, &cgone.result); });
  }
  while (!tracked_.empty()) {
    std::unique_ptr<TrackedRec> rec = std::move(tracked_.front());
    tracked_.pop_front();
    run_callback("tracked event callback", [&] { rec->done(rec->arg, rec->event_id, nullptr, 0); });
  }
  while (!scrapes_.empty()) {
    std::unique_ptr<ScrapeRec> rec = std::move(scrapes_.front());
    scrapes_.pop_front();
    run_callback("scrape callback", [&] { rec->cb(rec->arg, nullptr, 0); });
  }
}

void Instance::destroy() {
  if (state_ == State::Destroyed) return;
  if (state_ptr_) {
    abandon_owed();
    void* s = state_ptr_;
    state_ptr_ = nullptr;
    run_callback("destroy", [&] { lib_->desc()->destroy(s); });
  }
  state_ = State::Destroyed;
  if (core_.scraper) core_.scraper->forget(this);
  core_.live.erase(generation_);
  calls_.clear();
  tracked_.clear();
  scrapes_.clear();
  core_.actions->remove_owner(this);
  core_.actions->free_owner_calls(this);
  core_.bus->unsubscribe_owner(this);
}

// -------------------------------------------------- what the plugin holds

Instance::SubRec* Instance::add_sub(std::unique_ptr<SubRec> rec) {
  SubRec* r = rec.get();
  subs_.push_back(std::move(rec));
  r->it = std::prev(subs_.end());
  return r;
}

void Instance::remove_sub(SubRec* rec) {
  if (rec->sub) core_.bus->unsubscribe(rec->sub);
  subs_.erase(rec->it);
}

Instance::CallRec* Instance::add_call(std::unique_ptr<CallRec> rec) {
  CallRec* r = rec.get();
  calls_.push_back(std::move(rec));
  r->it = std::prev(calls_.end());
  return r;
}

void Instance::deliver_call(CallRec* rec) {
  std::unique_ptr<CallRec> owned = std::move(*rec->it);
  calls_.erase(rec->it);
  CResult r(owned->result);
  run_callback("call result callback", [&] { owned->cb(owned->arg, &r.result); });
}

Instance::TrackedRec* Instance::add_tracked(std::unique_ptr<TrackedRec> rec) {
  TrackedRec* r = rec.get();
  tracked_.push_back(std::move(rec));
  r->it = std::prev(tracked_.end());
  return r;
}

void Instance::deliver_tracked(TrackedRec* rec, std::vector<Tracker::Outcome>& outs) {
  std::unique_ptr<TrackedRec> owned = std::move(*rec->it);
  tracked_.erase(rec->it);
  std::vector<hostlet_outcome> cos;
  std::vector<std::unique_ptr<CResult>> results;  // each outcome's attrs, valid during the callback
  cos.reserve(outs.size());
  results.reserve(outs.size());
  for (auto& o : outs) {
    results.push_back(std::make_unique<CResult>(o.result));
    cos.push_back({o.action.c_str(), o.rule.c_str(), results.back()->result});
  }
  run_callback("tracked event callback", [&] { owned->done(owned->arg, owned->event_id, cos.data(), cos.size()); });
}

// ------------------------------------------------------ health and metrics

const char* Instance::health_name(hostlet_health h) {
  switch (h) {
    case HOSTLET_HEALTH_OK: return "ok";
    case HOSTLET_HEALTH_DEGRADED: return "degraded";
    case HOSTLET_HEALTH_FAILED: return "failed";
  }
  return "?";
}

int Instance::set_health(hostlet_health health, const char* reason) {
  if (health != HOSTLET_HEALTH_OK && health != HOSTLET_HEALTH_DEGRADED && health != HOSTLET_HEALTH_FAILED)
    return -EINVAL;
  std::string why = reason ? reason : "";
  if (why.size() > 512) why.resize(512);  // a reason is a line of status, not a report
  if (health == health_ && why == health_reason_) return 0;
  hostlet_health previous = health_;
  health_ = health;
  health_reason_ = why;
  if (health == previous) return 0;  // only the reason changed: no event
  log(health == HOSTLET_HEALTH_OK ? HOSTLET_LOG_INFO : HOSTLET_LOG_WARN, "health %s -> %s%s%s", health_name(previous),
      health_name(health), why.empty() ? "" : ": ", why.c_str());
  Event ev;
  ev.source = "hostlet";
  ev.type = "instance.health";
  ev.attrs = {{"instance", cfg_.name}, {"health", health_name(health)}, {"previous", health_name(previous)},
              {"reason", why}};
  core_.bus->publish(std::move(ev));  // a full queue counts it as dropped: the state above stays right
  return 0;
}

bool Instance::call_refresh() {
  auto fn = lib_->refresh_entry();
  if (!fn || !state_ptr_) return false;
  int r = 0;
  run_callback("refresh", [&] { r = fn(state_ptr_); });
  return r == 1;
}

void Instance::call_collect(hostlet_metrics* out) {
  auto fn = lib_->collect_entry();
  if (!fn || !state_ptr_) return;
  run_callback("collect", [&] { fn(state_ptr_, out); });
}

void Instance::note_metrics_refused(size_t count, const std::string& why) {
  metrics_refused_ += count;
  if (metrics_refusal_logged_) return;
  metrics_refusal_logged_ = true;
  log(HOSTLET_LOG_WARN, "metrics: %zu refused in one scrape, the first: %s (logged once per instance)", count,
      why.c_str());
}

Instance::ScrapeRec* Instance::add_scrape(std::unique_ptr<ScrapeRec> rec) {
  ScrapeRec* r = rec.get();
  scrapes_.push_back(std::move(rec));
  r->it = std::prev(scrapes_.end());
  return r;
}

void Instance::deliver_scrape(ScrapeRec* rec, const std::string& text) {
  std::unique_ptr<ScrapeRec> owned = std::move(*rec->it);
  scrapes_.erase(rec->it);
  run_callback("scrape callback", [&] { owned->cb(owned->arg, text.c_str(), text.size()); });
}

}  // namespace hostlet
