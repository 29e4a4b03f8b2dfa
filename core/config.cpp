// Config parsing and validation. See config.hpp for the contract.
//
// Every check reports and carries on: a bad value leaves the field at its
// default and the next key is examined, so one `hostlet --check` run lists
// every problem in the file.
#include "config.hpp"

#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>

namespace hostlet {

Mark mark_of(const YAML::Node& node) {
  if (!node.IsDefined()) return {};
  const YAML::Mark m = node.Mark();
  if (m.is_null() || m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

std::string ConfigError::str() const {
  std::string s = file;
  if (mark.line > 0) s += ":" + std::to_string(mark.line) + ":" + std::to_string(mark.column);
  return s + ": " + message;
}

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

// ---------------------------------------------------------------------------
// Scalar text parsers.

namespace {

constexpr uint64_t kMaxValue = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool is_digit(char c) { return c >= '0' && c <= '9'; }

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// "<digits>[.<digits>]<unit>" with the unit one of `units` (the empty suffix,
// when listed, means a plain integer). The result must be a whole number
// and fit in int64_t.
std::optional<uint64_t> parse_scaled(std::string_view text, const Unit* units, size_t n_units) {
  size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  if (i == 0) return std::nullopt;
  std::string_view whole = text.substr(0, i);
  std::string_view frac;
  if (i < text.size() && text[i] == '.') {
    size_t j = i + 1;
    while (j < text.size() && is_digit(text[j])) ++j;
    frac = text.substr(i + 1, j - i - 1);
    if (frac.empty()) return std::nullopt;
    i = j;
  }
  const std::string_view suffix = text.substr(i);
  const Unit* unit = nullptr;
  for (size_t u = 0; u < n_units; ++u)
    if (units[u].suffix == suffix) unit = &units[u];
  if (unit == nullptr) return std::nullopt;
  if (suffix.empty() && !frac.empty()) return std::nullopt;  // a plain number is an integer

  uint64_t w = 0;
  auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), w);
  if (ec != std::errc() || p != whole.data() + whole.size()) return std::nullopt;
  uint64_t value = 0;
  if (__builtin_mul_overflow(w, unit->factor, &value)) return std::nullopt;

  while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
  if (!frac.empty()) {
    if (frac.size() > 18) return std::nullopt;
    uint64_t f = 0;
    std::from_chars(frac.data(), frac.data() + frac.size(), f);
    uint64_t scale = 1;
    for (size_t k = 0; k < frac.size(); ++k) scale *= 10;
    uint64_t scaled = 0;
    if (__builtin_mul_overflow(f, unit->factor, &scaled)) return std::nullopt;
    if (scaled % scale != 0) return std::nullopt;  // not a whole number of base units
    if (__builtin_add_overflow(value, scaled / scale, &value)) return std::nullopt;
  }
  if (value > kMaxValue) return std::nullopt;
  return value;
}

// Decimal, optional sign, nothing else.
std::optional<int64_t> parse_int(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty() || s[0] == '+') return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty() || s[0] == '+') return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

size_t levenshtein(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  static constexpr Unit units[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
  return parse_scaled(text, units, std::size(units));
}

std::optional<uint64_t> parse_size(std::string_view text) {
  static constexpr Unit units[] = {
      {"", 1},           {"B", 1},          {"K", 1ull << 10}, {"KiB", 1ull << 10},
      {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
      {"T", 1ull << 40}, {"TiB", 1ull << 40}};
  return parse_scaled(text, units, std::size(units));
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  const size_t limit = std::max<size_t>(1, word.size() / 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = levenshtein(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::string glob_syntax_error(std::string_view p) {
  static const std::set<std::string_view> classes = {"alnum", "alpha", "blank", "cntrl",
                                                     "digit", "graph", "lower", "print",
                                                     "punct", "space", "upper", "xdigit"};
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\') {
      if (i + 1 == p.size()) return "pattern ends with a lone '\\'";
      ++i;
      continue;
    }
    if (p[i] != '[') continue;
    const size_t open = i;
    size_t j = i + 1;
    if (j < p.size() && (p[j] == '!' || p[j] == '^')) ++j;
    if (j < p.size() && p[j] == ']') ++j;  // a ']' right after the '[' is a member
    bool closed = false;
    while (j < p.size()) {
      if (p[j] == '[' && j + 1 < p.size() && (p[j + 1] == ':' || p[j + 1] == '.' || p[j + 1] == '=')) {
        const char kind = p[j + 1];
        const char close[] = {kind, ']', '\0'};
        const size_t end = p.find(close, j + 2);
        if (end == std::string_view::npos)
          return "unterminated '[" + std::string(1, kind) + "' at position " + std::to_string(j + 1);
        if (kind == ':' && classes.count(p.substr(j + 2, end - j - 2)) == 0)
          return "unknown character class '" + std::string(p.substr(j, end + 2 - j)) + "'";
        j = end + 2;
        continue;
      }
      if (p[j] == '\\' && j + 1 < p.size()) {
        j += 2;
        continue;
      }
      if (p[j] == ']') {
        closed = true;
        break;
      }
      ++j;
    }
    if (!closed) return "unbalanced '[' at position " + std::to_string(open + 1);
    i = j;
  }
  return {};
}

// ---------------------------------------------------------------------------
// Node helpers shared by the agent config and the plugin schemas.

namespace {

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: {
      std::string s = n.Scalar();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return "'" + s + "'";
    }
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a mapping";
    default: return "an empty value";
  }
}

std::string expected(std::string_view what, const YAML::Node& n) {
  return "expected " + std::string(what) + ", got " + describe(n);
}

std::string format_ms(uint64_t ms) {
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string format_size(uint64_t n) {
  if (n != 0 && n % (1ull << 30) == 0) return std::to_string(n >> 30) + "GiB";
  if (n != 0 && n % (1ull << 20) == 0) return std::to_string(n >> 20) + "MiB";
  if (n != 0 && n % (1ull << 10) == 0) return std::to_string(n >> 10) + "KiB";
  return std::to_string(n);
}

// Bounds are checked when min < max (the schema's convention).
struct Bounds {
  int64_t min = 0;
  int64_t max = 0;
  bool active() const { return min < max; }
  bool contains(int64_t v) const { return !active() || (v >= min && v <= max); }
};

constexpr int64_t kDay = 24 * 3600 * 1000;

// Converters: fill `out` and return "" or return what is wrong (no path).
std::string to_string(const YAML::Node& n, std::string& out) {
  if (!n.IsScalar()) return expected("a string", n);
  out = n.Scalar();
  return {};
}

std::string to_nonempty_string(const YAML::Node& n, std::string& out) {
  if (!n.IsScalar()) return expected("a string", n);
  if (n.Scalar().empty()) return "must not be empty";
  out = n.Scalar();
  return {};
}

std::string to_int(const YAML::Node& n, Bounds b, int64_t& out) {
  if (!n.IsScalar()) return expected("an integer", n);
  const auto v = parse_int(n.Scalar());
  if (!v) return expected("an integer", n);
  if (!b.contains(*v))
    return "must be between " + std::to_string(b.min) + " and " + std::to_string(b.max) + ", got " +
           n.Scalar();
  out = *v;
  return {};
}

std::string to_bool(const YAML::Node& n, bool& out) {
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, out))
    return expected("true or false", n);
  return {};
}

std::string to_double(const YAML::Node& n, double& out) {
  if (!n.IsScalar()) return expected("a number", n);
  const auto v = parse_double(n.Scalar());
  if (!v) return expected("a number", n);
  out = *v;
  return {};
}

std::string to_duration(const YAML::Node& n, Bounds b, int64_t& out) {
  static constexpr std::string_view what = "a duration such as 250ms, 5s, 2m or 1h";
  if (!n.IsScalar()) return expected(what, n);
  const auto v = parse_duration_ms(n.Scalar());
  if (!v) return expected(what, n);
  const auto ms = static_cast<int64_t>(*v);
  if (!b.contains(ms))
    return "must be between " + format_ms(static_cast<uint64_t>(std::max<int64_t>(b.min, 0))) +
           " and " + format_ms(static_cast<uint64_t>(b.max)) + ", got " + n.Scalar();
  out = ms;
  return {};
}

std::string to_size(const YAML::Node& n, Bounds b, int64_t& out) {
  static constexpr std::string_view what = "a size such as 4096, 64KiB, 1MiB or 2GiB";
  if (!n.IsScalar()) return expected(what, n);
  const auto v = parse_size(n.Scalar());
  if (!v) return expected(what, n);
  const auto bytes = static_cast<int64_t>(*v);
  if (!b.contains(bytes))
    return "must be between " + format_size(static_cast<uint64_t>(std::max<int64_t>(b.min, 0))) +
           " and " + format_size(static_cast<uint64_t>(b.max)) + " bytes, got " + n.Scalar();
  out = bytes;
  return {};
}

// A file mode: "0600", "0o600" and 0600 are octal, a number without a leading 0 is decimal.
std::string to_mode(const YAML::Node& n, unsigned& out) {
  static constexpr std::string_view what = "a file mode such as \"0600\"";
  if (!n.IsScalar()) return expected(what, n);
  std::string_view s = n.Scalar();
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
    s.remove_prefix(2);
    base = 8;
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec == std::errc::invalid_argument || p != s.data() + s.size())
    return expected(what, n);
  if (ec == std::errc::result_out_of_range || v > 0777)
    return "must be a file mode between 0 and 0777, got " + n.Scalar();
  out = static_cast<unsigned>(v);
  return {};
}

// "10" or "0.5" per second, "10/s", "30/m", "100/h".
std::string to_rate(const YAML::Node& n, double& out) {
  static constexpr std::string_view what = "a rate such as 10, \"10/s\" or \"30/m\"";
  if (!n.IsScalar()) return expected(what, n);
  std::string_view s = n.Scalar();
  double per = 1;
  if (s.size() > 2 && s[s.size() - 2] == '/') {
    switch (s.back()) {
      case 's': per = 1; break;
      case 'm': per = 60; break;
      case 'h': per = 3600; break;
      default: return expected(what, n);
    }
    s.remove_suffix(2);
  }
  const auto v = parse_double(s);
  if (!v) return expected(what, n);
  if (*v <= 0) return "must be greater than 0 (leave it out for no limit), got " + n.Scalar();
  out = *v / per;
  return {};
}

// Collects errors into `errs`; on destruction puts the ones it added in file
// order, since checks run section by section rather than line by line.
class Reporter {
 public:
  Reporter(const std::string& file, ConfigErrors& errs)
      : file_(file), errs_(errs), first_(errs.size()) {}
  ~Reporter() {
    std::stable_sort(errs_.begin() + static_cast<std::ptrdiff_t>(first_), errs_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::pair(a.mark.line, a.mark.column) <
                              std::pair(b.mark.line, b.mark.column);
                     });
  }
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;
  void error(Mark m, std::string message) { errs_.push_back(ConfigError{file_, m, std::move(message)}); }

