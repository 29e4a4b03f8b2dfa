// See config_error.hpp.
#include "config_error.hpp"

#include <yaml-cpp/yaml.h>

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

}  // namespace hostlet
