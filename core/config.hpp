// The agent's YAML configuration: the file's `agent:`, `plugins:` and
// `rules:` sections, parsed and structurally validated.
//
// Errors are collected, never thrown: every message is reported as
// "FILE:LINE:COLUMN: message" (1-based, from yaml-cpp marks) so that
// `hostlet --check` can list all of them at once.
//
// The config is split by concept; this header brings in the parts the agent
// uses with it:
//   config_error.hpp    Mark, ConfigError (how every part reports)
//   config_scalars.hpp  durations, sizes, booleans, numbers, rates as text
//   config_schema.hpp   an instance's `config:` against its plugin's schema
//   edit_distance.hpp   "did you mean"
// and, internal to config*.cpp, config_node.hpp (typed reads of YAML nodes).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config_error.hpp"
#include "config_scalars.hpp"
#include "config_schema.hpp"
#include "edit_distance.hpp"

namespace hostlet {

// `agent:` -- the YAML keys are the field names, except that the *_ms fields
// drop the suffix (`lag_warn: 50ms`, `shutdown_timeout: 5s`, ...) and take a
// duration (see parse_duration_ms).
struct AgentSection {
  std::string control_socket = "/run/hostlet/control.sock";  // < 108 bytes (sun_path)
  unsigned control_mode = 0600;          // octal in YAML as a string "0600" or an int; 0..0777
  std::string control_group;             // group of the socket file, a name or a gid; empty: the agent's
  // Who may do what on the control socket, by SO_PEERCRED (the peer's uid
  // and effective gid). All four empty: whoever can open the socket may do
  // everything (the file mode decides). Otherwise root and the agent's own
  // uid are admin, a peer in an admin list is admin, one in a read list may
  // use status, plugins, describe, stats and events, and others are refused.
  std::vector<uint32_t> control_admin_uids, control_admin_gids;
  std::vector<uint32_t> control_read_uids, control_read_gids;
  size_t control_max_connections = 64;   // 1..65536
  size_t control_max_line = 1 << 20;     // a size (parse_size), 64 bytes..1GiB
  size_t control_max_write_buffer = 4 << 20;  // unsent replies one connection may have before its reading pauses, 4KiB..1GiB
  uint64_t control_idle_timeout_ms = 300000;  // `control_idle_timeout`, 0 (never)..24h
  std::string plugin_dir;                // empty: the build's default (HOSTLET_PLUGIN_DIR)
  unsigned threadpool = 4;               // 1..1024, sets UV_THREADPOOL_SIZE
  std::string log_level = "info";        // error|warn|info|debug
  size_t event_queue = 65536;            // bus queue bound, 16..16777216
  unsigned event_batch = 256;            // events dispatched per loop iteration, 1..65536
  uint64_t lag_warn_ms = 50;             // `lag_warn`, 1ms..1m: a callback longer than this is logged with its instance
  uint64_t shutdown_timeout_ms = 5000;   // `shutdown_timeout`, 0..1h: per instance, drain deadline at shutdown
  uint64_t reload_timeout_ms = 5000;     // `reload_timeout`, 0..1h: per instance, drain deadline during a reload
  uint64_t action_timeout_ms = 30000;    // `action_timeout`, 1ms..24h: an action not answered by then fails
  uint64_t action_wait_ms = 10000;       // `action_wait`, 0..24h: how long a call may wait for room in a full lane; 0 = fail at once
  Mark mark;
};

struct InstanceSection {
  std::string name;                 // required, [A-Za-z0-9_-]{1,64}, unique, not "hostlet"
  std::string plugin;               // required: a plugin name or a path containing '/'
  unsigned max_inflight = 4;        // 1..4096
  size_t max_queue = 1024;          // 0..1000000
  uint64_t offload_timeout_ms = 0;  // `offload_timeout`, 0..24h: default deadline of its offloads, 0 = none
  bool watch = false;               // reload when the .so file changes
  bool optional = false;            // false: failing to load, init or start fails the agent's start
  YAML::Node config{YAML::NodeType::Undefined};  // the `config:` mapping (or null), undefined when absent
  Mark mark, name_mark, plugin_mark, config_mark;
  std::string file;                 // the file it was read from: the main config or a conf.d fragment
};

struct RuleSection {
  Mark mark;                         // the rule's own mapping
  std::string source;                // glob; empty = any
  std::string type;                  // glob; empty = any (but `on:` must name at least one of source/type)
  std::vector<std::pair<std::string, std::string>> attrs;  // attribute -> glob
  std::vector<std::pair<std::string, Mark>> actions;        // `do:` one name or a list, in order
  std::vector<std::pair<std::string, std::string>> with;   // attribute -> template text ("${name}")
  Mark with_mark;
  uint64_t debounce_ms = 0;          // `debounce`, 0..24h; 0 = off
  int64_t action_wait_ms = -1;       // `action_wait`, 0..24h: overrides agent.action_wait for this rule's calls; -1 = not set
  double rate_limit = 0;             // max firings per second ("10", "10/s", "30/m", "100/h"), 0 = unlimited
  std::string name;                  // optional, unique among rules; empty = unnamed
  std::string file;                  // the file it was read from: the main config or a conf.d fragment
};

struct Config {
  std::string file;  // path or a label such as "<embedded>"
  std::vector<std::string> fragments;  // conf.d files merged in, in the order read
  Mark agent_mark;                     // of the `agent:` key; line 0 when absent
  AgentSection agent;
  std::vector<InstanceSection> plugins;
  std::vector<RuleSection> rules;
};

// Parses YAML text and validates its structure: unknown keys (with "did you
// mean 'x'?" when one is close), types, ranges, required keys, duplicate
// instance names. Returns true when errs gained nothing.
bool parse_config(const std::string& text, const std::string& file, Config& out, ConfigErrors& errs);
// Reads the file (an unreadable file is one error with no mark) then
// parse_config; then the drop-in fragments: every `*.yaml` in the `conf.d`
// directory next to it, in name order (at most kMaxFragments), each of which
// may hold `plugins:` and `rules:` (not `agent:`). Their instances and rules
// are appended to the main file's, each remembering its file; an instance or
// rule name used twice is an error naming both places. Every file is parsed
// even when an earlier one has errors.
inline constexpr size_t kMaxFragments = 256;
bool load_config_file(const std::string& path, Config& out, ConfigErrors& errs);

}  // namespace hostlet
