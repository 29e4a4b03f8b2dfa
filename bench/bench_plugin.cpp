// bench: a plugin that measures hostlet from inside the agent.
// Action `run {mode, n, inflight}` performs n empty offloads through
// host->offload (the C API, no C++ wrapper) and answers with the figures:
//   mode=latency     one at a time; attrs mean_us, p50_us, p99_us, max_us
//   mode=throughput  `inflight` kept in flight; attrs ops_s, secs
//   mode=load        blocking work of `work_ms` (a sleep) kept `inflight` in
//                    flight for `secs` seconds; attrs ops_s, secs
//   mode=co_latency, mode=co_throughput
//                    the same as latency and throughput, through C++20
//                    coroutines (hostlet/task.hpp): `inflight` coroutines each
//                    loop over `co_await host.offload(empty)`; timed from
//                    before the co_await to after it resumes.
// Timing: CLOCK_MONOTONIC, from offload() to the start of done() on the loop.
// Action `probe {ms, period_ms}` runs a repeating timer of period_ms (default
// 1) through host->timer_start for ms milliseconds and answers how late its
// ticks ran, two ways (ticks: how many):
//   p50_ms, p99_ms, max_ms   the time between two ticks minus the period:
//                            what the loop added to each interval
//   due_p50_ms, due_p99_ms, due_max_ms   the tick's time minus its due time
//                            as libuv set it (the loop's cached millisecond
//                            clock when armed, plus the period); this
//                            includes up to 1 ms of libuv's own rounding (the
//                            cached clock lags the real one within a loop
//                            iteration), even on an idle loop.
//   runq_wait_ms             how long the loop thread waited for a CPU
//                            (/proc/thread-self/schedstat) during the probe:
//                            lateness that the machine, not the loop, caused.
#include <hostlet/plugin.h>
#include <hostlet/task.hpp>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

struct State;

struct Run {
  State* st = nullptr;
  hostlet_call* call = nullptr;
  bool latency = true;
  uint64_t n = 0, inflight = 1, submitted = 0, completed = 0, errors = 0;
  uint64_t t0 = 0, t_submit = 0;
  uint64_t until_ns = 0;  // mode=load: submit until then (n is unbounded)
  unsigned work_us = 0;   // mode=load: each item sleeps this long
  std::vector<uint64_t> lat;
};

struct Probe {
  State* st = nullptr;
  hostlet_call* call = nullptr;
  hostlet_timer* timer = nullptr;
  uv_loop_t* loop = nullptr;
  uint64_t period_ms = 1, due_ms = 0, end_ns = 0, prev_ns = 0, runq_ns0 = 0;
  std::vector<uint64_t> late, gap;
};

// p50/p99/max of v (sorted here) in ms, as attributes named prefix+p50_ms etc.
void add_quantiles(std::vector<uint64_t>& v, const char* prefix, std::vector<std::string>& keys,
                   std::vector<std::string>& vals) {
  std::sort(v.begin(), v.end());
  size_t m = v.size();
  const double q[3] = {m ? double(v[m / 2]) : 0.0, m ? double(v[std::min(m - 1, m * 99 / 100)]) : 0.0,
                       m ? double(v[m - 1]) : 0.0};
  const char* names[3] = {"p50_ms", "p99_ms", "max_ms"};
  for (int i = 0; i < 3; i++) {
    char b[64];
    std::snprintf(b, sizeof b, "%.3f", q[i] / 1e6);
    keys.push_back(std::string(prefix) + names[i]);
    vals.push_back(b);
  }
}

struct State {
  hostlet_host* host;
  const hostlet_host_api* api;
  Run* run = nullptr;
  Probe* probe = nullptr;
  hostlet::Host cxx{host, api};  // for the coroutine modes' co_await host.offload
};

// Nanoseconds the calling thread has waited on a run queue (0 if unknown).
uint64_t runq_wait_ns() {
  FILE* f = std::fopen("/proc/thread-self/schedstat", "r");
  if (!f) return 0;
  unsigned long long on_cpu = 0, waited = 0;
  int n = std::fscanf(f, "%llu %llu", &on_cpu, &waited);
  std::fclose(f);
  return n == 2 ? waited : 0;
}

void empty_work(void*) {}
void sleep_work(void* arg) { usleep(static_cast<Run*>(arg)->work_us); }

