// Plugin schemas. See config_schema.hpp for the contract.
#include "config_schema.hpp"

#include <algorithm>
#include <cstring>
#include <set>
#include <type_traits>

#include <hostlet/json_text.hpp>

#include "config_node.hpp"
#include "config_yaml.hpp"

namespace hostlet {

using namespace config_node;

const ConfigValue* ConfigValues::find(std::string_view key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

bool ConfigValues::declared(std::string_view key) const { return declared_.find(key) != declared_.end(); }

std::optional<hostlet_config_type> ConfigValues::declared_type(std::string_view key) const {
  auto it = declared_.find(key);
  if (it == declared_.end()) return std::nullopt;
  return it->second;
}

namespace {

bool known_type(int t) { return t >= HOSTLET_CONFIG_STRING && t <= HOSTLET_CONFIG_MAP_LIST; }

bool is_list(hostlet_config_type t) {
  return t == HOSTLET_CONFIG_STRING_LIST || t == HOSTLET_CONFIG_INT_LIST || t == HOSTLET_CONFIG_MAP_LIST;
}

struct Problem {
  std::string what;  // empty: no problem
  Mark mark;         // where, when it is not the value itself (a list item)
  std::string suffix;  // appended to the path, e.g. "[2]"
};

// The host API hands string values to the plugin as C strings: a NUL in one
// would silently cut what the plugin sees short of what the file says.
constexpr const char* kNulProblem =
    "contains a NUL byte, which the plugin cannot receive (config strings reach it as C strings)";

// A MAP_LIST value: each item a flat mapping of scalars, handed on as a JSON
// object of strings in the file's key order (plugin.h).
Problem convert_map_list(const YAML::Node& n, ConfigValue& v) {
  std::vector<YAML::Node> items;
  if (n.IsSequence()) {
    for (const YAML::Node& item : n) items.push_back(item);
  } else if (n.IsMap()) {
    items.push_back(n);
  } else {
    return {expected("a mapping or a list of mappings", n), {}, {}};
  }
  const bool seq = n.IsSequence();
  for (size_t i = 0; i < items.size(); ++i) {
    const YAML::Node& item = items[i];
    const Mark m = seq ? mark_of(item) : Mark{};
    const std::string suffix = seq ? "[" + std::to_string(i) + "]" : "";
    if (!item.IsMap()) return {expected("a mapping", item), m, suffix};
    std::string obj = "{";
    std::set<std::string> seen;
    for (const auto& kv : item) {
      std::string key, value;
      if (std::string p = to_string(kv.first, key); !p.empty()) return {"key: " + p, mark_of(kv.first), suffix};
      if (!seen.insert(key).second) return {"key '" + key + "' given twice", mark_of(kv.first), suffix};
      if (std::string p = to_string(kv.second, value); !p.empty())
        return {p, mark_of(kv.second), suffix + "." + key};
      if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
        return {kNulProblem, mark_of(kv.second), suffix + "." + key};
      if (obj.size() > 1) obj.push_back(',');
      append_json_string(obj, key);
      obj.push_back(':');
      append_json_string(obj, value);
    }
    obj.push_back('}');
    v.text += (v.list.empty() ? "" : ",") + obj;
    v.list.push_back(std::move(obj));
  }
  return {};
}

// Converts one value of schema key `k`.
Problem convert(const YAML::Node& n, const hostlet_config_key& k, ConfigValue& v) {
  const Bounds b{k.min, k.max};
  v.type = k.type;
  if (k.type == HOSTLET_CONFIG_MAP_LIST) return convert_map_list(n, v);
  if (is_list(k.type)) {
    std::vector<YAML::Node> items;
    if (n.IsSequence()) {
      for (const YAML::Node& item : n) items.push_back(item);
    } else if (n.IsScalar()) {
      items.push_back(n);
    } else {
      return {expected(k.type == HOSTLET_CONFIG_INT_LIST ? "an integer or a list of integers"
                                                         : "a string or a list of strings",
                       n),
              {}, {}};
    }
    const bool seq = n.IsSequence();
    for (size_t i = 0; i < items.size(); ++i) {
      const YAML::Node& item = items[i];
      const Mark m = seq ? mark_of(item) : Mark{};
      const std::string suffix = seq ? "[" + std::to_string(i) + "]" : "";
      std::string s;
      if (std::string p = to_string(item, s); !p.empty()) return {p, m, suffix};
      if (s.find('\0') != std::string::npos) return {kNulProblem, m, suffix};
      if (k.type == HOSTLET_CONFIG_INT_LIST) {
        int64_t x = 0;
        if (std::string p = to_int(item, b, x); !p.empty()) return {p, m, suffix};
        v.ilist.push_back(x);
      }
      v.text += (v.list.empty() ? "" : ",") + s;
      v.list.push_back(std::move(s));
    }
    return {};
  }

  if (!n.IsScalar()) {
    static const char* const what[] = {"", "a string", "an integer", "true or false", "a number",
                                       "a duration", "a size"};
    return {expected(what[k.type], n), {}, {}};
  }
  v.text = n.Scalar();
  std::string p;
  switch (k.type) {
    case HOSTLET_CONFIG_STRING:
      if (v.text.find('\0') != std::string::npos)
        p = kNulProblem;
      else if (b.active() && (static_cast<int64_t>(v.text.size()) < b.min ||
                              static_cast<int64_t>(v.text.size()) > b.max))
        p = "length must be between " + std::to_string(b.min) + " and " + std::to_string(b.max) +
            " characters, got " + std::to_string(v.text.size());
      break;
    case HOSTLET_CONFIG_INT: p = to_int(n, b, v.i); break;
    case HOSTLET_CONFIG_BOOL: p = to_bool(n, v.b); break;
    case HOSTLET_CONFIG_DOUBLE: p = to_double(n, v.d); break;
    case HOSTLET_CONFIG_DURATION: p = to_duration(n, b, v.i); break;
    case HOSTLET_CONFIG_SIZE: p = to_size(n, b, v.i); break;
    default: break;
  }
  return {p, {}, {}};
}

// The node a schema default stands for (see config.hpp).
std::optional<YAML::Node> default_node(const hostlet_config_key& k, std::string& problem) {
  if (!is_list(k.type)) return YAML::Node(std::string(k.default_value));
  YAML::Node n;
  ConfigErrors errs;
  if (!load_yaml_document(k.default_value, k.key, n, errs) || !errs.empty()) {
    problem = "not valid YAML: " + errs.front().message;
    return std::nullopt;
  }
  if (n.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
  return n;
}

}  // namespace

bool validate_plugin_config(const std::string& file, const YAML::Node& section, Mark where,
                            const hostlet_config_key* schema, ConfigValues& out,
                            ConfigErrors& errs) {
  return validate_plugin_config(file, section, where, schema, out, errs, "config");
}

bool validate_plugin_config(const std::string& file, const YAML::Node& section, Mark where,
                            const hostlet_config_key* schema, ConfigValues& out,
                            ConfigErrors& errs, std::string_view path_view) {
  const size_t before = errs.size();
  const std::string path(path_view);
  Reporter r(file, errs);

  std::vector<const hostlet_config_key*> keys;
  std::vector<std::string> names;
  for (const hostlet_config_key* k = schema; k != nullptr && k->key != nullptr; ++k) {
    const std::string name = k->key;
    // The table comes from C code: read the type as its integer first, since
    // loading an enum outside its values is undefined in C++.
    std::underlying_type_t<hostlet_config_type> raw_type;
    std::memcpy(&raw_type, &k->type, sizeof raw_type);
    if (name.empty() || !known_type(static_cast<int>(raw_type))) {
      r.error(where, "plugin schema: key '" + name + "' has an empty name or an unknown type " +
                         std::to_string(raw_type));
      continue;
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      r.error(where, "plugin schema: key '" + name + "' is declared twice");
      continue;
    }
    keys.push_back(k);
    names.push_back(name);
    out.declare(name, k->type);
  }

  std::set<std::string> present;
  if (section.IsDefined() && !section.IsNull()) {
    if (!section.IsMap()) {
      r.error(mark_of(section), path + ": " + expected("a mapping", section));
      return false;
    }
    for (const Entry& e : known_entries(r, section, path, names)) {
      present.insert(e.key);
      const hostlet_config_key& k = *keys[static_cast<size_t>(
          std::find(names.begin(), names.end(), e.key) - names.begin())];
      ConfigValue v;
      const Problem p = convert(e.node, k, v);
      if (p.what.empty())
        out.set(e.key, std::move(v));
      else
        r.error(p.mark.line ? p.mark : e.mark, e.path + p.suffix + ": " + p.what);
    }
  }

  for (const hostlet_config_key* k : keys) {
    if (present.count(k->key)) continue;
    if (k->flags & HOSTLET_CONFIG_REQUIRED) {
      std::string msg = path + ": missing required key '" + k->key + "'";
      if (k->description && *k->description) msg += std::string(" (") + k->description + ")";
      r.error(where, msg);
      continue;
    }
    if (k->default_value == nullptr) continue;
    std::string problem;
    const std::optional<YAML::Node> n = default_node(*k, problem);
    ConfigValue v;
    if (n) problem = convert(*n, *k, v).what;
    if (!problem.empty()) {
      r.error(where, "plugin schema: bad default for key '" + std::string(k->key) + "': " + problem);
      continue;
    }
    out.set(k->key, std::move(v));
  }
  return errs.size() == before;
}

}  // namespace hostlet
