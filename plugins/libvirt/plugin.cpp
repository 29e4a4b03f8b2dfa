// hostlet plugin "libvirt": domains as actions, libvirt's events as hostlet events.
//
// Example configuration
//
//   plugins:
//     - name: virt                     # actions virt.domain.start, ...; events from "virt"
//       plugin: libvirt
//       max_inflight: 4                # concurrent libvirt calls on the one shared connection
//       config:
//         uri: "qemu:///system"        # default "test:///default"
//         keepalive_interval: 5s       # remote URIs; a hung daemon fails calls after ~interval*(count+1)
//         keepalive_count: 3
//         reconnect_min: 1s            # backoff after a lost connection or a failed open,
//         reconnect_max: 60s           # doubling up to reconnect_max
//         stats_interval: 30s          # publish domain.stats per domain; 0 = off
//         stats_groups: [state, cpu-total, balloon]
//         metrics_interval: 15s        # refresh the metrics cache; 0 = only when scraped
//         metrics_max_age: 5s          # a scrape with older data starts a collection
//   rules:
//     - on:   {source: notify, type: vm.start, attrs: {name: "vm*"}}
//       do:   virt.domain.start
//       with: {name: "${name}"}
//
//   $ hostlet-ctl --json call virt.domain.list state=running
//   $ hostlet-ctl events --type 'domain.*'
//
// How it works. One connection per instance, shared by every call (libvirt
// connections are thread-safe). libvirt's event loop runs on the agent's loop
// through the hostlet-virt-events bridge, so domain events, keepalive and
// the close callback need no thread of their own. Every blocking libvirt call
// (open, every action, stats) runs on a pool thread through the instance's
// lane (host offload); closing a connection runs on a thread of the bridge.
// The close callback, which may run on a pool thread, is handed to the loop
// with post(). While disconnected, actions fail at once.
//
// libvirt never holds a pointer into this .so: its callbacks are the
// bridge's, forwarding through a sink that is detached synchronously when a
// connection is dropped. Stop waits for every offloaded item of this instance
// to be gone (timed-out ones included: they hold a reference to the
// connection), drops the connection, then releases the bridge, which reports
// stopped from its own code once the close has finished and its handles are
// closed: no code of this .so runs after stopped(), so the host may unload it.
#include "connection.hpp"
#include "event_bridge.hpp"
#include "metrics.hpp"
#include "ops.hpp"
#include "stats.hpp"
#include "words.hpp"

#include <hostlet/plugin.hpp>

