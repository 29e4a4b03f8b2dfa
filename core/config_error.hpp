// How every config unit reports a problem: a ConfigError is one
// "FILE:LINE:COLUMN: message" line of `hostlet --check`, collected rather
// than thrown so that one run lists every problem in the file.
#pragma once

#include <string>
#include <vector>

namespace YAML {
class Node;
}

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

}  // namespace hostlet
