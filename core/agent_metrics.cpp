// The agent's own metrics and health (agent_metrics.hpp): what `hostlet-ctl
// stats` shows, as Prometheus families, plus the process's RSS, open fds and
// CPU time under the names Prometheus client libraries use (process_*).
#include "agent_metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent.hpp"
#include "control.hpp"
#include "metrics.hpp"
#include "reload.hpp"
#include "version.h"

namespace hostlet {
namespace {

using json = nlohmann::json;

double seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

long open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n - 3;  // ".", ".." and the directory's own fd
}

double resident_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  unsigned long size = 0, resident = 0;
  int got = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  return got == 2 ? static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) : -1;
}

// One family whose samples are one per instance.
template <class F>
void per_instance(MetricsWriter& w, const Agent& agent, const char* name, hostlet_metric_type type,
                  const char* help, const char* unit, F value) {
  w.family(name, type, help, unit ? unit : "");
  for (const auto& i : agent.instances()) w.sample({{"instance", i->name()}}, value(*i));
}

}  // namespace

void write_agent_metrics(Agent& agent, MetricsWriter& w) {
  Core& core = agent.core();
  w.family("hostlet_build_info", HOSTLET_METRIC_GAUGE, "The agent's version and plugin ABI; always 1.");
  std::string abi = std::to_string(HOSTLET_ABI_MAJOR) + "." + std::to_string(HOSTLET_ABI_MINOR);
  w.sample({{"version", HOSTLET_VERSION}, {"abi", abi}}, 1);
  w.family("hostlet_start_time_seconds", HOSTLET_METRIC_GAUGE, "When the agent started, in seconds since the epoch.",
           "seconds");
  w.sample({}, static_cast<double>(agent.start_time_ms()) / 1000.0);

  // the loop
  w.family("hostlet_loop_lag_seconds", HOSTLET_METRIC_HISTOGRAM,
           "How late the loop ran a 100 ms timer: the time nothing else could run.", "seconds");
  w.histogram({}, core.lag->lateness());
  w.family("hostlet_loop_slow_callbacks_total", HOSTLET_METRIC_COUNTER,
           "Plugin callbacks that ran longer than agent.lag_warn.");
  w.sample({}, static_cast<double>(core.lag->slow_callbacks()));

  // lanes: one per instance
  auto lane = [&](const char* name, const char* help, auto field) {
    per_instance(w, agent, name, HOSTLET_METRIC_COUNTER, help, nullptr,
                 [&](Instance& i) { return static_cast<double>(field(i.lane().stats())); });
  };
  lane("hostlet_lane_submitted_total", "Offloads the instance's lane accepted.",
       [](const LaneStats& s) { return s.submitted; });
  lane("hostlet_lane_rejected_total", "Offloads refused because the lane's queue was full.",
       [](const LaneStats& s) { return s.rejected; });
  lane("hostlet_lane_done_total", "Offloads that ran to completion.", [](const LaneStats& s) { return s.done; });
  lane("hostlet_lane_cancelled_total", "Offloads cancelled before they started.",
       [](const LaneStats& s) { return s.cancelled; });
  lane("hostlet_lane_timed_out_total", "Offloads whose deadline passed.",
       [](const LaneStats& s) { return s.timed_out; });
  lane("hostlet_lane_shutdown_total", "Offloads dropped unstarted because the instance stopped.",
       [](const LaneStats& s) { return s.shutdown; });
  per_instance(w, agent, "hostlet_lane_queued", HOSTLET_METRIC_GAUGE, "Offloads waiting in the lane now.", nullptr,
               [](Instance& i) { return static_cast<double>(i.lane().stats().queued); });
  per_instance(w, agent, "hostlet_lane_running", HOSTLET_METRIC_GAUGE, "Offloads on the thread pool now.", nullptr,
               [](Instance& i) { return static_cast<double>(i.lane().stats().running); });
  per_instance(w, agent, "hostlet_lane_max_inflight", HOSTLET_METRIC_GAUGE,
               "The lane's limit of offloads on the pool at once.", nullptr,
               [](Instance& i) { return static_cast<double>(i.lane().limits().max_inflight); });
  w.family("hostlet_lane_queue_wait_seconds", HOSTLET_METRIC_HISTOGRAM,
           "Offload submit to start on a pool thread (timed items).", "seconds");
  for (const auto& i : agent.instances()) w.histogram({{"instance", i->name()}}, i->lane().stats().queue_wait);
  w.family("hostlet_lane_run_seconds", HOSTLET_METRIC_HISTOGRAM, "Offloaded work's run time on the pool (timed items).",
           "seconds");
  for (const auto& i : agent.instances()) w.histogram({{"instance", i->name()}}, i->lane().stats().run_time);

  // instances
  w.family("hostlet_instance_health", HOSTLET_METRIC_GAUGE,
           "1 for the health the instance reports (ok, degraded, failed), 0 for the others.");
  for (const auto& i : agent.instances())
    for (hostlet_health h : {HOSTLET_HEALTH_OK, HOSTLET_HEALTH_DEGRADED, HOSTLET_HEALTH_FAILED})
      w.sample({{"instance", i->name()}, {"health", Instance::health_name(h)}}, i->health() == h ? 1 : 0);
  w.family("hostlet_instance_running", HOSTLET_METRIC_GAUGE, "1 while the instance is started, else 0.");
  for (const auto& i : agent.instances())
    w.sample({{"instance", i->name()}, {"plugin", i->library()->desc()->name}},
             i->state() == Instance::State::Started ? 1 : 0);
  per_instance(w, agent, "hostlet_instance_callbacks_total", HOSTLET_METRIC_COUNTER,
               "Plugin callbacks the loop ran for the instance.", nullptr,
               [](Instance& i) { return static_cast<double>(i.counters().callbacks); });
  per_instance(w, agent, "hostlet_instance_calls_waiting", HOSTLET_METRIC_GAUGE,
               "Calls waiting for room in the instance's lane (backpressure).", nullptr,
               [&](Instance& i) { return static_cast<double>(core.actions->waiting_for(&i)); });

  // the bus
  BusStats bs = core.bus->stats();
  w.family("hostlet_bus_depth", HOSTLET_METRIC_GAUGE, "Events queued for dispatch now.");
  w.sample({}, static_cast<double>(bs.depth));
  w.family("hostlet_bus_capacity", HOSTLET_METRIC_GAUGE, "The event queue's bound (agent.event_queue).");
  w.sample({}, static_cast<double>(agent.config().agent.event_queue));
  w.family("hostlet_bus_backlog", HOSTLET_METRIC_GAUGE, "Calls waiting downstream, counted against the bound.");
  w.sample({}, static_cast<double>(bs.backlog));
  w.family("hostlet_events_published_total", HOSTLET_METRIC_COUNTER, "Events accepted onto the bus, by source.");
  for (const auto& [src, c] : core.bus->by_source()) w.sample({{"source", src}}, static_cast<double>(c.published));
  w.family("hostlet_events_dropped_total", HOSTLET_METRIC_COUNTER, "Events refused because the bus was full, by source.");
  for (const auto& [src, c] : core.bus->by_source()) w.sample({{"source", src}}, static_cast<double>(c.dropped));
  w.family("hostlet_events_dispatched_total", HOSTLET_METRIC_COUNTER, "Events delivered to subscribers and rules.");
  w.sample({}, static_cast<double>(bs.dispatched));

  // rules
  auto rule = [&](const char* name, const char* help, auto field) {
    w.family(name, HOSTLET_METRIC_COUNTER, help);
    for (const auto& r : agent.rules().stats()) w.sample({{"rule", r.id}}, static_cast<double>(field(r)));
  };
  rule("hostlet_rule_matched_total", "Events a rule matched.", [](const RuleStats& r) { return r.matched; });
  rule("hostlet_rule_fired_total", "Times a rule started its actions.", [](const RuleStats& r) { return r.fired; });
  rule("hostlet_rule_failed_total", "Actions a rule started that answered an error, plus template errors.",
       [](const RuleStats& r) { return r.actions_failed + r.template_errors; });
  rule("hostlet_rule_suppressed_total", "Events a rule let pass by debounce or rate limit.",
       [](const RuleStats& r) { return r.debounced + r.rate_limited; });

  // actions
  ActionWaitStats ws = core.actions->wait_stats();
  w.family("hostlet_action_calls_total", HOSTLET_METRIC_COUNTER, "Action calls answered after their handler ran, by result.");
  w.sample({{"result", "ok"}}, static_cast<double>(core.actions->answered_ok()));
  w.sample({{"result", "error"}}, static_cast<double>(core.actions->answered_failed()));
  w.family("hostlet_action_duration_seconds", HOSTLET_METRIC_HISTOGRAM, "Action handler start to answer.", "seconds");
  w.histogram({}, core.actions->latency());
  w.family("hostlet_action_pending", HOSTLET_METRIC_GAUGE, "Action calls whose handler has not answered yet.");
  w.sample({}, static_cast<double>(core.actions->pending()));
  w.family("hostlet_action_waiting", HOSTLET_METRIC_GAUGE, "Action calls waiting for room in a full lane.");
  w.sample({}, static_cast<double>(ws.waiting));
  w.family("hostlet_action_wait_expired_total", HOSTLET_METRIC_COUNTER,
           "Calls answered with an error because their wait for room passed.");
  w.sample({}, static_cast<double>(ws.expired));

  // reloads and the control socket
  if (Reloader* rl = agent.reloader()) {
    w.family("hostlet_reloads_total", HOSTLET_METRIC_COUNTER, "Reloads (of the config or one instance), by result.");
    w.sample({{"result", "ok"}}, static_cast<double>(rl->succeeded()));
    w.sample({{"result", "failed"}}, static_cast<double>(rl->failed()));
  }
  const FdStore& store = agent.fd_store();
  w.family("hostlet_fdstore_fds", HOSTLET_METRIC_GAUGE, "Fds held in the fd store now (kept for a reload, or activated).");
  w.sample({}, static_cast<double>(store.size()));
  w.family("hostlet_fdstore_kept_total", HOSTLET_METRIC_COUNTER, "Fds instances left in the store when they stopped.");
  w.sample({}, static_cast<double>(store.kept_total()));
  w.family("hostlet_fdstore_closed_total", HOSTLET_METRIC_COUNTER,
           "Fds left in the store that no successor took, closed at the end of their reload.");
  w.sample({}, static_cast<double>(store.closed_total()));
  if (ControlServer* cs = agent.control()) {
    w.family("hostlet_control_connections", HOSTLET_METRIC_GAUGE, "Connections to the control socket now.");
    w.sample({}, static_cast<double>(cs->connections()));
    w.family("hostlet_control_accepted_total", HOSTLET_METRIC_COUNTER, "Connections the control socket accepted.");
    w.sample({}, static_cast<double>(cs->accepted()));
    w.family("hostlet_control_refused_total", HOSTLET_METRIC_COUNTER,
             "Connections refused at connect (not allowed, or over the limit).");
    w.sample({}, static_cast<double>(cs->refused()));
    w.family("hostlet_control_requests_total", HOSTLET_METRIC_COUNTER, "Control requests, by result.");
    w.sample({{"result", "ok"}}, static_cast<double>(cs->requests() - cs->errors()));
    w.sample({{"result", "error"}}, static_cast<double>(cs->errors()));
  }

  // the process
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  w.family("process_cpu_seconds_total", HOSTLET_METRIC_COUNTER, "User and system CPU time spent.", "seconds");
  w.sample({}, static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                   static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  double rss = resident_bytes();
  if (rss >= 0) {
    w.family("process_resident_memory_bytes", HOSTLET_METRIC_GAUGE, "Resident memory size.", "bytes");
    w.sample({}, rss);
  }
  long fds = open_fds();
  if (fds >= 0) {
    w.family("process_open_fds", HOSTLET_METRIC_GAUGE, "Open file descriptors.");
    w.sample({}, static_cast<double>(fds));
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    w.family("process_max_fds", HOSTLET_METRIC_GAUGE, "The open file descriptor limit.");
    w.sample({}, static_cast<double>(rl.rlim_cur));
  }
  w.family("process_start_time_seconds", HOSTLET_METRIC_GAUGE, "When the process started, in seconds since the epoch.",
           "seconds");
  w.sample({}, static_cast<double>(agent.start_time_ms()) / 1000.0);
}

AgentHealth agent_health(Agent& agent, uint64_t max_lag_ms) {
  AgentHealth out;
  double lag_ms = seconds(agent.core().lag->recent_max_ns()) * 1000.0;
  bool lag_ok = lag_ms < static_cast<double>(max_lag_ms);
  json inst = json::object();
  bool all_ok = true;
  for (const auto& i : agent.instances()) {
    bool running = i->state() == Instance::State::Started;
    all_ok &= running && i->health() != HOSTLET_HEALTH_FAILED;
    inst[i->name()] = json{{"state", i->state_name()},
                           {"health", Instance::health_name(i->health())},
                           {"reason", i->health_reason()}};
  }
  out.healthy = lag_ok && all_ok;
  json o{{"status", out.healthy ? "ok" : "unhealthy"},
         {"loop_lag_ms", lag_ms},
         {"max_lag_ms", max_lag_ms},
         {"instances", inst}};
  out.json = o.dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

}  // namespace hostlet
