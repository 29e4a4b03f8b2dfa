// The agent's config file: the `agent:`, `plugins:` and `rules:` sections.
// See config.hpp for the contract.
//
// Every check reports and carries on: a bad value leaves the field at its
// default and the next key is examined, so one `hostlet --check` run lists
// every problem in the file.
#include "config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "config_node.hpp"
#include "config_yaml.hpp"
#include "glob.hpp"

namespace hostlet {

namespace {

using namespace config_node;

// ---------------------------------------------------------------------------
// agent:

// A list of uids or gids: integers from 0 to 4294967294 (-1 is "no id").
void read_id_list(Reporter& r, const Entry& e, std::vector<uint32_t>& out) {
  if (e.node.IsNull()) return;
  if (!e.node.IsSequence()) {
    r.error(e.mark, e.path + ": " + expected("a list of numeric ids, e.g. [0, 1000]", e.node));
    return;
  }
  std::vector<uint32_t> ids;
  for (const YAML::Node& item : e.node) {
    int64_t v = 0;
    std::string problem = to_int(item, {0, 4294967294LL}, v);
    if (!problem.empty()) {
      r.error(mark_of(item), e.path + ": " + problem);
      return;
    }
    ids.push_back(static_cast<uint32_t>(v));
  }
  out = std::move(ids);
}

void parse_agent(Reporter& r, const Entry& section, AgentSection& a) {
  static const std::vector<std::string> keys = {
      "control_socket", "control_mode", "control_max_connections", "control_max_line",
      "plugin_dir",     "threadpool",   "log_level",               "event_queue",
      "event_batch",    "lag_warn",     "shutdown_timeout",        "reload_timeout",
      "action_timeout", "control_max_write_buffer", "control_idle_timeout", "action_wait",
      "control_group",  "control_admin_uids", "control_admin_gids", "control_read_uids", "control_read_gids"};
  static const std::vector<std::string> levels = {"error", "warn", "info", "debug"};
  a.mark = section.mark;
  if (section.node.IsNull()) return;
  if (!section.node.IsMap()) {
    r.error(section.mark, "agent: " + expected("a mapping", section.node));
    return;
  }
  for (const Entry& e : known_entries(r, section.node, "agent", keys)) {
    if (e.key == "control_socket") {
      std::string s;
      if (!check(r, e, to_path(e.node, s))) continue;
      if (s.size() >= sizeof(sockaddr_un{}.sun_path))
        check(r, e, "a Unix socket path must be shorter than " +
                        std::to_string(sizeof(sockaddr_un{}.sun_path)) + " bytes, got " +
                        std::to_string(s.size()));
      else
        a.control_socket = s;
    } else if (e.key == "control_mode") {
      check(r, e, to_mode(e.node, a.control_mode));
    } else if (e.key == "control_group") {
      check(r, e, to_nonempty_string(e.node, a.control_group));
    } else if (e.key == "control_admin_uids") {
      read_id_list(r, e, a.control_admin_uids);
    } else if (e.key == "control_admin_gids") {
      read_id_list(r, e, a.control_admin_gids);
    } else if (e.key == "control_read_uids") {
      read_id_list(r, e, a.control_read_uids);
    } else if (e.key == "control_read_gids") {
      read_id_list(r, e, a.control_read_gids);
    } else if (e.key == "control_max_connections") {
      read_int(r, e, 1, 65536, a.control_max_connections);
    } else if (e.key == "control_max_line") {
      int64_t v = 0;
      if (check(r, e, to_size(e.node, {64, 1ll << 30}, v))) a.control_max_line = static_cast<size_t>(v);
    } else if (e.key == "control_max_write_buffer") {
      int64_t v = 0;
      if (check(r, e, to_size(e.node, {4096, 1ll << 30}, v))) a.control_max_write_buffer = static_cast<size_t>(v);
    } else if (e.key == "control_idle_timeout") {
      read_duration(r, e, 0, kDay, a.control_idle_timeout_ms);
    } else if (e.key == "plugin_dir") {
      check(r, e, to_path(e.node, a.plugin_dir));
    } else if (e.key == "threadpool") {
      read_int(r, e, 1, 1024, a.threadpool);
    } else if (e.key == "log_level") {
      std::string s;
      if (!check(r, e, to_string(e.node, s))) continue;
      if (std::find(levels.begin(), levels.end(), s) != levels.end()) {
        a.log_level = s;
        continue;
      }
      std::string msg = "expected one of error, warn, info, debug, got '" + s + "'";
      if (const std::string m = did_you_mean(s, levels); !m.empty()) msg += "; did you mean '" + m + "'?";
      check(r, e, msg);
    } else if (e.key == "event_queue") {
      read_int(r, e, 16, 1 << 24, a.event_queue);
    } else if (e.key == "event_batch") {
      read_int(r, e, 1, 65536, a.event_batch);
    } else if (e.key == "lag_warn") {
      read_duration(r, e, 1, 60 * 1000, a.lag_warn_ms);
    } else if (e.key == "shutdown_timeout") {
      read_duration(r, e, 0, 3600 * 1000, a.shutdown_timeout_ms);
    } else if (e.key == "reload_timeout") {
      read_duration(r, e, 0, 3600 * 1000, a.reload_timeout_ms);
    } else if (e.key == "action_timeout") {
      read_duration(r, e, 1, kDay, a.action_timeout_ms);
    } else if (e.key == "action_wait") {
      read_duration(r, e, 0, kDay, a.action_wait_ms);
    }
  }
}

// ---------------------------------------------------------------------------
// plugins:

bool valid_instance_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// The core publishes its own events with source "hostlet" (plugin.h).
constexpr std::string_view kReservedInstance = "hostlet";

void parse_plugins(Reporter& r, const Entry& section, std::vector<InstanceSection>& out) {
  static const std::vector<std::string> keys = {"name",  "plugin", "max_inflight", "max_queue", "offload_timeout",
                                                "watch", "optional", "config"};
  if (section.node.IsNull()) return;
  if (!section.node.IsSequence()) {
    r.error(section.mark, "plugins: " + expected("a sequence of instances ('- name: ...')", section.node));
    return;
  }
  std::map<std::string, Mark> names;
  size_t i = 0;
  for (const YAML::Node& item : section.node) {
    const std::string path = indexed("plugins", i++);
    const Mark item_mark = item.IsNull() ? section.mark : mark_of(item);
    if (!item.IsMap()) {
      r.error(item_mark, path + ": " + expected("a mapping with 'name' and 'plugin'", item));
      continue;
    }
    InstanceSection inst;
    inst.mark = item_mark;
    bool has_name = false, has_plugin = false, has_config = false;
    for (const Entry& e : known_entries(r, item, path, keys)) {
      if (e.key == "name") {
        has_name = true;
        inst.name_mark = e.mark;
        std::string s;
        if (!check(r, e, to_string(e.node, s))) continue;
        if (!valid_instance_name(s)) {
          check(r, e, "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-', got '" + s + "'");
        } else if (s == kReservedInstance) {
          check(r, e, "'hostlet' is reserved for the agent's own events");
        } else if (auto [prev, fresh] = names.emplace(s, e.mark); !fresh) {
          check(r, e, "duplicate instance name '" + s + "' (first at line " +
                          std::to_string(prev->second.line) + ")");
        } else {
          inst.name = s;
        }
      } else if (e.key == "plugin") {
        has_plugin = true;
        inst.plugin_mark = e.mark;
        check(r, e, to_path(e.node, inst.plugin));
      } else if (e.key == "max_inflight") {
        read_int(r, e, 1, 4096, inst.max_inflight);
      } else if (e.key == "max_queue") {
        read_int(r, e, 0, 1000000, inst.max_queue);
      } else if (e.key == "offload_timeout") {
        read_duration(r, e, 0, kDay, inst.offload_timeout_ms);
      } else if (e.key == "watch") {
        check(r, e, to_bool(e.node, inst.watch));
      } else if (e.key == "optional") {
        check(r, e, to_bool(e.node, inst.optional));
      } else if (e.key == "config") {
        has_config = true;
        inst.config_mark = e.mark;
        if (e.node.IsNull() || e.node.IsMap())
          inst.config = e.node;
        else
          check(r, e, expected("a mapping", e.node));
      }
    }
    if (!has_name) r.error(inst.mark, path + ": missing required key 'name'");
    if (!has_plugin) r.error(inst.mark, path + ": missing required key 'plugin'");
    if (!has_config) inst.config_mark = inst.mark;
    out.push_back(std::move(inst));
  }
}

// ---------------------------------------------------------------------------
// rules:

bool check_glob(Reporter& r, const Entry& e, const std::string& pattern) {
  const std::string problem = glob_syntax_error(pattern);
  return problem.empty() || check(r, e, "bad pattern '" + pattern + "': " + problem);
}

// A mapping of attribute name -> string, e.g. `attrs:` and `with:`.
bool read_string_map(Reporter& r, const Entry& section,
                     std::vector<std::pair<std::string, std::string>>& out,
                     std::vector<Entry>* entries) {
  if (!section.node.IsMap()) {
    check(r, section, expected("a mapping of attribute names to strings", section.node));
    return false;
  }
  std::map<std::string, Mark> seen;
  for (const auto& kv : section.node) {
    const YAML::Node k = kv.first;
    const YAML::Node v = kv.second;
    const Mark km = mark_of(k);
    if (!k.IsScalar() || k.Scalar().empty()) {
      r.error(km, section.path + ": " + expected("an attribute name", k));
      continue;
    }
    const std::string key = k.Scalar();
    Entry e{key, v, km, value_mark(km, v), join(section.path, key)};
    if (auto [prev, fresh] = seen.emplace(key, km); !fresh) {
      r.error(km, section.path + ": duplicate key '" + key + "' (first at line " +
                      std::to_string(prev->second.line) + ")");
      continue;
    }
    std::string value;
    if (!check(r, e, to_string(e.node, value))) continue;
    out.emplace_back(key, value);
    if (entries) entries->push_back(std::move(e));
  }
  return true;
}

void parse_on(Reporter& r, const Entry& on, RuleSection& rule) {
  static const std::vector<std::string> keys = {"source", "type", "attrs"};
  if (!on.node.IsMap()) {
    check(r, on, expected("a mapping with 'source' and/or 'type'", on.node));
    return;
  }
  bool named = false;
  for (const Entry& e : known_entries(r, on.node, on.path, keys)) {
    if (e.key == "source" || e.key == "type") {
      named = true;
      std::string s;
      if (!check(r, e, to_nonempty_string(e.node, s)) || !check_glob(r, e, s)) continue;
      (e.key == "source" ? rule.source : rule.type) = s;
    } else if (e.key == "attrs") {
      std::vector<std::pair<std::string, std::string>> attrs;
      std::vector<Entry> entries;
      if (!read_string_map(r, e, attrs, &entries)) continue;
      for (size_t i = 0; i < attrs.size(); ++i)
        if (check_glob(r, entries[i], attrs[i].second)) rule.attrs.push_back(attrs[i]);
    }
  }
  if (!named) r.error(on.mark, on.path + ": needs 'source' or 'type' (or both)");
}

// "<instance>.<verb>": at least two non-empty dot-separated parts, no spaces.
std::string action_name_problem(const std::string& s) {
  const size_t dot = s.find('.');
  const bool parts_ok = dot != std::string::npos && dot > 0 && s.back() != '.' &&
                        s.find("..") == std::string::npos;
  const bool chars_ok = std::none_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  });
  if (parts_ok && chars_ok) return {};
  return "expected an action '<instance>.<verb>' such as 'virt.domain.start', got '" + s + "'";
}

