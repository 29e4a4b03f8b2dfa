// What the config units (config.cpp for the agent's sections,
// config_schema.cpp for a plugin's `config:`) share: reading one YAML node as
// a typed value, walking a mapping's known keys, and reporting problems with
// their line and column. Internal to those units.
//
// Converters fill `out` and return "" or what is wrong, without the path
// ("expected an integer, got 'x'"); `check` puts the path in front and
// reports it at the value.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config_error.hpp"

namespace hostlet::config_node {

// "'text'" (cut at 60 bytes), "a sequence", "a mapping" or "an empty value".
std::string describe(const YAML::Node& n);
// "expected <what>, got <describe(n)>"
std::string expected(std::string_view what, const YAML::Node& n);

// Bounds are checked when min < max (the plugin schema's convention).
struct Bounds {
  int64_t min = 0;
  int64_t max = 0;
  bool active() const { return min < max; }
  bool contains(int64_t v) const { return !active() || (v >= min && v <= max); }
};

constexpr int64_t kDay = 24 * 3600 * 1000;

std::string to_string(const YAML::Node& n, std::string& out);           // any scalar
std::string to_nonempty_string(const YAML::Node& n, std::string& out);  // a scalar but ""
// A file path: not empty and without control characters. A NUL would cut the
// path the OS sees short of the one written ("/run/a\0/x" is "/run/a").
std::string to_path(const YAML::Node& n, std::string& out);
std::string to_int(const YAML::Node& n, Bounds b, int64_t& out);
std::string to_bool(const YAML::Node& n, bool& out);
std::string to_double(const YAML::Node& n, double& out);
std::string to_duration(const YAML::Node& n, Bounds b, int64_t& out);  // milliseconds
std::string to_size(const YAML::Node& n, Bounds b, int64_t& out);      // bytes
// A file mode: "0600", "0o600" and 0600 are octal, a number without a leading 0 is decimal.
std::string to_mode(const YAML::Node& n, unsigned& out);
std::string to_rate(const YAML::Node& n, double& out);  // per second, > 0

// Collects errors into `errs`; on destruction puts the ones it added in file
// order, since checks run section by section rather than line by line.
class Reporter {
 public:
  Reporter(const std::string& file, ConfigErrors& errs);
  ~Reporter();
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;
  void error(Mark m, std::string message);

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

std::string join(std::string_view path, std::string_view key);  // "agent" + "x" -> "agent.x"
std::string indexed(std::string_view path, size_t i);           // "rules" + 2 -> "rules[2]"

// Where to report a problem with a value. An empty value (`key:` followed by
// nothing) gets yaml-cpp's mark of the next token, often on the next line;
// the key is where the user should look.
Mark value_mark(Mark key, const YAML::Node& value);

// The entries of `map` whose keys are in `known`, in document order. Keys
// that are not scalars, unknown (with a suggestion) or repeated are reported.
std::vector<Entry> known_entries(Reporter& r, const YAML::Node& map, const std::string& path,
                                 const std::vector<std::string>& known);

// Reports "<path>: <problem>" at the value; true when there was no problem.
bool check(Reporter& r, const Entry& e, const std::string& problem);

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

}  // namespace hostlet::config_node