#include <uv.h>

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hostlet_virt {
namespace {

// Dropping a ConnectionPtr detaches its callbacks and closes it on a thread of the bridge.
using ConnectionPtr = std::unique_ptr<Connection>;

// Sets *flag while alive. Held by a work item and cleared when the item is
// gone, not when done reports a deadline: a late collection still running
// must not overlap the next one.
class RunningFlag {
 public:
  explicit RunningFlag(bool* f) : flag_(f) { *flag_ = true; }
  RunningFlag(RunningFlag&& o) noexcept : flag_(std::exchange(o.flag_, nullptr)) {}
  RunningFlag(const RunningFlag&) = delete;
  RunningFlag& operator=(const RunningFlag&) = delete;
  RunningFlag& operator=(RunningFlag&&) = delete;
  ~RunningFlag() {
    if (flag_) *flag_ = false;
  }

 private:
  bool* flag_;
};

// A collection missing a domain this many times in a row forgets it (a
// domain that stopped while domain events are off).
constexpr unsigned kForgetAfterMisses = 10;

class Virt final : public hostlet::Plugin, private Listener {
 public:
  explicit Virt(hostlet::Host& host);
  ~Virt() override;
  int start() override;
  void stop(std::function<void()> stopped) override;

  // ABI 1.1 metrics.
  bool refresh() override;
  void collect(hostlet::Metrics& m) override;
  void collect(MetricsOut& out) const;

 private:
  enum class Phase { idle, connecting, connected, waiting, stopping };

  struct OpenResult {
    ConnectionPtr conn;
    std::string error;
  };

  // Alive as long as an offloaded item of this instance is: stop waits for all.
  class Token {
   public:
    explicit Token(Virt* v) : v_(v) { v_->tokens_++; }
    Token(Token&& o) noexcept : v_(std::exchange(o.v_, nullptr)) {}
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    Token& operator=(Token&&) = delete;
    ~Token() {
      if (v_) v_->token_released();
    }

   private:
    Virt* v_;
  };

  // Connection management (loop thread).
  void connect();
  void on_open_done(int status, OpenResult r);
  void connect_failed(const std::string& error);
  void schedule_retry();
  void on_lost(uint64_t gen, int reason);
  void use(ConnectionPtr c);
  std::string not_connected() const;

  // Offload through the lane, remembering the item so that stop can cancel it.
  template <class W, class D> int offload(W&& work, D&& done);
  void release_later(std::shared_ptr<void> what);

  void submit(hostlet::Call& call, const Op& op);
  void connection_info(hostlet::Call& call);
  void stats_tick();
  bool start_metrics_collection();
  void on_metrics_collected(int status, uint64_t started_ns, Snapshot snap);
  void metrics_refreshed();
  void set_health(hostlet_health health, const std::string& reason);
  void publish(const char* type, const hostlet::Attrs& attrs);

  // Listener
  void on_lifecycle(Connection& c, virDomainPtr dom, int event, int detail) override;
  void on_reboot(Connection& c, virDomainPtr dom) override;
  void on_watchdog(Connection& c, virDomainPtr dom, int action) override;
  void on_closed(Connection& c, int reason) override;

  void token_released();
  void maybe_stopped();
  static void bridge_released(void* self);

  Settings settings_;
  uint64_t reconnect_min_ms_, reconnect_max_ms_, stats_interval_ms_;
  unsigned stats_groups_ = 0;
  uv_loop_t* loop_;

  Phase phase_ = Phase::idle;
  ConnectionPtr conn_;
  uint64_t gen_ = 0;         // generation of the latest open
  uint64_t closed_gen_ = 0;  // a close callback for a connection still being opened
  uint64_t backoff_ms_;
  uint64_t retry_at_ns_ = 0;
  uint64_t lost_at_ns_ = 0;
  bool outage_published_ = false;
  std::string last_error_;
  hostlet::Timer retry_timer_, stats_timer_;

  bool stats_running_ = false;

  // The metrics cache (loop thread).
  struct KnownDomain {
    DomainSample sample;
    unsigned misses = 0;  // consecutive collections that did not return it
  };
  uint64_t metrics_interval_ms_, metrics_max_age_ms_;
  hostlet::Timer metrics_timer_;
  std::shared_ptr<DeviceCache> devices_ = std::make_shared<DeviceCache>();
  std::map<std::string, KnownDomain> known_;  // by uuid
  NodeSample node_;
  bool have_metrics_ = false;  // a collection succeeded on this connection
  uint64_t metrics_at_ns_ = 0;
  double metrics_duration_s_ = 0;
  bool metrics_running_ = false;
  bool refresh_owed_ = false;  // refresh() returned 1: call metrics_refreshed when the collection ends
  uint64_t collections_ok_ = 0, collections_failed_ = 0;
  hostlet_health health_ = HOSTLET_HEALTH_OK;
  uint64_t stats_skipped_ = 0, events_dropped_ = 0;

  size_t tokens_ = 0;
  uint64_t next_work_ = 1;
  std::unordered_map<uint64_t, hostlet_work*> works_;
  bool bridge_acquired_ = false;
  bool releasing_ = false;
  std::function<void()> stopped_;
};

std::string join_commas(std::vector<std::string> v) {
  std::string s;
  for (auto& w : v) s += (s.empty() ? "" : ",") + w;
  return s;
}

Virt::Virt(hostlet::Host& host) : Plugin(host), loop_(static_cast<uv_loop_t*>(host.uv_loop())) {
  if (!loop_) throw hostlet::Error(-ENOTSUP, "the libvirt plugin needs a libuv-based host (uv_loop() is NULL)");
  settings_.uri = host.str("uri");
  settings_.readonly = host.boolean("readonly");
  const int64_t ka = host.integer("keepalive_interval");
  settings_.keepalive_interval_s = ka <= 0 ? 0 : static_cast<int>((ka + 999) / 1000);
  settings_.keepalive_count = static_cast<unsigned>(host.integer("keepalive_count"));
  settings_.domain_events = host.boolean("domain_events");
  reconnect_min_ms_ = static_cast<uint64_t>(host.integer("reconnect_min"));
  reconnect_max_ms_ = static_cast<uint64_t>(host.integer("reconnect_max"));
  if (reconnect_min_ms_ > reconnect_max_ms_)
    throw hostlet::Error(-EINVAL, "reconnect_min (" + std::to_string(reconnect_min_ms_) +
                                      " ms) is greater than reconnect_max (" +
                                      std::to_string(reconnect_max_ms_) + " ms)");
  backoff_ms_ = reconnect_min_ms_;
  stats_interval_ms_ = static_cast<uint64_t>(host.integer("stats_interval"));
  metrics_interval_ms_ = static_cast<uint64_t>(host.integer("metrics_interval"));
  metrics_max_age_ms_ = static_cast<uint64_t>(host.integer("metrics_max_age"));
  if (std::string e = parse_stats_groups(join_commas(host.list("stats_groups")), &stats_groups_); !e.empty())
    throw hostlet::Error(-EINVAL, "stats_groups: " + e);

  for (const Op& op : ops()) {
    const Op* p = &op;
    host.action(op.verb, [this, p](hostlet::Call& call) { submit(call, *p); });
  }
  host.action("connection.info", [this](hostlet::Call& call) { connection_info(call); });
}

Virt::~Virt() {
  // Normally stop has released everything. A host that gave up waiting for
  // stopped() destroys the instance anyway: then forget the pending done and let go.
  hostlet_virt_events_cancel_done(this);
  conn_.reset();
  if (bridge_acquired_) hostlet_virt_events_release(nullptr, nullptr);
}

int Virt::start() {
  int r = hostlet_virt_events_acquire(loop_);
  if (r != 0) {
    host().error("cannot attach libvirt's event loop to the agent's loop: %s", r == -EBUSY
                     ? "already attached to another loop (one agent process = one loop)"
                     : hostlet_strerror(r));
    return r;
  }
  bridge_acquired_ = true;
  connect();
  return 0;
}

void Virt::stop(std::function<void()> stopped) {
  phase_ = Phase::stopping;
  stopped_ = std::move(stopped);
  retry_timer_.stop();
  stats_timer_.stop();
  metrics_timer_.stop();
  // Items still queued in the lane never start; running ones finish (keepalive bounds them).
  std::vector<hostlet_work*> queued;
  for (auto& [id, w] : works_) queued.push_back(w);
  for (hostlet_work* w : queued) host().cancel(w);
  maybe_stopped();
}

// ---- connection ----

void Virt::connect() {
  if (phase_ == Phase::stopping) return;
  phase_ = Phase::connecting;
  const uint64_t gen = ++gen_;
  int r = offload(
      [settings = settings_, listener = static_cast<Listener*>(this), gen, token = Token(this)]() {
        OpenResult res;
        res.conn.reset(Connection::open(settings, listener, gen, &res.error));
        return res;
      },
      [this](int status, OpenResult res) { on_open_done(status, std::move(res)); });
  if (r != 0) {
    // Not from inside a timer callback that connect_failed would replace: post it.
    std::string why = std::string("cannot offload the open: ") + hostlet_strerror(r);
    if (host().post([this, why] { connect_failed(why); }) != 0) phase_ = Phase::waiting;
  }
}

void Virt::on_open_done(int status, OpenResult res) {
  if (phase_ == Phase::stopping) return;  // res.conn, if any, is retired
  if (status != 0) return connect_failed(std::string("open: ") + hostlet_strerror(status));
  if (!res.conn) return connect_failed(res.error);
  if (res.conn->generation() == closed_gen_) return connect_failed("the connection closed while opening");
  use(std::move(res.conn));
}

void Virt::use(ConnectionPtr c) {
  conn_ = std::move(c);
  phase_ = Phase::connected;
  backoff_ms_ = reconnect_min_ms_;
  last_error_.clear();
  host().info("connected to %s (keepalive %s, domain events %s)", settings_.uri.c_str(),
              conn_->keepalive() ? "on" : "off", conn_->events() ? "on" : "off");
  if (!conn_->warnings().empty()) host().warn("%s: %s", settings_.uri.c_str(), conn_->warnings().c_str());
  if (outage_published_) {
    outage_published_ = false;
    const uint64_t down_ms = (host().now_ns() - lost_at_ns_) / 1000000;
    publish("connection.restored", {{"uri", settings_.uri}, {"downtime_ms", std::to_string(down_ms)}});
  }
  if (stats_interval_ms_ > 0)
    stats_timer_ = host().timer(stats_interval_ms_, stats_interval_ms_, [this] { stats_tick(); });
  set_health(HOSTLET_HEALTH_OK, "");
  start_metrics_collection();  // data for the first scrape
  if (metrics_interval_ms_ > 0)
    metrics_timer_ = host().timer(metrics_interval_ms_, metrics_interval_ms_, [this] { start_metrics_collection(); });
}

void Virt::connect_failed(const std::string& error) {
  if (phase_ == Phase::stopping) return;
  last_error_ = error;
  set_health(HOSTLET_HEALTH_DEGRADED, "libvirt connection to " + settings_.uri + " lost: " + error);
  if (!outage_published_) {
    outage_published_ = true;
    lost_at_ns_ = host().now_ns();
    host().error("cannot connect to %s: %s", settings_.uri.c_str(), error.c_str());
    publish("connection.lost", {{"uri", settings_.uri}, {"reason", "open-failed"}, {"error", error}});
  } else {
    host().warn("reconnect to %s failed: %s", settings_.uri.c_str(), error.c_str());
  }
  schedule_retry();
}

void Virt::schedule_retry() {
  phase_ = Phase::waiting;
  const uint64_t delay = backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, reconnect_max_ms_);
  retry_at_ns_ = host().now_ns() + delay * 1000000;
  retry_timer_ = host().timer(delay, 0, [this] { connect(); });
}

void Virt::on_closed(Connection& c, int reason) {  // any thread
  const uint64_t gen = c.generation();
  host().post([this, gen, reason] { on_lost(gen, reason); });  // -ESHUTDOWN: stopping anyway
}

void Virt::on_lost(uint64_t gen, int reason) {
  if (phase_ == Phase::connecting && gen == gen_) {
    closed_gen_ = gen;  // on_open_done will see it
    return;
  }
  if (phase_ != Phase::connected || !conn_ || conn_->generation() != gen) return;
  stats_timer_.stop();
  metrics_timer_.stop();
  conn_.reset();
  const std::string why = close_reason_word(reason);
  last_error_ = "connection closed (" + why + ")";
  set_health(HOSTLET_HEALTH_DEGRADED, "libvirt connection to " + settings_.uri + " lost: " + last_error_);
  // The next connection's domains are collected afresh.
  known_.clear();
  have_metrics_ = false;
  outage_published_ = true;
  lost_at_ns_ = host().now_ns();
  host().error("lost the connection to %s: %s", settings_.uri.c_str(), why.c_str());
  publish("connection.lost", {{"uri", settings_.uri}, {"reason", why}});
  backoff_ms_ = reconnect_min_ms_;
  schedule_retry();
}

std::string Virt::not_connected() const {
  std::string m = "not connected to " + settings_.uri;
  switch (phase_) {
    case Phase::waiting: {
      const uint64_t now = host().now_ns();
      const uint64_t left = retry_at_ns_ > now ? (retry_at_ns_ - now + 999999999) / 1000000000 : 0;
      m += " (reconnecting in " + std::to_string(left) + "s)";
      break;
    }
    case Phase::connecting: m += " (connecting)"; break;
    case Phase::idle: m += " (not started)"; break;
    case Phase::connected:
    case Phase::stopping: m += " (stopping)"; break;
  }
  if (!last_error_.empty()) m += ": " + last_error_;
  return m;
}

// ---- offload and actions ----

template <class W, class D> int Virt::offload(W&& work, D&& done) {
  const uint64_t id = next_work_++;
  hostlet_work* w = nullptr;
  int r = host().offload(std::forward<W>(work),
                         [this, id, d = std::forward<D>(done)](int status, auto&&... value) mutable {
                           works_.erase(id);
                           d(status, std::forward<decltype(value)>(value)...);
                         },
                         0, &w);
  if (r == 0 && w) works_.emplace(id, w);
  return r;
}

std::string status_text(int status) {
  if (status == -ETIMEDOUT) return "timed out (the libvirt call may still complete)";
  return hostlet_strerror(status);
}

void Virt::submit(hostlet::Call& call, const Op& op) {
  if (phase_ != Phase::connected) return call.error(not_connected());
  Args args;
  for (const char* key : op.keys)
    if (key)
      if (const char* v = call.attr(key)) args.emplace(key, v);
  if (std::string e = op.validate(args); !e.empty()) return call.error(e);

  auto pending = std::make_shared<hostlet::Call>(std::move(call));
  int r = offload(
      [ref = ConnRef(conn_->get()), args = std::move(args), run = op.run, token = Token(this)]() mutable {
        Outcome o = run(ref.get(), args);
        ref.reset();  // a last reference is dropped here, on the pool thread
        return o;
      },
      [this, pending](int status, Outcome o) {
        if (status != 0) return pending->error(status_text(status));
        if (o.ok) pending->ok(o.attrs, o.data_json);
        else pending->error(o.error);
        if (o.release_after_reply) release_later(std::move(o.release_after_reply));
      });
  if (r != 0) pending->error(std::string("cannot run ") + op.verb + ": " + hostlet_strerror(r));
}

// Drops `what` on a pool thread. If it cannot be queued (stopping, or the
// lane is full), the item holding it is freed at once and `what` with it,
// here on the loop: slower, but nothing is kept past the instance.
void Virt::release_later(std::shared_ptr<void> what) {
  offload([what = std::move(what)]() mutable { what.reset(); }, [](int) {});
}

void Virt::connection_info(hostlet::Call& call) {
  const char* phase = "stopping";
  switch (phase_) {
    case Phase::idle: phase = "idle"; break;
    case Phase::connecting: phase = "connecting"; break;
    case Phase::connected: phase = "connected"; break;
    case Phase::waiting: phase = "waiting"; break;
    case Phase::stopping: break;
  }
  hostlet::Attrs a = {{"uri", settings_.uri},
                      {"state", phase},
                      {"generation", std::to_string(gen_)},
                      {"stats_skipped", std::to_string(stats_skipped_)},
                      {"events_dropped", std::to_string(events_dropped_)},
                      {"inflight", std::to_string(works_.size())}};
  if (conn_) {
    a.emplace_back("keepalive", conn_->keepalive() ? "true" : "false");
    a.emplace_back("domain_events", conn_->events() ? "true" : "false");
  }
  if (phase_ == Phase::waiting) {
    const uint64_t now = host().now_ns();
    a.emplace_back("retry_in_ms", std::to_string(retry_at_ns_ > now ? (retry_at_ns_ - now) / 1000000 : 0));
  }
  if (!last_error_.empty()) a.emplace_back("last_error", last_error_);
  call.ok(a);
}

void Virt::stats_tick() {
  if (phase_ != Phase::connected) return;
  if (stats_running_) {
    stats_skipped_++;
    host().debug("stats collection still running; skipping this tick (%" PRIu64 " skipped)", stats_skipped_);
    return;
  }
  int r = offload(
      [ref = ConnRef(conn_->get()), groups = stats_groups_, token = Token(this),
       running = RunningFlag(&stats_running_)]() mutable {
        StatsResult s = collect_stats(ref.get(), groups, 0);
        ref.reset();
        return s;
      },
      [this](int status, StatsResult s) {
        if (status != 0) return host().warn("stats collection: %s", status_text(status).c_str());
        if (!s.ok) return host().warn("stats collection: %s", s.failure.error.c_str());
        for (auto& d : s.domains) {
          hostlet::Attrs a = {{"name", d.name}, {"uuid", d.uuid}};
          for (auto& [k, v] : d.params.items()) a.emplace_back(k, param_text(v));
          publish("domain.stats", a);
        }
      });
  if (r != 0) host().warn("stats collection not started: %s", hostlet_strerror(r));
}

// ---- metrics ----

// Starts a collection unless one runs (a late one included) or there is no
// connection. True when one is in flight afterwards.
bool Virt::start_metrics_collection() {
  if (metrics_running_) return true;
  if (phase_ != Phase::connected || !conn_) return false;
  const uint64_t started = host().now_ns();
  int r = offload(
      [ref = ConnRef(conn_->get()), devices = devices_, token = Token(this),
       running = RunningFlag(&metrics_running_)]() mutable {
        Snapshot s = collect_snapshot(ref.get(), *devices);
        ref.reset();
        return s;
      },
      [this, started](int status, Snapshot s) { on_metrics_collected(status, started, std::move(s)); });
  if (r != 0) {
    host().warn("metrics collection not started: %s", hostlet_strerror(r));
    return false;
  }
  return true;
}

void Virt::on_metrics_collected(int status, uint64_t started_ns, Snapshot snap) {
  if (status != 0 || !snap.ok) {
    collections_failed_++;
    host().warn("metrics collection: %s", status != 0 ? status_text(status).c_str() : snap.error.c_str());
  } else if (phase_ == Phase::connected) {
    collections_ok_++;
    const uint64_t now = host().now_ns();
    metrics_at_ns_ = now;
    metrics_duration_s_ = static_cast<double>(now - started_ns) / 1e9;
    have_metrics_ = true;
    for (auto& [uuid, k] : known_) k.misses++;
    for (DomainSample& d : snap.domains) {
      KnownDomain& k = known_[d.uuid];
      k.sample = std::move(d);
      k.misses = 0;
    }
    std::erase_if(known_, [](const auto& kv) { return kv.second.misses > kForgetAfterMisses; });
    node_ = std::move(snap.node);
  }
  metrics_refreshed();
}

void Virt::metrics_refreshed() {
  if (!refresh_owed_) return;
  refresh_owed_ = false;
  const hostlet_host_api* api = host().api();
  if (api->struct_size > offsetof(hostlet_host_api, metrics_refreshed) && api->metrics_refreshed)
    api->metrics_refreshed(host().c());
}

bool Virt::refresh() {
  if (!metrics_running_) {
    const uint64_t now = host().now_ns();
    if (have_metrics_ && now - metrics_at_ns_ < metrics_max_age_ms_ * 1000000) return false;
    if (!start_metrics_collection()) return false;
  }
  // A collection in flight (a timer's, or one stuck in a hung daemon) is
  // shared: the host waits at most its scrape timeout, then calls collect.
  refresh_owed_ = true;
  return true;
}

void Virt::collect(hostlet::Metrics& m) {
  ApiMetrics out(m);
  collect(out);
}

void Virt::collect(MetricsOut& out) const {
  MetricsView v;
  v.connected = phase_ == Phase::connected;
  v.have_data = have_metrics_ && v.connected;
  v.age_seconds = have_metrics_ ? static_cast<double>(host().now_ns() - metrics_at_ns_) / 1e9 : 0;
  v.duration_seconds = metrics_duration_s_;
  v.collecting = metrics_running_;
  v.collections_ok = collections_ok_;
  v.collections_failed = collections_failed_;
  if (v.have_data) {
    v.node = &node_;
    v.domains.reserve(known_.size());
    for (auto& [uuid, k] : known_) v.domains.push_back({&k.sample, k.misses > 0});
  }
  write_metrics(v, out);
}

void Virt::set_health(hostlet_health health, const std::string& reason) {
  if (health == health_) return;
  const hostlet_host_api* api = host().api();
  if (api->struct_size <= offsetof(hostlet_host_api, set_health) || !api->set_health) return;
  health_ = health;
  api->set_health(host().c(), health, reason.empty() ? nullptr : reason.c_str());
}

void Virt::publish(const char* type, const hostlet::Attrs& attrs) {
  int r = host().publish(type, attrs);
  if (r == 0) return;
  if (events_dropped_++ % 1000 == 0)
    host().warn("event %s dropped: %s (%" PRIu64 " dropped so far)", type, hostlet_strerror(r), events_dropped_);
}

// ---- domain events (loop thread) ----

hostlet::Attrs identity(virDomainPtr dom) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  virDomainGetUUIDString(dom, uuid);  // local: no round trip
  const char* name = virDomainGetName(dom);
  return {{"name", name ? name : ""}, {"uuid", uuid}};
}