void parse_do(Reporter& r, const Entry& d, RuleSection& rule) {
  auto add = [&](const YAML::Node& n, const Entry& at) {
    std::string s;
    if (!check(r, at, to_string(n, s)) || !check(r, at, action_name_problem(s))) return;
    rule.actions.emplace_back(s, at.mark);
  };
  if (d.node.IsScalar()) {
    add(d.node, d);
  } else if (d.node.IsSequence() && d.node.size() > 0) {
    size_t i = 0;
    for (const YAML::Node& item : d.node) {
      const Mark m = item.IsNull() ? d.mark : mark_of(item);
      add(item, Entry{d.key, item, d.key_mark, m, indexed(d.path, i++)});
    }
  } else if (d.node.IsSequence()) {
    check(r, d, "must name at least one action");
  } else {
    check(r, d, expected("an action name or a list of them", d.node));
  }
}

// The template syntax the rules engine reads (core/rules.cpp): "${name}"
// substitutes, "$$" is a literal '$', a lone '$' is literal. Checked here too
// so that a mistake is reported with its line and column.
std::string template_problem(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$') continue;
    if (i + 1 < s.size() && s[i + 1] == '$') {
      ++i;
      continue;
    }
    if (i + 1 >= s.size() || s[i + 1] != '{') continue;
    const size_t end = s.find('}', i + 2);
    if (end == std::string::npos)
      return "unterminated '${' at position " + std::to_string(i + 1) + " in '" + s + "'";
    if (end == i + 2) return "empty '${}' at position " + std::to_string(i + 1) + " in '" + s + "'";
    i = end;
  }
  return {};
}

