// What the reload tests share: the fixture plugins, replacing a plugin file
// the way a deploy does (a new file renamed over the old path), and the
// agent's replies to reload, status and call, parsed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support.hpp"

namespace reload_test {

using json = nlohmann::json;
using hostlet::test::Agent;
using hostlet::test::LineClient;
using hostlet::test::Run;
using hostlet::test::TempDir;

// $HOSTLET_TEST_PLUGINS/NAME.so (worker_v1, worker_v2, bad_abi, no_entry, init_fails).
std::string fixture(const std::string& name);

// Replaces `dest` atomically: writes a copy of `src` (or `bytes`) next to it,
// then rename()s it over `dest`.
void install(const std::string& src, const std::string& dest);
void install_bytes(const std::string& bytes, const std::string& dest);

// A temp dir holding w.so (a copy of worker_v1) and an agent (not started)
// whose config has the instance w on that file. `agent_keys` and `w_keys`
// extend the agent's and w's flow mappings (", key: value"); `more` follows
// the plugins list (more instances, rules).
struct WorkerAgent {
  explicit WorkerAgent(const std::string& agent_keys = "", const std::string& w_keys = "",
                       const std::string& more = "");
  TempDir dir;
  std::string so;
  Agent agent;
};

// Rewrites the agent's config file with `yaml` ("@DIR@" is the temp dir, as for Agent).
void write_config(Agent& a, const TempDir& dir, std::string yaml);

// Agent::start() and the agent's "ready:" log line (its instances started).
bool start(Agent& a);
// The agent stopped with SIGTERM and exited 0.
bool stops_cleanly(Agent& a);

// `hostlet-ctl --json ARGS...`: the reply, parsed (the test fails on an unreadable one).
json ctl_json(Agent& a, std::vector<std::string> args,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// `hostlet-ctl --json reload [NAME]`: the exit code and the reply.
struct Reload {
  int exit_code = -1;
  json reply;
  std::string err;  // hostlet-ctl's stderr
  bool ok() const { return exit_code == 0 && reply.value("ok", false); }
  std::string error() const { return reply.value("error", std::string()); }
  // The item of data.instances for `name`, or null.
  json item(const std::string& name) const;
};
Reload reload(Agent& a, const std::string& name = "",
              std::chrono::milliseconds timeout = std::chrono::seconds(60));
// The same from a finished `hostlet-ctl --json reload` run (on the test's thread).
Reload parse_reload(const Run& r);

// The next reply on an open connection, parsed (the test fails without one).
json next_reply(LineClient& c, std::chrono::milliseconds timeout = std::chrono::seconds(60));
// attrs.version of a call's reply, or "error: ..." when it failed.
std::string answered_version(const json& reply);

// One request on an open control connection, and its reply.
json request(LineClient& c, const json& req, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// `data.instances[]` item of `hostlet-ctl --json status` for `name`, or null.
json instance_status(Agent& a, const std::string& name);
// `data.reload` of the status.
json reload_status(Agent& a);
uint64_t loads(Agent& a, const std::string& name);
std::string last_result(Agent& a, const std::string& name);

// `stats` data.lanes.NAME.running (offloads handed to the pool, not answered yet).
uint64_t lane_running(Agent& a, const std::string& name);

// `NAME.version` answered by the instance, or "error: ..." when the call failed.
std::string version(Agent& a, const std::string& instance);

// /proc/PID measurements.
size_t open_fds(pid_t pid);
// Mapping lines of /proc/PID/maps whose path contains `needle`, and the distinct paths.
size_t mapping_lines(pid_t pid, const std::string& needle);
size_t mapped_files(pid_t pid, const std::string& needle);
long rss_kib(pid_t pid);

}  // namespace reload_test
