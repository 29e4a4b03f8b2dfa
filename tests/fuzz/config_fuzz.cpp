// Fuzz target: the config loader, from YAML text through schema validation,
// as `hostlet --check` runs it short of loading plugins: parse_config (which
// loads the text with load_yaml_document's limits), each instance's `config:`
// against a schema that has every key type, and the rules compiled by the
// RuleEngine with their actions looked up. The input is the file's text.
//
// Promises checked, besides crashes and hangs (the yaml-cpp 0.7 LoadAll hang,
// jbeder/yaml-cpp#1040, is a regression input; libFuzzer's -timeout stands
// for the "within a second" promise):
//   - success is exactly "no error"; every error names the file, says
//     something, lies within the text (line and column, or 0 for unknown),
//     prints as one printable line (config_error.hpp), and the errors come
//     in file order;
//   - a config that passes holds only values in the ranges config.hpp
//     documents: socket paths that fit sun_path without control characters,
//     valid unique instance names, rules naming a source or a type with valid
//     globs and templates, actions shaped <instance>.<verb>;
//   - what the config accepted, the rule engine accepts too (config.cpp and
//     rules.cpp each check templates, glob.cpp the globs): compiling adds no
//     error, and with no action registered each named action is one error;
//   - schema validation succeeds exactly without errors, and then every
//     value has its key's type and bounds, required keys are there, defaults
//     are applied and nothing outside the schema got through;
//   - load_yaml_document with tight limits either loads (adding at most the
//     "another document" error) or fails with a null node and one error, or
//     two when the text also had a second document.
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <hostlet/json_text.hpp>

#include "actions.hpp"
#include "bus.hpp"
#include "config.hpp"
#include "config_yaml.hpp"
#include "fuzz_support.hpp"
#include "rules.hpp"

namespace {

using hostlet::fuzz::check;
using namespace hostlet;

const std::string kFile = "fuzz.yaml";
constexpr int64_t kDayMs = 24 * 3600 * 1000;

// One key of each type, with and without bounds and defaults; "path" is required.
const hostlet_config_key kSchema[] = {
    {"path", HOSTLET_CONFIG_STRING, nullptr, "a required string of 1 to 107 bytes", 1, 107, HOSTLET_CONFIG_REQUIRED},
    {"label", HOSTLET_CONFIG_STRING, "*", "", 0, 0, 0},
    {"count", HOSTLET_CONFIG_INT, "4", "", 1, 1000, 0},
    {"offset", HOSTLET_CONFIG_INT, nullptr, "", 0, 0, 0},
    {"enabled", HOSTLET_CONFIG_BOOL, "false", "", 0, 0, 0},
    {"ratio", HOSTLET_CONFIG_DOUBLE, "0.5", "", 0, 0, 0},
    {"timeout", HOSTLET_CONFIG_DURATION, "5s", "", 0, kDayMs, 0},
    {"size", HOSTLET_CONFIG_SIZE, "64KiB", "", 64, 64LL << 20, 0},
    {"names", HOSTLET_CONFIG_STRING_LIST, "[a, b]", "", 0, 0, 0},
    {"ids", HOSTLET_CONFIG_INT_LIST, "", "", 0, 4294967294, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

// The error lines `hostlet --check` prints: valid UTF-8 without C0, DEL, C1
// controls, line separators or bidi overrides (printable()'s promise).
bool printable_line(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n = utf8_sequence_length(&s[i], s.data() + s.size());
    if (n == 0) return false;
    std::string_view seq(&s[i], n);
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;  // C1
    if (n == 3 && seq.substr(0, 2) == "\xE2\x80") {
      auto last = static_cast<unsigned char>(s[i + 2]);
      if (last == 0xA8 || last == 0xA9 || (last >= 0xAA && last <= 0xAE)) return false;  // U+2028-202E
    }
    if (n == 3 && seq.substr(0, 2) == "\xE2\x81") {
      auto last = static_cast<unsigned char>(s[i + 2]);
      if (last >= 0xA6 && last <= 0xA9) return false;  // U+2066-2069
    }
    i += n;
  }
  return true;
}

// Lines as YAML counts them: LF, CR, CRLF, and NEL, LS and PS in UTF-8.
int count_lines(std::string_view text) {
  int lines = 1;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '\n' || (text[i] == '\r' && (i + 1 == text.size() || text[i + 1] != '\n'))) lines++;
    std::string_view rest = text.substr(i);
    if (rest.substr(0, 2) == "\xC2\x85" || rest.substr(0, 3) == "\xE2\x80\xA8" || rest.substr(0, 3) == "\xE2\x80\xA9")
      lines++;
  }
  return lines;
}