void parse_rules(Reporter& r, const Entry& section, std::vector<RuleSection>& out) {
  static const std::vector<std::string> keys = {"name", "on", "do", "with", "debounce", "rate_limit", "action_wait"};
  if (section.node.IsNull()) return;
  if (!section.node.IsSequence()) {
    r.error(section.mark, "rules: " + expected("a sequence of rules ('- on: ...')", section.node));
    return;
  }
  std::map<std::string, Mark> names;
  size_t i = 0;
  for (const YAML::Node& item : section.node) {
    const std::string path = indexed("rules", i++);
    const Mark item_mark = item.IsNull() ? section.mark : mark_of(item);
    if (!item.IsMap()) {
      r.error(item_mark, path + ": " + expected("a mapping with 'on' and 'do'", item));
      continue;
    }
    RuleSection rule;
    rule.mark = rule.with_mark = item_mark;
    bool has_on = false, has_do = false;
    for (const Entry& e : known_entries(r, item, path, keys)) {
      if (e.key == "on") {
        has_on = true;
        parse_on(r, e, rule);
      } else if (e.key == "do") {
        has_do = true;
        parse_do(r, e, rule);
      } else if (e.key == "with") {
        rule.with_mark = e.mark;
        std::vector<std::pair<std::string, std::string>> with;
        std::vector<Entry> entries;
        if (!read_string_map(r, e, with, &entries)) continue;
        for (size_t k = 0; k < with.size(); ++k)
          if (check(r, entries[k], template_problem(with[k].second))) rule.with.push_back(with[k]);
      } else if (e.key == "debounce") {
        read_duration(r, e, 0, kDay, rule.debounce_ms);
      } else if (e.key == "action_wait") {
        read_duration(r, e, 0, kDay, rule.action_wait_ms);
      } else if (e.key == "rate_limit") {
        check(r, e, to_rate(e.node, rule.rate_limit));
      } else if (e.key == "name") {
        std::string s;
        if (!check(r, e, to_nonempty_string(e.node, s))) continue;
        if (auto [prev, fresh] = names.emplace(s, e.mark); !fresh)
          check(r, e, "duplicate rule name '" + s + "' (first at line " +
                          std::to_string(prev->second.line) + ")");
        else
          rule.name = s;
      }
    }
    if (!has_on) r.error(rule.mark, path + ": missing required key 'on'");
    if (!has_do) r.error(rule.mark, path + ": missing required key 'do'");
    out.push_back(std::move(rule));
  }
}

}  // namespace

