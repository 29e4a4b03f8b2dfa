// How every config unit reports a problem: a ConfigError is one
// "FILE:LINE:COLUMN: message" line of `hostlet --check`, collected rather
// than thrown so that one run lists every problem in the file.
#pragma once

#include <string>
#include <string_view>
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
  // "FILE:LINE:COLUMN: message" (or "FILE: message" without a mark), with
  // the file and the message made printable(): a message quotes what the
  // user wrote, and a CR in a key must not rewrite the terminal's line.
  std::string str() const;
};
using ConfigErrors = std::vector<ConfigError>;

// `text` safe to print on a terminal or in a log line: control characters as
// \r, \n, \t or \xHH (C0 and DEL), C1 controls, line separators and bidi
// overrides as \uHHHH, each byte that is not valid UTF-8 as \xHH; the rest,
// other UTF-8 included, as is. A backslash stays a backslash, so a key that
// is literally "a\rb" prints the same as one with a CR: rare, and harmless.
std::string printable(std::string_view text);

}  // namespace hostlet