 private:
  const std::string& file_;
  ConfigErrors& errs_;
  size_t first_;
};

// One key of a mapping and its value.
struct Entry {
  std::string key;
  YAML::Node node;
  Mark key_mark;
  Mark mark;         // the value's, or the key's when the value is empty
  std::string path;  // e.g. "agent.threadpool"
};

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string indexed(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

// Where to report a problem with a value. An empty value (`key:` followed by
// nothing) gets yaml-cpp's mark of the next token, often on the next line;
// the key is where the user should look.
Mark value_mark(Mark key, const YAML::Node& value) {
  const Mark m = mark_of(value);
  const bool after_key = m.line == key.line && m.column > key.column;
  if (m.line == 0 || (value.IsNull() && !after_key)) return key;
  return m;
}

// The entries of `map` whose keys are in `known`, in document order. Keys
// that are not scalars, unknown (with a suggestion) or repeated are reported.
std::vector<Entry> known_entries(Reporter& r, const YAML::Node& map, const std::string& path,
                                 const std::vector<std::string>& known) {
  std::vector<Entry> out;
  std::map<std::string, Mark> seen;
  // Copies, not references: yaml-cpp's iterator_value is a temporary.
  for (const auto& kv : map) {
    const YAML::Node k = kv.first;
    const YAML::Node v = kv.second;
    const Mark km = mark_of(k);
    const std::string where = path.empty() ? std::string("top level") : path;
    if (!k.IsScalar()) {
      r.error(km, where + ": expected a key name, got " + describe(k));
      continue;
    }
    const std::string& key = k.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string msg = path.empty() ? "unknown top-level key '" + key + "'"
                                     : path + ": unknown key '" + key + "'";
      if (known.empty()) {
        msg += " (no keys are accepted here)";
      } else if (const std::string s = did_you_mean(key, known); !s.empty()) {
        msg += "; did you mean '" + s + "'?";
      }
      r.error(km, msg);
      continue;
    }
    if (auto [prev, fresh] = seen.emplace(key, km); !fresh) {
      r.error(km, where + ": duplicate key '" + key + "' (first at line " +
                      std::to_string(prev->second.line) + ")");
      continue;
    }
    out.push_back(Entry{key, v, km, value_mark(km, v), join(path, key)});
  }
  return out;
}