// ---------------------------------------------------------------------------

bool parse_config(const std::string& text, const std::string& file, Config& out, ConfigErrors& errs) {
  static const std::vector<std::string> keys = {"agent", "plugins", "rules"};
  const size_t before = errs.size();
  out = Config{};
  out.file = file;
  Reporter r(file, errs);

  YAML::Node root;
  if (!load_yaml_document(text, file, root, errs)) return false;
  if (root.IsNull()) return errs.size() == before;

  if (!root.IsMap()) {
    r.error(mark_of(root), expected("a mapping with 'agent', 'plugins' and 'rules'", root));
    return false;
  }
  for (const Entry& e : known_entries(r, root, "", keys)) {
    if (e.key == "agent") {
      out.agent_mark = e.key_mark;
      parse_agent(r, e, out.agent);
    } else if (e.key == "plugins") {
      parse_plugins(r, e, out.plugins);
    } else if (e.key == "rules") {
      parse_rules(r, e, out.rules);
    }
  }
  for (auto& p : out.plugins) p.file = file;
  for (auto& rule : out.rules) rule.file = file;
  return errs.size() == before;
}

namespace {

// Reads a config file into `text`; false with `problem` (strerror text or
// "not a regular file").
bool read_config_text(const std::string& path, std::string& text, std::string& problem) {
  // POSIX I/O rather than ifstream: a directory or an EIO must be an error with
  // its errno, not an empty (and therefore valid) config. O_NONBLOCK so that a
  // FIFO without a writer is refused at once instead of blocking a reload
  // forever; reading stops past the size limit (-c /dev/zero ends too).
  const size_t limit = YamlLimits{}.max_bytes;
  text.clear();
  problem.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    problem = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    problem = std::strerror(EISDIR);
  } else if (!S_ISREG(st.st_mode)) {
    problem = "not a regular file";
  } else {
    char buf[65536];
    while (text.size() <= limit) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        problem = std::strerror(errno);
        break;
      }
    }
  }
  if (fd >= 0) ::close(fd);
  return problem.empty();
}