void finish(Run* r) {
  const hostlet_host_api* api = r->st->api;
  uint64_t total = now_ns() - r->t0;
  char b[6][64];
  std::vector<hostlet_attr> a;
  std::snprintf(b[0], sizeof b[0], "%llu", (unsigned long long)r->completed);
  a.push_back({"n", b[0]});
  std::snprintf(b[1], sizeof b[1], "%llu", (unsigned long long)r->errors);
  a.push_back({"errors", b[1]});
  if (r->latency) {
    std::sort(r->lat.begin(), r->lat.end());
    double sum = 0;
    for (uint64_t v : r->lat) sum += double(v);
    size_t m = r->lat.size();
    std::snprintf(b[2], sizeof b[2], "%.3f", m ? sum / double(m) / 1e3 : 0.0);
    std::snprintf(b[3], sizeof b[3], "%.3f", m ? double(r->lat[m / 2]) / 1e3 : 0.0);
    std::snprintf(b[4], sizeof b[4], "%.3f", m ? double(r->lat[std::min(m - 1, m * 99 / 100)]) / 1e3 : 0.0);
    std::snprintf(b[5], sizeof b[5], "%.3f", m ? double(r->lat[m - 1]) / 1e3 : 0.0);
    a.push_back({"mean_us", b[2]});
    a.push_back({"p50_us", b[3]});
    a.push_back({"p99_us", b[4]});
    a.push_back({"max_us", b[5]});
  } else {
    std::snprintf(b[2], sizeof b[2], "%.1f", double(r->completed) * 1e9 / double(total));
    std::snprintf(b[3], sizeof b[3], "%.6f", double(total) / 1e9);
    a.push_back({"ops_s", b[2]});
    a.push_back({"secs", b[3]});
  }
  api->call_reply_ok(r->call, a.data(), a.size(), nullptr);
  r->st->run = nullptr;
  delete r;
}

void on_done(void* arg, int status);

bool submit_one(Run* r) {
  if (r->latency) r->t_submit = now_ns();
  int rc = r->st->api->offload(r->st->host, nullptr, r->work_us ? sleep_work : empty_work, on_done, r, nullptr);
  if (rc != 0) {
    r->errors++;
    return false;
  }
  r->submitted++;
  return true;
}

void on_done(void* arg, int status) {
  Run* r = static_cast<Run*>(arg);
  if (r->latency) r->lat.push_back(now_ns() - r->t_submit);
  if (status != 0) r->errors++;
  r->completed++;
  if (r->until_ns && now_ns() >= r->until_ns) r->n = r->submitted;  // time is up: finish what runs
  if (r->submitted < r->n && !(r->errors && status == -ESHUTDOWN)) {
    if (!submit_one(r) && r->submitted == r->completed) return finish(r);
  } else if (r->completed == r->submitted) {
    finish(r);
  }
}

// One of `inflight` coroutines of a co_* run: offloads until n were
// submitted; the one that completes the last item answers.
hostlet::Task co_worker(Run* r) {
  while (r->submitted < r->n) {
    r->submitted++;
    uint64_t t = r->latency ? now_ns() : 0;  // as the callback modes: timed only for latency
    try {
      co_await r->st->cxx.offload([] {});
    } catch (const hostlet::Error&) {
      r->errors++;
    }
    if (r->latency) r->lat.push_back(now_ns() - t);
    r->completed++;
  }
  if (r->completed == r->submitted) finish(r);
}

uint64_t attr_u64(const hostlet_host_api* api, hostlet_call* call, const char* key, uint64_t dflt) {
  const char* v = api->call_attr(call, key);
  return v ? std::strtoull(v, nullptr, 10) : dflt;
}

int action_run(void* arg, hostlet_call* call, const hostlet_attr*, size_t) {
  State* st = static_cast<State*>(arg);
  if (st->run) return -EBUSY;
  const char* mode = st->api->call_attr(call, "mode");
  Run* r = new (std::nothrow) Run;
  if (!r) return -ENOMEM;
  r->st = st;
  r->call = call;
  r->latency = !mode || std::string(mode) == "latency" || std::string(mode) == "co_latency";
  r->n = attr_u64(st->api, call, "n", 10000);
  r->inflight = r->latency ? 1 : attr_u64(st->api, call, "inflight", 1);
  if (mode && std::string(mode) == "load") {
    r->n = UINT64_MAX;
    r->work_us = static_cast<unsigned>(attr_u64(st->api, call, "work_ms", 10) * 1000);
    r->until_ns = now_ns() + attr_u64(st->api, call, "secs", 2) * 1000000000ull;
  }
  if (r->n == 0 || r->inflight == 0) {
    delete r;
    return -EINVAL;
  }
  if (r->latency) r->lat.reserve(r->n);
  st->run = r;
  r->t0 = now_ns();
  if (mode && std::string(mode).rfind("co_", 0) == 0) {
    uint64_t workers = std::min(r->n, r->inflight);
    for (uint64_t i = 0; i < workers; i++) co_worker(r);  // the last to finish answers (finish() frees r)
    return 0;
  }
  uint64_t first = std::min(r->n, r->inflight);
  for (uint64_t i = 0; i < first; i++)
    if (!submit_one(r)) break;
  if (r->submitted == 0) {
    st->run = nullptr;
    delete r;
    return -EAGAIN;
  }
  return 0;
}