void Virt::on_lifecycle(Connection&, virDomainPtr dom, int event, int detail) {
  hostlet::Attrs a = identity(dom);
  // A domain that stopped is gone from the metrics, not stale.
  if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_UNDEFINED) known_.erase(a[1].second);
  a.emplace_back("event", event_word(event));
  a.emplace_back("detail", event_detail_word(event, detail));
  publish("domain.lifecycle", a);
}

void Virt::on_reboot(Connection&, virDomainPtr dom) { publish("domain.reboot", identity(dom)); }

void Virt::on_watchdog(Connection&, virDomainPtr dom, int action) {
  hostlet::Attrs a = identity(dom);
  a.emplace_back("action", watchdog_action_word(action));
  publish("domain.watchdog", a);
}

// ---- stop ----

void Virt::token_released() {
  tokens_--;
  if (phase_ == Phase::stopping) maybe_stopped();
}

void Virt::maybe_stopped() {
  if (phase_ != Phase::stopping || !stopped_ || releasing_) return;
  if (tokens_ > 0) return;
  releasing_ = true;
  conn_.reset();  // after the last call that could still use it
  if (bridge_acquired_) {
    bridge_acquired_ = false;
    hostlet_virt_events_release(&Virt::bridge_released, this);  // done runs later, from the bridge's code
  } else {
    bridge_released(this);
  }
}

