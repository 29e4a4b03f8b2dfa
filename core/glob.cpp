// See glob.hpp.
#include "glob.hpp"

#include <set>

namespace hostlet {

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

bool valid_glob(std::string_view pattern) { return glob_syntax_error(pattern).empty(); }

bool is_glob(std::string_view s) { return s.find_first_of("*?[\\") != std::string_view::npos; }

}  // namespace hostlet