void check_errors(const ConfigErrors& errs, size_t from, const std::string& text, bool sorted) {
  const int lines = count_lines(text);
  for (size_t i = from; i < errs.size(); i++) {
    const ConfigError& e = errs[i];
    check(e.file == kFile && !e.message.empty());
    check(e.mark.line >= 0 && e.mark.line <= lines + 1 && e.mark.column >= 0);
    check((e.mark.line == 0) == (e.mark.column == 0));
    check(printable_line(e.str()));
    if (sorted && i > from)
      check(std::pair(errs[i - 1].mark.line, errs[i - 1].mark.column) <= std::pair(e.mark.line, e.mark.column));
  }
}

bool no_control_chars(const std::string& s) {
  return !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

bool valid_instance_name(const std::string& s) {
  if (s.empty() || s.size() > 64 || s == "hostlet") return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; });
}

void check_agent(const AgentSection& a) {
  check(no_control_chars(a.control_socket) && a.control_socket.size() < 108);
  check(a.plugin_dir.empty() || no_control_chars(a.plugin_dir));
  check(a.control_mode <= 0777);
  check(a.control_max_connections >= 1 && a.control_max_connections <= 65536);
  check(a.control_max_line >= 64 && a.control_max_line <= (size_t{1} << 30));
  check(a.control_max_write_buffer >= 4096 && a.control_max_write_buffer <= (size_t{1} << 30));
  check(a.control_idle_timeout_ms <= kDayMs);
  check(a.threadpool >= 1 && a.threadpool <= 1024);
  check(a.log_level == "error" || a.log_level == "warn" || a.log_level == "info" || a.log_level == "debug");
  check(a.event_queue >= 16 && a.event_queue <= (1u << 24));
  check(a.event_batch >= 1 && a.event_batch <= 65536);
  check(a.lag_warn_ms >= 1 && a.lag_warn_ms <= 60000);
  check(a.shutdown_timeout_ms <= 3600000 && a.reload_timeout_ms <= 3600000);
  check(a.action_timeout_ms >= 1 && a.action_timeout_ms <= kDayMs);
}

size_t check_rules(const std::vector<RuleSection>& rules) {
  size_t actions = 0;
  std::set<std::string> names;
  for (const RuleSection& r : rules) {
    check(!r.source.empty() || !r.type.empty());
    check(valid_glob(r.source) && valid_glob(r.type));
    for (const auto& [k, g] : r.attrs) check(!k.empty() && valid_glob(g));
    check(!r.actions.empty());
    for (const auto& [name, mark] : r.actions) {
      check(name.find('.') != std::string::npos && name.find_first_of(" \t\r\n") == std::string::npos);
      check(mark.line > 0);
    }
    actions += r.actions.size();
    for (const auto& [k, t] : r.with) {
      std::string error;
      check(!k.empty() && check_template(t, error));
    }
    check(r.debounce_ms <= kDayMs && r.rate_limit >= 0 && std::isfinite(r.rate_limit));
    if (!r.name.empty()) check(names.insert(r.name).second);
  }
  return actions;
}

void check_instances(const std::vector<InstanceSection>& plugins) {
  std::set<std::string> names;
  for (const InstanceSection& p : plugins) {
    check(valid_instance_name(p.name) && names.insert(p.name).second);
    check(no_control_chars(p.plugin));
    check(p.max_inflight >= 1 && p.max_inflight <= 4096 && p.max_queue <= 1000000);
    check(p.offload_timeout_ms <= kDayMs);
    check(!p.config.IsDefined() || p.config.IsNull() || p.config.IsMap());
  }
}

bool schema_has(std::string_view key) {
  for (const hostlet_config_key* k = kSchema; k->key; ++k)
    if (key == k->key) return true;
  return false;
}