// Appends `from`'s sections to `to`, except one whose name (when it has one)
// is taken: that one is an error naming both places. `mark` picks the place.
template <class Section, class MarkOf>
void append_unique(std::vector<Section>& from, std::vector<Section>& to, const char* what, MarkOf mark,
                   ConfigErrors& errs) {
  for (auto& sec : from) {
    auto same = std::find_if(to.begin(), to.end(), [&](const Section& q) { return !sec.name.empty() && q.name == sec.name; });
    if (same == to.end()) {
      to.push_back(std::move(sec));
      continue;
    }
    errs.push_back({sec.file, mark(sec),
                    std::string(what) + " '" + sec.name + "' (first at " + same->file + ":" +
                        std::to_string(mark(*same).line) + ")"});
  }
}

// Appends what fragment `frag` adds to `out`, refusing names taken.
void merge_fragment(Config& frag, Config& out, ConfigErrors& errs) {
  append_unique(frag.plugins, out.plugins, "plugins: duplicate instance name",
                [](const InstanceSection& s) { return s.name_mark; }, errs);
  append_unique(frag.rules, out.rules, "rules: duplicate rule name", [](const RuleSection& s) { return s.mark; }, errs);
}

}  // namespace

bool load_config_file(const std::string& path, Config& out, ConfigErrors& errs) {
  const size_t before = errs.size();
  std::string text, problem;
  if (!read_config_text(path, text, problem)) {
    out = Config{};
    out.file = path;
    errs.push_back(ConfigError{path, {}, "cannot read the file: " + problem});
    return false;
  }
  parse_config(text, path, out, errs);

  // Drop-in fragments: <dir of path>/conf.d/*.yaml, in name order.
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path() / "conf.d";
  if (!std::filesystem::is_directory(dir, ec)) return errs.size() == before;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".yaml") == 0 && name[0] != '.') files.push_back(entry.path().string());
  }
  if (ec) {
    errs.push_back(ConfigError{dir.string(), {}, "cannot read the directory: " + ec.message()});
    return false;
  }
  std::sort(files.begin(), files.end());
  if (files.size() > kMaxFragments) {
    errs.push_back(ConfigError{dir.string(), {}, "more than " + std::to_string(kMaxFragments) + " fragments (" +
                                                     std::to_string(files.size()) + ")"});
    return false;
  }
  for (const auto& file : files) {
    if (!read_config_text(file, text, problem)) {
      errs.push_back(ConfigError{file, {}, "cannot read the file: " + problem});
      continue;
    }
    Config frag;
    parse_config(text, file, frag, errs);
    if (frag.agent_mark.line != 0)
      errs.push_back(ConfigError{file, frag.agent_mark, "agent: belongs in " + path + ", not in a conf.d fragment"});
    merge_fragment(frag, out, errs);
    out.fragments.push_back(file);
  }
  return errs.size() == before;
}

}  // namespace hostlet