// Reports "<path>: <problem>" at the value; true when there was no problem.
bool check(Reporter& r, const Entry& e, const std::string& problem) {
  if (problem.empty()) return true;
  r.error(e.mark, e.path + ": " + problem);
  return false;
}

template <class T>
void read_int(Reporter& r, const Entry& e, int64_t min, int64_t max, T& dst) {
  int64_t v = 0;
  if (check(r, e, to_int(e.node, {min, max}, v))) dst = static_cast<T>(v);
}

template <class T>
void read_duration(Reporter& r, const Entry& e, int64_t min, int64_t max, T& dst) {
  int64_t v = 0;
  if (check(r, e, to_duration(e.node, {min, max}, v))) dst = static_cast<T>(v);
}

// ---------------------------------------------------------------------------
// agent:

void parse_agent(Reporter& r, const Entry& section, AgentSection& a) {
  static const std::vector<std::string> keys = {
      "control_socket", "control_mode", "control_max_connections", "control_max_line",
      "plugin_dir",     "threadpool",   "log_level",               "event_queue",
      "event_batch",    "lag_warn",     "shutdown_timeout",        "reload_timeout",
      "action_timeout"};
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
      if (!check(r, e, to_nonempty_string(e.node, s))) continue;
      if (s.size() >= sizeof(sockaddr_un{}.sun_path))
        check(r, e, "a Unix socket path must be shorter than " +
                        std::to_string(sizeof(sockaddr_un{}.sun_path)) + " bytes, got " +
                        std::to_string(s.size()));
      else
        a.control_socket = s;
    } else if (e.key == "control_mode") {
      check(r, e, to_mode(e.node, a.control_mode));
    } else if (e.key == "control_max_connections") {
      read_int(r, e, 1, 65536, a.control_max_connections);
    } else if (e.key == "control_max_line") {
      int64_t v = 0;
      if (check(r, e, to_size(e.node, {64, 1ll << 30}, v))) a.control_max_line = static_cast<size_t>(v);
    } else if (e.key == "plugin_dir") {
      check(r, e, to_nonempty_string(e.node, a.plugin_dir));
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
    }
  }
}