void check_value(const hostlet_config_key& k, const ConfigValue& v) {
  check(v.type == k.type);
  const bool bounded = k.min < k.max;
  auto in_bounds = [&](int64_t x) { return !bounded || (x >= k.min && x <= k.max); };
  switch (k.type) {
    case HOSTLET_CONFIG_STRING:
      check(v.text.find('\0') == std::string::npos);
      check(in_bounds(static_cast<int64_t>(v.text.size())));
      break;
    case HOSTLET_CONFIG_INT: check(in_bounds(v.i)); break;
    case HOSTLET_CONFIG_DURATION:
    case HOSTLET_CONFIG_SIZE: check(v.i >= 0 && in_bounds(v.i)); break;
    case HOSTLET_CONFIG_DOUBLE: check(std::isfinite(v.d)); break;
    case HOSTLET_CONFIG_BOOL: break;
    case HOSTLET_CONFIG_STRING_LIST:
    case HOSTLET_CONFIG_INT_LIST:
    case HOSTLET_CONFIG_MAP_LIST:
      for (const auto& item : v.list) check(item.find('\0') == std::string::npos);
      if (k.type == HOSTLET_CONFIG_INT_LIST) {
        check(v.ilist.size() == v.list.size());
        for (int64_t x : v.ilist) check(in_bounds(x));
      }
      break;
    case HOSTLET_CONFIG_MAP:  // names, each without a '.'
      for (const auto& name : v.list) check(!name.empty() && name.find('.') == std::string::npos);
      break;
  }
}

void check_schema(const InstanceSection& inst, const std::string& text) {
  ConfigValues values;
  ConfigErrors errs;
  const bool ok = validate_plugin_config(kFile, inst.config, inst.config_mark, kSchema, values, errs);
  check(ok == errs.empty());
  check_errors(errs, 0, text, false);
  if (!ok) return;
  if (inst.config.IsMap())
    for (const auto& kv : inst.config) check(kv.first.IsScalar() && schema_has(kv.first.Scalar()));
  for (const hostlet_config_key* k = kSchema; k->key; ++k) {
    check(values.declared(k->key));
    const ConfigValue* v = values.find(k->key);
    const bool present = inst.config.IsMap() && inst.config[k->key].IsDefined();
    if ((k->flags & HOSTLET_CONFIG_REQUIRED) || k->default_value) check(v != nullptr);
    if (!v) {
      check(!present);
      continue;
    }
    check_value(*k, *v);
  }
}

// What the rule engine needs to compile rules: never run, kept for the process.
struct Engine {
  uv_loop_t loop;
  EventBus* bus;
  ActionRegistry* actions;
  Engine() {
    uv_loop_init(&loop);
    bus = new EventBus(&loop, 1024, 64);
    actions = new ActionRegistry(&loop, 1000);
  }
};

void check_compile(const Config& cfg, size_t actions) {
  static Engine* engine = new Engine;
  RuleEngine rules(*engine->bus, *engine->actions);
  ConfigErrors errs;
  check(rules.compile(cfg.rules, kFile, errs) && errs.empty());
  check(!rules.check_actions(errs) == (actions > 0) && errs.size() == actions);
}

void check_tight_load(const std::string& text) {
  YamlLimits tight;
  tight.max_bytes = 512;
  tight.max_depth = 3;
  tight.max_nodes = 16;
  YAML::Node node;
  ConfigErrors errs;
  const bool ok = load_yaml_document(text, kFile, node, errs, tight);
  check_errors(errs, 0, text, false);
  const auto second_document = [&] { return errs[0].message == "expected one YAML document, found another"; };
  if (ok) check(errs.empty() || (errs.size() == 1 && second_document()));
  else check(node.IsNull() && (errs.size() == 1 || (errs.size() == 2 && second_document())));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Config cfg;
  ConfigErrors errs;
  const bool ok = parse_config(text, kFile, cfg, errs);
  check(ok == errs.empty() && cfg.file == kFile);
  check_errors(errs, 0, text, true);
  check_tight_load(text);
  if (!ok) return 0;
  check_agent(cfg.agent);
  check_instances(cfg.plugins);
  check_compile(cfg, check_rules(cfg.rules));
  for (const InstanceSection& inst : cfg.plugins) check_schema(inst, text);
  return 0;
}
