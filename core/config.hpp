// The agent's YAML configuration: parsing, structural validation, and the
// validation of each instance's `config:` section against its plugin's schema.
//
// Errors are collected, never thrown: every message is reported as
// "FILE:LINE:COLUMN: message" (1-based, from yaml-cpp marks) so that
// `hostlet --check` can list all of them at once.
#pragma once

#include <hostlet/plugin.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostlet {

struct Mark {
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based
};
Mark mark_of(const YAML::Node& node);  // yaml-cpp marks are 0-based; this adds 1

struct ConfigError {
  std::string file;
  Mark mark;
  std::string message;
  std::string str() const;  // "FILE:LINE:COLUMN: message" (or "FILE: message" without a mark)
};
using ConfigErrors = std::vector<ConfigError>;

// `agent:` -- the YAML keys are the field names, except that the *_ms fields
// drop the suffix (`lag_warn: 50ms`, `shutdown_timeout: 5s`, ...) and take a
// duration (see parse_duration_ms).
struct AgentSection {
  std::string control_socket = "/run/hostlet/control.sock";  // < 108 bytes (sun_path)
  unsigned control_mode = 0600;          // octal in YAML as a string "0600" or an int; 0..0777
  size_t control_max_connections = 64;   // 1..65536
  size_t control_max_line = 1 << 20;     // a size (parse_size), 64 bytes..1GiB
  std::string plugin_dir;                // empty: the build's default (HOSTLET_PLUGIN_DIR)
  unsigned threadpool = 4;               // 1..1024, sets UV_THREADPOOL_SIZE
  std::string log_level = "info";        // error|warn|info|debug
  size_t event_queue = 65536;            // bus queue bound, 16..16777216
  unsigned event_batch = 256;            // events dispatched per loop iteration, 1..65536
  uint64_t lag_warn_ms = 50;             // `lag_warn`, 1ms..1m: a callback longer than this is logged with its instance
  uint64_t shutdown_timeout_ms = 5000;   // `shutdown_timeout`, 0..1h: per instance, drain deadline at shutdown
  uint64_t reload_timeout_ms = 5000;     // `reload_timeout`, 0..1h: per instance, drain deadline during a reload
  uint64_t action_timeout_ms = 30000;    // `action_timeout`, 1ms..24h: an action not answered by then fails
  Mark mark;
};

struct InstanceSection {
  std::string name;                 // required, [A-Za-z0-9_-]{1,64}, unique, not "hostlet"
  std::string plugin;               // required: a plugin name or a path containing '/'
  unsigned max_inflight = 4;        // 1..4096
  size_t max_queue = 1024;          // 0..1000000
  uint64_t offload_timeout_ms = 0;  // `offload_timeout`, 0..24h: default deadline of its offloads, 0 = none
  bool watch = false;               // reload when the .so file changes
  YAML::Node config{YAML::NodeType::Undefined};  // the `config:` mapping (or null), undefined when absent
  Mark mark, name_mark, plugin_mark, config_mark;
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
  double rate_limit = 0;             // max firings per second ("10", "10/s", "30/m", "100/h"), 0 = unlimited
  std::string name;                  // optional, unique among rules; empty = unnamed
};

struct Config {
  std::string file;  // path or a label such as "<embedded>"
  AgentSection agent;
  std::vector<InstanceSection> plugins;
  std::vector<RuleSection> rules;
};

// Parses YAML text and validates its structure: unknown keys (with "did you
// mean 'x'?" when one is close), types, ranges, required keys, duplicate
// instance names. Returns true when errs gained nothing.
bool parse_config(const std::string& text, const std::string& file, Config& out, ConfigErrors& errs);
// Reads the file (an unreadable file is one error with no mark) then parse_config.
bool load_config_file(const std::string& path, Config& out, ConfigErrors& errs);

// A validated value of one schema key, after defaults.
struct ConfigValue {
  hostlet_config_type type = HOSTLET_CONFIG_STRING;
  std::string text;                 // STRING; also the source text of every scalar type
  int64_t i = 0;                    // INT, DURATION (ms), SIZE (bytes)
  double d = 0;                     // DOUBLE
  bool b = false;                   // BOOL
  std::vector<std::string> list;    // STRING_LIST and INT_LIST (as text)
  std::vector<int64_t> ilist;       // INT_LIST
};

// The validated `config:` section of one instance; what the host API's
// config_* getters read.
class ConfigValues {
 public:
  // nullptr when the key is absent and has no default
  const ConfigValue* find(std::string_view key) const;
  bool declared(std::string_view key) const;  // key is in the schema
  void set(std::string key, ConfigValue v) { values_[std::move(key)] = std::move(v); }
  void declare(std::string key, hostlet_config_type t) { declared_[std::move(key)] = t; }
  std::optional<hostlet_config_type> declared_type(std::string_view key) const;

 private:
  std::map<std::string, ConfigValue, std::less<>> values_;
  std::map<std::string, hostlet_config_type, std::less<>> declared_;
};

// Validates `section` (a mapping, null or undefined) against `schema` (ends
// with key NULL; may be NULL = no keys accepted). Applies defaults (a bad
// default in the schema is an error naming the plugin's key). `where` marks
// the instance for errors about missing required keys.
// Defaults of scalar types are the literal text of default_value (no YAML
// quoting: "*" is the string *); defaults of list types are YAML ("[a, b]",
// a single scalar, or "" for an empty list).
// Messages start with "config" (e.g. "config.uri: ..."); the overload taking
// `path` starts them with that instead, e.g. "plugins[0].config".
bool validate_plugin_config(const std::string& file, const YAML::Node& section, Mark where,
                            const hostlet_config_key* schema, ConfigValues& out,
                            ConfigErrors& errs);
bool validate_plugin_config(const std::string& file, const YAML::Node& section, Mark where,
                            const hostlet_config_key* schema, ConfigValues& out,
                            ConfigErrors& errs, std::string_view path);

// "250ms", "5s", "2m", "1h", "1.5s", or a plain integer of milliseconds.
std::optional<uint64_t> parse_duration_ms(std::string_view text);
// "512", "64KiB", "64K", "1MiB", "1M", "2GiB", "2G" (powers of 1024); plain = bytes.
std::optional<uint64_t> parse_size(std::string_view text);
// The candidate closest to `word` by edit distance when it is close enough
// (distance <= max(1, len/3)); empty otherwise.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
// Checks fnmatch(3) pattern syntax (flags 0): an unbalanced '[', an unknown
// "[:class:]" or a trailing lone '\\' is an error. Returns the problem, or
// empty when the pattern is valid.
std::string glob_syntax_error(std::string_view pattern);

}  // namespace hostlet