void on_tick(void* arg) {
  Probe* p = static_cast<Probe*>(arg);
  uint64_t now = uv_hrtime();
  uint64_t due = p->due_ms * 1000000ull;
  uint64_t period = p->period_ms * 1000000ull;
  p->late.push_back(now > due ? now - due : 0);
  p->gap.push_back(now - p->prev_ns > period ? now - p->prev_ns - period : 0);
  p->prev_ns = now;
  p->due_ms = uv_now(p->loop) + p->period_ms;  // libuv re-armed the timer from the loop's time
  if (now < p->end_ns) return;
  const hostlet_host_api* api = p->st->api;
  api->timer_stop(p->timer);
  std::vector<std::string> keys{"ticks", "runq_wait_ms"};
  char runq[32];
  std::snprintf(runq, sizeof runq, "%.3f", double(runq_wait_ns() - p->runq_ns0) / 1e6);
  std::vector<std::string> vals{std::to_string(p->late.size()), runq};
  add_quantiles(p->gap, "", keys, vals);
  add_quantiles(p->late, "due_", keys, vals);
  std::vector<hostlet_attr> a;
  for (size_t i = 0; i < keys.size(); i++) a.push_back({keys[i].c_str(), vals[i].c_str()});
  api->call_reply_ok(p->call, a.data(), a.size(), nullptr);
  p->st->probe = nullptr;
  delete p;
}

int action_probe(void* arg, hostlet_call* call, const hostlet_attr*, size_t) {
  State* st = static_cast<State*>(arg);
  if (st->probe) return -EBUSY;
  auto* loop = static_cast<uv_loop_t*>(st->api->uv_loop(st->host));
  if (!loop) return -ENOTSUP;
  Probe* p = new (std::nothrow) Probe;
  if (!p) return -ENOMEM;
  p->st = st;
  p->call = call;
  p->loop = loop;
  p->period_ms = std::max<uint64_t>(1, attr_u64(st->api, call, "period_ms", 1));
  p->end_ns = uv_hrtime() + attr_u64(st->api, call, "ms", 1000) * 1000000ull;
  p->late.reserve(attr_u64(st->api, call, "ms", 1000) / p->period_ms + 16);
  p->gap.reserve(p->late.capacity());
  p->runq_ns0 = runq_wait_ns();
  p->due_ms = uv_now(loop) + p->period_ms;
  // The first interval is counted from when the timer was armed on the
  // loop's clock (not from now), like every later one.
  p->prev_ns = p->due_ms * 1000000ull - p->period_ms * 1000000ull;
  int r = st->api->timer_start(st->host, p->period_ms, p->period_ms, on_tick, p, &p->timer);
  if (r != 0) {
    delete p;
    return r;
  }
  st->probe = p;
  return 0;
}

int init(hostlet_host* host, const hostlet_host_api* api, void** state) {
  State* st = new (std::nothrow) State{host, api, nullptr, nullptr};
  if (!st) return -ENOMEM;
  *state = st;
  int r = api->register_action(host, "run", action_run, st);
  return r ? r : api->register_action(host, "probe", action_probe, st);
}
int start(void*) { return 0; }
void stop(void* state) {
  State* st = static_cast<State*>(state);
  st->api->stopped(st->host);
}
void destroy(void* state) {
  State* st = static_cast<State*>(state);
  delete st->probe;  // its timer was closed by the host at stop
  delete st;
}

const hostlet_action_info kActions[] = {
    {"run", "mode=latency|throughput|load|co_latency|co_throughput, n, inflight, work_ms, secs",
     "n empty offloads (or blocking ones for secs); answers the figures"},
    {"probe", "ms, period_ms", "a repeating timer for ms; answers its ticks' lateness p50/p99/max"},
    {nullptr, nullptr, nullptr},
};

const hostlet_plugin kPlugin = {
    HOSTLET_ABI_MAJOR, HOSTLET_ABI_MINOR, sizeof(hostlet_plugin),
    "bench", "0.1", "offload benchmark", nullptr, kActions, nullptr,
    init, start, stop, destroy, nullptr, nullptr,
};

}  // namespace

HOSTLET_PLUGIN_ENTRY { return &kPlugin; }