void Virt::bridge_released(void* self) {
  auto stopped = std::move(static_cast<Virt*>(self)->stopped_);
  stopped();  // the host may destroy this instance now: touch nothing after
}

// ---- descriptor ----

const hostlet_config_key kConfig[] = {
    {"uri", HOSTLET_CONFIG_STRING, "test:///default", "libvirt connection URI", 1, 4096, 0},
    {"readonly", HOSTLET_CONFIG_BOOL, "false", "open read-only (virConnectOpenReadOnly)", 0, 0, 0},
    {"keepalive_interval", HOSTLET_CONFIG_DURATION, "5s",
     "keepalive probe interval for remote URIs, rounded up to seconds; 0 = off", 0, 3600000, 0},
    {"keepalive_count", HOSTLET_CONFIG_INT, "3",
     "unanswered probes after which the connection is closed", 0, 100, 0},
    {"reconnect_min", HOSTLET_CONFIG_DURATION, "1s", "first delay before reconnecting; doubles per failure",
     1, 86400000, 0},
    {"reconnect_max", HOSTLET_CONFIG_DURATION, "60s", "longest delay between reconnect attempts", 1,
     86400000, 0},
    {"stats_interval", HOSTLET_CONFIG_DURATION, "0",
     "publish domain.stats for every domain this often; 0 = off. A tick is skipped while the "
     "previous collection still runs",
     0, 86400000, 0},
    {"stats_groups", HOSTLET_CONFIG_STRING_LIST, nullptr,
     "groups for stats_interval: state, cpu-total, balloon, vcpu, interface, block, perf, iothread, "
     "memory, dirtyrate, vm (none = all)",
     0, 0, 0},
    {"metrics_interval", HOSTLET_CONFIG_DURATION, "15s",
     "refresh the metrics cache (libvirt_* families) this often; 0 = only when a scrape finds it older "
     "than metrics_max_age",
     0, 86400000, 0},
    {"metrics_max_age", HOSTLET_CONFIG_DURATION, "5s",
     "a scrape whose cached metrics are older starts a collection (and waits for it up to the scrape timeout)",
     0, 86400000, 0},
    {"domain_events", HOSTLET_CONFIG_BOOL, "true", "publish domain lifecycle, reboot and watchdog events", 0,
     0, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

const hostlet_event_info kEvents[] = {
    {"domain.lifecycle", "name, uuid, event, detail",
     "event: defined|undefined|started|suspended|resumed|stopped|shutdown|pmsuspended|crashed; "
     "detail: e.g. booted, destroyed, paused (see words.cpp)"},
    {"domain.reboot", "name, uuid", "the guest rebooted"},
    {"domain.watchdog", "name, uuid, action", "action: none|pause|reset|poweroff|shutdown|debug|inject-nmi"},
    {"domain.stats", "name, uuid, <stat key>=<value>...", "every stats_interval, one per domain"},
    {"connection.lost", "uri, reason[, error]",
     "reason: error|eof|keepalive|client, or open-failed with error (published once per outage)"},
    {"connection.restored", "uri, downtime_ms", "reconnected after connection.lost"},
    {nullptr, nullptr, nullptr},
};

const hostlet_action_info* action_table() {
  static const std::vector<hostlet_action_info> table = [] {
    std::vector<hostlet_action_info> t;
    for (const Op& op : ops()) t.push_back({op.verb, op.args, op.description});
    t.push_back({"connection.info", "", "The connection's state, retry time and last error; answers even while disconnected"});
    t.push_back({nullptr, nullptr, nullptr});
    return t;
  }();
  return table.data();
}

}  // namespace
}  // namespace hostlet_virt

HOSTLET_CPP_PLUGIN(hostlet_virt::Virt, "libvirt", "0.2.0",
                   "libvirt domains: lifecycle events, offloaded actions, keepalive and reconnect, metrics",
                   hostlet_virt::kConfig, hostlet_virt::action_table(), hostlet_virt::kEvents)
