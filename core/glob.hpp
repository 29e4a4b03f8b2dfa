// Event-type and attribute patterns: fnmatch(3) with flags 0. fnmatch has no
// compile step and reads a malformed pattern some way of its own (an
// unbalanced '[' as a literal '['), so every pattern a user or a plugin gives
// is checked here first, by the config, the bus and the control socket alike.
#pragma once

#include <string>
#include <string_view>

namespace hostlet {

// Checks fnmatch(3) pattern syntax (flags 0): an unbalanced '[', an unknown
// "[:class:]" or a trailing lone '\\' is an error. Returns the problem, or
// empty when the pattern is valid.
std::string glob_syntax_error(std::string_view pattern);
// glob_syntax_error(pattern).empty()
bool valid_glob(std::string_view pattern);
// Whether `s` has a character fnmatch treats specially ('*', '?', '[', and
// '\', which escapes the next one: vm\.start matches "vm.start", not
// itself): a pattern without one matches only itself, so callers compare it
// exactly.
bool is_glob(std::string_view s);

}  // namespace hostlet
