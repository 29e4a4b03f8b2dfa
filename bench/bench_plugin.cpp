// bench: a plugin that measures hostlet's offload path from inside the agent.
// Action `run {mode, n, inflight}` performs n empty offloads through
// host->offload (the C API, no C++ wrapper) and answers with the figures:
//   mode=latency     one at a time; attrs mean_us, p50_us, p99_us, max_us
//   mode=throughput  `inflight` kept in flight; attrs ops_s, secs
// Timing: CLOCK_MONOTONIC, from offload() to the start of done() on the loop.
#include <hostlet/plugin.h>

#include <time.h>

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
  std::vector<uint64_t> lat;
};

struct State {
  hostlet_host* host;
  const hostlet_host_api* api;
  Run* run = nullptr;
};

void empty_work(void*) {}

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
  int rc = r->st->api->offload(r->st->host, nullptr, empty_work, on_done, r, nullptr);
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
  if (r->submitted < r->n && !(r->errors && status == -ESHUTDOWN)) {
    if (!submit_one(r) && r->submitted == r->completed) return finish(r);
  } else if (r->completed == r->submitted) {
    finish(r);
  }
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
  r->latency = !mode || std::string(mode) == "latency";
  r->n = attr_u64(st->api, call, "n", 10000);
  r->inflight = r->latency ? 1 : attr_u64(st->api, call, "inflight", 1);
  if (r->n == 0 || r->inflight == 0) {
    delete r;
    return -EINVAL;
  }
  if (r->latency) r->lat.reserve(r->n);
  st->run = r;
  r->t0 = now_ns();
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

int init(hostlet_host* host, const hostlet_host_api* api, void** state) {
  State* st = new (std::nothrow) State{host, api, nullptr};
  if (!st) return -ENOMEM;
  *state = st;
  return api->register_action(host, "run", action_run, st);
}
int start(void*) { return 0; }
void stop(void* state) {
  State* st = static_cast<State*>(state);
  st->api->stopped(st->host);
}
void destroy(void* state) { delete static_cast<State*>(state); }

const hostlet_action_info kActions[] = {
    {"run", "mode=latency|throughput, n, inflight", "n empty offloads; answers the figures"},
    {nullptr, nullptr, nullptr},
};

const hostlet_plugin kPlugin = {
    HOSTLET_ABI_MAJOR, HOSTLET_ABI_MINOR, sizeof(hostlet_plugin),
    "bench", "0.1", "offload benchmark", nullptr, kActions, nullptr,
    init, start, stop, destroy,
};

}  // namespace

HOSTLET_PLUGIN_ENTRY { return &kPlugin; }
