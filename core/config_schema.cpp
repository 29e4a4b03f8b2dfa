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

bool known_type(int t) { return t >= HOSTLET_CONFIG_STRING && t <= HOSTLET_CONFIG_MAP; }

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

namespace {

// "commands.*.env.*" -> {"commands", "*", "env", "*"}
std::vector<std::string> segments(const std::string& name) {
  std::vector<std::string> out;
  size_t from = 0;
  for (;;) {
    size_t dot = name.find('.', from);
    out.push_back(name.substr(from, dot == std::string::npos ? std::string::npos : dot - from));
    if (dot == std::string::npos) return out;
    from = dot + 1;
  }
}

// What is wrong with a key name of the schema ("" when nothing): names below
// a MAP key alternate "*" and a name, and every "*" follows a MAP key.
std::string name_problem(const std::string& name, const std::vector<const hostlet_config_key*>& keys) {
  const std::vector<std::string> segs = segments(name);
  std::string prefix;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& seg = segs[i];
    const bool star_here = i % 2 == 1;
    if (seg.empty()) return "has an empty segment";
    if (star_here != (seg == "*") || (!star_here && seg.find('*') != std::string::npos))
      return "must alternate names and '*' (e.g. \"commands.*.argv\")";
    if (star_here) {
      bool is_map = false;
      for (const hostlet_config_key* k : keys) is_map |= k->key == prefix && k->type == HOSTLET_CONFIG_MAP;
      if (!is_map) return "has '*' after '" + prefix + "', which is not a MAP key";
    }
    prefix += (i ? "." : "") + seg;
  }
  return "";
}

// Walks the section and the maps in it, one schema level at a time: the
// level of pattern `pattern` ("" at the top, "commands.*." inside each entry
// of commands) holds the keys named pattern + one segment.
class Walker {
 public:
  Walker(Reporter& r, const std::vector<const hostlet_config_key*>& keys, ConfigValues& out)
      : r_(r), keys_(keys), out_(out) {}

  // A mapping of fixed keys; values land under `concrete` + key.
  void mapping(const YAML::Node& section, Mark where, const std::string& pattern, const std::string& concrete,
               const std::string& path) {
    std::vector<const hostlet_config_key*> level;
    std::vector<std::string> names;
    for (const hostlet_config_key* k : keys_) {
      const std::string name = k->key;
      if (name.size() <= pattern.size() || name.compare(0, pattern.size(), pattern) != 0) continue;
      const std::string seg = name.substr(pattern.size());
      if (seg.find('.') != std::string::npos) continue;
      level.push_back(k);
      names.push_back(seg);
      out_.declare(concrete + seg, k->type);
    }

    std::set<std::string> present;
    if (section.IsDefined() && !section.IsNull()) {
      if (!section.IsMap()) {
        r_.error(mark_of(section).line ? mark_of(section) : where, path + ": " + expected("a mapping", section));
        return;
      }
      for (const Entry& e : known_entries(r_, section, path, names)) {
        present.insert(e.key);
        const hostlet_config_key& k =
            *level[static_cast<size_t>(std::find(names.begin(), names.end(), e.key) - names.begin())];
        value(e.node, e.mark, k, concrete + e.key, e.path);
      }
    }

    for (size_t i = 0; i < level.size(); ++i) {
      const hostlet_config_key* k = level[i];
      if (present.count(names[i])) continue;
      if (k->flags & HOSTLET_CONFIG_REQUIRED) {
        std::string msg = path + ": missing required key '" + names[i] + "'";
        if (k->description && *k->description) msg += std::string(" (") + k->description + ")";
        r_.error(where, msg);
        continue;
      }
      if (k->default_value == nullptr || k->type == HOSTLET_CONFIG_MAP) continue;
      std::string problem;
      const std::optional<YAML::Node> n = default_node(*k, problem);
      ConfigValue v;
      if (n) problem = convert(*n, *k, v).what;
      if (!problem.empty()) {
        r_.error(where, "plugin schema: bad default for key '" + std::string(k->key) + "': " + problem);
        continue;
      }
      out_.set(concrete + names[i], std::move(v));
    }
  }

