// A plugin's `config:` section checked against the plugin's schema (its
// hostlet_config_key table), with defaults applied: what the host API's
// config_* getters then read.
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

#include "config_error.hpp"

namespace hostlet {

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

}  // namespace hostlet