// ---------------------------------------------------------------------------
// plugins:

bool valid_instance_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
  });
}

// The core publishes its own events with source "hostlet" (plugin.h).
constexpr std::string_view kReservedInstance = "hostlet";

void parse_plugins(Reporter& r, const Entry& section, std::vector<InstanceSection>& out) {
  static const std::vector<std::string> keys = {"name",           "plugin", "max_inflight", "max_queue",
                                                "offload_timeout", "watch",  "config"};
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
        check(r, e, to_nonempty_string(e.node, inst.plugin));
      } else if (e.key == "max_inflight") {
        read_int(r, e, 1, 4096, inst.max_inflight);
      } else if (e.key == "max_queue") {
        read_int(r, e, 0, 1000000, inst.max_queue);
      } else if (e.key == "offload_timeout") {
        read_duration(r, e, 0, kDay, inst.offload_timeout_ms);
      } else if (e.key == "watch") {
        check(r, e, to_bool(e.node, inst.watch));
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
  static const std::vector<std::string> keys = {"name", "on", "do", "with", "debounce", "rate_limit"};
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

  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    const Mark m = e.mark.is_null() ? Mark{} : Mark{e.mark.line + 1, e.mark.column + 1};
    r.error(m, e.msg);
    return false;
  }
  if (docs.size() > 1) r.error(mark_of(docs[1]), "expected one YAML document, found another");
  if (docs.empty() || docs[0].IsNull()) return errs.size() == before;

  const YAML::Node& root = docs[0];
  if (!root.IsMap()) {
    r.error(mark_of(root), expected("a mapping with 'agent', 'plugins' and 'rules'", root));
    return false;
  }
  for (const Entry& e : known_entries(r, root, "", keys)) {
    if (e.key == "agent") parse_agent(r, e, out.agent);
    else if (e.key == "plugins") parse_plugins(r, e, out.plugins);
    else if (e.key == "rules") parse_rules(r, e, out.rules);
  }
  return errs.size() == before;
}

bool load_config_file(const std::string& path, Config& out, ConfigErrors& errs) {
  // POSIX I/O rather than ifstream: a directory or an EIO must be an error with
  // its errno, not an empty (and therefore valid) config.
  std::string text;
  int err = 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
  } else {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        err = errno;
        break;
      }
    }
    ::close(fd);
  }
  if (err != 0) {
    out = Config{};
    out.file = path;
    errs.push_back(ConfigError{path, {}, std::string("cannot read the file: ") + std::strerror(err)});
    return false;
  }
  return parse_config(text, path, out, errs);
}

// ---------------------------------------------------------------------------
// Plugin schemas.

namespace {

bool known_type(int t) { return t >= HOSTLET_CONFIG_STRING && t <= HOSTLET_CONFIG_INT_LIST; }

bool is_list(hostlet_config_type t) {
  return t == HOSTLET_CONFIG_STRING_LIST || t == HOSTLET_CONFIG_INT_LIST;
}

struct Problem {
  std::string what;  // empty: no problem
  Mark mark;         // where, when it is not the value itself (a list item)
  std::string suffix;  // appended to the path, e.g. "[2]"
};

// Converts one value of schema key `k`.
Problem convert(const YAML::Node& n, const hostlet_config_key& k, ConfigValue& v) {
  const Bounds b{k.min, k.max};
  v.type = k.type;
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
      if (b.active() && (static_cast<int64_t>(v.text.size()) < b.min ||
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
  try {
    YAML::Node n = YAML::Load(k.default_value);
    if (n.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
    return n;
  } catch (const YAML::Exception& e) {
    problem = "not valid YAML: " + e.msg;
    return std::nullopt;
  }
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