 private:
  void value(const YAML::Node& n, Mark mark, const hostlet_config_key& k, const std::string& concrete,
             const std::string& path) {
    if (k.type == HOSTLET_CONFIG_MAP) return map(n, mark, k, concrete, path);
    ConfigValue v;
    const Problem p = convert(n, k, v);
    if (p.what.empty())
      out_.set(concrete, std::move(v));
    else
      r_.error(p.mark.line ? p.mark : mark, path + p.suffix + ": " + p.what);
  }

  // A MAP key's mapping: names of the user's choice, each value described by
  // the schema key "K.*" (a map of values) or the level "K.*." (of mappings).
  void map(const YAML::Node& n, Mark mark, const hostlet_config_key& k, const std::string& concrete,
           const std::string& path) {
    ConfigValue v;
    v.type = HOSTLET_CONFIG_MAP;
    const std::string star = std::string(k.key) + ".*";
    const hostlet_config_key* leaf = nullptr;
    for (const hostlet_config_key* c : keys_)
      if (c->key == star) leaf = c;
    if (n.IsDefined() && !n.IsNull()) {
      if (!n.IsMap()) {
        r_.error(mark, path + ": " + expected("a mapping", n));
        return;
      }
      std::map<std::string, Mark> seen;
      for (const auto& kv : n) {
        const YAML::Node name_node = kv.first;
        const YAML::Node child = kv.second;
        const Mark km = mark_of(name_node);
        if (!name_node.IsScalar() || name_node.Scalar().empty()) {
          r_.error(km, path + ": expected a name, got " + describe(name_node));
          continue;
        }
        const std::string& name = name_node.Scalar();
        if (name.find('.') != std::string::npos || name.find('\0') != std::string::npos) {
          r_.error(km, path + ": the name '" + name + "' must not contain '.'");
          continue;
        }
        if (auto [prev, fresh] = seen.emplace(name, km); !fresh) {
          r_.error(km, path + ": duplicate name '" + name + "' (first at line " + std::to_string(prev->second.line) +
                           ")");
          continue;
        }
        v.list.push_back(name);
        const std::string child_concrete = concrete + "." + name;
        const std::string child_path = path + "." + name;
        if (leaf) {
          out_.declare(child_concrete, leaf->type);
          value(child, value_mark(km, child), *leaf, child_concrete, child_path);
        } else {
          mapping(child, km, star + ".", child_concrete + ".", child_path);
        }
      }
    }
    v.text = std::to_string(v.list.size());
    out_.set(concrete, std::move(v));
  }

  Reporter& r_;
  const std::vector<const hostlet_config_key*>& keys_;
  ConfigValues& out_;
};

}  // namespace

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
  }
  // Names below a MAP key are checked once every MAP key is known.
  std::vector<const hostlet_config_key*> valid;
  for (const hostlet_config_key* k : keys) {
    if (const std::string p = name_problem(k->key, keys); !p.empty()) {
      r.error(where, "plugin schema: key '" + std::string(k->key) + "' " + p);
      continue;
    }
    valid.push_back(k);
  }
  for (const hostlet_config_key* k : valid) {
    const std::string star = std::string(k->key) + ".*";
    bool values = false, mappings = false;
    for (const hostlet_config_key* c : valid) {
      values |= c->key == star;
      mappings |= std::string(c->key).compare(0, star.size() + 1, star + ".") == 0;
    }
    if (values && mappings)
      r.error(where, "plugin schema: MAP key '" + std::string(k->key) + "' has both '" + star + "' and keys below it");
  }
  Walker(r, valid, out).mapping(section, where, "", "", path);
  return errs.size() == before;
}

}  // namespace hostlet
