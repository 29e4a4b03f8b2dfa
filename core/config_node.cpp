// See config_node.hpp.
#include "config_node.hpp"

#include <algorithm>
#include <map>

#include "config_scalars.hpp"
#include "edit_distance.hpp"

namespace hostlet::config_node {

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

std::string to_path(const YAML::Node& n, std::string& out) {
  std::string s;
  if (std::string problem = to_nonempty_string(n, s); !problem.empty()) return problem;
  const auto control = std::find_if(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
  if (control != s.end())
    return "a path must not contain control characters, got '" + s + "' (a " +
           (*control == '\0' ? std::string("NUL") : "control character") + " at byte " +
           std::to_string(control - s.begin() + 1) + ")";
  out = std::move(s);
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
  const auto v = n.IsScalar() ? parse_bool(n.Scalar()) : std::nullopt;
  if (!v) return expected("true or false", n);
  out = *v;
  return {};
}

std::string to_double(const YAML::Node& n, double& out) {
  if (!n.IsScalar()) return expected("a number", n);
  const auto v = parse_double(n.Scalar());
  if (!v) return expected("a number", n);
  out = *v;
  return {};
}

namespace {

// A scalar read by `parse` (durations, sizes) and checked against `b`, whose
// bounds are printed by `format` followed by `unit`.
std::string to_scaled(const YAML::Node& n, Bounds b, std::string_view what,
                      std::optional<uint64_t> (*parse)(std::string_view), std::string (*format)(uint64_t),
                      std::string_view unit, int64_t& out) {
  if (!n.IsScalar()) return expected(what, n);
  const auto v = parse(n.Scalar());
  if (!v) return expected(what, n);
  const auto value = static_cast<int64_t>(*v);
  if (!b.contains(value))
    return "must be between " + format(static_cast<uint64_t>(std::max<int64_t>(b.min, 0))) + " and " +
           format(static_cast<uint64_t>(b.max)) + std::string(unit) + ", got " + n.Scalar();
  out = value;
  return {};
}

}  // namespace

std::string to_duration(const YAML::Node& n, Bounds b, int64_t& out) {
  return to_scaled(n, b, "a duration such as 250ms, 5s, 2m or 1h", parse_duration_ms, format_ms, "", out);
}

std::string to_size(const YAML::Node& n, Bounds b, int64_t& out) {
  return to_scaled(n, b, "a size such as 4096, 64KiB, 1MiB or 2GiB", parse_size, format_size, " bytes", out);
}

std::string to_mode(const YAML::Node& n, unsigned& out) {
  const auto v = n.IsScalar() ? parse_file_mode(n.Scalar()) : std::nullopt;
  if (!v) return expected("a file mode such as \"0600\"", n);
  if (*v > 0777) return "must be a file mode between 0 and 0777, got " + n.Scalar();
  out = static_cast<unsigned>(*v);
  return {};
}

std::string to_rate(const YAML::Node& n, double& out) {
  static constexpr std::string_view what = "a rate such as 10, \"10/s\" or \"30/m\"";
  const auto v = n.IsScalar() ? parse_rate_per_second(n.Scalar()) : std::nullopt;
  if (!v) return expected(what, n);
  if (*v <= 0) return "must be greater than 0 (leave it out for no limit), got " + n.Scalar();
  out = *v;
  return {};
}

Reporter::Reporter(const std::string& file, ConfigErrors& errs)
    : file_(file), errs_(errs), first_(errs.size()) {}

Reporter::~Reporter() {
  std::stable_sort(errs_.begin() + static_cast<std::ptrdiff_t>(first_), errs_.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     return std::pair(a.mark.line, a.mark.column) < std::pair(b.mark.line, b.mark.column);
                   });
}

void Reporter::error(Mark m, std::string message) {
  errs_.push_back(ConfigError{file_, m, std::move(message)});
}

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string indexed(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

Mark value_mark(Mark key, const YAML::Node& value) {
  const Mark m = mark_of(value);
  const bool after_key = m.line == key.line && m.column > key.column;
  if (m.line == 0 || (value.IsNull() && !after_key)) return key;
  return m;
}

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

bool check(Reporter& r, const Entry& e, const std::string& problem) {
  if (problem.empty()) return true;
  r.error(e.mark, e.path + ": " + problem);
  return false;
}

}  // namespace hostlet::config_node
